#!/usr/bin/env python
"""Microbenchmarks of fcn's layer functions at the work unit's shapes, against the bare array operations.

Shapes are those of one training iteration of the chapter's net (batch 500, 3072-100-10): the first
affine layer (``(500, 3, 32, 32) x (3072, 100)``), the second (``(500, 100) x (100, 10)``), the ReLU on
``(500, 100)`` and the softmax loss on ``(500, 10)``. Each fcn call is timed next to a ``raw`` twin doing
the same arithmetic with the namespace's operators and no checks, so ``fcn / raw`` is the price of the
library's wrapper (namespace lookup, dtype and shape checks, label checks): large for the small layers,
where a few microseconds of Python are a large share, and close to 1 where a GEMM dominates.

Run ``python benchmarks/bench_layers.py --help``; results land in ``benchmarks/results/`` as
``layers-<host>-<UTC time>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package

import _common as C  # noqa: E402  (needs the path entry above)

import fcn  # noqa: E402
from fcn.validation import trusted_inputs  # noqa: E402


def raw_softmax_loss(xp: Any, scores: Any, y: Any) -> tuple[Any, Any]:
    """The arithmetic of :func:`fcn.softmax_loss` with no checks: the floor its wrapper is compared with."""
    n, c = scores.shape
    shifted = scores - xp.max(scores, axis=1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = xp.sum(exp, axis=1, keepdims=True)
    correct = xp.take_along_axis(shifted, xp.reshape(y, (n, 1)), axis=1)
    loss = xp.sum(xp.log(sum_exp) - correct) / n
    dscores = exp / sum_exp
    dscores -= xp.astype(xp.reshape(y, (n, 1)) == xp.arange(c), scores.dtype)
    dscores /= n
    return loss, dscores


def trusted(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with value checks off, as the training loop runs every layer."""

    def call(*a: Any, **kw: Any) -> Any:
        with trusted_inputs():
            return fn(*a, **kw)

    return call


def cases(be: fcn.Backend, dtype: str, n: int, d: int, h: int, c: int, seed: int) -> list[dict[str, Any]]:
    """The (op, shapes, fcn call, raw call) quadruples for one backend and dtype."""
    xp = be.xp
    rng = numpy.random.default_rng(seed)

    def arr(*shape: int) -> Any:
        return be.asarray(rng.standard_normal(shape).astype(dtype))

    side = int(round((d / 3) ** 0.5))
    x_img = arr(n, 3, side, side) if 3 * side * side == d else arr(n, d)
    x2 = xp.reshape(x_img, (n, d))
    W1, b1, W2, b2 = arr(d, h), arr(h), arr(h, c), arr(c)
    a1, dh = arr(n, h), arr(n, h)
    h1 = xp.maximum(a1, 0.0)
    scores, dscores = arr(n, c), arr(n, c)
    y = be.asarray(rng.integers(0, c, n, dtype=numpy.int64))
    cache1, cache2 = (x_img, W1, b1), (h1, W2, b2)

    def raw_affine(x: Any, w: Any, b: Any) -> Any:
        out = x @ w
        out += b
        return out

    def raw_affine_backward(dout: Any, x: Any, w: Any, need_dx: bool) -> Any:
        dw = xp.matrix_transpose(x) @ dout
        db = xp.sum(dout, axis=0)
        return (dout @ xp.matrix_transpose(w) if need_dx else None), dw, db

    shape1 = f"x {tuple(x_img.shape)}, W {tuple(W1.shape)}"
    shape2 = f"x {tuple(h1.shape)}, W {tuple(W2.shape)}"
    return [
        {
            "op": "affine_forward L1",
            "shapes": shape1,
            "fcn": lambda: fcn.affine_forward(x_img, W1, b1),
            "raw": lambda: raw_affine(x2, W1, b1),
        },
        {
            "op": "affine_forward L2",
            "shapes": shape2,
            "fcn": lambda: fcn.affine_forward(h1, W2, b2),
            "raw": lambda: raw_affine(h1, W2, b2),
        },
        {
            "op": "affine_backward L1 (no dx)",
            "shapes": f"dout {tuple(dh.shape)}, {shape1}",
            "fcn": lambda: fcn.affine_backward(dh, cache1, need_dx=False),
            "raw": lambda: raw_affine_backward(dh, x2, W1, False),
        },
        {
            "op": "affine_backward L2 (dx)",
            "shapes": f"dout {tuple(dscores.shape)}, {shape2}",
            "fcn": lambda: fcn.affine_backward(dscores, cache2, need_dx=True),
            "raw": lambda: raw_affine_backward(dscores, h1, W2, True),
        },
        {
            "op": "relu_forward",
            "shapes": f"x {tuple(a1.shape)}",
            "fcn": lambda: fcn.relu_forward(a1),
            "raw": lambda: xp.maximum(a1, 0.0),
        },
        {
            "op": "relu_backward",
            "shapes": f"dout {tuple(dh.shape)}",
            "fcn": lambda: fcn.relu_backward(dh, a1),
            "raw": lambda: dh * xp.astype(a1 > 0, dh.dtype),
        },
        {
            "op": "softmax_loss (trusted)",
            "shapes": f"scores {tuple(scores.shape)}",
            "fcn": lambda: trusted(fcn.softmax_loss)(scores, y),
            "raw": lambda: raw_softmax_loss(xp, scores, y),
        },
        {
            "op": "softmax_loss (value checks)",
            "shapes": f"scores {tuple(scores.shape)}",
            "fcn": lambda: fcn.softmax_loss(scores, y),
            "raw": lambda: raw_softmax_loss(xp, scores, y),
        },
    ]


