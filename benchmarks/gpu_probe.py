#!/usr/bin/env python
"""The GPU-side measurements of ``gpu_run.py``, one subcommand each, every result a JSON file (``--out``).

- ``env``: Python, NumPy, CuPy, CUDA runtime and driver, PyTorch, the GPU (``nvidia-smi``), and which of the
  packages a run needs import; runs anywhere (no GPU: says so in the result).
- ``bench``: per-iteration time of the chapter's net (3072-100-10, batch 500) and, with ``--nets deep``, of
  3072-1024-512-10: fcn on CuPy with the plain kernels, the fused kernels, the fused kernels replayed as a CUDA
  graph; the PyTorch peer (``torch_peer.py``) eager and through ``torch.compile(mode="reduce-overhead")``; and
  the GEMM floor (cuBLAS through CuPy: only ``X @ W1`` and ``X.T @ dH1``, the two products no step avoids).
- ``step``: one training step of the chapter's net looked at closely: kernels launched per step (the nodes of
  the step captured as a CUDA graph), whether the host waits for the GPU during 5 steps
  (:func:`fcn.ops.cuda.host_waits`), and the time per step, eager and as a graph replay.
- ``pytest-nopool``: ``pytest`` with CuPy's memory pool off, so that ``compute-sanitizer --tool memcheck``
  sees every array's own bounds (inside a pooled block, an out-of-bounds write lands in another array).

Data are synthetic and CIFAR-shaped (standard-normal pixels, labels 0..9), never CIFAR-10; every result says so.
``--dry-run`` (before the subcommand) parses the arguments, prints what would run and, for ``bench`` and
``step``, writes a result of the real layout with made-up numbers marked as such; it needs no GPU. Without
``--dry-run``, a subcommand that needs a GPU and finds none exits with a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's fcn, and torch_peer.py beside this file

import fcn  # noqa: E402

N_TRAIN, N_VAL = 49_000, 1_000  # CIFAR-10's training split as the chapter uses it: 98 iterations of 500
DATA = f"synthetic CIFAR-shaped data ({N_TRAIN} training images 3x32x32, standard normal; not CIFAR-10)"
NETS = {"shallow": [100], "deep": [1024, 512]}
REG, LEARNING_RATE, WEIGHT_SCALE = 0.6, 1e-4, 1e-3  # a rate small enough never to diverge (NaNs change timings)
RUNNERS = ("fcn-plain", "fcn-fused", "fcn-graph", "gemm-floor", "torch-eager", "torch-compiled")
#: Packages a GPU run imports: (module, pip name, needed by fcn itself or its tests).
PACKAGES = [("numpy", "numpy", True), ("array_api_compat", "array-api-compat", True), ("tqdm", "tqdm", True),
            ("matplotlib", "matplotlib", True), ("PIL", "pillow", True), ("pytest", "pytest", True),
            ("array_api_strict", "array-api-strict", False), ("cupy", "cupy-cuda12x or cupy-cuda13x", False),
            ("torch", "torch", False)]  # fmt: skip


def refuse_without_gpu(command: str) -> None:
    """Exit with one line (no traceback) when there is no usable CUDA GPU."""
    if not fcn.has_cupy():
        sys.exit(f"gpu_probe.py {command}: needs a CUDA GPU: CuPy is not installed")
    if not fcn.has_gpu():
        sys.exit(f"gpu_probe.py {command}: needs a CUDA GPU: CuPy is installed but no GPU is visible")


def write(path: Path, result: dict[str, Any]) -> None:
    """Write the result whole (a temporary file renamed): a part killed mid-write leaves the last complete one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=1, default=str))
    partial.replace(path)


# -- env ---------------------------------------------------------------------------------------------------


def package_versions() -> tuple[dict[str, str | None], list[str]]:
    """Each package's version (None where it does not import) and the pip names of missing required ones."""
    versions, missing = {}, []
    for module, pip_name, required in PACKAGES:
        try:
            versions[module] = str(getattr(importlib.import_module(module), "__version__", "?"))
        except Exception as exc:  # a broken install is as missing as an absent one
            versions[module] = None
            print(f"{module}: does not import ({type(exc).__name__}: {exc})")
            if required:
                missing.append(pip_name)
    return versions, missing


