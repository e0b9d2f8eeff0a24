"""The kernel table: every numeric kernel of fcn, written once against the array namespace ``xp``.

Layers, models and the training loop never ask which library they run on: they call ``ops.<kernel>(...)``
on the :class:`Ops` object of their backend (``backend.ops``). :class:`Ops` is the reference, written
against the Array API standard only, so it runs on NumPy, CuPy, PyTorch and array-api-strict alike.
Subclasses override single methods where a backend has something faster (the pattern of thinc's
``Ops``/``CupyOps``): :class:`NumpyOps` uses NumPy's ``out=`` and in-place forms to skip temporaries and
the Array-API wrappers' per-call overhead; :class:`CupyOps` is where fused CUDA kernels go.

Conventions:

- Dense kernels take 2-D inputs ``x (N, D)``; callers flatten.
- Methods documented as "may overwrite" an argument are called only on arrays the caller owns (a fresh
  matrix product, a fresh upstream gradient). The chapter's public functions (:mod:`fcn.layers`) never
  hand them user arrays.
- Update rules work in place on the weights and their state arrays; hyperparameters are Python numbers,
  so no device value is read back during a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy

if TYPE_CHECKING:
    from .backend import Backend

__all__ = ["Ops", "NumpyOps", "CupyOps", "get_ops", "UPDATE_STATE"]

#: The state arrays each built-in update rule keeps per parameter (created as zeros on first use).
UPDATE_STATE: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "sgd_momentum": ("velocity",),
    "rmsprop": ("cache",),
    "adam": ("m", "v"),
}


class Ops:
    """The reference kernel table of one backend, written against the Array API only."""

    name = "xp"

    def __init__(self, backend: Backend):
        self.backend = backend
        self.xp = backend.xp
        self.device = backend.device
        self._class_ids: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backend!r})"

    # -- dense layers -----------------------------------------------------------------------------------

    def affine_forward(self, x: Any, w: Any, b: Any) -> Any:
        """``x (N, D) @ w (D, M) + b (M,)`` -> ``(N, M)``."""
        out = x @ w
        out += b  # in place: no second (N, M) buffer
        return out

    def affine_backward(self, dout: Any, x: Any, w: Any, need_dx: bool = True) -> tuple[Any, Any, Any]:
        """Gradients of :meth:`affine_forward`: ``dout (N, M)`` -> ``dx (N, D) | None, dw (D, M), db (M,)``."""
        xp = self.xp
        dw = xp.matrix_transpose(x) @ dout
        db = xp.sum(dout, axis=0)
        dx = dout @ xp.matrix_transpose(w) if need_dx else None
        return dx, dw, db

    def bias_relu(self, h: Any, b: Any) -> Any:
        """``relu(h + b)`` for ``h (N, M)``, ``b (M,)``; may overwrite ``h``."""
        h += b
        return self.xp.maximum(h, 0.0)

    def relu(self, x: Any) -> Any:
        """``max(x, 0)``, elementwise, as a new array."""
        return self.xp.maximum(x, 0.0)

    def relu_backward(self, dout: Any, y: Any) -> Any:
        """``dout * (y > 0)`` where ``y`` is the ReLU's output (or input: same mask); may overwrite ``dout``."""
        # a 0/1 mask times dout: a plain multiply, faster than where(y > 0, dout, 0) in NumPy
        return dout * self.xp.astype(y > 0, dout.dtype)

    def softmax_cross_entropy(self, scores: Any, y: Any) -> tuple[Any, Any]:
        """Mean softmax cross-entropy of ``scores (N, C)`` against labels ``y (N,)`` and its gradient.

        Returns ``(loss, dscores)``: ``loss`` a 0-d array on the device, ``dscores = (softmax - onehot) / N``.
        The row maximum is subtracted first, so large scores neither overflow nor give ``log(0)``.
        """
        xp = self.xp
        n, c = scores.shape
        shifted = scores - xp.max(scores, axis=1, keepdims=True)
        exp = xp.exp(shifted)
        sum_exp = xp.sum(exp, axis=1, keepdims=True)
        # one-hot by comparison with a cached arange(C): no integer-array setitem (the standard has none)
        # and no index array built per call (take_along_axis would build one on some backends)
        one_hot = xp.astype(xp.reshape(y, (n, 1)) == self.class_ids(c), scores.dtype)
        loss = (xp.sum(xp.log(sum_exp)) - xp.sum(shifted * one_hot)) / n
        dscores = exp / sum_exp
        dscores -= one_hot
        dscores /= n
        return loss, dscores

    def class_ids(self, num_classes: int) -> Any:
        """``arange(num_classes)`` on the device, made once per size."""
        ids = self._class_ids.get(num_classes)
        if ids is None:
            ids = self._class_ids[num_classes] = self.xp.arange(num_classes, device=self.device)
        return ids

    def sum_of_squares(self, arrays: Sequence[Any]) -> Any:
        """``sum_i sum(a_i ** 2)`` as a 0-d array, each term a dot product: no temporary the size of ``a_i``.

        (``vecdot`` is avoided on purpose: some namespaces implement it as ``conj(x) @ x``, a full copy.)
        """
        xp = self.xp
        total = None
        for a in arrays:
            flat = xp.reshape(a, (-1,))
            term = flat @ flat
            total = term if total is None else total + term
        if total is None:
            return xp.asarray(0.0, device=self.device)
        return total

    def take_rows(self, x: Any, idx: Any, out: Any = None) -> Any:
        """``x[idx, ...]`` along axis 0 (into ``out`` where the backend can reuse a buffer)."""
        return self.xp.take(x, idx, axis=0)

    # -- update rules (in place) ------------------------------------------------------------------------

    def sgd(self, w: Any, dw: Any, *, learning_rate: float) -> None:
        """``w -= lr * dw``."""
        w -= learning_rate * dw

    def sgd_momentum(self, w: Any, dw: Any, velocity: Any, *, learning_rate: float, momentum: float) -> None:
        """``v = mu * v - lr * dw; w += v``."""
        velocity *= momentum
        velocity -= learning_rate * dw
        w += velocity

    def rmsprop(self, w: Any, dw: Any, cache: Any, *, learning_rate: float, decay_rate: float, epsilon: float) -> None:
        """``c = rho * c + (1 - rho) * dw**2; w -= lr * dw / (sqrt(c) + eps)``."""
        cache *= decay_rate
        cache += (1 - decay_rate) * (dw * dw)
        w -= learning_rate * dw / (self.xp.sqrt(cache) + epsilon)

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
        """Adam with bias correction; ``t`` is the step count after this step (1-based).

        ``weight_decay > 0`` is AdamW's decoupled decay, ``w -= lr * weight_decay * w`` before the Adam step
        (as ``torch.optim.AdamW``).
        """
        if weight_decay:
            w *= 1 - learning_rate * weight_decay
        m *= beta1
        m += (1 - beta1) * dw
        v *= beta2
        v += (1 - beta2) * (dw * dw)
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        w -= learning_rate * m_hat / (self.xp.sqrt(v_hat) + epsilon)

    def init_state(self, rule: str, w: Any) -> dict[str, Any]:
        """Zero state arrays of a built-in ``rule`` for parameter ``w``."""
        return {name: self.xp.zeros_like(w) for name in UPDATE_STATE[rule]}

    def update_all(
        self, rule: str, params: Sequence[Any], grads: Sequence[Any], states: Sequence[dict[str, Any]], hyper: dict
    ) -> None:
        """Apply the built-in ``rule`` to every parameter in place (``states[i]``: that parameter's arrays).

        The reference loops over the per-array method; a fused backend applies all parameters in one launch.
        """
        kernel = getattr(self, rule)
        names = UPDATE_STATE[rule]
        for w, dw, state in zip(params, grads, states, strict=True):
            kernel(w, dw, *(state[n] for n in names), **hyper)


class NumpyOps(Ops):
    """NumPy overrides: the same arithmetic with ``out=`` and in-place forms, and no Array-API wrappers.

    On small arrays the wrappers' per-call cost dominates; on large ones the saved temporaries do.
    """

    name = "numpy"

    def __init__(self, backend: Backend):
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


class CupyOps(Ops):
    """CuPy's table: the reference kernels (cuBLAS matrix products, CuPy elementwise kernels).

    Fused CUDA kernels override single methods here once they have passed their tests on a GPU.
    """

    name = "cupy"


def get_ops(backend: Backend) -> Ops:
    """The kernel table for ``backend`` (use ``backend.ops``, which caches it)."""
    if backend.is_numpy:
        return NumpyOps(backend)
    if backend.is_cupy:
        return CupyOps(backend)
    return Ops(backend)
