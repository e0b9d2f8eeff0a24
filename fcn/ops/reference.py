"""The reference kernel table: every numeric kernel of fcn, written once against the array namespace ``xp``.

Layers, models and the training loop never ask which library they run on: they call ``ops.<kernel>(...)``
on the :class:`Ops` object of their backend (``backend.ops``). :class:`Ops` is the reference, written
against the Array API standard only, so it runs on NumPy, CuPy, PyTorch and array-api-strict alike.
Subclasses override single methods where a backend has something faster (the pattern of thinc's
``Ops``/``CupyOps``): :class:`fcn.ops.NumpyOps`, :class:`fcn.ops.CupyOps`, :class:`fcn.ops.FusedCupyOps`.

This module imports nothing of fcn: a table is handed a backend (anything with ``xp`` and ``device``).

Conventions:

- Dense kernels take 2-D inputs ``x (N, D)``; callers flatten.
- Methods documented as "may overwrite" an argument are called only on arrays the caller owns (a fresh
  matrix product, a fresh upstream gradient). The chapter's public functions (:mod:`fcn.layers`) never
  hand them user arrays.
- Update kernels work in place on the weights and their state arrays; hyperparameters are Python numbers,
  so no device value is read back during a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy

__all__ = ["Ops"]


class Ops:
    """The reference kernel table of one backend, written against the Array API only."""

    name = "xp"

    def __init__(self, backend: Any):
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

    def affine_relu_forward(self, x: Any, w: Any, b: Any) -> Any:
        """``relu(x (N, D) @ w (D, M) + b (M,))`` -> ``(N, M)``: a hidden layer without normalization."""
        return self.bias_relu(x @ w, b)

    def affine_backward(
        self, dout: Any, x: Any, w: Any, need_dx: bool = True, reg: float = 0.0
    ) -> tuple[Any, Any, Any]:
        """Gradients of :meth:`affine_forward`: ``dout (N, M)`` -> ``dx (N, D) | None, dw (D, M), db (M,)``.

        ``reg > 0`` adds the gradient of an L2 term ``0.5 * reg * sum(w**2)``: ``dw = x.T @ dout + reg * w``.
        """
        xp = self.xp
        dw = xp.matrix_transpose(x) @ dout
        if reg:
            dw += reg * w
        db = xp.sum(dout, axis=0)
        dx = dout @ xp.matrix_transpose(w) if need_dx else None
        return dx, dw, db

    #: whether :meth:`affine_backward_sgd` folds work of the update into the weight-gradient product, so that
    #: it beats :meth:`affine_backward` then :meth:`sgd` (then a model takes the folded path for plain SGD;
    #: here it is those two calls, no faster)
    fuses_sgd = False

    def affine_backward_sgd(
        self, dout: Any, x: Any, w: Any, *, learning_rate: float, need_dx: bool = True, reg: float = 0.0
    ) -> tuple[Any, Any]:
        """:meth:`affine_backward`, then the plain SGD step ``w -= lr * dw`` in place: ``-> dx | None, db``.

        ``dx`` is computed from ``w`` before the step. Shapes as in :meth:`affine_backward`.
        """
        dx, dw, db = self.affine_backward(dout, x, w, need_dx, reg)
        self.sgd(w, dw, learning_rate=learning_rate)
        return dx, db

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

    def take_batch(self, x: Any, y: Any, idx: Any, *, out: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
        """Rows ``idx (B,)`` of the samples ``x (N, ...)`` and of their labels ``y (N,)``: ``(x[idx], y[idx])``.

        ``out``: ``(x_out, y_out)`` buffers to fill where the backend reuses them (fresh arrays otherwise). A
        table may gather both in one launch (the fused CUDA table does).
        """
        x_out, y_out = (None, None) if out is None else out
        return self.take_rows(x, idx, x_out), self.take_rows(y, idx, y_out)

    # -- dropout and normalization ----------------------------------------------------------------------

    def dropout(self, x: Any, keep_host: numpy.ndarray, keep: float) -> tuple[Any, Any]:
        """Inverted dropout of ``x (N, D)`` with a host boolean mask ``keep_host`` (like ``x``) drawn by the caller.

        Returns ``(out, mask)``: ``mask`` is ``keep_host / keep`` on the device (booleans travel, one byte each),
        ``out = x * mask``.
        """
        mask = self.xp.astype(self.xp.asarray(numpy.ascontiguousarray(keep_host), device=self.device), x.dtype)
        mask *= 1.0 / keep
        return x * mask, mask

    def dropout_backward(self, dout: Any, mask: Any) -> Any:
        """``dout * mask``; may overwrite ``dout``."""
        return dout * mask

    def batchnorm_train(self, x: Any, gamma: Any, beta: Any, eps: float) -> tuple[Any, tuple, Any, Any]:
        """Batch normalization with the batch's statistics: ``x (N, D)`` -> ``(out, cache, mean (D,), var (D,))``.

        ``var`` is the biased batch variance; ``cache = (xhat, std)`` serves :meth:`norm_backward`.
        """
        xp = self.xp
        mean = xp.mean(x, axis=0)
        xhat = x - mean
        var = xp.mean(xhat * xhat, axis=0)
        std = xp.sqrt(var + eps)
        xhat /= std  # in place: the centred copy is not needed again
        out = xhat * gamma
        out += beta
        return out, (xhat, std), mean, var

    def batchnorm_eval(self, x: Any, gamma: Any, beta: Any, mean: Any, var: Any, eps: float) -> tuple[Any, tuple]:
        """Batch normalization with given (running) statistics ``mean, var (D,)``: ``-> (out, (xhat, std))``."""
        std = self.xp.sqrt(var + eps)
        xhat = x - mean
        xhat /= std
        out = xhat * gamma
        out += beta
        return out, (xhat, std)

    def layernorm(self, x: Any, gamma: Any, beta: Any, eps: float) -> tuple[Any, tuple]:
        """Layer normalization of each row of ``x (N, D)``: ``-> (out, (xhat, std (N, 1)))``."""
        xp = self.xp
        xhat = x - xp.mean(x, axis=1, keepdims=True)
        std = xp.sqrt(xp.mean(xhat * xhat, axis=1, keepdims=True) + eps)
        xhat /= std
        out = xhat * gamma
        out += beta
        return out, (xhat, std)

    def norm_backward(self, dout: Any, xhat: Any, gamma: Any, std: Any, axis: int | None) -> tuple[Any, Any, Any]:
        """Gradients of ``out = gamma * (x - mean) / std + beta`` with the statistics taken along ``axis``.

        ``axis=0``: batch normalization in training; ``axis=1``: layer normalization; ``None``: fixed
        statistics (batch normalization in evaluation). Closed form, with ``g = dout * gamma``:
        ``dx = (g - mean(g) - xhat * mean(g * xhat)) / std``. Returns ``(dx, dgamma, dbeta)``.
        """
        xp = self.xp
        dgamma = xp.sum(dout * xhat, axis=0)
        dbeta = xp.sum(dout, axis=0)
        if axis is None:
            return dout * (gamma / std), dgamma, dbeta
        if axis == 0:
            # mean(g) = gamma * dbeta / N and mean(g * xhat) = gamma * dgamma / N: no extra (N, D) reduction
            n = dout.shape[0]
            dx = xhat * (dgamma / n)
            dx += dbeta / n
            dx = dout - dx
            dx *= gamma / std
            return dx, dgamma, dbeta
        g = dout * gamma
        dx = xhat * xp.mean(g * xhat, axis=axis, keepdims=True)
        dx += xp.mean(g, axis=axis, keepdims=True)
        dx = g - dx
        dx /= std
        return dx, dgamma, dbeta

    def running_average(self, average: Any, value: Any, momentum: float) -> None:
        """``average = momentum * average + (1 - momentum) * value``, in place."""
        average *= momentum
        average += (1.0 - momentum) * value

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

    def update_all(
        self, kernel: str, params: Sequence[Any], grads: Sequence[Any], states: Sequence[Sequence[Any]], hyper: dict
    ) -> None:
        """Apply the update kernel ``kernel`` (a method above) to every parameter in place.

        ``states[i]`` are parameter ``i``'s state arrays in the order the kernel takes them (``fcn.optim.RULES``
        names them); ``hyper`` its keyword arguments. The reference loops over the per-array method; a fused
        backend applies all parameters in one launch.
        """
        method = getattr(self, kernel)
        for w, dw, state in zip(params, grads, states, strict=True):
            method(w, dw, *state, **hyper)
