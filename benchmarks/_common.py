"""Helpers shared by the benchmark scripts: timing, machine description, data, and result files.

``benchmarks/`` is not a package: the scripts put their own folder on ``sys.path`` and ``import _common``,
so ``python benchmarks/bench_train.py`` works from any working directory and the smoke test can load the
scripts by path with importlib.

Nothing here changes the process environment (thread counts, ``OPENBLAS_*`` variables): the benchmarks
measure the library as a user would run it, and only *record* those settings so a reader knows which
BLAS kernel produced the numbers.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata
import json
import os
import re
import socket
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy

#: The repository root (``benchmarks/..``): default data and result locations are relative to it.
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Where results go unless ``--out`` says otherwise.
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"

#: The shared copy of CIFAR-10 next to the repository, used when neither ``--data-dir`` nor ``FCN_DATA_DIR``
#: is given.
SHARED_CIFAR10 = REPO_ROOT.parent / "shared" / "datasets" / "cifar-10-batches-py"

#: Environment variables that change which BLAS kernel runs or how many threads it uses; recorded verbatim.
BLAS_ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_VERBOSE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_ENABLE_INSTRUCTIONS",
    "NPY_DISABLE_CPU_FEATURES",
)

#: Shape of the synthetic stand-in for CIFAR-10's training split.
IMAGE_SHAPE = (3, 32, 32)


# ----------------------------------------------------------------------------------------------------------
# Optional libraries
# ----------------------------------------------------------------------------------------------------------


def optional_import(name: str) -> ModuleType | None:
    """``import name``, or ``None`` when it is missing or broken (torch and cupy are optional peers)."""
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a broken native install raising at import time
        return None


def load_torch(wanted: bool = True) -> ModuleType | None:
    """PyTorch if installed (and ``wanted``), else ``None`` with a printed note saying why it is skipped."""
    if not wanted:
        print("PyTorch peer: skipped (--no-torch)")
        return None
    torch = optional_import("torch")
    if torch is None:
        print("PyTorch peer: skipped (torch is not installed; `pip install torch==2.13.0` adds the CPU build)")
    return torch


# ----------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------


def no_sync() -> None:
    """The synchronisation of a CPU runner: nothing to wait for."""


@dataclass
class Runner:
    """One thing to time: ``fn`` does one unit of work; ``sync`` waits for queued device work.

    ``after_block`` runs outside the timed region after each block of samples (e.g. read back pending
    losses), so bookkeeping that a real loop does only occasionally does not pile up.
    """

    name: str
    fn: Callable[[], Any]
    sync: Callable[[], None] = no_sync
    after_block: Callable[[], None] | None = None
    samples: list[float] = field(default_factory=list)


def time_block(runner: Runner, repeats: int, warmup: int) -> None:
    """Run ``warmup`` untimed calls, then time ``repeats`` calls one by one into ``runner.samples``.

    Each call is followed by ``sync`` inside the timed region: on a GPU the time of a call is only
    known once its kernels have finished.
    """
    fn, sync = runner.fn, runner.sync
    for _ in range(warmup):
        fn()
    sync()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        runner.samples.append(time.perf_counter() - t0)
    if runner.after_block is not None:
        runner.after_block()


def run_interleaved(runners: Sequence[Runner], *, rounds: int, repeats: int, warmup: int, settle_s: float) -> None:
    """Time every runner in ``rounds`` rounds of ``repeats`` calls, rotating the order each round.

    Why interleave: on a shared machine the background load drifts over seconds; runners timed in
    alternating blocks see the same drift, so their *ratios* stay meaningful even when absolute times
    wobble. Why ``settle_s``: OpenBLAS and OpenMP worker threads spin for a while after a call; on two
    cores a runner started right after another library's call competes with those spinning threads.
    """
    for r in range(max(rounds, 1)):
        k = r % len(runners) if runners else 0
        for runner in [*runners[k:], *runners[:k]]:
            if settle_s > 0:
                time.sleep(settle_s)
            time_block(runner, repeats, warmup)


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median and spread of timing samples in seconds: p10/p90, quartiles and IQR, mean, min, max, n."""
    if not samples:
        return {"n": 0}
    a = numpy.asarray(samples, dtype=float)
    p10, q1, med, q3, p90 = numpy.percentile(a, [10, 25, 50, 75, 90])
    return {
        "median_s": float(med),
        "p10_s": float(p10),
        "p90_s": float(p90),
        "q1_s": float(q1),
        "q3_s": float(q3),
        "iqr_s": float(q3 - q1),
        "mean_s": float(a.mean()),
        "min_s": float(a.min()),
        "max_s": float(a.max()),
        "stdev_s": float(statistics.stdev(a)) if a.size > 1 else 0.0,
        "n": int(a.size),
    }