def us(seconds: float | None) -> str:
    """Seconds as microseconds for the table."""
    return "-" if seconds is None else f"{seconds * 1e6:.1f}"


def markdown_report(payload: dict[str, Any]) -> str:
    """The results as markdown: one row per op, backend and dtype, fcn beside raw."""
    out = [C.header_markdown("fcn layer microbenchmarks", payload)]
    cfg = payload["config"]
    out.append(
        f"Shapes of one iteration: batch {cfg['batch_size']}, {cfg['input_dim']}-{cfg['hidden']}-{cfg['classes']}. "
        "`raw` is the same arithmetic with the namespace's operators and no checks; `fcn / raw` is the wrapper's "
        "price. Times are medians in microseconds (p10-p90 in brackets); `others' CPU` is the share of the CPUs "
        "other processes used meanwhile (above ~10%, times are inflated; `-`: too short a block to measure).\n"
    )
    out.append(
        C.markdown_table(
            ["backend", "dtype", "op", "shapes", "fcn us", "raw us", "fcn / raw", "others' CPU"],
            [
                [
                    r["backend"],
                    r["dtype"],
                    r["op"],
                    r["shapes"],
                    f"{us(r['fcn']['median_s'])} [{us(r['fcn']['p10_s'])}-{us(r['fcn']['p90_s'])}]",
                    f"{us(r['raw']['median_s'])} [{us(r['raw']['p10_s'])}-{us(r['raw']['p90_s'])}]",
                    C.fmt_ratio(r["fcn_over_raw"]),
                    "-" if r.get("other_load") is None else f"{100 * r['other_load']:.0f}%",
                ]
                for r in payload["results"]
            ],
        )
    )
    return "\n".join(out) + "\n"


FULL = {"batch_size": 500, "input_dim": 3072, "hidden": 100, "repeats": 200, "rounds": 4, "warmup": 5}
QUICK = {"batch_size": 50, "input_dim": 3 * 4 * 4, "hidden": 16, "repeats": 2, "rounds": 1, "warmup": 1}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line; unset options take their value from :data:`FULL` or, with ``--quick``, :data:`QUICK`."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (small shapes, 2 repeats)")
    ap.add_argument("--out", type=Path, default=C.DEFAULT_OUT, help="results folder (default: benchmarks/results)")
    ap.add_argument("--backends", default="numpy,cupy", help="fcn backends (cupy only where a GPU is seen)")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeats", type=int, help="timed calls per op and variant (spread over --rounds)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds")
    ap.add_argument("--warmup", type=int, help="untimed calls before each block")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--input-dim", type=int, help="features per sample (3072 = 3x32x32)")
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--wait-idle", type=float, default=0.0, help="wait up to this many seconds for other jobs to leave the CPUs"
    )
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Run the microbenchmarks; return the paths of the JSON, markdown and PNG written."""
    args = parse_args(argv)
    start = C.start_run(args.wait_idle)
    when, busy_before, load_before = start.when, start.busy_before, start.load_before
    results: list[dict[str, Any]] = []
    for name in C.split_csv(args.backends):
        if name == "cupy" and not fcn.has_gpu():
            print("cupy: skipped (" + ("no CUDA GPU visible" if fcn.has_cupy() else "CuPy not installed") + ")")
            continue
        be = fcn.get_backend(name)
        for dtype in C.split_csv(args.dtypes):
            print(f"\n== {be.name} {dtype} ==", flush=True)
            for case in cases(be, dtype, args.batch_size, args.input_dim, args.hidden, args.classes, args.seed):
                runners = [C.Runner("fcn", case["fcn"], be.synchronize), C.Runner("raw", case["raw"], be.synchronize)]
                per_round = max(-(-args.repeats // args.rounds), 1)
                with C.OtherLoad() as load:
                    C.run_interleaved(runners, rounds=args.rounds, repeats=per_round, warmup=args.warmup, settle_s=0.0)
                f, r = C.summarize(runners[0].samples), C.summarize(runners[1].samples)
                rec = {
                    "backend": be.name,
                    "dtype": dtype,
                    "op": case["op"],
                    "shapes": case["shapes"],
                    "fcn": f,
                    "raw": r,
                    "fcn_over_raw": C.ratio(f.get("median_s"), r.get("median_s")),
                    "other_load": load.share,
                }
                results.append(rec)
                print(
                    f"  {case['op']:<28} fcn {us(f['median_s']):>9} us  raw {us(r['median_s']):>9} us  "
                    f"fcn/raw {C.fmt_ratio(rec['fcn_over_raw'])}",
                    flush=True,
                )

    payload = C.common_payload(None, "random normal arrays (no data set needed)", when, args) | {
        "benchmark": "layers",
        "config": {
            "batch_size": args.batch_size,
            "input_dim": args.input_dim,
            "hidden": args.hidden,
            "classes": args.classes,
            "timing": "median over interleaved rounds of fcn call and raw twin; synchronised on GPU",
        },
        "load_average": {"before": load_before, "after": C.load_average()},
        "cpu_busy_before": busy_before,
        "results": results,
    }
    stem = C.result_stem("layers", when)
    out = Path(args.out)
    paths = {"json": C.write_json(out / f"{stem}.json", payload), "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["md"].write_text(markdown_report(payload))
    panels: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for rec in results:
        panel = panels.setdefault(f"{rec['backend']} {rec['dtype']}", [])
        panel += [(f"{rec['op']} fcn", rec["fcn"]), (f"{rec['op']} raw", rec["raw"])]
    C.bar_chart(
        paths["png"],
        panels,
        title=f"fcn layers vs raw array ops, batch {args.batch_size} ({payload['machine']['cpu']})",
        log=True,
    )
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return paths


if __name__ == "__main__":
    main()
