"""A stand-in ``cupy`` module for tests: arrays in host memory, kernels run on the CPU emulation.

Only what :class:`fcn.ops.FusedCupyOps` uses is here. Arrays are :class:`ndarray`, a NumPy subclass whose
``.data.ptr`` is the host address of the first element (inside a guard-banded buffer, checked after every
launch). ``RawModule`` compiles the source with g++ (:mod:`.build`); its kernels convert their arguments as
CuPy's ``cupy/cuda/function.pyx`` does (a CuPy array as its pointer, a NumPy scalar at its size, a size-one
NumPy array (a struct) by value, Python numbers as int64/float64), except that ``None`` is refused by default:
CuPy 14 passes it as a null pointer, CuPy 13 as a pointer to garbage, so code that must run on both never
passes it. Every launch is logged with each argument's size next to the kernel's parameter list, and a size
that differs from the parameter's fails the launch.

Inject it with ``monkeypatch.setitem(sys.modules, "cupy", make_module())``, in tests only.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import numpy

from . import emulated
from .checks import Memory

_SCALAR_TYPES = {numpy.dtype(c).type for c in "?bhilqBHILQefdFD"}


class ArgumentMismatch(AssertionError):
    """A kernel argument whose size is not its parameter's."""


@dataclass
class Launch:
    """One logged launch: the kernel, the grid and block as CuPy hands them on, (parameter, bytes) per argument."""

    name: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: list[tuple[str, int, int]] = field(default_factory=list)  # (parameter, its size, argument size)


class _Pointer:
    def __init__(self, ptr: int):
        self.ptr = ptr


class ndarray(numpy.ndarray):
    """A "device" array: NumPy memory, with CuPy's ``.data.ptr`` and ``.get()``."""

    @property
    def data(self):  # type: ignore[override]
        return _Pointer(self.ctypes.data)

    def get(self) -> numpy.ndarray:
        return numpy.array(self, copy=True).view(numpy.ndarray)


class Stand:
    """The state of one stand-in module: its memory, its launch log, its strictness about ``None``."""

    def __init__(self, reject_none: bool = True):
        self.memory = Memory()
        self.launches: list[Launch] = []
        self.reject_none = reject_none

    def empty(self, shape, dtype=numpy.float64) -> ndarray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return self.memory.empty(shape, dtype).view(ndarray)

    def convert(self, x) -> bytes:
        """One kernel argument's bytes, as CuPy's ``_pointer`` makes them (None aside)."""
        if x is None:
            if self.reject_none:
                raise TypeError("None as a kernel argument: CuPy 13 passes a garbage pointer; pass numpy.uint64(0)")
            return bytes(8)
        if isinstance(x, ndarray):
            return numpy.uint64(x.data.ptr).tobytes()
        if isinstance(x, numpy.ndarray):
            if x.size != 1:
                raise TypeError(f"a numpy.ndarray of shape {x.shape} as a kernel argument (only size one, by value)")
            return x.tobytes()
        if type(x) in _SCALAR_TYPES:
            return x.tobytes()
        for kind, dtype in (
            (bool, numpy.bool_),
            (int, numpy.int64),
            (float, numpy.float64),
            (complex, numpy.complex128),
        ):
            if isinstance(x, kind):
                return dtype(x).tobytes()
        raise TypeError(f"Unsupported type {type(x)}")


def _dims(d) -> tuple[int, int, int]:
    if isinstance(d, int):
        d = (d,)
    if not isinstance(d, tuple):
        raise TypeError(f"grid and block must be tuples, got {type(d).__name__}")
    return tuple(max(1, int(v)) for v in (d + (1, 1))[:3])  # as CuPy: a 0 becomes 1


class RawKernel:
    def __init__(self, stand: Stand, module, name: str):
        self.stand, self.module, self.name = stand, module, name

    def __call__(self, grid, block, args, shared_mem: int = 0, stream=None) -> None:
        params = self.module.params[self.name]
        grid, block = _dims(grid), _dims(block)
        data = [self.stand.convert(a) for a in args]
        # zip stops at the shorter list: a wrong argument count is reported below, with the sizes
        sizes = [(f"{p.ctype} {p.name}", p.size, len(d)) for p, d in zip(params, data, strict=False)]
        log = Launch(self.name, grid, block, sizes)
        self.stand.launches.append(log)
        wrong = [a for a in log.args if a[1] != a[2]]
        if len(data) != len(params) or wrong:
            raise ArgumentMismatch(f"{self.name}: {len(data)} arguments for {len(params)} parameters; sizes {wrong}")
        self.module.launch(self.name, grid, block, data)
        self.stand.memory.check()


class RawModule:
    def __init__(self, stand: Stand, code: str, options=()):
        self.stand = stand
        self.options = tuple(options)
        self.module = emulated(code, options=self.options)  # its -D options, as NVRTC would get them

    def get_function(self, name: str) -> RawKernel:
        if name not in self.module.params:
            raise KeyError(f"{name} is not an emulated kernel")
        return RawKernel(self.stand, self.module, name)


def make_module(reject_none: bool = True) -> types.ModuleType:
    """A fresh stand-in ``cupy`` module (its :class:`Stand` is ``module.stand``)."""
    stand = Stand(reject_none)
    cp = types.ModuleType("cupy")
    cp.stand = stand
    cp.ndarray = ndarray
    for name in ("float32", "float64", "int32", "int64", "uint8", "uint32", "bool_"):
        setattr(cp, name, getattr(numpy, name))
    cp.empty = stand.empty

    def zeros(shape, dtype=numpy.float64):
        out = stand.empty(shape, dtype)
        out.fill(0)
        return out

    def asarray(a, dtype=None):
        if isinstance(a, ndarray) and (dtype is None or a.dtype == dtype):
            return a
        host = numpy.asarray(a, dtype=dtype)
        out = stand.empty(host.shape, host.dtype)
        out[...] = host
        return out

    def ascontiguousarray(a, dtype=None):
        if isinstance(a, ndarray) and a.flags.c_contiguous and (dtype is None or a.dtype == dtype):
            return a
        return asarray(numpy.ascontiguousarray(numpy.asarray(a).view(numpy.ndarray), dtype=dtype))

    def take(x, idx, axis=None, out=None):
        result = numpy.take(numpy.asarray(x).view(numpy.ndarray), numpy.asarray(idx), axis=axis, mode="wrap")
        if out is None:
            return asarray(result)
        out[...] = result
        return out

    cp.zeros, cp.asarray, cp.ascontiguousarray, cp.take = zeros, asarray, ascontiguousarray, take
    cp.empty_like = lambda a, dtype=None: stand.empty(a.shape, dtype or a.dtype)
    cp.RawModule = lambda code, options=(), **kw: RawModule(stand, code, options)
    stream = types.SimpleNamespace(ptr=0, synchronize=lambda: None)
    cp.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: 0), get_current_stream=lambda: stream
    )
    return cp
