"""What the CuPy tables need of CUDA: kernel names, NVRTC compilation (once per device), multi-tensor
arguments, TF32, and two diagnostics (whether a call makes the host wait; what a captured graph holds).

The kernels themselves are in ``kernels/fused.cu``; every name the launch code uses is built here, and the CPU
test suite checks that the compiled module has each of them.
"""

from __future__ import annotations

import ctypes
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy

from .switches import env_switch

__all__ = [
    "KERNEL_NAMES",
    "COMPILE_OPTIONS",
    "ENV_FUSED",
    "ENV_TF32",
    "UPDATE_KERNEL_SCALARS",
    "fused_requested",
    "kernel_source",
    "get_kernel",
    "set_tf32",
    "tensor_list",
    "HostWaitReport",
    "host_waits",
    "graph_node_counts",
]

#: Environment variable that turns the fused kernels on for every CuPy backend.
ENV_FUSED = "FCN_FUSED_KERNELS"
#: Environment variable that lets cuBLAS use TF32 for float32 matrix products.
ENV_TF32 = "FCN_TF32"

#: Tensors per multi-tensor launch (sum of squares, update rules); more are split over several launches.
MT_MAX = 32
#: Elements each block of a multi-tensor launch covers.
CHUNK = 8192
#: Threads per block (a multiple of 32).
BLOCK = 256
#: Most blocks of the softmax kernel (rows beyond are walked by each warp in turn).
SOFTMAX_MAX_BLOCKS = 1024
#: NVRTC options; the same in the module the CuPy backend loads and in the CPU compile test.
COMPILE_OPTIONS = ("--std=c++17", f"-DFCN_MT_MAX={MT_MAX}", f"-DFCN_CHUNK={CHUNK}")
#: The CUDA source of every fused kernel.
SOURCE_PATH = Path(__file__).resolve().parent / "kernels" / "fused.cu"

FLOAT_SUFFIX = {"float32": "f32", "float64": "f64"}
LABEL_SUFFIX = {"int32": "i32", "int64": "i64"}
GATHER_WORDS = (16, 8, 4, 2, 1)
#: The hyperparameters each fused update kernel reads, in its scalar slots ``(a, b, eps, weight_decay)`` after the
#: learning rate ("" for an unused slot); its keys are the update kernels that have a fused version.
UPDATE_KERNEL_SCALARS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "sgd_momentum": ("momentum",),
    "rmsprop": ("decay_rate", "", "epsilon"),
    "adam": ("beta1", "beta2", "epsilon", "weight_decay"),
}
RULE_KERNELS = tuple(UPDATE_KERNEL_SCALARS)


# -- kernel names: the launch code below builds every name it launches with these functions -------------------


def gather_rows_kernel(word: int) -> str:
    return f"fcn_gather_rows_b{word}"


def gather_augment_kernel(dtype: str) -> str:
    return f"fcn_gather_augment_{FLOAT_SUFFIX[dtype]}"


def bias_relu_kernel(dtype: str) -> str:
    return f"fcn_bias_relu_{FLOAT_SUFFIX[dtype]}"


def relu_backward_kernel(dtype: str) -> str:
    return f"fcn_relu_backward_{FLOAT_SUFFIX[dtype]}"


def softmax_xent_kernel(dtype: str, label_dtype: str) -> str:
    return f"fcn_softmax_xent_{FLOAT_SUFFIX[dtype]}_{LABEL_SUFFIX[label_dtype]}"


def sum_squares_kernel(dtype: str) -> str:
    return f"fcn_sum_squares_{FLOAT_SUFFIX[dtype]}"


def update_kernel(rule: str, dtype: str) -> str:
    if rule not in RULE_KERNELS:
        raise KeyError(rule)
    return f"fcn_update_{rule}_{FLOAT_SUFFIX[dtype]}"


ADAM_ADVANCE_KERNEL = "fcn_adam_advance"
HOLD_STREAM_KERNEL = "fcn_hold_stream"