def gpu_facts() -> dict[str, Any]:
    """GPU, driver and CUDA as CuPy, PyTorch and nvidia-smi see them (what the summary's header shows)."""
    facts: dict[str, Any] = {"gpu": None, "driver": None, "cuda_runtime": None, "torch_cuda": None}
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        row = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip().split("\n")[0]
        if row.count(",") == 2:
            facts["gpu"], facts["driver"], facts["memory"] = (s.strip() for s in row.split(","))
        print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout)
    if fcn.has_gpu():
        import cupy

        runtime = cupy.cuda.runtime
        major_minor = divmod(runtime.runtimeGetVersion(), 1000)
        facts["cuda_runtime"] = f"{major_minor[0]}.{major_minor[1] // 10}"
        facts["cuda_driver_api"] = runtime.driverGetVersion()
        props = runtime.getDeviceProperties(0)
        facts["gpu"] = facts["gpu"] or props["name"].decode()
        facts["compute_capability"] = f"{props['major']}.{props['minor']}"
    try:
        import torch

        facts["torch_cuda"], facts["torch_sees_gpu"] = torch.version.cuda, torch.cuda.is_available()
    except ImportError:
        pass
    return facts


def env_command(args: argparse.Namespace) -> int:
    versions, missing = package_versions()
    result = {"python": sys.version.split()[0], "versions": versions, "missing": missing, **gpu_facts()}
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    write(args.out, result)
    if missing:
        print(f"missing: {' '.join(missing)} (pip install --no-index --find-links WHEELS {' '.join(missing)})")
        return 1
    return 0


# -- shared by bench and step ----------------------------------------------------------------------------------


