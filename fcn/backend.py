"""The CPU/GPU bridge: backend names -> array namespaces, namespace inference, host <-> device moves.

Everything else in fcn is written once against an array namespace ``xp`` (the Array API standard, as
served by array-api-compat for NumPy and CuPy, or any compliant library such as array-api-strict).
This module is the only place that knows which concrete libraries exist.

Two questions are kept apart (as thinc does): :func:`has_cupy` (the package imports) and
:func:`has_gpu` (a CUDA device is really there and CuPy can use it: its runtime compiler NVRTC and cuBLAS
load, and a tiny kernel and matrix product run). CuPy can import on a machine with no usable GPU;
:func:`gpu_problem` says what is missing.

Devices are normalised to the namespace's own device objects (``0`` and ``"cuda:0"`` become
``cupy.cuda.Device(0)``, ``"cpu"`` becomes ``torch.device("cpu")``, ``"device1"`` becomes
``array_api_strict.Device("device1")``) and compared with ``==``, never by their text.
"""

from __future__ import annotations

import importlib
import numbers
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from types import ModuleType
from typing import Any

import array_api_compat
import numpy

from .ops import get_ops

__all__ = [
    "Backend",
    "BackendError",
    "BACKENDS",
    "get_backend",
    "has_cupy",
    "has_gpu",
    "gpu_problem",
    "normalize_device",
    "namespace_of",
    "to_backend",
    "to_host",
    "is_host_array",
]

#: Backend names accepted by ``backend=...`` (any Array-API namespace module works too).
BACKENDS = ("numpy", "cupy", "array_api_strict", "torch")

_CUPY_HINT = (
    'CuPy is not installed. Install the GPU extra that matches your CUDA driver: pip install "fcn-cifar[cuda12]" '
    '(CUDA 12.x) or pip install "fcn-cifar[cuda13]" (CUDA 13.x).'
)


class BackendError(RuntimeError):
    """A backend cannot be used here (not installed, no device, or arrays from different backends)."""


@cache
def has_cupy() -> bool:
    """True when the ``cupy`` package imports (says nothing about a GPU being present)."""
    try:
        importlib.import_module("cupy")
    except Exception:  # ImportError, or a broken CUDA install raising at import time
        return False
    return True


def has_gpu() -> bool:
    """True when CuPy imports, a CUDA device answers, and CuPy's compiler (NVRTC) and cuBLAS work there."""
    return has_cupy() and gpu_problem() is None


def _cuda_extra(cupy: Any) -> str:
    """The fcn extra that brings CuPy and the CUDA libraries for this CuPy build's CUDA major version."""
    try:
        major = cupy.cuda.runtime.runtimeGetVersion() // 1000
    except Exception:
        major = 12
    return f'pip install "fcn-cifar[cuda{13 if major >= 13 else 12}]"'


@cache
def gpu_problem() -> str | None:
    """Why the ``cupy`` backend cannot be used here, in one sentence; ``None`` when it can.

    Probed in the order things break: CuPy imports; a CUDA device answers; NVRTC (CUDA's runtime compiler,
    which CuPy needs for every elementwise kernel) loads; cuBLAS (every matrix product) loads; a tiny kernel
    and a tiny matrix product run. The first failure is named, with the library and how to get it.
    """
    try:
        cupy = importlib.import_module("cupy")
    except Exception:
        return _CUPY_HINT
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cudaErrorNoDevice, cudaErrorInsufficientDriver, ...
        return (
            f"CuPy is installed but no CUDA GPU is visible (cupy.cuda.runtime.getDeviceCount() failed: {exc}). "
            'Check the NVIDIA driver and CUDA_VISIBLE_DEVICES, or use backend="numpy".'
        )
    if count < 1:
        return (
            "CuPy is installed but no CUDA GPU is visible (cupy.cuda.runtime.getDeviceCount() returned 0). "
            'Check the NVIDIA driver and CUDA_VISIBLE_DEVICES, or use backend="numpy".'
        )
    probes = (
        (
            "NVRTC (libnvrtc, CUDA's runtime compiler, needed for every CuPy kernel)",
            lambda: cupy.cuda.nvrtc.getVersion(),
        ),
        ("cuBLAS (libcublas, needed for every matrix product)", lambda: cupy.cuda.device.get_cublas_handle()),
        ("a tiny CuPy kernel", lambda: float((cupy.arange(4, dtype=cupy.float32) + 1).sum())),
        ("a tiny CuPy matrix product", lambda: float((cupy.ones((2, 2), dtype=cupy.float32) @ cupy.ones(2)).sum())),
    )
    for what, probe in probes:
        try:
            probe()
        except Exception as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            return (
                f"CuPy sees {count} GPU(s) but cannot use {what}: {detail}. Install the CUDA libraries with "
                f'{_cuda_extra(cupy)} (or a CUDA Toolkit of the same major version), or use backend="numpy".'
            )
    return None


