"""What machine and software a run used: :func:`machine_info` (recorded with every run) and :func:`collect_env`
(``fcn info``: the report to paste into bug reports, in the spirit of ``python -m torch.utils.collect_env``).

Nothing here may fail: every probe catches its own errors and reports them as text, because this is what
users run when something is already broken.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

from .backend import BACKENDS, gpu_problem, has_cupy, has_gpu

__all__ = ["machine_info", "collect_env", "format_env", "cpu_vector_level", "openblas_coretype_warning"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def _gpu_name() -> str | None:
    if not has_gpu():
        return None
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id).get("name", b"")
    return name.decode() if isinstance(name, bytes) else str(name)


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python version, platform, and the GPU's name (``None`` without a usable GPU)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": _gpu_name(),
    }


# -- OpenBLAS kernel forced by the environment ------------------------------------------------------------

#: Vector instruction levels, oldest first, and the CPU flags (``/proc/cpuinfo``) each needs.
VECTOR_LEVELS = [
    ("SSE", ()),
    ("AVX", ("avx",)),
    ("AVX2", ("avx2", "fma")),
    ("AVX-512", ("avx512f", "avx512bw", "avx512vl")),
]
#: The level each OpenBLAS x86-64 core type's kernels use (``OPENBLAS_CORETYPE`` names, case-insensitive).
OPENBLAS_CORE_LEVELS = {
    **dict.fromkeys(("katmai", "coppermine", "northwood", "prescott", "banias", "core2", "penryn"), "SSE"),
    **dict.fromkeys(("dunnington", "nehalem", "atom", "opteron", "barcelona", "bobcat", "nano"), "SSE"),
    **dict.fromkeys(("sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"), "AVX"),
    **dict.fromkeys(("haswell", "zen", "atomc3000"), "AVX2"),
    **dict.fromkeys(("skylakex", "cooperlake", "sapphirerapids"), "AVX-512"),
}


def cpu_vector_level(cpuinfo: str | None = None) -> str | None:
    """The newest of :data:`VECTOR_LEVELS` the CPU supports, from ``/proc/cpuinfo`` (``None`` where unreadable)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux
            return None
    line = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    if line is None:
        return None
    flags = set(line.split(":", 1)[1].split())
    return [name for name, needs in VECTOR_LEVELS if flags.issuperset(needs)][-1]


def openblas_coretype_warning(environ: Any = None, cpuinfo: str | None = None) -> str | None:
    """A warning when ``OPENBLAS_CORETYPE`` makes OpenBLAS run kernels other than the CPU's best, else ``None``.

    Older kernels than the CPU supports (e.g. ``Haswell``'s AVX2 on an AVX-512 CPU) make matrix products slower,
    up to about 2x; newer ones than it has crash with an illegal instruction.
    """
    environ = os.environ if environ is None else environ
    forced = environ.get("OPENBLAS_CORETYPE")
    cpu = cpu_vector_level(cpuinfo)
    if not forced or cpu is None:
        return None
    kernel = OPENBLAS_CORE_LEVELS.get(forced.strip().lower())
    if kernel is None:
        return f"OPENBLAS_CORETYPE={forced} is not a core type this check knows (the CPU supports {cpu})"
    order = [name for name, _ in VECTOR_LEVELS]
    if order.index(kernel) < order.index(cpu):
        return (
            f"OPENBLAS_CORETYPE={forced} forces OpenBLAS's {kernel} kernels on a CPU with {cpu}: matrix products "
            "run slower than this CPU allows; unset it unless this OpenBLAS build misbehaves without it"
        )
    if order.index(kernel) > order.index(cpu):
        return f"OPENBLAS_CORETYPE={forced} asks for {kernel} kernels, which this CPU ({cpu}) cannot run"
    return None


# -- fcn info ---------------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _version(distribution: str) -> str | None:
    """The installed version of a distribution, without importing it (``None`` when not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_version(*distributions: str) -> str | None:
    for name in distributions:
        found = _version(name)
        if found is not None:
            return f"{found} ({name})" if len(distributions) > 1 else found
    return None


def _installed(module: str) -> bool:
    """Whether ``module`` is there to import (not whether importing it works). A module set to ``None`` in
    ``sys.modules`` (what tests do to hide one) counts as absent."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # found, but its parent package or its spec is broken: there, unusable
        return True


