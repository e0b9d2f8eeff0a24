#!/usr/bin/env python
"""Time fcn's training step next to GEMM floors and a PyTorch peer; write JSON, markdown and a bar chart.

For every backend (NumPy; CuPy where ``fcn.has_gpu()``), dtype and net of :data:`NETS`, in one process, with
the runners of a group interleaved in rounds so that drift in a shared machine's load hits them alike:

- ``fcn``: one ``fcn.Solver.step()`` (gather a batch on the device, forward, loss + L2, backward, update);
  also an epoch (``Solver.train()``) and full-set evaluation (``model.predict``). On NumPy ``fcn[numpy]`` is
  NumPy alone and, where SciPy is installed, ``fcn[numpy+blas]`` the BLAS path (``NumpyOps``' default there);
- ``gemm-floor``: only the matrix products one step cannot avoid, operands hot in cache;
- ``gather+gemm-floor``: the same on a freshly gathered batch (the floor of any step drawing random batches);
- ``torch``: the same step in PyTorch eager (``torch_peer.py``), on the CPU beside NumPy and on CUDA beside
  CuPy, where it also runs through ``torch.compile(mode="reduce-overhead")`` (skipped, with the reason,
  where that fails);
- ``jax``: the same step as one ``jax.jit`` function (``jax_peer.py``), on the CPU beside NumPy, where JAX is
  installed (plain nets only).

Every record names the BLAS library (and the kernel, from threadpoolctl) its matrix products run on; a
warning is printed and recorded when ``OPENBLAS_CORETYPE`` forces kernels older than the CPU supports.

The ``tiny`` net (32-16-10 at batch 8) makes the matrix products free: fcn / torch there is the per-step
Python overhead. ``FCN_FUSED_KERNELS`` (fused GPU kernels, opt-in) is recorded with every run, so a GPU
script can run this twice and compare. Results: ``benchmarks/results/train-<host>-<UTC time>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package

from jax_peer import make_jax_peer  # noqa: E402
from torch_peer import make_peer  # noqa: E402
from train_report import bar_chart, markdown, targets  # noqa: E402

import fcn  # noqa: E402
from fcn.sysinfo import cpu_vector_level, machine_info, openblas_coretype_warning  # noqa: E402

#: The nets: ``fcn.build_model`` arguments, plus the benchmark's own ``input_dim`` and ``batch_size`` where a net
#: has its own (otherwise CIFAR-10's 3072 features and ``--batch-size``). One line adds a net.
NETS: dict[str, dict[str, Any]] = {
    "shallow": {"model": "shallow", "hidden_dims": [100]},
    "deep": {"model": "fc", "hidden_dims": [1024, 512]},
    "tiny": {"model": "fc", "hidden_dims": [16], "input_dim": 32, "batch_size": 8},
    "bn-dropout": {"model": "fc", "hidden_dims": [1024, 512], "normalization": "batchnorm", "dropout_keep_ratio": 0.7},
}
REG, LEARNING_RATE = 0.6, 1e-4  # the chapter's reg; a rate small enough never to diverge (NaNs change timings)
OUT = Path(__file__).resolve().parent / "results"


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median and spread (p10, quartiles, p90, IQR) of timing samples in seconds."""
    p10, q1, med, q3, p90 = numpy.percentile(samples, [10, 25, 50, 75, 90])
    return {"median_s": med, "p10_s": p10, "q1_s": q1, "q3_s": q3, "p90_s": p90, "iqr_s": q3 - q1, "n": len(samples)}