def time_once(fn: Callable[[], Any], sync: Callable[[], None] = no_sync) -> float:
    """Seconds for one call of ``fn`` (synchronised): for long units such as a whole epoch."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (``None`` where the OS has none).

    Recorded before and after a run: on a shared two-core machine a load above ~0.5 at the start means
    another job competes for the cores, and absolute times (not ratios) should be read with that in mind.
    """
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_times() -> tuple[int, int] | None:
    """``(busy, total)`` jiffies over all CPUs from ``/proc/stat`` (``None`` off Linux)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


#: Machine time (clock ticks over all CPUs) a block must span for :class:`OtherLoad` to give a share (2% steps).
MIN_MEASURABLE_JIFFIES = 50


class OtherLoad:
    """Measures how much CPU *other* processes used while a block of work ran.

    ``/proc/stat`` gives all busy time on the machine, ``os.times()`` this process's own (all threads); the
    difference over the wall time times the core count is the share of the machine that other jobs took.
    Above ~0.1 the block's absolute times are inflated; it is recorded per group so a reader can tell a
    clean measurement from a contended one. Blocks shorter than :data:`MIN_MEASURABLE_JIFFIES` of machine time
    get ``None``: ``/proc/stat`` counts in clock ticks (10 ms), so a few-millisecond block reads 0% or 100%.
    """

    def __init__(self) -> None:
        self._start: tuple[tuple[int, int] | None, float, float] | None = None
        self.share: float | None = None  # set on exit: others' share of all CPU time, 0..1

    @staticmethod
    def _own_cpu() -> float:
        t = os.times()
        return t.user + t.system

    def __enter__(self) -> OtherLoad:
        self._start = (_cpu_times(), self._own_cpu(), time.monotonic())
        self.share = None
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._start is not None
        jiffies0, own0, wall0 = self._start
        jiffies1, own1, wall1 = _cpu_times(), self._own_cpu(), time.monotonic()
        if jiffies0 is None or jiffies1 is None or wall1 <= wall0:
            return
        hz = os.sysconf("SC_CLK_TCK")
        busy_s = (jiffies1[0] - jiffies0[0]) / hz
        total_s = (jiffies1[1] - jiffies0[1]) / hz
        others = max(busy_s - (own1 - own0), 0.0)
        measurable = jiffies1[1] - jiffies0[1] >= MIN_MEASURABLE_JIFFIES
        self.share = round(others / total_s, 3) if measurable else None


def cpu_busy_fraction(interval: float = 0.2) -> float | None:
    """Fraction of all CPU time spent busy over the next ``interval`` seconds (this process sleeps meanwhile).

    Unlike the load average (a 1-minute moving average that lags by tens of seconds) this says whether
    another job is using the cores *now*.
    """
    a = _cpu_times()
    time.sleep(interval)
    b = _cpu_times()
    if a is None or b is None or b[1] <= a[1]:
        return None
    return round((b[0] - a[0]) / (b[1] - a[1]), 3)


def warn_if_busy(busy: float | None, threshold: float = 0.15) -> None:
    """Print a warning when another job is using the cores."""
    if busy is not None and busy > threshold:
        print(
            f"warning: the CPUs are {100 * busy:.0f}% busy before the run: another job is running; absolute "
            "times will be inflated and noisy (ratios suffer less: runners are interleaved)"
        )


@dataclass
class RunStart:
    """When a benchmark run began and how busy the machine was just before it."""

    when: _dt.datetime
    busy_before: float | None
    load_before: list[float] | None


def start_run(wait_idle_s: float) -> RunStart:
    """Wait for a quiet machine (up to ``wait_idle_s``), warn if it is still busy, and note the starting state."""
    when = utc_now()
    wait_until_idle(wait_idle_s)
    busy = cpu_busy_fraction()
    warn_if_busy(busy)
    return RunStart(when, busy, load_average())


def wait_until_idle(max_wait_s: float, threshold: float = 0.1, quiet_s: float = 20.0) -> bool:
    """Wait (up to ``max_wait_s``) until the CPUs have been under ``threshold`` busy for ``quiet_s`` seconds.

    Returns whether that happened. A single idle sample is not enough on a shared machine: jobs come in
    bursts, so a quiet stretch is required before a run starts.
    """
    deadline = time.monotonic() + max_wait_s
    quiet_since: float | None = None
    last_note = 0.0
    while max_wait_s > 0 and time.monotonic() < deadline:
        busy = cpu_busy_fraction(2.0)
        now = time.monotonic()
        if busy is None:
            return True
        if busy < threshold:
            quiet_since = quiet_since or now
            if now - quiet_since >= quiet_s:
                return True
        else:
            quiet_since = None
            if now - last_note > 30:
                print(f"waiting for the CPUs to go idle ({100 * busy:.0f}% busy)", flush=True)
                last_note = now
    return max_wait_s <= 0


#: Other processes' share of the CPUs above which a measurement counts as contended (and is retried).
CONTENDED = 0.1

T = TypeVar("T")


def least_contended(
    attempt: Callable[[], T], load: Callable[[T], float | None], *, retries: int, wait_idle: float, what: str
) -> tuple[T, int]:
    """Run ``attempt`` up to ``retries + 1`` times while others took > :data:`CONTENDED` of the CPUs meanwhile.

    On a shared machine another job can start in the middle of a measurement; between attempts this waits
    (up to ``wait_idle`` seconds) for the CPUs to go quiet. Returns the least contended result (``load``
    reads its others' share) and the number of attempts made.
    """
    best: T | None = None
    for n in range(1, retries + 2):
        result = attempt()
        if best is None or (load(result) or 0.0) < (load(best) or 0.0):
            best = result
        if (load(best) or 0.0) <= CONTENDED or n > retries:
            break
        print(f"  contended ({100 * (load(result) or 0.0):.0f}% of the CPUs used by others): {what} again")
        wait_until_idle(wait_idle)
    assert best is not None
    return best, n


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds for tables (``-`` for a missing value)."""
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or ``None`` when either is missing (e.g. no PyTorch peer on this machine)."""
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_ratio(r: float | None) -> str:
    """A ratio for tables, ``-`` when missing."""
    return "-" if r is None else f"{r:.2f}x"


def pct(share: float | None) -> str:
    """A 0..1 share as a percentage for tables, ``-`` when missing."""
    return "-" if share is None else f"{100 * share:.0f}%"


# ----------------------------------------------------------------------------------------------------------
# Machine, libraries, BLAS
# ----------------------------------------------------------------------------------------------------------


def machine_info(torch: ModuleType | None = None) -> dict[str, Any]:
    """:func:`fcn.sysinfo.machine_info` (cpu, cores, python, platform, gpu) plus what a benchmark also needs.

    Added here: the hostname (also in the file names), the cores this process may actually run on (the
    affinity mask: containers often restrict it), the memory, and the GPU PyTorch sees (the CuPy one is
    fcn's ``gpu``). The BLAS in use is described separately by :func:`blas_info`.
    """
    from fcn.sysinfo import machine_info as fcn_machine_info

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        mem_gib = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    torch_gpu = torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available() else None
    return fcn_machine_info() | {
        "hostname": socket.gethostname(),
        "usable_cores": usable,
        "memory_gib": mem_gib,
        "torch_gpu": torch_gpu,
    }


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the timings (``None``: not installed)."""
    versions: dict[str, str | None] = {}
    for dist in ("numpy", "array-api-compat", "torch", "cupy-cuda12x", "cupy-cuda13x", "cupy", "threadpoolctl"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    import fcn

    versions["fcn"] = getattr(fcn, "__version__", None)
    return versions


def git_state() -> dict[str, Any]:
    """The commit the code under test came from, and whether ``fcn/`` had uncommitted changes.

    The library changes under the benchmark's feet; a number is only comparable with another taken on
    the same code.
    """
    import subprocess

    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(["git", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "fcn")
    return {"commit": git("rev-parse", "HEAD"), "fcn_dirty": None if dirty is None else bool(dirty)}


def blas_info(torch: ModuleType | None = None) -> dict[str, Any]:
    """Which BLAS ran: the ``OPENBLAS_*``/thread variables, threadpoolctl's report, NumPy's build config.

    Call it after the libraries are imported (threadpoolctl only sees loaded libraries). ``OPENBLAS_CORETYPE``
    and ``OPENBLAS_L2_SIZE`` select OpenBLAS's kernel and blocking; a wrong value slows NumPy markedly, which
    is why they are recorded (and deliberately never changed here).
    """
    info: dict[str, Any] = {"env": {name: os.environ.get(name) for name in BLAS_ENV_VARS}}
    threadpoolctl = optional_import("threadpoolctl")
    if threadpoolctl is None:
        info["threadpool_info"] = None
        info["threadpoolctl"] = "not installed (pip install threadpoolctl, or the fcn-cifar[bench] extra)"
    else:
        info["threadpool_info"] = [
            {k: v for k, v in pool.items() if k != "filepath"} | {"file": Path(str(pool.get("filepath", ""))).name}
            for pool in threadpoolctl.threadpool_info()
        ]
    try:
        config = numpy.show_config(mode="dicts")  # NumPy >= 1.26
        deps = config.get("Build Dependencies", {}) if isinstance(config, dict) else {}
        info["numpy_build"] = {k: deps.get(k) for k in ("blas", "lapack")}
    except (TypeError, ValueError):
        info["numpy_build"] = None
    if torch is not None:
        info["torch"] = {
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "mkl": bool(torch.backends.mkl.is_available()),
            "mkldnn": bool(torch.backends.mkldnn.is_available()),
            "parallel_info": torch.__config__.parallel_info(),
        }
    return info


# ----------------------------------------------------------------------------------------------------------
# The work unit (shared by bench_train.py and profile_step.py)
# ----------------------------------------------------------------------------------------------------------

#: The chapter's regularisation strength and the update rule's learning rate (small enough never to diverge:
#: a NaN loss would change what the CPU computes and so the timings).
REG = 0.6
LEARNING_RATE = 1e-4
#: Rows per forward pass in full-set evaluation, as fcn's ``predict`` and ``check_accuracy`` use.
EVAL_CHUNK = 10_000


def make_model(hidden: Sequence[int], be: Any, dtype: str, seed: int, input_dim: int = 3072) -> Any:
    """The chapter's ShallowLayerNet for one hidden layer (weight scale 1e-3), else a FullyConnectedNet (1e-2)."""
    import fcn

    kw = {"reg": REG, "backend": be, "dtype": dtype, "seed": seed, "input_dim": input_dim}
    if len(hidden) == 1:
        return fcn.ShallowLayerNet(hidden_dim=hidden[0], weight_scale=1e-3, **kw)
    return fcn.FullyConnectedNet(hidden_dims=list(hidden), weight_scale=1e-2, **kw)


def make_solver(model: Any, data: Mapping[str, Any], batch: int, seed: int, num_iters: int = 10**9) -> Any:
    """A quiet SGD ``fcn.Solver`` on ``model``; ``step()`` is the timed unit (``num_iters`` matters to ``train()``)."""
    import fcn

    return fcn.Solver(
        model,
        dict(data),
        batch_size=batch,
        num_iters=num_iters,
        optim_config={"learning_rate": LEARNING_RATE},
        verbose=False,
        progress=False,
        seed=seed,
    )


def model_dims(model: Any) -> list[int]:
    """Layer widths of an fcn model, input to output."""
    return [model.input_dim, *model.hidden_dims, model.num_classes]


def gemm_floor(make: Callable[[tuple[int, ...]], Any], dims: Sequence[int], batch: int) -> Callable[..., None]:
    """A callable doing only the matrix products of one iteration, on operands made by ``make(shape)``.

    Per layer ``i`` (``d_{i-1} -> d_i``): forward ``H_{i-1} @ W_i``, weight gradient ``H_{i-1}.T @ dA_i``, and
    from the second layer on the input gradient ``dA_i @ W_i.T``. For the shallow net the two first-layer
    products are 99.7% of the FLOPs. The returned ``run(x=None)`` uses ``x`` (a freshly gathered
    ``(batch, d_0)`` batch) as the first layer's input when given, else a fixed operand hot in cache.
    ``.T`` and ``@`` are spelled the same in NumPy, CuPy and PyTorch, so one function serves all three.
    """
    layers = [(make((batch, a)), make((a, b)), make((batch, b))) for a, b in zip(dims[:-1], dims[1:], strict=True)]

    def run(x: Any = None) -> None:
        for i, (H, W, dA) in enumerate(layers):
            if i == 0 and x is not None:
                H = x
            H @ W
            H.T @ dA
            if i > 0:
                dA @ W.T

    return run


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """Host float arrays for the benchmark plus a human-readable ``kind`` for the results."""

    X_train: numpy.ndarray
    y_train: numpy.ndarray
    X_val: numpy.ndarray
    y_val: numpy.ndarray
    kind: str

    def arrays(self, dtype: str) -> dict[str, numpy.ndarray]:
        """The data set with its images in ``dtype`` (cast once; the callers share it across runners)."""
        cast = (lambda a: a) if self.X_train.dtype == numpy.dtype(dtype) else (lambda a: a.astype(dtype))
        return {"X_train": cast(self.X_train), "y_train": self.y_train, "X_val": cast(self.X_val), "y_val": self.y_val}


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The CIFAR-10 folder to try: ``--data-dir``, else ``$FCN_DATA_DIR``, else the shared copy if present."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("FCN_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return SHARED_CIFAR10 if SHARED_CIFAR10.exists() else None


def synthetic_data(num_train: int, num_val: int, dtype: str = "float32", seed: int = 0) -> Dataset:
    """Standard-normal images and uniform labels 0..9 with CIFAR-10's shapes.

    Timings do not depend on pixel values (dense GEMMs and elementwise ops have no data-dependent
    branches), so synthetic data is a faithful stand-in for timing; only the loss values differ.
    """
    rng = numpy.random.default_rng(seed)
    dt = numpy.dtype(dtype)
    X_train = rng.standard_normal((num_train, *IMAGE_SHAPE), dtype=dt)
    X_val = rng.standard_normal((num_val, *IMAGE_SHAPE), dtype=dt)
    y_train = rng.integers(0, 10, num_train, dtype=numpy.int64)
    y_val = rng.integers(0, 10, num_val, dtype=numpy.int64)
    return Dataset(X_train, y_train, X_val, y_val, f"synthetic {(num_train, *IMAGE_SHAPE)}")


def load_data(
    data_dir: str | os.PathLike[str] | None, num_train: int, num_val: int, *, synthetic: bool = False
) -> Dataset:
    """Real CIFAR-10 (via :mod:`fcn.data`, float32 on the host) when found, else :func:`synthetic_data`.

    The real path is guarded: ``fcn.data`` may be absent in an older checkout, and a missing or broken data
    folder must not stop a timing run; the reason for falling back is printed and kept in ``kind``.
    """
    if synthetic:
        return synthetic_data(num_train, num_val)
    root = resolve_data_dir(data_dir)
    reason = "no data folder given or found"
    if root is not None:
        try:
            from fcn.data import find_cifar10, get_CIFAR10_data

            path = find_cifar10(root)
            # download=False: a benchmark must never start a 170 MB download behind the user's back.
            d = get_CIFAR10_data(
                num_training=num_train, num_validation=num_val, num_test=0, root=path, dtype="float32", download=False
            )
            return Dataset(d["X_train"], d["y_train"], d["X_val"], d["y_val"], f"cifar10 ({path})")
        except ImportError as exc:
            reason = f"fcn.data is not importable ({exc})"
        except Exception as exc:  # DatasetError, ValueError (too few images), OSError, a corrupt pickle
            reason = f"{type(exc).__name__}: {exc}"
    print(f"data: using synthetic data ({reason}); timings do not depend on pixel values")
    return synthetic_data(num_train, num_val)


# ----------------------------------------------------------------------------------------------------------
# Result files
# ----------------------------------------------------------------------------------------------------------


def utc_now() -> _dt.datetime:
    """The current time in UTC (one clock for the file name and the ``date`` field)."""
    return _dt.datetime.now(_dt.timezone.utc)


def result_stem(prefix: str, when: _dt.datetime) -> str:
    """``<prefix>-<hostname or cpu>-<UTC date and time>``, safe as a file name.

    The time is part of the name so that two runs on one day do not overwrite each other.
    """
    host = socket.gethostname() or "host"
    host = re.sub(r"[^A-Za-z0-9._-]+", "_", host).strip("_") or "cpu"
    return f"{prefix}-{host}-{when.strftime('%Y%m%dT%H%M%SZ')}"


def _jsonable(obj: Any) -> Any:
    """NumPy scalars and paths as plain JSON values (``json.dump``'s ``default``)."""
    return obj.item() if isinstance(obj, numpy.generic) else str(obj)


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def header_markdown(title: str, payload: Mapping[str, Any]) -> str:
    """The common preamble of a results ``.md``: machine, libraries, BLAS, data, date."""
    m = payload["machine"]
    v = payload["versions"]
    blas = payload["blas"]
    pools = blas.get("threadpool_info") or []
    pool_text = "; ".join(
        f"{p.get('internal_api')} {p.get('version') or ''} {p.get('architecture') or ''} "
        f"({p.get('num_threads')} threads, {p.get('file')})".replace("  ", " ")
        for p in pools
    )
    env = ", ".join(f"{k}={val}" for k, val in blas["env"].items() if val is not None) or "none set"
    gpus = ", ".join(f"{k} {g}" for k, g in (("cupy", m.get("gpu")), ("torch", m.get("torch_gpu"))) if g) or "none"
    versions = ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)
    return "\n".join(
        [
            f"# {title}",
            "",
            f"- date (UTC): {payload['date']}",
            f"- machine: {m['cpu']}, {m['usable_cores']} usable cores ({m['cores']} CPUs), {m['memory_gib']} GiB, "
            f"{m['platform']}, Python {m['python']}; GPU: {gpus}",
            f"- data: {payload['data']}",
            f"- versions: {versions}",
            f"- code: commit {(payload.get('git') or {}).get('commit')}"
            + (", fcn/ with uncommitted changes" if (payload.get("git") or {}).get("fcn_dirty") else ""),
            f"- BLAS: {pool_text or 'threadpoolctl not installed'}",
            f"- BLAS environment: {env}",
            "",
        ]
    )


def bar_chart(
    path: Path,
    panels: Mapping[str, Sequence[tuple[str, dict[str, Any]]]],
    *,
    title: str,
    xlabel: str = "time per call (ms, median; whiskers p10-p90)",
    log: bool = False,
) -> Path:
    """Horizontal bar chart, one panel per key of ``panels``, one bar per ``(label, summary)``.

    One panel per workload because their scales differ by 10x (shallow vs deep net); bars within a panel
    share an axis so a runner can be compared with its floor and its peer at a glance. ``log`` gives a
    logarithmic time axis, for panels mixing microsecond and millisecond calls.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI or a headless server
    import matplotlib.pyplot as plt

    names = [k for k, v in panels.items() if v]
    height = sum(max(len(panels[k]), 1) * 0.32 + 0.9 for k in names) or 2.0
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(9, height), squeeze=False)
    for ax, key in zip(axes[:, 0], names, strict=False):
        items = list(panels[key])
        labels = [label for label, _ in items]
        med = numpy.array([s.get("median_s", numpy.nan) * 1e3 for _, s in items])
        lo = numpy.array([s.get("p10_s", numpy.nan) * 1e3 for _, s in items])
        hi = numpy.array([s.get("p90_s", numpy.nan) * 1e3 for _, s in items])
        err = numpy.vstack([numpy.clip(med - lo, 0, None), numpy.clip(hi - med, 0, None)])
        colors = [_color(label) for label in labels]
        ypos = numpy.arange(len(items))
        ax.barh(ypos, med, xerr=err, color=colors, capsize=3)
        ax.set_yticks(ypos, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(key, fontsize=10)
        if log:
            ax.set_xscale("log")
        ax.grid(axis="x", alpha=0.3)
        for y, m, h in zip(ypos, med, hi, strict=True):
            if numpy.isfinite(m):  # the value just past the whisker, where it does not collide with it
                ax.text(max(m, h) if numpy.isfinite(h) else m, y, f"  {m:.3g}", va="center", fontsize=7)
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _color(label: str) -> str:
    """Bar colour by kind of runner, so floors, fcn and peers read apart in every panel."""
    if "floor" in label or "raw" in label:
        return "#9e9e9e"
    if "torch" in label:
        return "#ee6a2f"
    return "#2f6fee"


def common_payload(torch: ModuleType | None, data_kind: str, when: _dt.datetime, args: Any) -> dict[str, Any]:
    """The fields every results JSON carries: date, machine, versions, BLAS, data kind, arguments."""
    return {
        "date": when.isoformat(timespec="seconds"),
        "machine": machine_info(torch),
        "versions": library_versions(),
        "git": git_state(),
        "blas": blas_info(torch),
        "data": data_kind,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def split_csv(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (for ``--backends`` and friends)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_dims(text: str) -> list[int]:
    """``"1024,512"`` -> ``[1024, 512]`` (hidden layer sizes on the command line)."""
    return [int(t) for t in split_csv(text)]


def settle(seconds: float) -> None:
    """Pause so that spinning BLAS/OpenMP worker threads of the previous call go idle (see run_interleaved)."""
    if seconds > 0:
        time.sleep(seconds)
