"""The CPU/GPU bridge: backend names -> array namespaces, namespace inference, host <-> device moves.

Everything else in fcn is written once against an array namespace ``xp`` (the Array API standard, as
served by array-api-compat for NumPy and CuPy, or any compliant library such as array-api-strict).
This module is the only place that knows which concrete libraries exist.

Two questions are kept apart (as thinc does): :func:`has_cupy` (the package imports) and
:func:`has_gpu` (a CUDA device is really there). CuPy can import on a machine with no usable GPU.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache, cached_property
from types import ModuleType
from typing import Any

import array_api_compat
import numpy

__all__ = [
    "Backend",
    "BackendError",
    "BACKENDS",
    "get_backend",
    "has_cupy",
    "has_gpu",
    "namespace_of",
    "to_backend",
    "to_host",
    "is_host_array",
]

#: Backend names accepted by ``backend=...`` (any Array-API namespace module works too).
BACKENDS = ("numpy", "cupy", "array_api_strict", "torch")

_CUPY_HINT = (
    'CuPy is not installed. Install the GPU extra that matches your CUDA driver: pip install "fcn[cuda12]" '
    '(CUDA 12.x) or pip install "fcn[cuda13]" (CUDA 13.x).'
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


@cache
def has_gpu() -> bool:
    """True when CuPy imports *and* at least one CUDA device answers."""
    if not has_cupy():
        return False
    import cupy

    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # cudaErrorNoDevice, driver too old, ...
        return False


@dataclass(frozen=True)
class Backend:
    """An array namespace plus the device arrays are placed on.

    ``xp`` is the Array-API namespace (``array_api_compat.numpy`` for NumPy, ``array_api_compat.cupy``
    for CuPy, or a compliant module such as ``array_api_strict``); ``device`` is ``None`` for the
    namespace's default device.
    """

    xp: Any
    device: Any = None

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
        from .ops import get_ops

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
        raise BackendError(
            "CuPy is installed but no CUDA GPU is visible (cupy.cuda.runtime.getDeviceCount() failed or "
            'returned 0). Check the driver and CUDA_VISIBLE_DEVICES, or use backend="numpy".'
        )
    return importlib.import_module("array_api_compat.cupy")


def get_backend(backend: str | ModuleType | Backend | None = None, device: Any = None) -> Backend:
    """Resolve ``backend`` (a name, a namespace module, or a :class:`Backend`) to a :class:`Backend`.

    ``None`` and ``"numpy"`` give NumPy; ``"cupy"`` needs CuPy and a GPU; ``"array_api_strict"`` gives the
    strict reference namespace (pass ``device=array_api_strict.Device("device1")`` to emulate a device
    that refuses implicit host conversion, the way CuPy does). A module such as ``numpy`` or ``cupy`` is
    mapped to its array-api-compat namespace.
    """
    if isinstance(backend, Backend):
        return backend if device is None else Backend(backend.xp, device)
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
                    'array_api_strict is not installed: pip install "fcn[test]" or pip install array-api-strict'
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
    devices = {repr(array_api_compat.device(a)): array_api_compat.device(a) for a in found}
    if len(devices) > 1:
        raise BackendError(f"arrays on different devices were mixed: {', '.join(sorted(devices))}")
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
        if be.is_numpy:
            arr = numpy.asarray(x)
            return arr if dt is None or arr.dtype == dt else arr.astype(dt)
        return xp.asarray(numpy.ascontiguousarray(x), dtype=dt, device=be.device)
    got = namespace_of(x)
    if got.xp is not xp:
        raise BackendError(f"expected data on the {be.name} backend or in host memory, got a {_describe(x)}")
    if be.device is not None and repr(got.device) != repr(be.device):
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