def time_runners(runners: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Time every runner's ``fn`` in ``args.rounds`` rounds, rotating the order each round (drift hits all alike).

    Each block starts with untimed calls: at least ``args.warmup`` of them and ``args.warmup_s`` seconds' worth.
    The time floor is for BLAS thread pools: an OpenBLAS pool's idle threads spin for a while (by default
    2**28 cycles, about 0.1 s) before they sleep, and NumPy and SciPy each load their own OpenBLAS; a runner
    timed right after a runner of the other library would share the cores with that library's spinning threads.
    Each sample is ``inner`` calls then the device's ``sync`` (on a GPU a call's time is known only once its
    kernels have finished; several calls per sample let launches overlap as in a training loop).
    """
    per_round = max(-(-args.repeats // args.rounds), 1)
    for r in range(args.rounds):
        for run in runners[r % len(runners) :] + runners[: r % len(runners)]:
            fn, sync, inner = run["fn"], run["sync"], run["inner"]
            warm_until = time.perf_counter() + args.warmup_s
            calls = 0
            while calls < args.warmup or time.perf_counter() < warm_until:
                fn()
                calls += 1
            sync()
            for _ in range(per_round):
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                sync()
                run["samples"].append((time.perf_counter() - t0) / inner)


def time_once(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def gemm_floor(make: Callable[[tuple[int, ...]], Any], dims: Sequence[int], batch: int) -> Callable[..., None]:
    """Only the matrix products of one step, on operands ``make(shape)``: per layer the forward product and
    the weight gradient, and from the second layer on the input gradient (every GEMM of a deep net's step).
    ``run(x)`` uses ``x`` (a freshly gathered batch) as the first layer's input instead of a fixed operand hot in
    cache."""
    layers = [(make((batch, a)), make((a, b)), make((batch, b))) for a, b in itertools.pairwise(dims)]

    def run(x: Any = None) -> None:
        for i, (H, W, dA) in enumerate(layers):
            H = x if i == 0 and x is not None else H
            H @ W
            H.T @ dA
            if i:
                dA @ W.T

    return run


def fcn_runners(spec: dict[str, Any], batch: int, be: fcn.Backend, dtype: str, data: dict, args: Any) -> list[dict]:
    """fcn's step and its two floors on ``be``, and on NumPy with SciPy also fcn's fused (BLAS) path, timed
    in the same rounds; the fcn runners also time an epoch and full-set evaluation."""
    runners = fcn_step_runners(spec, batch, be, dtype, data, args)
    if be.is_numpy and not be.fused and fcn.ops.numpy_ops.scipy_blas is not None:
        fused = fcn_step_runners(spec, batch, fcn.get_backend(be, fused=True), dtype, data, args)
        runners.insert(1, fused[0] | {"runner": "fcn[numpy+blas]"})
    return runners


def fcn_step_runners(
    spec: dict[str, Any], batch: int, be: fcn.Backend, dtype: str, data: dict, args: Any
) -> list[dict]:
    model = fcn.build_model(**spec, reg=REG, backend=be, dtype=dtype, seed=args.seed)
    solver = fcn.Solver(
        model,
        data,
        batch_size=batch,
        num_iters=10**9,
        verbose=False,
        progress=False,
        optim_config={"learning_rate": LEARNING_RATE},
        seed=args.seed,
    )
    xp, sync, lib = be.xp, be.synchronize, be.name
    rng = numpy.random.default_rng(args.seed)
    floor = gemm_floor(lambda s: be.asarray(rng.standard_normal(s).astype(dtype)), model_dims(model), batch)
    order = rng.permutation(solver.num_train)  # the gathered rows are cold, as in training: cycle an epoch
    batches = itertools.cycle(
        [xp.asarray(order[k * batch : (k + 1) * batch]) for k in range(solver.iterations_per_epoch)]
    )

    def gather_floor() -> None:
        idx = next(batches)
        xp.take(solver.y_train, idx, axis=0)
        floor(xp.reshape(xp.take(solver.X_train, idx, axis=0), (idx.shape[0], -1)))

    def long_units() -> dict[str, Any]:
        time.sleep(args.warmup_s)  # the last runner's BLAS threads (maybe another library's pool) stop spinning
        on_device = {"X_train": solver.X_train, "y_train": solver.y_train, "X_val": solver.X_val, "y_val": solver.y_val}
        epoch = [
            time_once(
                fcn.Solver(
                    model,
                    on_device,
                    batch_size=batch,
                    num_epochs=1,
                    optim_config={"learning_rate": LEARNING_RATE},
                    verbose=False,
                    progress=False,
                    seed=args.seed + r,
                ).train,
                sync,
            )
            for r in range(args.long_repeats)
        ]
        evals = [time_once(lambda: model.predict(solver.X_train), sync) for _ in range(args.long_repeats)]
        return {
            "epoch": summarize(epoch),
            "eval": summarize(evals),
            "iterations_per_epoch": solver.iterations_per_epoch,
        }

    common = {"sync": sync, "inner": 1 if be.is_numpy else args.gpu_inner}
    return [
        {
            "runner": f"fcn[{lib}]",
            "kind": "fcn",
            "fn": solver.step,
            "long": long_units,
            "model": model,
            "ops": be.ops,
            **common,
        },
        {"runner": f"gemm-floor[{lib}]", "kind": "floor", "fn": floor, **common},
        {"runner": f"gather+gemm-floor[{lib}]", "kind": "gather-floor", "fn": gather_floor, **common},
    ]


def model_dims(model: Any) -> list[int]:
    return [model.input_dim, *model.hidden_dims, model.num_classes]


def torch_runners(torch: Any, device: str, spec: dict, dtype: str, data: dict, params: dict, args: Any) -> list[dict]:
    """The PyTorch peer on ``device``: eager, and on CUDA also compiled (or a note saying why not)."""
    kw = dict(
        batch=spec["batch_size"],
        seed=args.seed,
        reg=REG,
        lr=LEARNING_RATE,
        dropout_keep_ratio=spec.get("dropout_keep_ratio"),
    )
    runners = [
        {"runner": f"torch[{device}]", "kind": "torch", "fn": make_peer(torch, device, dtype, data, params, **kw)}
    ]
    if device == "cuda":
        try:
            step = make_peer(torch, device, dtype, data, params, compiled=True, **kw)
            for _ in range(3):  # compile (and record the CUDA graphs) now, so a failure is a note, not a crash
                step()
            runners.append({"runner": "torch-compiled[cuda]", "kind": "torch-compiled", "fn": step})
        except Exception as exc:  # any compiler failure only means that this variant is skipped
            print(f"  torch.compile(mode='reduce-overhead'): skipped ({type(exc).__name__}: {str(exc)[:200]})")
    return runners


def jax_runners(jax: Any, spec: dict, dtype: str, data: dict, params: dict, args: Any) -> tuple[list[dict], str | None]:
    """The JAX peer on the CPU: ``([runner], None)``, or ``([], note)`` for a net it does not run."""
    try:
        step = make_jax_peer(
            jax, dtype, data, params, batch=spec["batch_size"], seed=args.seed, reg=REG, lr=LEARNING_RATE,
            dropout_keep_ratio=spec.get("dropout_keep_ratio"),
        )  # fmt: skip
        step()  # compile now: the timing loop's warm-up then sees only compiled steps
    except NotImplementedError as exc:
        return [], str(exc)
    return [{"runner": "jax[cpu]", "kind": "jax", "fn": step, "sync": lambda: None, "inner": 1}], None


def blas_used(kind: str, ops: Any, blas: list[dict[str, Any]], torch: Any = None) -> list[str]:
    """The libraries (``name version, kernel``) a runner's matrix products run on, from threadpoolctl's list."""
    if kind == "jax":
        return ["XLA:CPU's own dot kernels (Eigen/oneDNN), no BLAS library"]
    if kind.startswith("torch") and torch is not None:  # MKL is linked into torch: threadpoolctl does not see it
        config = torch.__config__.show()
        info = next((w.split("=")[1].rstrip(",") for w in config.split() if w.startswith("BLAS_INFO=")), "?")
        isa = next((line.split(":")[1].strip() for line in config.splitlines() if "CPU capability" in line), "?")
        return [f"{info} (in torch {torch.__version__}), CPU capability {isa}"]
    owners = ["numpy", "scipy"] if kind == "fcn" and getattr(ops, "blas", None) else ["numpy"]
    found = [
        f"{b['internal_api']} {b['version']} ({owner}), kernel {b.get('architecture')}, {b.get('num_threads')} threads"
        for owner in owners
        for b in blas
        if b.get("user_api") == "blas" and f"/{owner}" in str(b.get("filepath", ""))
    ]
    return found or [f"not known ({', '.join(owners)}: threadpoolctl lists none)"]


def run_group(net: str, dtype: str, be: fcn.Backend, tdev: str | None, base: dict, peers: dict, args: Any):
    """Time one net/dtype/device group; return ``(records, None)``, or ``([], note)`` when fcn cannot build the net."""
    spec = {"input_dim": 3072, **NETS[net]}
    batch = spec.pop("batch_size", args.batch_size)
    features = spec["input_dim"]
    data = base if features == 3072 else synthetic(args.n_train, args.n_val, (features,), args.seed)
    data = {k: v.astype(dtype) if k.startswith("X") else v for k, v in data.items()}
    try:
        runners = fcn_runners(spec, batch, be, dtype, data, args)
    except TypeError as exc:  # options this fcn does not have yet
        print(f"{net}: skipped (this fcn does not build it: {exc})")
        return [], f"{net}: this fcn does not build it ({exc})"
    model = runners[0]["model"]
    dims, device = model_dims(model), "cpu" if be.is_numpy else "gpu"
    print(f"\n== {net} {dtype} {be.name}: {'-'.join(map(str, dims))}, batch {batch} ==", flush=True)
    torch, jax, params = peers.get("torch"), peers.get("jax"), {k: fcn.to_host(v) for k, v in model.params.items()}
    notes = []
    if jax is not None and be.is_numpy:
        jax_rows, note = jax_runners(jax, spec | {"batch_size": batch}, dtype, data, params, args)
        runners += jax_rows
        notes += [f"{net} jax[cpu]: {note}"] if note else []
    if torch is not None and tdev is not None:
        sync = {"sync": torch.cuda.synchronize if tdev == "cuda" else lambda: None, "inner": runners[0]["inner"]}
        runners += [
            r | sync for r in torch_runners(torch, tdev, spec | {"batch_size": batch}, dtype, data, params, args)
        ]
    for r in runners:
        r["samples"] = []
    time_runners(runners, args)
    records, blas = [], blas_libraries()
    for r in runners:
        if hasattr(r["fn"], "check"):
            r["fn"].check()
        records.append(
            {
                "net": net,
                "dims": dims,
                "batch_size": batch,
                "dtype": dtype,
                "device": device,
                "runner": r["runner"],
                "kind": r["kind"],
                "calls_per_sample": r["inner"],
                "fused_kernels": os.environ.get("FCN_FUSED_KERNELS", "0"),
                "blas": blas_used(r["kind"], r.get("ops"), blas, torch),
                "iteration": summarize(r["samples"]),
                **(r["long"]() if "long" in r and args.long_repeats else {}),
                **({"profile": profile(r["fn"], args.profile)} if "model" in r and args.profile else {}),
            }
        )
    add_ratios(records)
    return records, "; ".join(notes) or None


#: The ratios every record gets: (key, runner kind it is measured against).
RATIOS = (("floor", "floor"), ("gather_floor", "gather-floor"), ("torch", "torch"), ("jax", "jax"))


def add_ratios(records: list[dict[str, Any]]) -> None:
    """``ratio_to_<key>``: median / the median of that kind in the group; ``p10_ratio_to_<key>``: the same of the
    10th percentiles (less sensitive to other processes' bursts on a shared machine). Printed as they come."""
    for stat, prefix in (("median_s", "ratio_to_"), ("p10_s", "p10_ratio_to_")):
        ref = {r["kind"]: r["iteration"][stat] for r in records}
        for r in records:
            for key, kind in RATIOS:
                r[prefix + key] = r["iteration"][stat] / ref[kind] if kind in ref else None
    for r in records:
        shown = [f"  vs {k} {r['ratio_to_' + k]:.2f}x (p10 {r['p10_ratio_to_' + k]:.2f}x)" for k, _ in RATIOS[1:]
                 if r["ratio_to_" + k] is not None]  # fmt: skip
        print(f"  {r['runner']:<24} {r['iteration']['median_s'] * 1e3:9.3f} ms/step" + "".join(shown))


def profile(step: Callable[[], Any], calls: int) -> list[dict[str, Any]]:
    """cProfile over ``calls`` steps: the 12 functions with the most own time, per step (call counts exact)."""
    prof = cProfile.Profile()
    prof.runcall(lambda: [step() for _ in range(calls)])
    stats = pstats.Stats(prof, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:12]
    return [
        {
            "function": f"{Path(f).name}:{line}({name})",
            "calls": nc / calls,
            "own_us": tt / calls * 1e6,
            "cumulative_us": ct / calls * 1e6,
        }
        for (f, line, name), (_, nc, tt, ct, _) in top
    ]


def synthetic(n_train: int, n_val: int, shape: tuple[int, ...], seed: int) -> dict[str, Any]:
    """Standard-normal inputs, labels 0..9: timings do not depend on values (no data-dependent branches)."""
    rng = numpy.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_val, *shape), dtype=numpy.float32)
    y = rng.integers(0, 10, n_train + n_val)
    return {"X_train": X[:n_train], "y_train": y[:n_train], "X_val": X[n_train:], "y_val": y[n_train:]}


