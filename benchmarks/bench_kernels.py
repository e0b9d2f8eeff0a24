#!/usr/bin/env python
"""Every kernel of fcn's tables, one by one: the reference, each backend's version, a correctness check, a timing.

In the manner of llm.c's ``dev/cuda``: for each kernel of :class:`fcn.ops.Ops` (the dense layers, the loss, the
normalizations, the update rules), the same inputs go through every table available here:

- ``reference``: :class:`fcn.ops.Ops` on NumPy (the Array-API code every backend starts from);
- ``numpy``: :class:`fcn.ops.NumpyOps` on NumPy alone (``blas=False``);
- ``numpy+blas``: :class:`fcn.ops.NumpyOps` calling SciPy's BLAS routines (where SciPy is installed);
- ``cupy``, ``cupy-fused``: :class:`fcn.ops.CupyOps` and :class:`fcn.ops.FusedCupyOps` (where a GPU is usable).

Correctness: each table's outputs (results, and the arrays an in-place kernel updates) against the reference
computed in float64 from the same inputs: largest error relative to the largest reference value, within 1e-12
(float64) or 1e-4 (float32). Timing: median and 10th percentile of ``--repeats`` calls after warm-up, each
followed by the device's synchronisation (``--gpu-inner`` calls per sample on a GPU). In-place kernels are
timed on the same buffers call after call (their cost does not depend on the values).

    python benchmarks/bench_kernels.py                      # deep-net sizes (batch 500, 3072-1024), both dtypes
    python benchmarks/bench_kernels.py --size shallow --kernels affine_backward,sgd --dtypes float32
    python benchmarks/bench_kernels.py --quick              # tiny sizes, seconds (a smoke run)

Results: ``benchmarks/results/kernels-<host>-<UTC time>.{json,md}`` (``--out DIR`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package

import fcn  # noqa: E402
from fcn.ops import CupyOps, FusedCupyOps, NumpyOps, Ops  # noqa: E402
from fcn.ops.numpy_ops import scipy_blas  # noqa: E402
from fcn.sysinfo import machine_info, openblas_coretype_warning  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
#: Problem sizes: batch N, input features D, hidden width M, classes C, rows of the data set gathered from.
SIZES = {
    "deep": {"N": 500, "D": 3072, "M": 1024, "C": 10, "rows": 10000},
    "shallow": {"N": 500, "D": 3072, "M": 100, "C": 10, "rows": 10000},
    "quick": {"N": 16, "D": 24, "M": 12, "C": 5, "rows": 64},
}
TOLERANCE = {"float64": 1e-12, "float32": 1e-4}
ADAM = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 3, "weight_decay": 0.01}


def kernel_cases(s: dict[str, int]) -> dict[str, Callable[[numpy.random.Generator], tuple[list, dict, list[int]]]]:
    """Per kernel: ``make(rng) -> (args, kwargs, mutated)``; ``args`` host float64 arrays (or labels, masks and
    index arrays, which keep their type), ``mutated`` the positions of the arguments the kernel updates in place
    (compared after the call, beside its result)."""
    N, D, M, C = s["N"], s["D"], s["M"], s["C"]

    def normal(*shape: int) -> numpy.ndarray:
        return rng_box[0].standard_normal(shape)

    rng_box: list[numpy.random.Generator] = []

    def case(fn: Callable[[], tuple[list, dict, list[int]]]) -> Callable[[numpy.random.Generator], Any]:
        def make(rng: numpy.random.Generator) -> tuple[list, dict, list[int]]:
            rng_box[:] = [rng]
            return fn()

        return make

    labels = lambda: rng_box[0].integers(C, size=N)  # noqa: E731
    positive = lambda *shape: rng_box[0].random(shape) + 0.5  # noqa: E731
    return {
        "affine_forward": case(lambda: ([normal(N, D), normal(D, M) * 0.02, normal(M)], {}, [])),
        "affine_relu_forward": case(lambda: ([normal(N, D), normal(D, M) * 0.02, normal(M)], {}, [])),
        "affine_backward": case(lambda: ([normal(N, M), normal(N, D), normal(D, M)], {"reg": 0.6}, [])),
        "affine_backward_sgd": case(
            lambda: ([normal(N, M), normal(N, D), normal(D, M)], {"learning_rate": 1e-2, "reg": 0.6}, [2])
        ),
        "bias_relu": case(lambda: ([normal(N, M), normal(M)], {}, [])),
        "relu": case(lambda: ([normal(N, M)], {}, [])),
        "relu_backward": case(lambda: ([normal(N, M), numpy.maximum(normal(N, M), 0)], {}, [])),
        "softmax_cross_entropy": case(lambda: ([normal(N, C) * 3, labels()], {}, [])),
        "sum_of_squares": case(lambda: ([[normal(D, M), normal(M, C)]], {}, [])),
        "take_rows": case(lambda: ([normal(s["rows"], D), rng_box[0].permutation(s["rows"])[:N]], {}, [])),
        "dropout": case(lambda: ([normal(N, M), rng_box[0].random((N, M)) < 0.7, 0.7], {}, [])),
        "dropout_backward": case(lambda: ([normal(N, M), (rng_box[0].random((N, M)) < 0.7) / 0.7], {}, [])),
        "batchnorm_train": case(lambda: ([normal(N, M), positive(M), normal(M), 1e-5], {}, [])),
        "batchnorm_eval": case(lambda: ([normal(N, M), positive(M), normal(M), normal(M), positive(M), 1e-5], {}, [])),
        "layernorm": case(lambda: ([normal(N, M), positive(M), normal(M), 1e-5], {}, [])),
        "norm_backward": case(lambda: ([normal(N, M), normal(N, M), positive(M), positive(M), 0], {}, [])),
        "running_average": case(lambda: ([normal(M), normal(M), 0.9], {}, [0])),
        "sgd": case(lambda: ([normal(D, M), normal(D, M)], {"learning_rate": 1e-2}, [0])),
        "sgd_momentum": case(
            lambda: ([normal(D, M), normal(D, M), normal(D, M)], {"learning_rate": 1e-2, "momentum": 0.9}, [0, 2])
        ),
        "rmsprop": case(
            lambda: (
                [normal(D, M), normal(D, M), positive(D, M)],
                {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
                [0, 2],
            )
        ),
        "adam": case(lambda: ([normal(D, M), normal(D, M), normal(D, M), positive(D, M)], ADAM, [0, 2, 3])),
    }


def tables() -> dict[str, Ops]:
    """Every kernel table this machine can run, by name."""
    host = fcn.get_backend("numpy")
    found: dict[str, Ops] = {"reference": Ops(host), "numpy": NumpyOps(host, blas=False)}
    if scipy_blas is not None:
        found["numpy+blas"] = NumpyOps(host, blas=True)
    if fcn.has_gpu():
        gpu = fcn.get_backend("cupy")
        found["cupy"], found["cupy-fused"] = CupyOps(gpu), FusedCupyOps(gpu)
    return found


def place(table: Ops, value: Any, dtype: str) -> Any:
    """A host argument on ``table``'s device: float arrays cast to ``dtype``, others (labels, masks) as they are."""
    if isinstance(value, list):
        return [place(table, v, dtype) for v in value]
    if not isinstance(value, numpy.ndarray):
        return value
    if value.dtype == numpy.float64:
        value = value.astype(dtype)
    if value.dtype == bool:  # host masks stay on the host (the dropout kernel moves them itself)
        return value
    return table.backend.asarray(value)