#: Every kernel this module launches (checked against the compiled module's entries by the CPU test suite).
KERNEL_NAMES: tuple[str, ...] = (
    *(gather_rows_kernel(w) for w in GATHER_WORDS),
    *(gather_augment_kernel(d) for d in FLOAT_SUFFIX),
    *(bias_relu_kernel(d) for d in FLOAT_SUFFIX),
    *(relu_backward_kernel(d) for d in FLOAT_SUFFIX),
    *(softmax_xent_kernel(d, lab) for d in FLOAT_SUFFIX for lab in LABEL_SUFFIX),
    *(sum_squares_kernel(d) for d in FLOAT_SUFFIX),
    *(update_kernel(r, d) for r in RULE_KERNELS for d in FLOAT_SUFFIX),
    ADAM_ADVANCE_KERNEL,
    HOLD_STREAM_KERNEL,
)
_KERNEL_SET = frozenset(KERNEL_NAMES)


def fused_requested(explicit: bool | None = None) -> bool:
    """Whether the fused kernels are wanted: ``explicit`` when given, else ``$FCN_FUSED_KERNELS`` (off when
    unset; see :func:`fcn.ops.switches.env_switch`)."""
    return env_switch(ENV_FUSED, False, explicit)


def kernel_source() -> str:
    """The CUDA source of the fused kernels."""
    return SOURCE_PATH.read_text(encoding="utf-8")


# -- compilation (lazy, once per device) ------------------------------------------------------------------------

_lock = threading.Lock()
_modules: dict[int, Any] = {}
_functions: dict[tuple[int, str], Any] = {}


def get_kernel(name: str) -> Any:
    """The compiled kernel ``name`` on the current device (the module is compiled on first use per device)."""
    if name not in _KERNEL_SET:
        raise KeyError(f"{name!r} is not a kernel of fcn/ops/kernels/fused.cu known to fcn.ops.cuda.KERNEL_NAMES")
    import cupy

    device = cupy.cuda.runtime.getDevice()
    fn = _functions.get((device, name))
    if fn is None:
        with _lock:
            module = _modules.get(device)
            if module is None:
                module = _modules[device] = cupy.RawModule(code=kernel_source(), options=COMPILE_OPTIONS)
            fn = _functions[(device, name)] = module.get_function(name)
    return fn


def set_tf32(enabled: bool) -> None:
    """Let cuBLAS use TF32 tensor cores for CuPy's float32 matrix products (process-wide), or stop it.

    TF32 keeps float32's range but rounds the products' inputs to 10 mantissa bits: several times the
    throughput on Ampere and later GPUs, at about 1e-3 relative error per product. float64 is unaffected.
    """
    import cupy
    from cupy._core import _routines_linalg as linalg

    linalg.set_compute_type(cupy.float32, linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT)


# -- multi-tensor argument ---------------------------------------------------------------------------------

# struct TensorList { i64 ptr[4][MT_MAX]; i64 size[MT_MAX]; i64 block_start[MT_MAX + 1]; i64 count; }
_TL_WORDS = 4 * MT_MAX + MT_MAX + (MT_MAX + 1) + 1
_TL_DTYPE = numpy.dtype((numpy.void, _TL_WORDS * 8))