def _blas() -> dict[str, Any]:
    """NumPy's BLAS: from threadpoolctl when installed (what is loaded, with threads), else NumPy's build info.

    A threadpoolctl that is installed but fails (on import, or when asked) is reported as unusable, with its
    error, next to NumPy's build info.
    """
    problem = None
    if _installed("threadpoolctl"):
        try:
            from threadpoolctl import threadpool_info

            blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
            own = [i for i in blas if "numpy" in str(i.get("filepath", ""))] or blas
            if own:
                info = own[0]
                return {
                    "source": "threadpoolctl",
                    "name": info.get("internal_api"),
                    "version": info.get("version"),
                    "threads": info.get("num_threads"),
                    "architecture": info.get("architecture"),
                    "threading_layer": info.get("threading_layer"),
                }
        except Exception as exc:  # a broken threadpoolctl must not hide the rest of the report
            problem = f"unusable ({_first_line(exc)})"
    report = _numpy_blas()
    return report if problem is None else {**report, "threadpoolctl": problem}


def _numpy_blas() -> dict[str, Any]:
    """The BLAS NumPy was built with, from ``numpy.show_config``."""
    try:
        import numpy

        config = numpy.show_config(mode="dicts")  # returns the dict, prints nothing
        blas_info = config.get("Build Dependencies", {}).get("blas", {})
        return {
            "source": "numpy.show_config",
            "name": blas_info.get("name"),
            "version": blas_info.get("version"),
            "configuration": blas_info.get("openblas configuration"),
        }
    except Exception as exc:  # older NumPy without mode="dicts"
        return {"source": "numpy.show_config", "error": _first_line(exc)}


def _cuda() -> dict[str, Any]:
    """CuPy, the CUDA runtime and driver, NVRTC, and the GPUs, each probed on its own."""
    info: dict[str, Any] = {"cupy": _first_version("cupy-cuda12x", "cupy-cuda13x", "cupy")}
    if not has_cupy():
        info["status"] = "CuPy does not import" if info["cupy"] else "CuPy is not installed"
        return info
    import cupy

    probes = {
        "runtime": lambda: _cuda_version(cupy.cuda.runtime.runtimeGetVersion()),
        "driver": lambda: _cuda_version(cupy.cuda.runtime.driverGetVersion()),
        "nvrtc": lambda: ".".join(str(v) for v in cupy.cuda.nvrtc.getVersion()),
        "device_count": lambda: cupy.cuda.runtime.getDeviceCount(),
    }
    for key, probe in probes.items():
        try:
            info[key] = probe()
        except Exception as exc:
            info[key] = f"unavailable ({_first_line(exc)})"
    gpus = []
    if isinstance(info.get("device_count"), int):
        for i in range(info["device_count"]):
            try:
                props = cupy.cuda.runtime.getDeviceProperties(i)
                name = props.get("name", b"")
                name = name.decode() if isinstance(name, bytes) else str(name)
                memory = props.get("totalGlobalMem", 0) / 2**30
                gpus.append(
                    f"{i}: {name}, {memory:.0f} GiB, compute capability {props.get('major')}.{props.get('minor')}"
                )
            except Exception as exc:
                gpus.append(f"{i}: unreadable ({_first_line(exc)})")
    info["gpus"] = gpus
    info["status"] = gpu_problem() or "usable"
    return info


def _cuda_version(code: int) -> str:
    """CUDA's integer versions (12090) as text (12.9); 0 means none (e.g. no driver)."""
    return "none" if not code else f"{code // 1000}.{code % 1000 // 10}"


def _try_backend(name: str) -> str:
    """``"ok"`` when the backend resolves and computes a tiny matrix product correctly, ``"not installed"`` when
    its module (named as the backend) is absent, else why not."""
    if not _installed(name):
        return "not installed"
    try:
        import numpy

        from .backend import get_backend, to_host

        device = None
        if name == "array_api_strict":
            strict = importlib.import_module("array_api_strict")
            device = strict.Device("device1")
        be = get_backend(name, device)
        xp = be.xp
        a = be.asarray(numpy.arange(6.0).reshape(2, 3))
        result = to_host(xp.sum(a @ xp.ones((3, 1), dtype=a.dtype, device=be.device)))
        if float(result) != 15.0:
            return f"wrong result: 15 expected, got {float(result)}"
        return "ok" if device is None else f"ok (device {device!r})"
    except Exception as exc:
        return _first_line(exc)