def device_data(dtype: str, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Synthetic CIFAR-shaped data: (host arrays for the PyTorch peer, the same on the GPU for fcn)."""
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((N_TRAIN + N_VAL, 3, 32, 32), dtype=numpy.float32).astype(dtype, copy=False)
    y = rng.integers(0, 10, N_TRAIN + N_VAL)
    host = {"X_train": X[:N_TRAIN], "y_train": y[:N_TRAIN], "X_val": X[N_TRAIN:], "y_val": y[N_TRAIN:]}
    import cupy

    return host, {k: cupy.asarray(v) for k, v in host.items()}  # moved once: every solver shares them


def make_solver(data: dict[str, Any], hidden: list[int], dtype: str, *, fused: bool, graph: bool,
                backend: Any = None) -> fcn.Solver:  # fmt: skip
    """The chapter's SGD run, on CuPy unless ``backend`` is given; kernels and graph replay chosen explicitly
    (the environment variables are ignored), every solver sharing ``data``'s device arrays."""
    backend = backend or fcn.get_backend("cupy", fused=fused)
    model = fcn.FullyConnectedNet(3072, hidden, reg=REG, weight_scale=WEIGHT_SCALE, backend=backend, dtype=dtype,
                                  seed=0)  # fmt: skip
    return fcn.Solver(model, data, update_rule="sgd", optim_config={"learning_rate": LEARNING_RATE}, batch_size=500,
                      num_iters=10**9, print_every=10**9, verbose=False, progress=False, seed=0,
                      cuda_graph=graph)  # fmt: skip


def peer_arguments(torch: Any, host: dict[str, Any], params: dict[str, Any], dtype: str, compiled: bool) -> tuple:
    """``torch_peer.make_peer``'s arguments (positional, keyword): the same step as fcn's solvers."""
    kwargs = {"batch": 500, "seed": 0, "reg": REG, "lr": LEARNING_RATE, "compiled": compiled}
    return (torch, "cuda", dtype, host, params), kwargs


def check_on_cpu(runners: Sequence[str], hidden: list[int], dtype: str) -> None:
    """What a dry run can check without a GPU: the solvers' settings (two NumPy steps on a little data) and
    that ``make_peer`` takes the arguments a GPU run passes it."""
    import inspect
    import warnings

    from torch_peer import make_peer

    rng = numpy.random.default_rng(0)
    data = {"X_train": rng.standard_normal((1000, 3, 32, 32)).astype(dtype), "y_train": rng.integers(0, 10, 1000),
            "X_val": rng.standard_normal((10, 3, 32, 32)).astype(dtype), "y_val": rng.integers(0, 10, 10)}  # fmt: skip
    for runner in runners:
        if runner.startswith("fcn"):
            with warnings.catch_warnings():  # cuda_graph=True on NumPy: "requested but not used", as expected
                warnings.simplefilter("ignore")
                solver = make_solver(data, hidden, dtype, fused=False, graph=runner == "fcn-graph",
                                     backend=fcn.get_backend("numpy"))  # fmt: skip
            for _ in range(2):
                solver.step()
            solver.read_losses()
        elif runner.startswith("torch"):
            args, kwargs = peer_arguments(None, data, {}, dtype, runner == "torch-compiled")
            inspect.signature(make_peer).bind(*args, **kwargs)  # TypeError where torch_peer.py changed


def time_per_call(fn: Callable[[], Any], sync: Callable[[], None], *, warmup: int, rounds: int, calls: int,
                  after_round: Callable[[], Any] = lambda: None) -> list[float]:  # fmt: skip
    """Seconds per call in each round: ``calls`` calls then one sync (launches overlap as in a training loop).

    ``after_round`` runs outside the timing (fcn reads its pending losses there, checking they are finite).
    """
    for _ in range(warmup):
        fn()
    sync()
    after_round()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        out.append((time.perf_counter() - t0) / calls)
        after_round()
    return out


def row(runner: str, hidden: list[int], dtype: str, per_call: Sequence[float], note: str = "") -> dict[str, Any]:
    """One timing record: median per iteration, a full-CIFAR epoch (98 iterations), images per second."""
    it = statistics.median(per_call)
    return {"runner": runner, "dims": "-".join(map(str, [3072, *hidden, 10])), "dtype": dtype, "batch": 500,
            "iteration_s": it, "rounds_s": list(per_call), "epoch_s": it * (N_TRAIN // 500),
            "images_per_s": 500 / it, "note": note}  # fmt: skip


# -- bench -----------------------------------------------------------------------------------------------------


def fcn_step(runner: str, data: dict[str, Any], hidden: list[int], dtype: str) -> tuple[fcn.Solver, str]:
    """The solver of one fcn variant, and a note; the graph variant checks that it really replays."""
    from fcn.training.cuda_graph import GraphedStep

    solver = make_solver(data, hidden, dtype, fused=runner != "fcn-plain", graph=runner == "fcn-graph")
    if runner == "fcn-graph" and not isinstance(solver.run_step, GraphedStep):
        raise RuntimeError(f"the Solver did not use a CUDA graph ({type(solver.run_step).__name__})")
    return solver, {"fcn-plain": "CupyOps", "fcn-fused": "FusedCupyOps", "fcn-graph": "FusedCupyOps + CUDA graph"}[
        runner
    ]


def floor_step(data: dict[str, Any], hidden: list[int], dtype: str) -> tuple[Callable[[], None], str]:
    """The two first-layer products of a step, cuBLAS through CuPy, operands resident: a lower bound."""
    import cupy

    X = cupy.reshape(data["X_train"][:500], (500, -1))
    W1 = cupy.ones((3072, hidden[0]), dtype=dtype)
    dH = cupy.ones((500, hidden[0]), dtype=dtype)
    return (lambda: (X @ W1, X.T @ dH)), "X @ W1 and X.T @ dH1 only"


def torch_step(runner: str, host: dict[str, Any], hidden: list[int], dtype: str) -> tuple[Callable[[], None], str]:
    """The PyTorch peer on CUDA (same initial weights as fcn's), eager or compiled (compiled on the warm-up)."""
    import torch
    from torch_peer import make_peer

    params = fcn.FullyConnectedNet(3072, hidden, reg=REG, weight_scale=WEIGHT_SCALE, dtype=dtype, seed=0).params
    args, kwargs = peer_arguments(torch, host, dict(params), dtype, runner == "torch-compiled")
    step = make_peer(*args, **kwargs)
    return step, f"torch {torch.__version__}" + (", mode=reduce-overhead" if runner == "torch-compiled" else "")


def bench_command(args: argparse.Namespace) -> int:
    """Time each runner for each net and dtype; a runner that fails is recorded and the others go on."""
    result: dict[str, Any] = {"data": DATA, "rows": [], "errors": [], "dry_run": args.dry_run}
    for dtype in args.dtypes.split(","):
        host, dev = device_data(dtype) if not args.dry_run else ({}, {})
        for net in args.nets.split(","):
            for runner in args.runners.split(","):
                if args.dry_run:  # the settings checked on the CPU; the real record layout, numbers made up
                    check_on_cpu([runner], NETS[net], dtype)
                    result["rows"].append(row(runner, NETS[net], dtype, [1e-3] * args.rounds, "dry run: made up"))
                    continue
                try:
                    result["rows"].append(bench_one(runner, host, dev, NETS[net], dtype, args))
                    r = result["rows"][-1]
                    print(f"{runner:<15} {r['dims']:<18} {dtype}: {r['iteration_s'] * 1e3:8.3f} ms/iteration")
                except Exception as exc:  # one failing runner must not cost the others' numbers
                    result["errors"].append(f"{runner} {net} {dtype}: {type(exc).__name__}: {str(exc)[:300]}")
                    print(result["errors"][-1])
                write(args.out, result)  # after each runner: a later timeout keeps what is done
    write(args.out, result)  # the dry run's too
    return 1 if result["errors"] else 0


def bench_one(runner: str, host: dict, dev: dict, hidden: list[int], dtype: str, args: argparse.Namespace) -> dict:
    """Time one runner: its step, the device's sync, and (fcn) the loss read-back between rounds."""
    after: Callable[[], Any] = lambda: None  # noqa: E731
    if runner.startswith("torch"):
        import torch

        fn, note = torch_step(runner, host, hidden, dtype)
        sync = torch.cuda.synchronize
        after = getattr(fn, "check", after)  # the peer's loss stayed finite
    elif runner == "gemm-floor":
        fn, note = floor_step(dev, hidden, dtype)
        sync = fcn.get_backend("cupy").synchronize
    else:
        solver, note = fcn_step(runner, dev, hidden, dtype)
        fn, sync, after = solver.step, solver.backend.synchronize, solver.read_losses
    per_call = time_per_call(fn, sync, warmup=args.warmup, rounds=args.rounds, calls=args.calls, after_round=after)
    return row(runner, hidden, dtype, per_call, note)


# -- step ------------------------------------------------------------------------------------------------------


def launches_per_step(solver: fcn.Solver) -> dict[str, Any]:
    """Nodes of one step: the replayed graph's, or (eager) those of one ``Solver.step()`` captured for counting."""
    import cupy

    from fcn.ops.cuda import graph_node_counts
    from fcn.training.cuda_graph import CapturedStep, GraphedStep

    if isinstance(solver.run_step, GraphedStep):
        return graph_node_counts(solver.run_step.captured.graph)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        solver.step()  # warm on the capture stream (this solver is thrown away after counting)
    stream.synchronize()
    return graph_node_counts(CapturedStep(solver.step, stream=stream).graph)


def probe_variant(data: dict[str, Any], *, fused: bool, graph: bool, steps: int) -> dict[str, Any]:
    """Host waits over 5 steps, host seconds to queue a step, seconds per step (synchronised), launches."""
    from fcn.ops.cuda import host_waits

    solver = make_solver(data, NETS["shallow"], "float32", fused=fused, graph=graph)
    sync = solver.backend.synchronize
    for _ in range(3):  # eager, capture, first replay (graph); kernels compiled, state and buffers created
        solver.step()
    solver.read_losses()
    report, _ = host_waits(lambda: [solver.step() for _ in range(5)], timeout_s=2.0)  # a wait costs 2 s
    per_step = time_per_call(solver.step, sync, warmup=2, rounds=3, calls=steps, after_round=solver.read_losses)
    entry: dict[str, Any] = {"host_waited_during_5_steps": report.waited, "host_queue_s_per_step": report.seconds / 5,
                             "step_s": statistics.median(per_step)}  # fmt: skip
    try:
        if graph:  # the replayed graph's own nodes
            entry["launches"] = launches_per_step(solver)
    except Exception as exc:  # the timings above stay
        entry["launches_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return entry


VARIANTS = (("plain", False, False), ("fused", True, False), ("fused + graph", True, True))


def step_command(args: argparse.Namespace) -> int:
    """Probe each variant; then count the eager variants' launches (a failed capture cannot disturb timings)."""
    result: dict[str, Any] = {"data": DATA, "net": "3072-100-10", "batch": 500, "dtype": "float32",
                              "update_rule": "sgd", "variants": {}, "dry_run": args.dry_run}  # fmt: skip
    _, dev = device_data("float32") if not args.dry_run else ({}, {})
    variants, failed = result["variants"], False
    for label, fused, graph in VARIANTS:
        if args.dry_run:
            check_on_cpu(["fcn-graph" if graph else "fcn-plain"], NETS["shallow"], "float32")
            variants[label] = {"host_waited_during_5_steps": False, "host_queue_s_per_step": 1e-4, "step_s": 1e-3,
                               "launches": {"kernel": 1, "total": 1}}  # fmt: skip
            continue
        try:
            variants[label] = probe_variant(dev, fused=fused, graph=graph, steps=args.steps)
        except Exception as exc:  # the other variants still run
            variants[label], failed = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}, True
        print(f"{label}: {variants[label]}")
        write(args.out, result)  # after each variant: a later timeout keeps what is done
    for label, fused, _ in VARIANTS[:2] if not args.dry_run else ():
        try:  # a fresh solver's whole Solver.step() captured only to count what it launches
            variants[label]["launches"] = launches_per_step(
                make_solver(dev, NETS["shallow"], "float32", fused=fused, graph=False)
            )
        except Exception as exc:  # counting by capture needs a capturable step: say why not
            variants[label]["launches_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    write(args.out, result)
    return 1 if failed else 0


# -- pytest without the memory pool ----------------------------------------------------------------------------


def pytest_nopool_command(args: argparse.Namespace) -> int:
    import pytest

    pytest_args = [a for a in args.pytest_args if a != "--"]
    if args.dry_run:  # the same selection, collected only: exit code 5 where it selects no test
        return int(pytest.main([*pytest_args, "--collect-only"]))
    import cupy

    cupy.cuda.set_allocator(None)  # plain cudaMalloc per array: memcheck sees each array's bounds
    cupy.cuda.set_pinned_memory_allocator(None)
    return int(pytest.main(pytest_args))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="parse, print the plan, write made-up results; no GPU")
    sub = ap.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="versions, GPU, driver, CUDA; which needed packages import")
    bench = sub.add_parser("bench", help="per-iteration time of fcn, PyTorch and the GEMM floor")
    bench.add_argument("--nets", default="shallow", help=f"some of {', '.join(NETS)}")
    bench.add_argument("--dtypes", default="float32")
    bench.add_argument("--runners", default=",".join(RUNNERS), help=f"some of {', '.join(RUNNERS)}")
    bench.add_argument("--warmup", type=int, default=5, help="untimed calls first (torch.compile compiles here)")
    bench.add_argument("--rounds", type=int, default=3, help="timed rounds (the median is reported)")
    bench.add_argument("--calls", type=int, default=20, help="calls per round, one sync at its end")
    step = sub.add_parser("step", help="launches, host waits and time of one training step")
    step.add_argument("--steps", type=int, default=50, help="steps per timed round")
    nopool = sub.add_parser("pytest-nopool", help="pytest with CuPy's memory pool off (for compute-sanitizer)")
    nopool.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest")
    for p in (env, bench, step):
        p.add_argument("--out", type=Path, required=True, help="JSON result file")
    args = ap.parse_args(argv)
    for name in ("nets", "runners"):
        known = NETS if name == "nets" else RUNNERS
        unknown = [x for x in getattr(args, name, "").split(",") if x and x not in known]
        if unknown:
            ap.error(f"unknown {name}: {', '.join(unknown)} (expected some of {', '.join(known)})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"gpu_probe.py {args.command}" + (" (dry run: nothing runs on a GPU)" if args.dry_run else ""))
    if args.command != "env" and not args.dry_run:
        refuse_without_gpu(args.command)
    commands = {
        "env": env_command,
        "bench": bench_command,
        "step": step_command,
        "pytest-nopool": pytest_nopool_command,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