def tensor_list(groups: Sequence[Sequence[Any]]) -> tuple[numpy.ndarray, int]:
    """Pack up to :data:`MT_MAX` tensors (``groups[0]``) and their companions (gradients, state arrays in
    ``groups[1:]``, at most 4 groups) into the kernel's by-value ``TensorList``; returns it and the blocks."""
    count = len(groups[0])
    if count > MT_MAX or len(groups) > 4:
        raise ValueError(f"a tensor list holds at most {MT_MAX} tensors in 4 groups")
    words = numpy.zeros(_TL_WORDS, dtype=numpy.int64)
    ptr = words[: 4 * MT_MAX].reshape(4, MT_MAX)
    size = words[4 * MT_MAX : 5 * MT_MAX]
    start = words[5 * MT_MAX : 6 * MT_MAX + 1]
    blocks = 0
    for i in range(count):
        for g, group in enumerate(groups):
            ptr[g, i] = group[i].data.ptr
        n = int(groups[0][i].size)
        size[i] = n
        start[i] = blocks
        blocks += -(-n // CHUNK)
    start[count:] = blocks
    words[-1] = count
    return words.view(_TL_DTYPE), blocks


# -- diagnostics -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostWaitReport:
    """What :func:`host_waits` saw: whether the host waited for the device while ``fn`` ran."""

    waited: bool
    seconds: float
    timeout_s: float


def host_waits(fn: Callable[[], Any], *, timeout_s: float = 10.0) -> tuple[HostWaitReport, Any]:
    """Run ``fn`` while a kernel holds the current stream; report whether the host waited for the device.

    The kernel (``fcn_hold_stream``) spins until the host releases it through a flag in mapped pinned memory,
    or ``timeout_s`` pass. If ``fn`` only queues work, it returns while the kernel still spins; if it waits for
    the device anywhere (a stream or device sync, ``.get()``, ``float()`` of a device scalar, a blocking
    copy), it can only return after the timeout, and the kernel has flagged the timeout. Keep ``fn`` to a few
    hundred launches: a full launch queue blocks the host too (and is reported as a wait). ``fn``'s work
    must go to the current stream (or to streams that wait for it). Returns ``(report, fn's result)``.
    """
    import cupy

    runtime = cupy.cuda.runtime
    kernel = get_kernel(HOLD_STREAM_KERNEL)  # compiled before the clock starts
    ptr = runtime.hostAlloc(8, runtime.hostAllocMapped)  # [release flag, timed-out flag]; same address on the GPU
    try:
        ctypes.memset(ptr, 0, 8)
        release, timed_out = ctypes.c_int.from_address(ptr), ctypes.c_int.from_address(ptr + 4)
        stream = cupy.cuda.get_current_stream()
        kernel((1,), (32,), (numpy.uint64(ptr), numpy.int64(int(timeout_s * 1e9)), numpy.uint64(ptr + 4)))
        start = time.perf_counter()
        try:
            result = fn()
        finally:
            seconds = time.perf_counter() - start
            waited = timed_out.value == 1
            release.value = 1
            stream.synchronize()
    finally:
        runtime.freeHost(ptr)
    return HostWaitReport(waited=waited, seconds=seconds, timeout_s=timeout_s), result


_NODE_TYPES = {
    0: "kernel",
    1: "memcpy",
    2: "memset",
    3: "host",
    4: "graph",
    5: "empty",
    6: "wait_event",
    7: "event_record",
    8: "ext_semas_signal",
    9: "ext_semas_wait",
    10: "mem_alloc",
    11: "mem_free",
    12: "batch_mem_op",
    13: "conditional",
}


def graph_node_counts(graph: Any) -> dict[str, Any]:
    """Nodes of a captured ``cupy.cuda.Graph`` by type (``kernel``, ``memcpy``, ``memset``, ...).

    Asks the CUDA driver (``cuGraphGetNodes``, ``cuGraphNodeGetType``); where that fails, counts the node
    types named in the graph's DOT description instead (``source`` says which).
    """
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        handle = ctypes.c_void_p(graph.graph)
        count = ctypes.c_size_t(0)
        if driver.cuGraphGetNodes(handle, None, ctypes.byref(count)) != 0:
            raise OSError("cuGraphGetNodes failed")
        nodes = (ctypes.c_void_p * count.value)()
        if driver.cuGraphGetNodes(handle, nodes, ctypes.byref(count)) != 0:
            raise OSError("cuGraphGetNodes failed")
        counts: dict[str, int] = {}
        for node in nodes:
            kind = ctypes.c_int(-1)
            if driver.cuGraphNodeGetType(ctypes.c_void_p(node), ctypes.byref(kind)) != 0:
                raise OSError("cuGraphNodeGetType failed")
            name = _NODE_TYPES.get(kind.value, f"type{kind.value}")
            counts[name] = counts.get(name, 0) + 1
        return {**counts, "total": int(count.value), "source": "driver"}
    except (OSError, AttributeError, TypeError):
        dot = graph.debug_dot_str()
        kinds = re.findall(r"\b(KERNEL|MEMCPY|MEMSET|HOST|EMPTY|EVENT_RECORD|WAIT_EVENT|MEM_ALLOC|MEM_FREE)\b", dot)
        counts = {}
        for k in kinds:
            counts[k.lower()] = counts.get(k.lower(), 0) + 1
        return {**counts, "total": sum(counts.values()), "source": "dot"}