def _fused() -> str:
    """Whether fcn's fused CUDA kernels (:mod:`fcn.ops.cupy_ops`) compile here.

    With a usable GPU every kernel is compiled and loaded on it (what training would do); without one, the
    source is compiled to PTX for ``compute_80`` by NVRTC alone, which needs no GPU or driver.
    """
    if importlib.util.find_spec("fcn.ops.cuda") is None:
        return "not available"
    try:
        fused = importlib.import_module("fcn.ops.cuda")
        if has_gpu():
            for name in fused.KERNEL_NAMES:
                fused.get_kernel(name)
            return f"compile and load ({len(fused.KERNEL_NAMES)} kernels on the current GPU)"
        nvrtc = importlib.import_module("cupy_backends.cuda.libs.nvrtc")

        version = ".".join(str(v) for v in nvrtc.getVersion())
        prog = nvrtc.createProgram(fused.kernel_source(), "fused.cu", [], [])
        try:
            nvrtc.compileProgram(prog, [*fused.COMPILE_OPTIONS, "--gpu-architecture=compute_80"])
        except Exception as exc:
            log = nvrtc.getProgramLog(prog)
            log = log.decode(errors="replace") if isinstance(log, bytes) else str(log)
            first = next((line for line in log.splitlines() if "error" in line), "")
            return f"do not compile (NVRTC {version}: {_first_line(exc)} {first})".strip()
        finally:
            nvrtc.destroyProgram(prog)
        return f"compile (PTX for compute_80 with NVRTC {version}; no usable GPU here to load them)"
    except Exception as exc:  # CuPy or NVRTC missing, a kernel failing on the GPU, ...
        return f"cannot be checked here ({_first_line(exc)})"


def _numpy_kernels() -> str:
    """Which path NumPy's kernel table takes by default here: SciPy's BLAS or NumPy alone, and why."""
    from .ops import numpy_ops

    try:
        wanted = numpy_ops.blas_requested()
    except ValueError as exc:
        return f"unknown ({exc})"
    if not wanted:
        return f"NumPy alone ({numpy_ops.ENV_BLAS}={os.environ[numpy_ops.ENV_BLAS].strip()})"
    if numpy_ops.scipy_blas is None:
        return 'NumPy alone (SciPy is not installed; pip install "fcn-cifar[fast]" for the BLAS path)'
    return f"SciPy's BLAS path (scipy {_version('scipy')}; {numpy_ops.ENV_BLAS}=0 keeps every product in NumPy)"


def collect_env() -> dict[str, Any]:
    """Everything ``fcn info`` prints, as a JSON-able dict."""
    import fcn

    env: dict[str, Any] = {
        "fcn": f"{getattr(fcn, '__version__', '?')} ({Path(fcn.__file__).parent})",
        "python": f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})",
        "platform": platform.platform(),
        "cpu": f"{_cpu_model()} ({os.cpu_count()} logical cores)",
        "numpy": _version("numpy"),
        "blas": _blas(),  # before the backends import torch, whose own BLAS would show up too
        "cpu_vector_level": cpu_vector_level(),
        "array-api-compat": _version("array-api-compat"),
        "array-api-strict": _version("array-api-strict"),
        "torch": _version("torch"),
        "scipy": _version("scipy"),  # optional: NumPy's table calls its BLAS routines directly
        "threadpoolctl": _version("threadpoolctl"),
        "ray": _version("ray"),
    }
    warning = openblas_coretype_warning()
    if warning:
        env["blas"]["warning"] = warning
    env["cuda"] = _cuda()
    env["backends"] = {name: _try_backend(name) for name in BACKENDS}
    env["numpy_kernels"] = _numpy_kernels()
    env["fused_cuda_kernels"] = _fused()
    return env


def format_env(env: dict[str, Any]) -> str:
    """``collect_env()`` as the text ``fcn info`` prints: one ``key: value`` per line, nested keys indented."""
    lines = []

    def add(key: str, value: Any, indent: str = "") -> None:
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            for k, v in value.items():
                add(k, v, indent + "  ")
        elif isinstance(value, list):
            lines.append(f"{indent}{key}: {'none' if not value else ''}".rstrip())
            lines.extend(f"{indent}  {item}" for item in value)
        else:
            missing = "not installed" if not indent else "unknown"
            lines.append(f"{indent}{key}: {missing if value is None else value}")

    for key, value in env.items():
        add(key, value)
    return "\n".join(lines)