@dataclass(frozen=True, eq=False)
class Backend:
    """An array namespace plus the device arrays are placed on.

    ``xp`` is the Array-API namespace (``array_api_compat.numpy`` for NumPy, ``array_api_compat.cupy``
    for CuPy, or a compliant module such as ``array_api_strict``); ``device`` is ``None`` for the
    namespace's default device, else the namespace's device object (ints and strings such as ``0``,
    ``"cuda:0"``, ``"cpu"`` or ``"device1"`` are converted by :func:`normalize_device`). ``fused`` chooses the
    fused kernels for :attr:`ops`: on CuPy :class:`fcn.ops.FusedCupyOps` (not yet verified on a GPU; ``None``
    follows ``$FCN_FUSED_KERNELS``), on NumPy the SciPy BLAS path of :class:`fcn.ops.NumpyOps` (``None``
    follows ``$FCN_BLAS``: on where SciPy is installed unless ``FCN_BLAS=0``).

    Backends compare equal, and hash alike, when they have the same namespace and the same device.
    """

    xp: Any
    device: Any = None
    fused: bool | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", normalize_device(self.xp, self.device))

    def _key(self) -> tuple[Any, Any]:
        return (self.xp, _device_key(self.xp, self.device))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Backend) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def name(self) -> str:
        """A short name: ``numpy``, ``cupy``, or the namespace's module name."""
        if array_api_compat.is_numpy_namespace(self.xp):
            return "numpy"
        if array_api_compat.is_cupy_namespace(self.xp):
            return "cupy"
        if array_api_compat.is_torch_namespace(self.xp):
            return "torch"
        return self.xp.__name__

    @property
    def is_numpy(self) -> bool:
        return array_api_compat.is_numpy_namespace(self.xp)

    @property
    def is_cupy(self) -> bool:
        return array_api_compat.is_cupy_namespace(self.xp)

    @cached_property
    def ops(self) -> Any:
        """The kernel table of this backend (:class:`fcn.ops.Ops` or its NumPy/CuPy subclass), made once."""
        return get_ops(self)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Place ``x`` (a host array, a scalar, or an array of this backend) on this backend.

        Host data is copied to the device; an array already here is returned as is (cast to ``dtype``
        when given). An array of another backend or device raises :class:`BackendError`.
        """
        return to_backend(x, self, dtype=dtype)

    def synchronize(self) -> None:
        """Wait for queued device work to finish (a no-op on the CPU). Use only around timings."""
        if self.is_cupy:
            import cupy

            cupy.cuda.get_current_stream().synchronize()

    def __repr__(self) -> str:
        dev = "" if self.device is None else f", device={self.device!r}"
        return f"Backend({self.name}{dev})"


def _cupy_namespace() -> ModuleType:
    if not has_cupy():
        raise BackendError(_CUPY_HINT)
    if not has_gpu():
        problem = gpu_problem()
        if problem is None or problem == _CUPY_HINT:  # (has_cupy/has_gpu replaced, e.g. in tests)
            problem = (
                "CuPy is installed but no CUDA GPU is visible. Check the NVIDIA driver and CUDA_VISIBLE_DEVICES, "
                'or use backend="numpy".'
            )
        raise BackendError(problem)
    return importlib.import_module("array_api_compat.cupy")


def get_backend(
    backend: str | ModuleType | Backend | None = None, device: Any = None, *, fused: bool | None = None
) -> Backend:
    """Resolve ``backend`` (a name, a namespace module, or a :class:`Backend`) to a :class:`Backend`.

    ``None`` and ``"numpy"`` give NumPy; ``"cupy"`` needs CuPy and a GPU; ``"array_api_strict"`` gives the
    strict reference namespace (pass ``device=array_api_strict.Device("device1")`` to emulate a device
    that refuses implicit host conversion, the way CuPy does). A module such as ``numpy`` or ``cupy`` is
    mapped to its array-api-compat namespace. ``fused=True`` selects the fused kernels: on CuPy the
    hand-written CUDA kernels (``None``: what ``$FCN_FUSED_KERNELS`` says, see :mod:`fcn.ops.cupy_ops`), on
    NumPy the SciPy BLAS path that folds elementwise work into the matrix products (``None``: what
    ``$FCN_BLAS`` says, on unless it is 0, see :mod:`fcn.ops.numpy_ops`); ``False`` the plain kernels.
    """
    be = _resolve_backend(backend, device)
    if fused is None or fused == be.fused:
        return be
    if fused and not (be.is_cupy or be.is_numpy):
        raise BackendError(f"fused=True needs the CuPy or NumPy backend; there are no fused kernels for {be.name}")
    return Backend(be.xp, be.device, fused=bool(fused))


def _resolve_backend(backend: str | ModuleType | Backend | None, device: Any) -> Backend:
    if isinstance(backend, Backend):
        return backend if device is None else Backend(backend.xp, device, fused=backend.fused)
    if backend is None:
        backend = "numpy"
    if isinstance(backend, str):
        name = backend.strip().lower().replace("-", "_")
        if name in ("numpy", "np", "cpu"):
            xp = array_api_compat.array_namespace(numpy.empty(0))
        elif name in ("cupy", "cp", "gpu", "cuda"):
            xp = _cupy_namespace()
        elif name == "torch":
            try:
                importlib.import_module("torch")
            except ImportError as exc:
                raise BackendError("PyTorch is not installed (fcn never needs it; it is one more namespace)") from exc
            xp = importlib.import_module("array_api_compat.torch")
        elif name == "array_api_strict":
            try:
                xp = importlib.import_module("array_api_strict")
            except ImportError as exc:
                raise BackendError(
                    'array_api_strict is not installed: pip install "fcn-cifar[dev]" or pip install array-api-strict'
                ) from exc
        else:
            raise BackendError(
                f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)} or an array namespace module"
            )
        return Backend(xp, device)
    if isinstance(backend, ModuleType):
        name = backend.__name__
        if name in ("numpy", "array_api_compat.numpy"):
            return get_backend("numpy", device)
        if name in ("cupy", "array_api_compat.cupy"):
            return get_backend("cupy", device)
        if name in ("torch", "array_api_compat.torch"):
            return get_backend("torch", device)
        if hasattr(backend, "__array_namespace_info__") or hasattr(backend, "__array_api_version__"):
            return Backend(backend, device)
        raise BackendError(f"module {name!r} is not an Array API namespace")
    raise BackendError(f"backend must be a name, a namespace module or a Backend, not {type(backend).__name__}")


_CUDA_NAME = re.compile(r"(?:cuda|gpu)(?::(\d+))?")


def normalize_device(xp: Any, device: Any) -> Any:
    """The namespace's own device object for ``device``; ``None`` (the default device) stays ``None``.

    - NumPy: ``"cpu"`` (its only device).
    - CuPy: a ``cupy.cuda.Device``, an index ``0``, or ``"cuda"``/``"cuda:0"``/``"gpu:0"``.
    - PyTorch: anything ``torch.device`` takes (``"cpu"``, ``"cuda:0"``, an index); ``"cuda"`` means the
      current CUDA device.
    - Other namespaces: one of ``xp.__array_namespace_info__().devices()``, or its name as a string
      (``"device1"`` for ``array_api_strict.Device("device1")``).

    A device that does not exist raises :class:`BackendError` listing the ones that do.
    """
    if device is None:
        return None
    if array_api_compat.is_numpy_namespace(xp):
        if device == "cpu" or str(device).lower() == "cpu":
            return "cpu"
        raise BackendError(f"NumPy arrays live on the CPU: device must be None or 'cpu', got {device!r}")
    if array_api_compat.is_cupy_namespace(xp):
        return _cupy_device(device)
    if array_api_compat.is_torch_namespace(xp):
        return _torch_device(device)
    if not isinstance(device, (str, numbers.Integral)):
        return device  # already the namespace's device object (checked when arrays are created on it)
    try:
        known = list(xp.__array_namespace_info__().devices())
    except Exception:
        return device  # the namespace cannot list its devices: pass the value through
    for d in known:
        if (
            device == d
            or str(device) in (str(d), repr(d), getattr(d, "name", None))
            or repr(d).endswith(f"({device!r})")
        ):
            return d
    raise BackendError(f"unknown device {device!r} for {xp.__name__}; its devices are {', '.join(map(repr, known))}")


def _cupy_device(device: Any) -> Any:
    import cupy

    if isinstance(device, cupy.cuda.Device):
        return device
    index: Any = None
    if isinstance(device, numbers.Integral) and not isinstance(device, bool):
        index = int(device)
    elif isinstance(device, str) and (m := _CUDA_NAME.fullmatch(device.strip().lower())):
        index = int(m.group(1)) if m.group(1) is not None else cupy.cuda.Device().id
    elif getattr(device, "type", None) == "cuda":  # e.g. a torch.device("cuda", 1)
        index = device.index if device.index is not None else cupy.cuda.Device().id
    if index is None:
        raise BackendError(f"CuPy arrays live on CUDA GPUs: device must be an index or 'cuda:N', got {device!r}")
    count = cupy.cuda.runtime.getDeviceCount()
    if not 0 <= index < count:
        raise BackendError(f"CUDA device {index} does not exist: this machine has {count} GPU(s) (0..{count - 1})")
    return cupy.cuda.Device(index)


def _torch_device(device: Any) -> Any:
    import torch

    try:
        dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BackendError(f"not a PyTorch device: {device!r} ({exc})") from None
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())  # arrays report their index: compare alike
    return dev


def _device_key(xp: Any, device: Any) -> Any:
    """A hashable value equal for equal devices (a CuPy ``Device`` itself is not hashable)."""
    if device is None:
        return "cpu" if array_api_compat.is_numpy_namespace(xp) else None
    if array_api_compat.is_cupy_namespace(xp) and hasattr(device, "id"):
        return ("cuda", int(device.id))
    if array_api_compat.is_torch_namespace(xp) and hasattr(device, "type"):
        return (device.type, device.index)
    try:
        hash(device)
    except TypeError:
        return repr(device)
    return device


def is_host_array(x: Any) -> bool:
    """True for data that lives in host memory as NumPy understands it (ndarray, scalar, list)."""
    return isinstance(x, (numpy.ndarray, numpy.generic, int, float, list, tuple))


def _describe(x: Any) -> str:
    try:
        ns = array_api_compat.array_namespace(x).__name__.replace("array_api_compat.", "")
        return f"{ns} array on {array_api_compat.device(x)!r}"
    except TypeError:
        return type(x).__name__


def namespace_of(*arrays: Any) -> Backend:
    """The :class:`Backend` that all ``arrays`` share; a clear :class:`BackendError` when they are mixed.

    ``None`` entries and Python scalars are ignored.
    """
    found = [a for a in arrays if a is not None and type(a) not in (int, float, bool)]
    if not found:
        raise BackendError("namespace_of() needs at least one array")
    if all(type(a) is numpy.ndarray for a in found):
        # the common CPU case, on every layer call: skip array-api-compat's general dispatch
        return _numpy_backend()
    try:
        xp = array_api_compat.array_namespace(*found)
    except TypeError as exc:
        kinds = sorted({_describe(a) for a in found})
        raise BackendError(
            f"arrays from different libraries were mixed: {', '.join(kinds)}. Move them to one backend first "
            "(fcn.to_host / Backend.asarray)."
        ) from exc
    devices: dict[Any, Any] = {}
    for a in found:
        dev = array_api_compat.device(a)
        devices.setdefault(_device_key(xp, dev), dev)
    if len(devices) > 1:
        raise BackendError(f"arrays on different devices were mixed: {', '.join(sorted(map(repr, devices.values())))}")
    return Backend(xp, next(iter(devices.values())))


@cache
def _numpy_backend() -> Backend:
    return Backend(array_api_compat.array_namespace(numpy.empty(0)), "cpu")


def to_host(x: Any) -> numpy.ndarray:
    """Copy ``x`` to a NumPy array in host memory (a no-op for NumPy input)."""
    if isinstance(x, numpy.ndarray):
        return x
    if is_host_array(x):
        return numpy.asarray(x)
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    try:
        return numpy.from_dlpack(x)
    except (BufferError, RuntimeError, TypeError, ValueError):
        # e.g. a device numpy cannot read: go through the namespace's own host device first
        xp = array_api_compat.array_namespace(x)
        info = xp.__array_namespace_info__()
        return numpy.asarray(xp.asarray(x, device=info.default_device(), copy=True))


def to_backend(x: Any, backend: Backend | str | None = None, dtype: Any = None) -> Any:
    """Put ``x`` on ``backend`` (host data is copied over once; arrays already there stay put).

    ``dtype`` may be a dtype of the target namespace or a name such as ``"float32"``. Arrays from another
    device library (e.g. a CuPy array given to a NumPy backend) raise :class:`BackendError`: fcn never moves
    device data behind your back; call :func:`to_host` first if that is what you mean.
    """
    be = get_backend(backend)
    xp = be.xp
    dt = resolve_dtype(xp, dtype) if dtype is not None else None
    if is_host_array(x):
        arr = numpy.asarray(x)
        if be.is_numpy:
            return arr if dt is None or arr.dtype == dt else arr.astype(dt)
        if not arr.flags.c_contiguous:  # (numpy.ascontiguousarray would turn a 0-d value into shape (1,))
            arr = numpy.ascontiguousarray(arr)
        return xp.asarray(arr, dtype=dt, device=be.device)
    got = namespace_of(x)
    if got.xp is not xp:
        raise BackendError(f"expected data on the {be.name} backend or in host memory, got a {_describe(x)}")
    if be.device is not None and _device_key(xp, got.device) != _device_key(xp, be.device):
        raise BackendError(f"expected data on device {be.device!r}, got a {_describe(x)}")
    if dt is not None and x.dtype != dt:
        x = xp.astype(x, dt)
    return x


def dtype_name(dtype: Any) -> str:
    """A dtype's short name (``"float32"``) whatever namespace it comes from."""
    name = getattr(dtype, "__name__", None) or getattr(dtype, "name", None) or str(dtype)
    return str(name).rsplit(".", 1)[-1]


def resolve_dtype(xp: Any, dtype: Any) -> Any:
    """The namespace's dtype object for ``dtype`` (a name like ``"float32"``, a NumPy dtype, or xp's own)."""
    if isinstance(dtype, str):
        name = dtype
    elif isinstance(dtype, type) and issubclass(dtype, numpy.generic) or isinstance(dtype, numpy.dtype):
        name = numpy.dtype(dtype).name
    else:
        return dtype
    try:
        return getattr(xp, name)
    except AttributeError:
        raise ValueError(f"dtype {dtype!r} is not available in {xp.__name__}") from None
