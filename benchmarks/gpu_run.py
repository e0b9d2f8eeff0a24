#!/usr/bin/env python
"""Everything a GPU machine should check and measure, as one command: ``python benchmarks/gpu_run.py OUTDIR``.

Meant for an offline GPU machine with CuPy, PyTorch, NumPy and pytest installed and no CIFAR-10 copy
(synthetic CIFAR-shaped data is used). In order, each part a subprocess with its own time limit, so a
failing or hanging part never stops the next one:

1. ``env``: GPU name, driver, CUDA runtime, CuPy version, NVRTC version, cuBLAS load (a float32 product),
   ``nvidia-smi``, and whether ``ncu``/``nsys`` are installed;
2. ``tests-gpu``: ``pytest -m gpu`` (every CuPy case of the suite, the fused-kernel tests included);
3. ``tests-rest``: the rest of the suite (``pytest -m "not gpu and not slow"``: the notebook run is left out);
4. ``bench-plain`` and ``bench-fused``: ``benchmarks/bench_train.py --backends numpy,cupy --dtypes
   float32,float64 --nets shallow,deep --synthetic``, plain and with ``FCN_FUSED_KERNELS=1`` (with shorter timing
   loops, ``--repeats 20 --rounds 2 --epoch-repeats 1 --eval-repeats 1``, where the script has those options);
5. ``probe``: one training step of the chapter's net on CuPy, plain and fused: kernel launches per step
   (the nodes of the step captured as a CUDA graph), whether the host waits for the GPU between two logging
   points (:func:`fcn.ops.cuda.host_waits`), and the time per step eagerly and as a graph replay.

Everything lands in OUTDIR: ``gpu_run.log`` (all output), ``summary.json`` and ``summary.md`` (each part's
status, time and reason), the pytest JUnit XML files, the benchmark folders (JSON, markdown, PNG),
``probe.json`` and ``probe.png``. The time limits add up to under 10 minutes.

``--dry-run`` (runs anywhere, used by the CPU test suite) attempts every part without a GPU: ``env`` runs,
the test parts only collect, the benchmark parts check that ``bench_train.py --help`` knows every flag used,
and the GPU-only parts are skipped with the reason. Its exit code is 0; otherwise it is 1 when a part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_FLAGS = ["--backends", "numpy,cupy", "--dtypes", "float32,float64", "--nets", "shallow,deep", "--synthetic"]
#: Shorter timing loops, passed where bench_train.py still has these options (they keep a run near a minute).
BENCH_SPEED_FLAGS = {"--repeats": "20", "--rounds": "2", "--epoch-repeats": "1", "--eval-repeats": "1"}
#: Seconds per part; their sum (8.5 minutes) stays under 10 minutes.
LIMITS = {"env": 40, "tests-gpu": 120, "tests-rest": 100, "bench-plain": 100, "bench-fused": 100, "probe": 50}


@dataclass
class Part:
    name: str
    status: str = "pending"  # ok | failed | timeout | skipped
    seconds: float = 0.0
    reason: str = ""
    command: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class Log:
    """Prints and appends to OUTDIR/gpu_run.log."""

    def __init__(self, path: Path):
        self.path = path
        path.write_text("")

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        with self.path.open("a") as f:
            f.write(text + "\n")


def run(part: Part, cmd: Sequence[str], log: Log, *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` (output to the log), record status and time in ``part``; returns the output."""
    part.command = list(cmd)
    log(f"\n== {part.name}: {' '.join(cmd)} (limit {timeout:.0f} s)")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=ROOT,
            # this checkout first on the path, whatever is installed
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            | (env or {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        output = proc.stdout
        part.status = "ok" if proc.returncode == 0 else "failed"
        if proc.returncode:
            part.reason = f"exit code {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        part.status, part.reason = "timeout", f"ran past its limit of {timeout:.0f} s"
    except OSError as exc:
        output, part.status, part.reason = "", "failed", f"could not start: {exc}"
    part.seconds = round(time.perf_counter() - start, 2)
    log(output.rstrip())
    log(f"-- {part.name}: {part.status} in {part.seconds} s {part.reason}".rstrip())
    return output


def skip(part: Part, reason: str, log: Log) -> None:
    part.status, part.reason = "skipped", reason
    log(f"\n== {part.name}: skipped ({reason})")


def gpu_reason() -> str | None:
    """Why there is no usable GPU here, or None."""
    sys.path.insert(0, str(ROOT))
    try:
        import fcn
    except Exception as exc:  # the package itself is broken: every part will say so
        return f"fcn does not import ({exc})"
    if not fcn.has_cupy():
        return "CuPy is not installed"
    if not fcn.has_gpu():
        return "CuPy is installed but no CUDA GPU is visible"
    return None


ENV_SCRIPT = r"""
import json, platform, shutil, subprocess, sys
info = {"python": sys.version.split()[0], "platform": platform.platform()}
for tool in ("nvidia-smi", "ncu", "nsys"):
    info[tool] = shutil.which(tool)
try:
    import numpy; info["numpy"] = numpy.__version__
except Exception as e: info["numpy"] = f"unavailable: {e}"
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["torch_sees_gpu"] = torch.cuda.is_available()
except Exception as e: info["torch"] = f"unavailable: {e}"
try:
    import cupy
    info["cupy"] = cupy.__version__
    rt = cupy.cuda.runtime
    try:
        info["cuda_runtime"] = rt.runtimeGetVersion()
        info["driver"] = rt.driverGetVersion()
    except Exception as e: info["cuda_runtime"] = f"error: {e}"
    try:
        from cupy_backends.cuda.libs import nvrtc
        info["nvrtc"] = ".".join(map(str, nvrtc.getVersion()))
    except Exception as e: info["nvrtc"] = f"error: {e}"
    try:
        n = rt.getDeviceCount()
        info["devices"] = n
        props = rt.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["compute_capability"] = f"{props['major']}.{props['minor']}"
        info["memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
        a = cupy.ones((256, 256), dtype=cupy.float32)
        info["cublas_float32_product_ok"] = bool(float((a @ a)[0, 0]) == 256.0)
        info["cublas"] = cupy.cuda.cublas.getVersion(cupy.cuda.device.get_cublas_handle())
    except Exception as e: info["gpu"] = f"none ({type(e).__name__}: {e})"
except Exception as e: info["cupy"] = f"unavailable: {e}"
if info.get("nvidia-smi"):
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
        print(out)
    except Exception as e: info["nvidia-smi"] = f"error: {e}"
print("ENV_JSON " + json.dumps(info))
"""


PROBE_SCRIPT = r"""
import json, sys, time
import numpy
sys.path.insert(0, ROOT)
import fcn
from fcn.cuda_graph import CapturedStep
from fcn.ops.cuda import graph_node_counts, host_waits
import cupy

rng = numpy.random.default_rng(0)
n_train, batch = 4900, 500
data = {"X_train": rng.standard_normal((n_train, 3, 32, 32)).astype(numpy.float32),
        "y_train": rng.integers(0, 10, n_train), "X_val": rng.standard_normal((100, 3, 32, 32)).astype(numpy.float32),
        "y_val": rng.integers(0, 10, 100)}
result = {"net": "3072-100-10", "batch": batch, "dtype": "float32", "update_rule": "sgd"}

def solver_for(fused, graph=False):
    be = fcn.get_backend("cupy", fused=fused)
    model = fcn.FullyConnectedNet(3072, [100], reg=0.6, weight_scale=1e-3, backend=be, dtype="float32", seed=0)
    return fcn.Solver(model, data, update_rule="sgd", optim_config={"learning_rate": 1e-3}, batch_size=batch,
                      num_iters=10**6, print_every=10**6, verbose=False, progress=False, seed=0, cuda_graph=graph)

def per_step(solver, steps=50):
    for _ in range(5): solver.step()
    cupy.cuda.get_current_stream().synchronize(); solver._read_losses()
    t0 = time.perf_counter()
    for _ in range(steps): solver.step()
    cupy.cuda.get_current_stream().synchronize()
    return (time.perf_counter() - t0) / steps

for label, fused in (("plain", False), ("fused", True)):
    entry = {}
    try:
        s = solver_for(fused)
        for _ in range(3): s.step()
        s._read_losses()
        report, _ = host_waits(lambda: [s.step() for _ in range(5)], timeout_s=10.0)
        entry["host_waited_during_5_steps"] = report.waited
        entry["host_seconds_for_5_steps"] = round(report.seconds, 5)
        stream = cupy.cuda.Stream()
        stream.wait_event(cupy.cuda.get_current_stream().record())
        idx = s._order[:batch].copy()
        with stream:
            s._eager_step()
            def device_step():
                xb, yb = s._gather(idx)
                loss, grads = s._loss_and_grads(xb, yb)
                s._update(grads)
                return loss
            saved = dict(s.optim_config)
            cap = CapturedStep(device_step, stream=stream)
            s.optim_config.clear(); s.optim_config.update(saved)
        stream.synchronize()
        entry["graph_nodes_per_step"] = graph_node_counts(cap.graph)
        entry["eager_step_s"] = per_step(solver_for(fused))
    except Exception as e:
        entry["error"] = f"{type(e).__name__}: {e}"
    result[label] = entry
try:
    result["graph_replay_step_s"] = per_step(solver_for(True, graph=True))
except Exception as e:
    result["graph_replay_error"] = f"{type(e).__name__}: {e}"
print("PROBE_JSON " + json.dumps(result))
"""


def tagged_json(output: str, tag: str) -> dict[str, Any] | None:
    for line in reversed(output.splitlines()):
        if line.startswith(tag + " "):
            try:
                return json.loads(line[len(tag) + 1 :])
            except json.JSONDecodeError:
                return None
    return None


def probe_chart(probe: dict[str, Any], path: Path) -> bool:
    """Bar chart of the probe's time per step (plain, fused, graph replay); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return False
    bars = {
        "plain": probe.get("plain", {}).get("eager_step_s"),
        "fused": probe.get("fused", {}).get("eager_step_s"),
        "fused + graph": probe.get("graph_replay_step_s"),
    }
    bars = {k: v * 1e3 for k, v in bars.items() if isinstance(v, (int, float))}
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(list(bars), list(bars.values()), color=["#888888", "#1f77b4", "#2ca02c"][: len(bars)])
    ax.set_ylabel("ms per training step")
    ax.set_title(f"fcn CuPy step, {probe.get('net')}, batch {probe.get('batch')}, {probe.get('dtype')}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def summary_markdown(parts: list[Part], env: dict[str, Any] | None, probe: dict[str, Any] | None, dry: bool) -> str:
    lines = ["# fcn GPU run" + (" (dry run)" if dry else ""), ""]
    if env:
        keys = ("gpu", "compute_capability", "memory_gib", "driver", "cuda_runtime", "cupy", "nvrtc", "cublas",
                "cublas_float32_product_ok", "torch", "torch_cuda", "numpy", "python", "ncu", "nsys")  # fmt: skip
        lines += ["| environment | |", "|---|---|", *(f"| {k} | {env.get(k)} |" for k in keys), ""]
    lines += ["| part | status | seconds | reason |", "|---|---|---|---|"]
    lines += [f"| {p.name} | {p.status} | {p.seconds} | {p.reason} |" for p in parts]
    if probe:
        lines += ["", "## One training step (3072-100-10, batch 500, float32, sgd, synthetic data)", ""]
        lines += ["| kernels | host waited in 5 steps | kernel launches per step (graph nodes) | ms per step |"]
        lines += ["|---|---|---|---|"]
        for label in ("plain", "fused"):
            e = probe.get(label, {})
            step = e.get("eager_step_s")
            lines.append(
                f"| {label} | {e.get('host_waited_during_5_steps', e.get('error', '?'))} | "
                f"{e.get('graph_nodes_per_step', '?')} | {'?' if step is None else round(step * 1e3, 3)} |"
            )
        replay = probe.get("graph_replay_step_s")
        shown = probe.get("graph_replay_error", "?") if replay is None else round(replay * 1e3, 3)
        lines.append(f"| fused + graph replay | | | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path, help="folder for the log, summary, test reports, benchmark results")
    ap.add_argument("--dry-run", action="store_true", help="attempt every part without a GPU (for CPU CI)")
    args = ap.parse_args(argv)
    out: Path = args.outdir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_run.log")
    py = sys.executable
    no_gpu = gpu_reason()
    dry = args.dry_run
    log(f"fcn GPU run -> {out}" + (" (dry run)" if dry else "") + (f"; no GPU: {no_gpu}" if no_gpu else ""))
    parts = {name: Part(name) for name in LIMITS}
    gpu_skip = "dry run" if dry else no_gpu

    output = run(parts["env"], [py, "-c", ENV_SCRIPT], log, timeout=LIMITS["env"])
    env = tagged_json(output, "ENV_JSON")
    parts["env"].details = env or {}

    pytest = [py, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"]
    for name, marker in (("tests-gpu", "gpu"), ("tests-rest", "not gpu and not slow")):
        junit = out / f"{name}.xml"
        if dry:
            run(parts[name], [*pytest, "-m", marker, "--collect-only"], log, timeout=LIMITS[name])
            if parts[name].status == "ok":
                parts[name].reason = "dry run: collected only"
        elif name == "tests-gpu" and no_gpu:
            skip(parts[name], no_gpu, log)
        else:
            run(parts[name], [*pytest, "-m", marker, f"--junitxml={junit}"], log, timeout=LIMITS[name])

    help_text = ""
    try:
        help_text = subprocess.run(
            [py, "benchmarks/bench_train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    speed = [x for flag, value in BENCH_SPEED_FLAGS.items() if flag in help_text for x in (flag, value)]
    bench = [py, "benchmarks/bench_train.py", *BENCH_FLAGS, *speed]
    for name, fused in (("bench-plain", "0"), ("bench-fused", "1")):
        if dry or no_gpu:
            text = run(parts[name], [py, "benchmarks/bench_train.py", "--help"], log, timeout=LIMITS[name])
            missing = [f for f in [*BENCH_FLAGS[::2], "--out"] if f not in text]
            if missing:
                parts[name].status, parts[name].reason = "failed", f"bench_train.py lacks {', '.join(missing)}"
            elif parts[name].status == "ok":
                parts[name].status, parts[name].reason = "skipped", f"{gpu_skip}: checked the flags only"
        else:
            cmd = [*bench, "--out", str(out / name)]
            run(parts[name], cmd, log, timeout=LIMITS[name], env={"FCN_FUSED_KERNELS": fused})

    probe = None
    if gpu_skip:
        skip(parts["probe"], gpu_skip, log)
    else:
        script = f"ROOT = {str(ROOT)!r}\n" + PROBE_SCRIPT
        output = run(parts["probe"], [py, "-c", script], log, timeout=LIMITS["probe"])
        probe = tagged_json(output, "PROBE_JSON")
        if probe is not None:
            (out / "probe.json").write_text(json.dumps(probe, indent=2))
            probe_chart(probe, out / "probe.png")

    summary = {"dry_run": dry, "no_gpu_reason": no_gpu, "env": env, "probe": probe,
               "parts": [asdict(p) for p in parts.values()]}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text(summary_markdown(list(parts.values()), env, probe, dry))
    log("\n" + (out / "summary.md").read_text())
    failed = [p.name for p in parts.values() if p.status in ("failed", "timeout")]
    if dry:
        return 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
