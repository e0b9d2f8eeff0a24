"""NumPy's kernel table: the reference arithmetic with ``out=`` and in-place forms, no Array-API wrappers.

Where SciPy is installed, the dense kernels call BLAS directly (``scipy.linalg.blas``) to fold elementwise
work into the matrix products, which NumPy's ``matmul`` cannot (it always computes ``C = A @ B``):

- ``affine_forward`` / ``affine_relu_forward``: the output starts as the broadcast bias and ``?gemm`` adds
  ``x @ w`` onto it (``beta = 1``): the bias costs no pass of its own (the pass that would zero the output
  writes the bias instead);
- ``affine_backward`` with ``reg > 0``: ``dw`` starts as ``reg * w`` and ``?gemm`` adds ``x.T @ dout``: the
  L2 term needs no pass over ``dw`` after the product, and no ``reg * w`` temporary;
- ``sgd`` / ``sgd_momentum``: ``?axpy`` (``w += a * dw``) with no ``lr * dw`` temporary;
- ``affine_backward_sgd`` (plain SGD folded into the backward pass): ``?gemm`` writes the step into the
  weights, ``w <- (1 - lr * reg) * w - lr * x.T @ dout`` (``alpha = -lr``, ``beta = 1 - lr * reg``): the
  weight gradient is never stored and the update costs no pass over ``w`` of its own. (NumPy alone folds
  less: the rate scales ``dout`` before the product, then one in-place pass decays ``w`` and one subtracts.)

The other products of a step (``dx``, the L2 term's dot products) go through the same library, so that one
BLAS thread pool serves the whole step: NumPy and SciPy each load their own OpenBLAS, whose threads spin for a
while after each call, and two pools taking turns on the same cores slow each other down.

C-ordered arrays are handed to the Fortran BLAS as their transposes (a C-ordered ``(N, M)`` array is an
F-ordered ``(M, N)`` one), so nothing is copied. Without SciPy the same kernels run in NumPy alone; both give
the reference's results to rounding.

The BLAS path is the default where SciPy is installed: ``FCN_BLAS=0`` (or ``NumpyOps(backend, blas=False)``,
``fcn.get_backend("numpy", fused=False)``) keeps every product in NumPy. Its results equal NumPy's to rounding,
not bit for bit, so a run resumed with and without SciPy installed continues on slightly different numbers.
Measured in ``benchmarks/results/`` (epochs of 98 steps): level with NumPy alone in float32 (which folds plain
SGD too, less far), 3-17 % faster in float64. One caveat: each library has its own BLAS thread pool, whose idle
threads spin for a while after each call; a program that alternates large NumPy products of its own with fcn's
steps lets the two pools compete for the cores.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy

from .reference import Ops
from .switches import env_switch

try:  # optional: the fcn-cifar[fast] extra
    from scipy.linalg import blas as scipy_blas
except ImportError:  # pragma: no cover - depends on the environment
    scipy_blas = None

__all__ = ["NumpyOps", "blas_requested", "scipy_blas"]

#: Environment variable that turns the SciPy BLAS path off (0/false/no/off) or on (1/true/yes/on, the default).
ENV_BLAS = "FCN_BLAS"

#: Matrix products of fewer multiply-adds than this take NumPy's ``matmul``: its call costs less than SciPy's
#: argument checks, and a product this small runs on one thread, so no second thread pool wakes up.
SMALL_PRODUCT = 1 << 16

#: The BLAS routines per dtype: (gemm, axpy, scal, dot). Other dtypes (float16, ...) take the NumPy path.
_BLAS = {}
if scipy_blas is not None:
    _BLAS = {
        numpy.dtype(numpy.float32): (scipy_blas.sgemm, scipy_blas.saxpy, scipy_blas.sscal, scipy_blas.sdot),
        numpy.dtype(numpy.float64): (scipy_blas.dgemm, scipy_blas.daxpy, scipy_blas.dscal, scipy_blas.ddot),
    }


def blas_requested(explicit: bool | None = None) -> bool:
    """Whether the BLAS path is wanted: ``explicit`` when given, else ``$FCN_BLAS`` (on when unset; see
    :func:`fcn.ops.switches.env_switch`)."""
    return env_switch(ENV_BLAS, True, explicit)


class NumpyOps(Ops):
    """NumPy overrides: the same arithmetic with ``out=`` and in-place forms, and no Array-API wrappers.

    On small arrays the wrappers' per-call cost dominates; on large ones the saved temporaries do.
    ``blas=True`` uses SciPy's BLAS bindings where SciPy is installed, ``blas=False`` never does; ``None``
    (the default) follows ``$FCN_BLAS`` (:func:`blas_requested`: on unless set to 0/false/no/off).
    """

    name = "numpy"

    def __init__(self, backend: Any, *, blas: bool | None = None):
        super().__init__(backend)
        self._aranges: dict[int, numpy.ndarray] = {}
        self.blas = dict(_BLAS) if blas_requested(blas) else {}
        self._local = threading.local()  # per-thread scratch: one table may serve several training threads
        self._zero_vectors: dict[numpy.dtype, numpy.ndarray] = {}  # read-only: shared by all threads

    def _routines(self, *arrays: Any, work: int = SMALL_PRODUCT) -> tuple[Any, Any, Any, Any] | None:
        """``(gemm, axpy, scal, dot)`` when every array is C-contiguous of one BLAS dtype, else ``None``.

        ``work``: the multiply-adds of the product about to be made (``None`` below :data:`SMALL_PRODUCT`).
        """
        if not self.blas or work < SMALL_PRODUCT:
            return None
        dtype = arrays[0].dtype
        if any(a.dtype != dtype or not a.flags.c_contiguous or not a.size for a in arrays):
            return None
        return self.blas.get(dtype)

    def _mask(self, shape: tuple[int, ...]) -> numpy.ndarray:
        """A boolean scratch array of ``shape``, reused by this thread (no per-call allocation)."""
        masks = getattr(self._local, "masks", None)
        if masks is None:
            masks = self._local.masks = {}
        mask = masks.get(shape)
        if mask is None:
            mask = masks[shape] = numpy.empty(shape, dtype=bool)
        return mask

    def _zeros_like(self, x: numpy.ndarray) -> numpy.ndarray:
        """A read-only array of zeros of ``x``'s shape and dtype: a view of one zero vector per dtype, kept at
        the largest size asked for.

        ReLU is ``maximum(x, zeros)`` rather than ``maximum(x, 0)``: NumPy (2.4) runs ``maximum`` against a
        scalar in a loop about 5x slower than its SIMD loop over two arrays, which runs at the speed of a copy.
        ``numpy.zeros`` of a large size maps pages the OS backs with one shared zero page until written, so the
        vector costs (almost) no memory, and reading it hits cache.
        """
        zeros = self._zero_vectors.get(x.dtype)
        if zeros is None or zeros.size < x.size:
            zeros = numpy.zeros(x.size, dtype=x.dtype)
            zeros.flags.writeable = False
            self._zero_vectors[x.dtype] = zeros
        return zeros[: x.size].reshape(x.shape)

    def _relu_in_place(self, h: numpy.ndarray) -> numpy.ndarray:
        return numpy.maximum(h, self._zeros_like(h), out=h)

    # -- dense layers -----------------------------------------------------------------------------------

    def affine_forward(self, x: Any, w: Any, b: Any) -> Any:
        routines = self._routines(x, w, b, work=x.shape[0] * x.shape[1] * w.shape[1])
        if routines is None:
            out = x @ w
            out += b
            return out
        # out (N, M) starts as the bias; gemm adds x @ w in its own pass (as out.T = w.T @ x.T, F-ordered)
        out = numpy.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
        out[...] = b
        routines[0](1.0, w.T, x.T, beta=1.0, c=out.T, overwrite_c=1)
        return out

    def affine_relu_forward(self, x: Any, w: Any, b: Any) -> Any:
        return self._relu_in_place(self.affine_forward(x, w, b))

    def affine_backward(
        self, dout: Any, x: Any, w: Any, need_dx: bool = True, reg: float = 0.0
    ) -> tuple[Any, Any, Any]:
        routines = self._routines(dout, x, w, work=x.size * dout.shape[1])
        db = dout.sum(axis=0)
        if routines is None:
            dw = x.T @ dout
            if reg:
                dw += reg * w
            return (dout @ w.T if need_dx else None), dw, db
        gemm = routines[0]
        # dw (D, M) starts as reg * w (or is made by gemm); gemm adds x.T @ dout (as dw.T = dout.T @ x, F-ordered)
        if reg:
            dw = numpy.multiply(w, reg)
            gemm(1.0, dout.T, x.T, beta=1.0, c=dw.T, trans_b=1, overwrite_c=1)
        else:
            dw = gemm(1.0, dout.T, x.T, trans_b=1).T
        # dx (N, D) = dout @ w.T, made F-ordered as dx.T = w @ dout.T (w.T is w, F-ordered)
        dx = gemm(1.0, w.T, dout.T, trans_a=1).T if need_dx else None
        return dx, dw, db

    #: plain SGD is folded into the backward pass on both paths (:meth:`affine_backward_sgd`)
    fuses_sgd = True

    def affine_backward_sgd(
        self, dout: Any, x: Any, w: Any, *, learning_rate: float, need_dx: bool = True, reg: float = 0.0
    ) -> tuple[Any, Any]:
        db = dout.sum(axis=0)
        routines = self._routines(dout, x, w, work=x.size * dout.shape[1])
        if routines is None:
            dx = dout @ w.T if need_dx else None  # from w before the step
            # w <- (1 - lr * reg) * w - x.T @ (lr * dout): the rate scales the (N, M) operand, not the (D, M)
            # product, and no reg * w or lr * dw temporary is made (3072 x 1024 weights on a 2-core AMD EPYC:
            # 8.7 ms vs 9.9 ms in float32, 21.8 vs 27.4 in float64, for a 7.8 / 18.5 ms product)
            step = x.T @ (dout * learning_rate)
            if reg:
                w *= 1.0 - learning_rate * reg
            w -= step
            return dx, db
        gemm = routines[0]
        dx = gemm(1.0, w.T, dout.T, trans_a=1).T if need_dx else None  # from w before the step
        # w <- (1 - lr * reg) * w - lr * x.T @ dout: the step is the product's alpha and beta, written into w
        # (as w.T, F-ordered): no dw array, no pass for the L2 term, no pass for the update
        gemm(-learning_rate, dout.T, x.T, beta=1.0 - learning_rate * reg, c=w.T, trans_b=1, overwrite_c=1)
        return dx, db

    def bias_relu(self, h: Any, b: Any) -> Any:
        numpy.add(h, b, out=h)
        return self._relu_in_place(h)

    def relu(self, x: Any) -> Any:
        return numpy.maximum(x, self._zeros_like(x))

    def relu_backward(self, dout: Any, y: Any) -> Any:
        mask = self._mask(dout.shape)
        numpy.greater(y, 0, out=mask)
        return numpy.multiply(dout, mask, out=dout)

    def softmax_cross_entropy(self, scores: Any, y: Any) -> tuple[Any, Any]:
        # Worked on a (C, N) copy: the reductions over each row's C classes (C is small, 10 for CIFAR) become
        # elementwise operations between C contiguous rows of N, which NumPy vectorises; over axis 1 of (N, C)
        # every row is a loop of C steps (the row maximum alone took a third of the kernel's time at 500 x 10).
        n = scores.shape[0]
        rows = self._arange(n)
        shifted = scores.T.copy()  # (C, N), C-ordered: a copy even of an F-ordered input, which stays untouched
        shifted -= shifted.max(axis=0)
        picked = shifted[y, rows].sum()
        exp = numpy.exp(shifted, out=shifted)
        sum_exp = exp.sum(axis=0)
        loss = (numpy.log(sum_exp).sum() - picked) / n
        sum_exp *= n  # dscores = exp / (N * sum_exp) - onehot / N: the mean's 1/N costs no pass of its own
        dscores = numpy.empty(scores.shape, dtype=exp.dtype)  # C-ordered (N, C), like the reference's
        numpy.divide(exp, sum_exp, out=dscores.T)
        dscores[rows, y] -= 1 / n  # rows are distinct: no duplicate-index trap
        return numpy.asarray(loss), dscores

    def _arange(self, n: int) -> numpy.ndarray:
        rows = self._aranges.get(n)
        if rows is None:
            rows = self._aranges[n] = numpy.arange(n)
        return rows

    def sum_of_squares(self, arrays: Sequence[Any]) -> Any:
        total = 0.0
        for a in arrays:
            flat = a.reshape(-1)
            routines = self._routines(flat)
            total += numpy.dot(flat, flat) if routines is None else routines[3](flat, flat)  # no temporary
        dtype = arrays[0].dtype if len(arrays) else numpy.float64
        return numpy.asarray(total, dtype=dtype)

    def take_rows(self, x: Any, idx: Any, out: Any = None) -> Any:
        if out is None:
            return x.take(idx, axis=0)
        # mode="clip" lets NumPy write straight into out (mode="raise" buffers); idx is a permutation slice
        return numpy.take(x, idx, axis=0, out=out, mode="clip")

    # -- update rules (in place) ------------------------------------------------------------------------

    def sgd(self, w: Any, dw: Any, *, learning_rate: float) -> None:
        routines = self._routines(w, dw)
        if routines is None:
            w -= learning_rate * dw
        else:  # w += (-lr) * dw, one pass (axpy writes into w: same dtype, contiguous)
            routines[1](dw.reshape(-1), w.reshape(-1), a=-learning_rate)

    def sgd_momentum(self, w: Any, dw: Any, velocity: Any, *, learning_rate: float, momentum: float) -> None:
        routines = self._routines(w, dw, velocity)
        if routines is None:
            super().sgd_momentum(w, dw, velocity, learning_rate=learning_rate, momentum=momentum)
            return
        _, axpy, scal, _ = routines
        v = velocity.reshape(-1)
        scal(momentum, v)  # v *= mu
        axpy(dw.reshape(-1), v, a=-learning_rate)  # v -= lr * dw
        axpy(v, w.reshape(-1), a=1.0)  # w += v

    def rmsprop(self, w: Any, dw: Any, cache: Any, *, learning_rate: float, decay_rate: float, epsilon: float) -> None:
        cache *= decay_rate
        cache += (1 - decay_rate) * (dw * dw)
        step = numpy.sqrt(cache)
        step += epsilon
        numpy.divide(dw, step, out=step)
        step *= learning_rate
        w -= step

    def adam(
        self,
        w: Any,
        dw: Any,
        m: Any,
        v: Any,
        *,
        learning_rate: float,
        beta1: float,
        beta2: float,
        epsilon: float,
        t: int,
        weight_decay: float = 0.0,
    ) -> None:
        if weight_decay:
            w *= 1 - learning_rate * weight_decay
        m *= beta1
        m += (1 - beta1) * dw
        v *= beta2
        v += (1 - beta2) * (dw * dw)
        # the same arithmetic as the reference, with one scratch buffer instead of four temporaries
        step = v / (1 - beta2**t)
        numpy.sqrt(step, out=step)
        step += epsilon
        numpy.divide(m, step, out=step)
        step *= learning_rate / (1 - beta1**t)
        w -= step
