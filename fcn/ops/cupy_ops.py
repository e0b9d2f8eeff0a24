"""CuPy's kernel tables: :class:`CupyOps` (the reference kernels as CuPy array expressions) and
:class:`FusedCupyOps`, which overrides the training step's hot spots with the CUDA kernels of
``kernels/fused.cu`` (compiled by NVRTC at run time, once per device; names and launch helpers in :mod:`.cuda`):

- ``take_rows``: the batch gather into a reused buffer, in words of up to 16 bytes; :meth:`FusedCupyOps.take_batch`
  gathers images and labels in one launch, optionally with a horizontal flip and a zero-padded random crop
  per sample (``flip``, ``shift``) for 2-D image data ``(N, C, H, W)``;
- ``bias_relu`` (in place), ``relu_backward`` (in place on ``dout``);
- ``softmax_cross_entropy``: softmax, loss and gradient in one pass (a warp per row), the mean loss reduced
  on the device, deterministically (no atomics on the value, no host read);
- ``sum_of_squares``: the L2 term of all weight matrices in one launch;
- ``update_all``: ``sgd``, ``sgd_momentum``, ``rmsprop``, ``adam`` (AdamW with ``weight_decay``) applied to all
  parameters in one launch (up to ``MT_MAX`` tensors per launch, passed by value: nothing uploaded).

Everything else is inherited from :class:`CupyOps`; inputs a kernel does not handle (another dtype,
non-contiguous arrays, ...) fall back to it, so results never depend on the path taken beyond rounding.

Opting in: set ``FCN_FUSED_KERNELS=1`` (then ``backend.ops`` of every CuPy backend is a :class:`FusedCupyOps`),
or pass ``fused=True`` to :func:`fcn.get_backend`. ``FCN_TF32=1`` (or ``FusedCupyOps(backend, tf32=True)``)
lets cuBLAS use TF32 tensor cores for float32 matrix products (about 10 mantissa bits: faster, less exact;
process-wide in CuPy; off by default).

Status: every kernel compiles with NVRTC for sm_80 and sm_90 in the CPU test suite; the numerical tests
against the plain kernels need a GPU and have not been run on one yet. Until they have, the fused path stays
opt-in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy

from .cuda import (
    ADAM_ADVANCE_KERNEL,
    BLOCK,
    ENV_TF32,
    FLOAT_SUFFIX,
    GATHER_WORDS,
    LABEL_SUFFIX,
    MT_MAX,
    SOFTMAX_MAX_BLOCKS,
    UPDATE_KERNEL_SCALARS,
    bias_relu_kernel,
    gather_augment_kernel,
    gather_rows_kernel,
    get_kernel,
    relu_backward_kernel,
    set_tf32,
    softmax_xent_kernel,
    sum_squares_kernel,
    tensor_list,
    update_kernel,
)
from .reference import Ops
from .switches import env_switch

__all__ = ["CupyOps", "FusedCupyOps"]


class CupyOps(Ops):
    """CuPy's table: the reference kernels (cuBLAS matrix products, CuPy elementwise kernels).

    The fused CUDA kernels are in the subclass :class:`FusedCupyOps` (opt-in, not yet verified on a GPU).
    """

    name = "cupy"

    def take_rows(self, x: Any, idx: Any, out: Any = None) -> Any:
        # cupy.take writes into a reused buffer when given one: no allocation per batch
        if out is None:
            return self.xp.take(x, idx, axis=0)
        import cupy

        return cupy.take(x, idx, axis=0, out=out)


#: A null pointer kernel argument. Never pass None: CuPy 14 sends it as a null pointer, but CuPy 13 as a pointer to
#: garbage, which a kernel that tests ``p != nullptr`` would then dereference.
NULL = numpy.uint64(0)


def _ptr(a: Any) -> Any:
    """``a`` as a kernel argument: the array, or :data:`NULL` for None."""
    return NULL if a is None else a


def _name(dtype: Any) -> str:
    return numpy.dtype(dtype).name


def _c_contiguous(*arrays: Any) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


class FusedCupyOps(CupyOps):
    """:class:`CupyOps` with fused CUDA kernels for the training step's hot spots.

    Opt-in (``FCN_FUSED_KERNELS=1`` or ``get_backend("cupy", fused=True)``) and not yet verified on a GPU.
    Each override handles C-contiguous float32/float64 arrays (labels int32/int64) and hands anything else
    to :class:`CupyOps`. No method reads a device value on the host or waits for the device.

    Args:
        backend: a CuPy :class:`fcn.Backend`.
        tf32: let cuBLAS use TF32 for float32 matrix products (``None``: ``$FCN_TF32``); see :func:`set_tf32`.
    """

    name = "cupy-fused"

    def __init__(self, backend: Any, *, tf32: bool | None = None):
        super().__init__(backend)
        import cupy

        self._cp = cupy
        self.tf32 = env_switch(ENV_TF32, False, tf32)
        if self.tf32:
            set_tf32(True)
        #: device array [learning_rate, t, 1 - beta1**t, 1 - beta2**t] read by the update kernels instead of
        #: their scalar arguments, while a CUDA graph is captured (see fcn.training.cuda_graph); None otherwise.
        self.device_hyper: Any = None
        self._scratch: dict[tuple[int, int], tuple[Any, Any]] = {}

    # -- helpers --------------------------------------------------------------------------------------------

    def _is_cupy(self, *arrays: Any) -> bool:
        return all(isinstance(a, self._cp.ndarray) for a in arrays)

    def _scratch_for(self, slots: int) -> tuple[Any, Any]:
        """Partial sums (``slots`` doubles at least) and the block counter of the current device and stream.

        Kernels on one stream run in order, so they can share them; the counter is reset by the kernel.
        """
        cp = self._cp
        key = (cp.cuda.runtime.getDevice(), cp.cuda.get_current_stream().ptr)
        partials, counter = self._scratch.get(key, (None, None))
        if partials is None or partials.size < slots:
            partials = cp.empty(max(slots, SOFTMAX_MAX_BLOCKS), dtype=cp.float64)
            counter = counter if counter is not None else cp.zeros(1, dtype=cp.uint32)
            self._scratch[key] = (partials, counter)
        return partials, counter

    @staticmethod
    def _grid_1d(n: int) -> int:
        return max(1, min(-(-n // BLOCK), 8 * 1024))

    # -- batch gather ---------------------------------------------------------------------------------------

    def _gatherable(self, x: Any, idx: Any) -> bool:
        return (
            self._is_cupy(x, idx)
            and x.ndim >= 1
            and idx.ndim == 1
            and idx.dtype.kind in "iu"
            and x.shape[0] > 0
            and _c_contiguous(x)
        )

    def _check_out(self, out: Any, shape: tuple[int, ...], dtype: Any, what: str) -> Any:
        if out is None:
            return self._cp.empty(shape, dtype=dtype)
        if not self._is_cupy(out) or tuple(out.shape) != shape or out.dtype != dtype or not _c_contiguous(out):
            got = f"{type(out).__name__} {getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}"
            raise ValueError(f"{what}: out must be a C-contiguous CuPy array {shape} {dtype}, got {got}")
        return out

    def _index64(self, idx: Any) -> Any:
        cp = self._cp
        return idx if idx.dtype == cp.int64 and _c_contiguous(idx) else cp.ascontiguousarray(idx, dtype=cp.int64)

    def take_rows(self, x: Any, idx: Any, out: Any = None) -> Any:
        """``x[idx, ...]`` along axis 0, into ``out`` when given (indices wrap modulo ``len(x)``, as in cupy.take)."""
        if not self._gatherable(x, idx):
            return super().take_rows(x, idx, out)
        out = self._check_out(out, (idx.shape[0], *x.shape[1:]), x.dtype, "take_rows")
        self._gather(x, self._index64(idx), out, None, None)
        return out

    def take_batch(
        self, x: Any, y: Any, idx: Any, *, flip: Any = None, shift: Any = None, out: tuple[Any, Any] | None = None
    ) -> tuple[Any, Any]:
        """Rows ``idx`` of the images ``x`` and of the labels ``y``, in one launch: ``(x[idx], y[idx])``.

        With ``flip`` (``(B,)`` bool/uint8: mirror sample ``r`` left-right) and/or ``shift`` (``(B, 2)`` int32:
        ``(dy, dx)`` per sample), ``x`` must be ``(N, C, H, W)`` float32/float64 and each sample becomes
        ``out[r, c, i, j] = x[idx[r], c, i + dy, (W - 1 - j if flip else j) + dx]``, zero outside the image: a
        random crop of the image padded with ``p`` zeros (``dy, dx = offset - p``) followed by a horizontal
        flip. ``out``: ``(x_out, y_out)`` buffers to fill (fresh arrays otherwise).
        """
        cp = self._cp
        fusable = self._gatherable(x, idx) and self._is_cupy(y) and y.ndim == 1 and y.shape[0] == x.shape[0]
        if not fusable:
            if flip is not None or shift is not None:
                raise ValueError("take_batch: flip/shift need CuPy x (C-contiguous), y, idx, with len(x) == len(y)")
            x_out, y_out = (None, None) if out is None else out
            return self.take_rows(x, idx, x_out), self.take_rows(y, idx, y_out)
        n = idx.shape[0]
        x_out = self._check_out(None if out is None else out[0], (n, *x.shape[1:]), x.dtype, "take_batch")
        y_out = self._check_out(None if out is None else out[1], (n,), y.dtype, "take_batch")
        y_src = y if _c_contiguous(y) else cp.ascontiguousarray(y)
        idx = self._index64(idx)
        if flip is None and shift is None:
            self._gather(x, idx, x_out, y_src, y_out)
            return x_out, y_out
        if x.ndim != 4 or _name(x.dtype) not in FLOAT_SUFFIX:
            raise ValueError(f"take_batch: flip/shift need float images (N, C, H, W), got {x.shape} {x.dtype}")
        if flip is not None:
            if not self._is_cupy(flip) or tuple(flip.shape) != (n,):
                raise ValueError(f"take_batch: flip must be a CuPy array of shape ({n},)")
            flip = cp.ascontiguousarray(flip, dtype=cp.uint8)
        if shift is not None:
            if not self._is_cupy(shift) or tuple(shift.shape) != (n, 2):
                raise ValueError(f"take_batch: shift must be a CuPy array of shape ({n}, 2)")
            shift = cp.ascontiguousarray(shift, dtype=cp.int32)
        if n == 0:
            return x_out, y_out
        _, c, h, w = x.shape
        row = c * h * w
        grid = (max(1, min(-(-row // BLOCK), 65535)), min(n, 65535))
        get_kernel(gather_augment_kernel(_name(x.dtype)))(
            grid,
            (BLOCK,),
            (x, numpy.int64(x.shape[0]), numpy.int32(c), numpy.int32(h), numpy.int32(w), idx, numpy.int64(n), x_out,
             _ptr(flip), _ptr(shift), y_src, y_out, numpy.int32(y.itemsize)),
        )  # fmt: skip
        return x_out, y_out

    def _gather(self, x: Any, idx: Any, out: Any, labels: Any, labels_out: Any) -> None:
        n = idx.shape[0]
        if n == 0:
            return
        row_bytes = x.nbytes // x.shape[0]
        word = next(
            w
            for w in GATHER_WORDS
            if row_bytes % w == 0 and x.data.ptr % w == 0 and out.data.ptr % w == 0 and w <= max(row_bytes, 1)
        )
        units = row_bytes // word
        grid = (max(1, min(-(-units // BLOCK), 65535)), min(n, 65535))
        lab_bytes = 0 if labels is None else labels.itemsize
        get_kernel(gather_rows_kernel(word))(
            grid,
            (BLOCK,),
            (x, numpy.int64(x.shape[0]), numpy.int64(units), idx, numpy.int64(n), out, _ptr(labels),
             _ptr(labels_out), numpy.int32(lab_bytes)),
        )  # fmt: skip

    # -- elementwise ----------------------------------------------------------------------------------------

    def bias_relu(self, h: Any, b: Any) -> Any:
        """``relu(h + b)`` for ``h (N, M)``, ``b (M,)``, computed in place in ``h`` (returned)."""
        if not (
            self._is_cupy(h, b)
            and h.ndim == 2
            and b.ndim == 1
            and b.shape[0] == h.shape[1]
            and h.dtype == b.dtype
            and _name(h.dtype) in FLOAT_SUFFIX
            and _c_contiguous(h, b)
        ):
            return super().bias_relu(h, b)
        rows, cols = h.shape
        if h.size:
            threads = min(BLOCK, 32 * -(-cols // 32))
            grid = (max(1, min(-(-cols // threads), 65535)), min(rows, 65535))
            get_kernel(bias_relu_kernel(_name(h.dtype)))(grid, (threads,), (h, b, numpy.int64(rows), numpy.int64(cols)))
        return h

    def relu_backward(self, dout: Any, y: Any) -> Any:
        """``dout * (y > 0)``, computed in place in ``dout`` (returned)."""
        if not (
            self._is_cupy(dout, y)
            and dout.shape == y.shape
            and dout.dtype == y.dtype
            and _name(dout.dtype) in FLOAT_SUFFIX
            and _c_contiguous(dout, y)
        ):
            return super().relu_backward(dout, y)
        if dout.size:
            get_kernel(relu_backward_kernel(_name(dout.dtype)))(
                (self._grid_1d(dout.size),), (BLOCK,), (dout, y, numpy.int64(dout.size))
            )
        return dout

    # -- loss -----------------------------------------------------------------------------------------------

    def softmax_cross_entropy(self, scores: Any, y: Any) -> tuple[Any, Any]:
        """Mean softmax cross-entropy and ``dscores = (softmax - onehot) / N`` in one launch.

        A label outside ``[0, C)`` gives a NaN loss (the training loop reports it as divergence) instead of
        reading out of bounds; the models check labels before they get here.
        """
        cp = self._cp
        if not (
            self._is_cupy(scores, y)
            and scores.ndim == 2
            and y.ndim == 1
            and y.shape[0] == scores.shape[0]
            and scores.shape[0] > 0
            and _name(scores.dtype) in FLOAT_SUFFIX
            and _name(y.dtype) in LABEL_SUFFIX
            and _c_contiguous(scores, y)
        ):
            return super().softmax_cross_entropy(scores, y)
        n, c = scores.shape
        dscores = cp.empty_like(scores)
        loss = cp.empty((), dtype=scores.dtype)
        blocks = max(1, min(-(-n // (BLOCK // 32)), SOFTMAX_MAX_BLOCKS))
        partials, counter = self._scratch_for(blocks)
        get_kernel(softmax_xent_kernel(_name(scores.dtype), _name(y.dtype)))(
            (blocks,), (BLOCK,), (scores, y, numpy.int64(n), numpy.int32(c), dscores, loss, partials, counter)
        )
        return loss, dscores

    def sum_of_squares(self, arrays: Sequence[Any]) -> Any:
        """``sum_i sum(a_i ** 2)`` of all ``arrays`` in one launch (per :data:`MT_MAX` arrays), in double."""
        arrays = list(arrays)
        if not (
            arrays
            and self._is_cupy(*arrays)
            and len({a.dtype for a in arrays}) == 1
            and _name(arrays[0].dtype) in FLOAT_SUFFIX
            and _c_contiguous(*arrays)
        ):
            return super().sum_of_squares(arrays)
        cp = self._cp
        dtype = arrays[0].dtype
        out = cp.empty((), dtype=dtype)
        launches = []
        for i in range(0, len(arrays), MT_MAX):
            tl, blocks = tensor_list([arrays[i : i + MT_MAX]])
            if blocks:
                launches.append((tl, blocks))
        total = sum(blocks for _, blocks in launches)
        if total == 0:
            out.fill(0)
            return out
        partials, counter = self._scratch_for(total)
        kernel = get_kernel(sum_squares_kernel(_name(dtype)))
        slot = 0
        for k, (tl, blocks) in enumerate(launches):
            finalize = numpy.int32(k == len(launches) - 1)
            kernel((blocks,), (BLOCK,), (tl, partials, numpy.int64(slot), numpy.int64(total), counter, finalize, out))
            slot += blocks
        return out

    # -- update rules ---------------------------------------------------------------------------------------

    def update_all(
        self, kernel: str, params: Sequence[Any], grads: Sequence[Any], states: Sequence[Sequence[Any]], hyper: dict
    ) -> None:
        """Apply the update kernel ``kernel`` to every parameter in place, one launch per ``MT_MAX`` parameters.

        ``states[i]``: parameter ``i``'s state arrays in the kernel's order; ``hyper`` holds the per-array
        method's keyword arguments (for ``adam``, ``t`` is the step count after this step). The arithmetic is
        the reference's, element by element (up to rounding).
        """
        params, grads, states = list(params), list(grads), [list(s) for s in states]
        slots = UPDATE_KERNEL_SCALARS.get(kernel)
        if slots is None or not params:
            return super().update_all(kernel, params, grads, states, hyper)
        unknown = set(hyper) - {"learning_rate", "t", *slots} - {""}
        if unknown:
            raise TypeError(f"update kernel {kernel!r} got unexpected hyperparameter(s) {', '.join(sorted(unknown))}")
        state_arrays = [list(group) for group in zip(*states, strict=True)] if states and states[0] else []
        everything = [params, grads, *state_arrays]
        dtype = params[0].dtype
        if not (
            len(grads) == len(params) == len(states)
            and all(self._is_cupy(*group) for group in everything)
            and _name(dtype) in FLOAT_SUFFIX
            and all(a.dtype == dtype and _c_contiguous(a) for group in everything for a in group)
            and all(group[i].shape == params[i].shape for group in everything for i in range(len(params)))
        ):
            return super().update_all(kernel, params, grads, states, hyper)
        values = [float(hyper.get(name, 0.0)) if name else 0.0 for name in slots]
        a, b, eps, wd = (values + [0.0] * 4)[:4]
        bias1 = bias2 = 1.0
        if "t" in hyper:
            t = int(hyper["t"])
            bias1, bias2 = 1 - a**t, 1 - b**t  # Python floats, as the reference computes them
        device_hyper = self.device_hyper
        if device_hyper is not None and kernel == "adam":
            get_kernel(ADAM_ADVANCE_KERNEL)((1,), (32,), (device_hyper, numpy.float64(a), numpy.float64(b)))
        launch = get_kernel(update_kernel(kernel, _name(dtype)))
        lr = float(hyper["learning_rate"])
        scalars = tuple(numpy.float64(v) for v in (lr, a, b, eps, wd, bias1, bias2))
        for i in range(0, len(params), MT_MAX):
            tl, blocks = tensor_list([group[i : i + MT_MAX] for group in everything])
            if blocks:
                launch((blocks,), (BLOCK,), (tl, *scalars, _ptr(device_hyper)))