def load_data(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """CIFAR-10 from ``--data-dir`` or ``$FCN_DATA_DIR`` (never downloading), else CIFAR-shaped synthetic data."""
    root = args.data_dir or os.environ.get("FCN_DATA_DIR")
    if args.synthetic or (args.quick and not args.data_dir) or not root:  # a smoke run must not read 180 MB
        if not (args.synthetic or args.quick):
            print("data: no --data-dir or FCN_DATA_DIR: synthetic data (timings do not depend on pixel values)")
        return synthetic(args.n_train, args.n_val, (3, 32, 32), args.seed), f"synthetic ({args.n_train}, 3, 32, 32)"
    d = fcn.get_CIFAR10_data(args.n_train, args.n_val, 0, root=root, download=False)
    where = "--data-dir" if args.data_dir else "FCN_DATA_DIR"  # not the path: results are shared, paths are local
    return {k: d[k] for k in ("X_train", "y_train", "X_val", "y_val")}, f"cifar10 (from {where})"


def blas_libraries() -> list[dict[str, Any]]:
    """threadpoolctl's list of the loaded BLAS and OpenMP libraries (empty where it is not installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return threadpool_info()


def environment(torch: Any) -> dict[str, Any]:
    """The machine, the library versions, the BLAS in use and the code's commit, for the results."""
    versions = {}
    dists = ("numpy", "scipy", "array-api-compat", "torch", "jax", "jaxlib", "cupy-cuda12x", "cupy-cuda13x")
    for dist in (*dists, "fcn-cifar"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    blas = [{k: b.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for b in blas_libraries()]
    warning = openblas_coretype_warning()
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    return {
        "machine": machine_info()
        | {"torch_gpu": torch.cuda.get_device_name() if torch and torch.cuda.is_available() else None},
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,  # at the start
        "versions": versions,
        "blas": blas or "threadpoolctl not installed (pip install threadpoolctl)",
        "cpu_vector_level": cpu_vector_level(),
        "warnings": [warning] if warning else [],
        "env": {
            k: os.environ.get(k)
            for k in ("FCN_FUSED_KERNELS", "FCN_BLAS", "FCN_CUDA_GRAPH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        },
        "commit": git.stdout.strip() or None,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = ap.add_argument
    add("--quick", action="store_true", help="smoke run: 1000 synthetic samples, batch 100, 2 repeats")
    add("--data-dir", help="CIFAR-10 folder (default: $FCN_DATA_DIR; neither: synthetic data)")
    add("--synthetic", action="store_true", help="CIFAR-shaped random data even where CIFAR-10 is found")
    add("--out", type=Path, default=OUT, help="results folder (default: benchmarks/results)")
    add("--backends", default="numpy,cupy", help="fcn backends (cupy only where a GPU is seen)")
    add("--dtypes", default="float32,float64")
    add("--nets", default="shallow,deep,tiny", help=f"any of {', '.join(NETS)}")
    add("--no-torch", action="store_true", help="skip the PyTorch peer even where torch is installed")
    add("--no-jax", action="store_true", help="skip the JAX peer even where jax is installed")
    add("--repeats", type=int, help="timed samples per runner (default 60; --quick 2)")
    add("--rounds", type=int, help="interleaved rounds the samples are spread over (default 4; --quick 1)")
    add("--warmup", type=int, help="untimed calls before each block (default 3; --quick 1)")
    add("--warmup-s", type=float, help="untimed seconds at least: BLAS threads settle (default 0.25; --quick 0)")
    add("--gpu-inner", type=int, default=10, help="steps per timed sample on a GPU (one sync each)")
    add("--n-train", type=int, help="training samples resident on the device (default 49000; --quick 1000)")
    add("--n-val", type=int, help="validation samples (default 1000; --quick 100)")
    add("--batch-size", type=int, help="batch of the CIFAR nets (default 500; --quick 100)")
    add("--profile", type=int, default=0, metavar="N", help="cProfile N steps of each fcn runner (0: off)")
    add("--long-repeats", type=int, help="epochs and evaluations timed per fcn runner (default 3; --quick 1; 0: none)")
    add("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    defaults = {
        "repeats": (60, 2),
        "rounds": (4, 1),
        "warmup": (3, 1),
        "warmup_s": (0.25, 0.0),
        "n_train": (49000, 1000),
        "n_val": (1000, 100),
        "batch_size": (500, 100),
    }
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.long_repeats is None:
        args.long_repeats = 1 if args.quick else 3
    unknown = [n for n in args.nets.split(",") if n not in NETS]
    if unknown:
        ap.error(f"unknown net(s) {', '.join(unknown)}; expected some of {', '.join(NETS)}")
    return args


def import_jax() -> Any:
    """The ``jax`` module, or ``None`` (with a note) where it is not installed."""
    try:
        import jax
    except ImportError:
        print("JAX peer: skipped (jax is not installed; pip install jax adds the CPU build)")
        return None
    return jax


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Run the benchmark; return the paths of the JSON, markdown and PNG written."""
    args = parse_args(argv)
    when = datetime.now(timezone.utc)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch peer: skipped (torch is not installed; pip install torch==2.13.0 adds the CPU build)")
    peers = {"torch": torch, "jax": None if args.no_jax else import_jax()}
    warning = openblas_coretype_warning()
    if warning:
        print(f"WARNING: {warning}")
    base, kind = load_data(args)
    groups = []  # (fcn backend, torch device or None): NumPy beside torch on the CPU, CuPy beside torch on CUDA
    backends = args.backends.split(",")
    if "numpy" in backends:
        groups.append((fcn.get_backend("numpy", fused=False), "cpu" if torch else None))  # + the BLAS path beside
    if "cupy" in backends:
        if fcn.has_gpu():
            groups.append((fcn.get_backend("cupy"), "cuda" if torch and torch.cuda.is_available() else None))
        else:
            print("fcn[cupy]: skipped (" + ("no CUDA GPU visible" if fcn.has_cupy() else "CuPy is not installed") + ")")
    records, skipped = [], []
    for dtype, net, (be, tdev) in itertools.product(args.dtypes.split(","), args.nets.split(","), groups):
        recs, note = run_group(net, dtype, be, tdev, base, peers, args)
        records += recs
        if note and note not in skipped:
            skipped.append(note)
    fused = os.environ.get("FCN_FUSED_KERNELS", "0")
    payload = {
        "benchmark": "train",
        "date": when.isoformat(timespec="seconds"),
        "data": kind,
        "fused_kernels": fused,
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "data_dir")},  # local paths stay out
        "config": {"reg": REG, "learning_rate": LEARNING_RATE, "nets": {n: NETS[n] for n in args.nets.split(",")}},
        "environment": environment(torch),
        "results": records,
        "targets": targets(records),
        "skipped": skipped,
    }
    host = "".join(c if c.isalnum() or c in "._-" else "_" for c in socket.gethostname()) or "host"
    stem = f"train-{host}-{when:%Y%m%dT%H%M%SZ}" + ("-fused" if fused == "1" else "")
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {ext: args.out / f"{stem}.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(
        json.dumps(payload, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )
    paths["md"].write_text(markdown(payload))
    bar_chart(
        paths["png"], records, f"fcn training step ({kind.split(' (')[0]}), {payload['environment']['machine']['cpu']}"
    )
    for t in payload["targets"]:
        print(f"{t['what']}: {t['measured']:.2f}x (target {t['target']}x) -> {'met' if t['met'] else 'NOT met'}")
    print("\nwrote " + ", ".join(map(str, paths.values())))
    return paths


if __name__ == "__main__":
    main()
