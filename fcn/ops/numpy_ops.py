"""NumPy's kernel table: the reference arithmetic with ``out=`` and in-place forms, no Array-API wrappers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy

from .reference import Ops

__all__ = ["NumpyOps"]


class NumpyOps(Ops):
    """NumPy overrides: the same arithmetic with ``out=`` and in-place forms, and no Array-API wrappers.

    On small arrays the wrappers' per-call cost dominates; on large ones the saved temporaries do.
    """

    name = "numpy"

    def __init__(self, backend: Any):
        super().__init__(backend)
        self._aranges: dict[int, numpy.ndarray] = {}

    def affine_backward(self, dout: Any, x: Any, w: Any, need_dx: bool = True) -> tuple[Any, Any, Any]:
        dw = x.T @ dout
        db = dout.sum(axis=0)
        dx = dout @ w.T if need_dx else None
        return dx, dw, db

    def bias_relu(self, h: Any, b: Any) -> Any:
        numpy.add(h, b, out=h)
        return numpy.maximum(h, 0, out=h)

    def relu(self, x: Any) -> Any:
        return numpy.maximum(x, 0)

    def relu_backward(self, dout: Any, y: Any) -> Any:
        return numpy.multiply(dout, y > 0, out=dout)

    def softmax_cross_entropy(self, scores: Any, y: Any) -> tuple[Any, Any]:
        n = scores.shape[0]
        shifted = scores - scores.max(axis=1, keepdims=True)
        exp = numpy.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        rows = self._arange(n)
        loss = (numpy.log(sum_exp).sum() - shifted[rows, y].sum()) / n
        numpy.divide(exp, sum_exp, out=exp)
        exp[rows, y] -= 1  # rows are distinct: no duplicate-index trap
        exp /= n
        return numpy.asarray(loss), exp

    def _arange(self, n: int) -> numpy.ndarray:
        rows = self._aranges.get(n)
        if rows is None:
            rows = self._aranges[n] = numpy.arange(n)
        return rows

    def sum_of_squares(self, arrays: Sequence[Any]) -> Any:
        total = 0.0
        for a in arrays:
            flat = a.reshape(-1)
            total += numpy.dot(flat, flat)  # BLAS dot: no temporary
        dtype = arrays[0].dtype if len(arrays) else numpy.float64
        return numpy.asarray(total, dtype=dtype)

    def take_rows(self, x: Any, idx: Any, out: Any = None) -> Any:
        if out is None:
            return x.take(idx, axis=0)
        # mode="clip" lets NumPy write straight into out (mode="raise" buffers); idx is a permutation slice
        return numpy.take(x, idx, axis=0, out=out, mode="clip")

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
