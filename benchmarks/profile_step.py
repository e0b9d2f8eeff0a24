#!/usr/bin/env python
"""Where one fcn NumPy training iteration goes: stage by stage, against reference points, and under cProfile.

Three views of ``fcn.Solver.step()`` on the NumPy backend (the issue's target is NumPy float32):

- **in situ**: the iteration itself, run stage by stage with the calls ``Solver.step`` and
  ``FullyConnectedNet.loss`` make, and a clock read between stages (~0.1 us each). This is what each stage
  costs inside the real pipeline: a freshly gathered batch is cold in cache for the first GEMM, and
  allocations are recycled as in training. Its total is checked against the measured ``Solver.step()``.
- **reference points**, each timed in isolation: the GEMM floor (the iteration's matrix products alone, on
  operands hot in cache), gather + GEMM floor (the same with a freshly gathered batch: the lower bound of any
  step that draws random batches), the two big raw GEMMs, ``model.loss`` with and without value checks, and
  ``Solver.step()``;
- **cProfile** over a run of steps: exact call counts, and a ranking (its overhead inflates small calls).

``bench_train.py`` runs this and puts the result in its report. On its own:
``python benchmarks/profile_step.py [--data-dir D] [--dtype float64] [--hidden 1024,512] [--json FILE]``
prints the breakdown as markdown.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package

import _common as C  # noqa: E402  (needs the path entry above)

import fcn  # noqa: E402


def _trusted(fn: Callable[..., Any], *a: Any) -> Any:
    """Call ``fn`` with value checks off (as inside ``Solver.train``)."""
    with fcn.trusted_inputs():
        return fn(*a)


def profile_iteration(
    hidden: Sequence[int], dtype: str, data: dict[str, Any], *, batch: int, repeats: int, warmup: int, seed: int
) -> dict[str, Any]:
    """The three views of one fcn NumPy iteration (see the module docstring) as a JSON-able dict."""
    be = fcn.get_backend("numpy")
    xp = be.xp
    input_dim = int(numpy.prod(data["X_train"].shape[1:]))
    model = C.make_model(hidden, be, dtype, seed, input_dim)
    solver = C.make_solver(model, data, batch, seed)
    for _ in range(warmup + 1):
        solver.step()
    solver._read_losses()
    X, y = solver.X_train, solver.y_train
    # Gathers cycle through an epoch's batches: one batch again and again would be hot in cache, while a
    # training step reads rows (6 MB in float32) it has not touched for a whole epoch.
    order = numpy.random.default_rng(seed).permutation(X.shape[0])
    batches = [xp.asarray(order[k * batch : (k + 1) * batch]) for k in range(solver.iterations_per_epoch)]
    turn = itertools.count()

    def next_idx() -> Any:
        return batches[next(turn) % len(batches)]

    idx = batches[0]
    Xb, yb = xp.take(X, idx, axis=0), xp.take(y, idx, axis=0)
    x2 = xp.reshape(Xb, (Xb.shape[0], -1))
    rng = numpy.random.default_rng(seed)
    floor = C.gemm_floor(lambda s: be.asarray(rng.standard_normal(s).astype(dtype)), C.model_dims(model), len(idx))
    dA1 = be.asarray(rng.standard_normal((len(idx), model.hidden_dims[0])).astype(dtype))
    W1 = model.params["W1"]

    def gather_floor() -> None:
        i = next_idx()
        xp.take(y, i, axis=0)
        floor(xp.reshape(xp.take(X, i, axis=0), (len(i), -1)))

    reference: list[tuple[str, Callable[[], Any]]] = [
        ("GEMM floor (the iteration's matrix products, operands hot in cache)", floor),
        ("gather + GEMM floor (a fresh batch each call)", gather_floor),
        ("raw X_batch @ W1 (hot)", lambda: x2 @ W1),
        ("raw X_batch.T @ dA1 (hot)", lambda: xp.matrix_transpose(x2) @ dA1),
        ("model.loss(X_batch, y_batch), trusted", lambda: _trusted(model.loss, Xb, yb)),
        ("model.loss(X_batch, y_batch), value checks on", lambda: model.loss(Xb, yb)),
        ("Solver.step()", solver.step),
    ]
    rows = []
    for name, fn in reference:
        r = C.Runner(name, fn)
        C.time_block(r, repeats, warmup=2)
        rows.append({"piece": name, **C.summarize(r.samples)})
        solver._read_losses()  # step queues its losses on the device; keep the list short
    med = {r["piece"]: r["median_s"] for r in rows}

    in_situ = instrumented_iterations(model, X, y, batch, repeats, seed)

    prof = cProfile.Profile()
    n_prof = max(repeats // 2, 2)
    prof.enable()
    for _ in range(n_prof):
        solver.step()
    prof.disable()
    solver._read_losses()
    stats = pstats.Stats(prof, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    top = [
        {
            "function": f"{Path(filename).name}:{line}({func})",
            "calls_per_iteration": nc / n_prof,
            "tottime_ms_per_iteration": tt / n_prof * 1e3,
            "cumtime_ms_per_iteration": ct / n_prof * 1e3,
        }
        for (filename, line, func), (_, nc, tt, ct, _) in sorted(stats.items(), key=lambda kv: -kv[1][2])[:15]
    ]
    return {
        "dtype": dtype,
        "dims": C.model_dims(model),
        "batch_size": batch,
        "reference": rows,
        "step_median_s": med["Solver.step()"],
        "gemm_floor_median_s": rows[0]["median_s"],
        "gather_floor_median_s": rows[1]["median_s"],
        "in_situ": in_situ,
        "cprofile_top_by_tottime": top,
        "cprofile_function_calls_per_iteration": sum(v[1] for v in stats.values()) / n_prof,
    }


def instrumented_iterations(model: Any, X: Any, y: Any, batch: int, reps: int, seed: int) -> dict[str, Any]:
    """Run ``reps`` training iterations with a clock read between stages; per-stage medians.

    The stages are the calls ``Solver.step`` and ``FullyConnectedNet.loss`` make (the model's private input
    handling included), on the model's own parameters, under ``trusted_inputs()`` as in training.
    """
    xp, p, L = model.xp, model.params, model.num_layers
    order = xp.asarray(numpy.random.default_rng(seed).permutation(X.shape[0]))
    ipe = max(X.shape[0] // batch, 1)
    configs = {k: {"learning_rate": C.LEARNING_RATE} for k in p}
    clock = time.perf_counter
    stages: dict[str, list[float]] = {}
    totals: list[float] = []

    def one(k: int) -> None:
        t0 = clock()
        marks: list[tuple[str, float]] = []
        idx = order[k * batch : (k + 1) * batch]
        Xb, yb = xp.take(X, idx, axis=0), xp.take(y, idx, axis=0)
        marks.append(("gather X, y (xp.take)", clock()))
        Xb = model._inputs(Xb)
        yb = model._labels(yb, Xb.shape[0])
        marks.append(("input handling (_inputs, _labels)", clock()))
        caches, h = [], Xb
        for i in range(1, L):
            a, c = fcn.affine_forward(h, p[f"W{i}"], p[f"b{i}"])
            marks.append((f"forward: affine layer {i} (GEMM + bias)", clock()))
            h, _ = fcn.relu_forward(a)
            caches.append((c, a))
            marks.append((f"forward: relu layer {i}", clock()))
        scores, last = fcn.affine_forward(h, p[f"W{L}"], p[f"b{L}"])
        marks.append((f"forward: affine layer {L}", clock()))
        data_loss, dscores = fcn.softmax_loss(scores, yb)
        marks.append(("softmax_loss", clock()))
        weights = [p[f"W{i}"] for i in range(1, L + 1)]
        reg_loss = sum(xp.vecdot(xp.reshape(w, (-1,)), xp.reshape(w, (-1,))) for w in weights)
        _ = data_loss + 0.5 * C.REG * reg_loss
        marks.append(("reg loss (vecdot)", clock()))
        grads = {}
        dh, grads[f"W{L}"], grads[f"b{L}"] = fcn.affine_backward(dscores, last, need_dx=L > 1)
        marks.append((f"backward: affine layer {L}", clock()))
        for i in range(L - 1, 0, -1):
            c, a = caches[i - 1]
            da = fcn.relu_backward(dh, a)
            marks.append((f"backward: relu layer {i}", clock()))
            dh, grads[f"W{i}"], grads[f"b{i}"] = fcn.affine_backward(da, c, need_dx=i > 1)
            marks.append((f"backward: affine layer {i} (need_dx={i > 1})", clock()))
        for i, w in enumerate(weights, start=1):
            grads[f"W{i}"] += C.REG * w
        marks.append(("reg gradient (W += reg * W)", clock()))
        for name in p:
            p[name], configs[name] = fcn.sgd(p[name], grads[name], configs[name])
        marks.append(("sgd updates", clock()))
        prev = t0
        for name, t in marks:
            stages.setdefault(name, []).append(t - prev)
            prev = t
        totals.append(prev - t0)

    with fcn.trusted_inputs():
        for it in range(reps + 3):
            if it == 3:  # the first three are warm-up
                stages.clear()
                totals.clear()
            one(it % ipe)
    return {"stages": [{"stage": k, **C.summarize(v)} for k, v in stages.items()], "total": C.summarize(totals)}


def run_profile(hidden: Sequence[int], dtype: str, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """:func:`profile_iteration` with contention tracking, retried (``--retries``) when other jobs took the CPUs."""

    def attempt() -> dict[str, Any]:
        with C.OtherLoad() as load:
            prof = profile_iteration(
                hidden,
                dtype,
                data,
                batch=args.batch_size,
                repeats=args.profile_repeats,
                warmup=args.warmup,
                seed=args.seed,
            )
        return prof | {"other_load": load.share}

    prof, attempts = C.least_contended(
        attempt, lambda p: p["other_load"], retries=args.retries, wait_idle=args.wait_idle, what="profiling"
    )
    return prof | {"attempts": attempts}


def markdown_section(prof: dict[str, Any], level: str = "##") -> str:
    """The profile as a markdown section: in-situ stages, reference points, cProfile's top functions."""
    step, situ = prof["step_median_s"], prof["in_situ"]
    total = situ["total"]["median_s"]
    dims = "-".join(map(str, prof["dims"]))
    out = [
        f"{level} Where one fcn NumPy {prof['dtype']} iteration goes ({dims}, batch {prof['batch_size']})\n",
        f"Other processes used {C.pct(prof.get('other_load'))} of the CPUs during the profile.\n",
        "In situ: the iteration run stage by stage with a clock read between stages (medians over iterations; "
        f"total {C.ms(total)} ms against the measured `Solver.step()` {C.ms(step)} ms):\n",
        C.markdown_table(
            ["stage", "median ms", "p10-p90 ms", "share"],
            [
                [
                    r["stage"],
                    C.ms(r["median_s"]),
                    f"{C.ms(r['p10_s'])}-{C.ms(r['p90_s'])}",
                    C.pct(r["median_s"] / total),
                ]
                for r in situ["stages"]
            ],
        ),
        "\nReference points, each timed in isolation:\n",
        C.markdown_table(
            ["piece", "median ms", "p10-p90 ms", "step / piece"],
            [
                [r["piece"], C.ms(r["median_s"]), f"{C.ms(r['p10_s'])}-{C.ms(r['p90_s'])}"]
                + [C.fmt_ratio(C.ratio(step, r["median_s"]))]
                for r in prof["reference"]
            ],
        ),
        f"\n{prof['cprofile_function_calls_per_iteration']:.0f} Python function calls per iteration. cProfile, top "
        "functions by own time (per iteration; cProfile inflates small calls):\n",
        C.markdown_table(
            ["function", "calls", "own ms", "cumulative ms"],
            [
                [
                    f"`{t['function']}`",
                    f"{t['calls_per_iteration']:.0f}",
                    f"{t['tottime_ms_per_iteration']:.3f}",
                    f"{t['cumtime_ms_per_iteration']:.3f}",
                ]
                for t in prof["cprofile_top_by_tottime"]
            ],
        ),
    ]
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line of the stand-alone profile."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (synthetic data, small net, 4 repeats)")
    ap.add_argument("--data-dir", help="CIFAR-10 folder (default: $FCN_DATA_DIR, else ../shared/datasets/...)")
    ap.add_argument("--synthetic", action="store_true", help="use synthetic data even where CIFAR-10 is found")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--hidden", help="hidden sizes (default 100: the shallow net)")
    ap.add_argument("--n-train", type=int)
    ap.add_argument("--n-val", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--profile-repeats", type=int, help="calls per reference point and in-situ iterations")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wait-idle", type=float, default=0.0, help="wait up to this many seconds for idle CPUs")
    ap.add_argument("--retries", type=int, default=0, help="profile again (up to N times) when contended")
    ap.add_argument("--json", type=Path, help="also write the profile as JSON to this file")
    args = ap.parse_args(argv)
    quick = {"hidden": "16", "n_train": 1000, "n_val": 100, "batch_size": 100, "profile_repeats": 4}
    full = {"hidden": "100", "n_train": 49_000, "n_val": 1000, "batch_size": 500, "profile_repeats": 60}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.synthetic = args.synthetic or (args.quick and not args.data_dir)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Profile one iteration, print the markdown section (and write ``--json``); return the profile."""
    args = parse_args(argv)
    C.wait_until_idle(args.wait_idle)
    base = C.load_data(args.data_dir, args.n_train, args.n_val, synthetic=args.synthetic)
    print(f"data: {base.kind}", flush=True)
    prof = run_profile(C.parse_dims(args.hidden), args.dtype, base.arrays(args.dtype), args) | {"data": base.kind}
    print(markdown_section(prof))
    if args.json:
        C.write_json(args.json, prof)
    return prof


if __name__ == "__main__":
    main()