def outputs(result: Any, args: list, mutated: list[int]) -> list[numpy.ndarray]:
    """The arrays to compare: the result's (tuples flattened, ``None`` dropped) and the updated arguments."""
    found: list[numpy.ndarray] = []

    def collect(value: Any) -> None:
        if isinstance(value, (tuple, list)):
            for v in value:
                collect(v)
        elif hasattr(value, "shape"):  # arrays and NumPy scalars (a loss), not None or Python numbers
            found.append(numpy.asarray(fcn.to_host(value), dtype=numpy.float64))

    collect(result)
    for i in mutated:
        collect(args[i])
    return found


def run_once(table: Ops, kernel: str, host_args: list, kwargs: dict, mutated: list[int], dtype: str) -> list:
    args = [place(table, a, dtype) for a in host_args]
    return outputs(getattr(table, kernel)(*args, **kwargs), args, mutated)


def max_error(got: list[numpy.ndarray], want: list[numpy.ndarray]) -> float:
    """Largest ``|got - want|`` over all outputs, relative to the largest ``|want|`` of the same output."""
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want, strict=True)):
        return float("inf")
    errors = [float(numpy.abs(g - w).max(initial=0.0)) / max(float(numpy.abs(w).max(initial=0.0)), 1e-300)
              for g, w in zip(got, want, strict=True)]  # fmt: skip
    return max(errors, default=0.0)


def time_kernel(table: Ops, kernel: str, host_args: list, kwargs: dict, dtype: str, args: Any) -> dict[str, float]:
    """Median and 10th percentile (seconds per call) of the kernel on one set of device arguments."""
    on_device = [place(table, a, dtype) for a in host_args]
    fn, sync = getattr(table, kernel), table.backend.synchronize
    inner = 1 if table.backend.is_numpy else args.gpu_inner
    for _ in range(args.warmup):
        fn(*on_device, **kwargs)
    samples = []
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(*on_device, **kwargs)
        sync()
        samples.append((time.perf_counter() - t0) / inner)
    p10, median = numpy.percentile(samples, [10, 50])
    return {"median_s": float(median), "p10_s": float(p10), "n": len(samples)}


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One record per kernel, dtype and table: error against the float64 reference, timing, ratio to reference."""
    cases, found, records = kernel_cases(SIZES[args.size]), tables(), []
    for kernel in args.kernels:
        host_args, kwargs, mutated = cases[kernel](numpy.random.default_rng(args.seed))
        want = run_once(found["reference"], kernel, host_args, kwargs, mutated, "float64")
        for dtype in args.dtypes:
            group = []
            for name, table in found.items():
                error = max_error(run_once(table, kernel, host_args, kwargs, mutated, dtype), want)
                timing = time_kernel(table, kernel, host_args, kwargs, dtype, args)
                group.append({"kernel": kernel, "dtype": dtype, "table": name, "max_rel_error": error,
                              "ok": error <= TOLERANCE[dtype], **timing})  # fmt: skip
            reference = group[0]["median_s"]
            for r in group:
                r["ratio_to_reference"] = r["median_s"] / reference
                flag = "ok" if r["ok"] else "WRONG"
                print(
                    f"{kernel:<22} {dtype:<8} {r['table']:<11} {flag:<5} err {r['max_rel_error']:8.1e}  "
                    f"{r['median_s'] * 1e6:10.1f} us  {r['ratio_to_reference']:5.2f}x reference",
                    flush=True,
                )
            records += group
    return records


def markdown(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    lines = [
        "# fcn kernel benchmark\n",
        f"- date (UTC): {payload['date']}; sizes `{payload['size']}` {payload['sizes']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; BLAS: {payload['blas']}",
        *[f"- WARNING: {w}" for w in payload["warnings"]],
        "\nError: largest |table - reference (float64)| relative to the largest reference value. Time: median "
        "(10th percentile) per call.\n",
        "| kernel | dtype | table | ok | max rel error | median us | p10 us | vs reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        lines.append(
            f"| {r['kernel']} | {r['dtype']} | {r['table']} | {'ok' if r['ok'] else 'WRONG'} | "
            f"{r['max_rel_error']:.1e} | {r['median_s'] * 1e6:.1f} | {r['p10_s'] * 1e6:.1f} | "
            f"{r['ratio_to_reference']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def blas_summary() -> Any:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return [f"{i['internal_api']} {i['version']} {i.get('architecture')} ({Path(i['filepath']).parent.name})"
            for i in threadpool_info() if i.get("user_api") == "blas"]  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = ap.add_argument
    add("--kernels", help="comma-separated subset (default: all)")
    add("--dtypes", default="float64,float32")
    add("--size", choices=sorted(SIZES), default="deep", help="problem sizes (default: deep)")
    add("--repeats", type=int, default=30)
    add("--warmup", type=int, default=3)
    add("--gpu-inner", type=int, default=10, help="calls per timed sample on a GPU")
    add("--quick", action="store_true", help="tiny sizes, 3 repeats: a smoke run")
    add("--seed", type=int, default=0)
    add("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.repeats, args.warmup = "quick", 3, 1
    known = list(kernel_cases(SIZES["quick"]))
    args.kernels = args.kernels.split(",") if args.kernels else known
    unknown = [k for k in args.kernels if k not in known]
    if unknown:
        ap.error(f"unknown kernel(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
    args.dtypes = args.dtypes.split(",")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Run the benchmark; return the paths of the JSON and markdown written. Exit status 1 if a table is wrong."""
    args = parse_args(argv)
    when = datetime.now(timezone.utc)
    warning = openblas_coretype_warning()
    if warning:
        print(f"WARNING: {warning}")
    records = bench(args)
    payload = {
        "benchmark": "kernels",
        "date": when.isoformat(timespec="seconds"),
        "size": args.size,
        "sizes": SIZES[args.size],
        "machine": machine_info(),
        "blas": blas_summary(),
        "warnings": [warning] if warning else [],
        "results": records,
    }
    host = "".join(c if c.isalnum() or c in "._-" else "_" for c in socket.gethostname()) or "host"
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {ext: args.out / f"kernels-{host}-{when:%Y%m%dT%H%M%SZ}.{ext}" for ext in ("json", "md")}
    paths["json"].write_text(json.dumps(payload, indent=1))
    paths["md"].write_text(markdown(payload))
    wrong = [f"{r['kernel']} {r['dtype']} {r['table']}" for r in records if not r["ok"]]
    print("\nwrote " + ", ".join(map(str, paths.values())))
    if wrong:
        print("WRONG: " + "; ".join(wrong))
    return paths


if __name__ == "__main__":
    paths = main()
    sys.exit(1 if any(not r["ok"] for r in json.loads(paths["json"].read_text())["results"]) else 0)
