"""The chapter's layers, each a forward/backward pair written once against the array namespace ``xp``.

``out, cache = <layer>_forward(...)`` and ``grads = <layer>_backward(dout, cache)``. The namespace is
inferred from the arguments, so the same function runs on NumPy, CuPy or any Array-API namespace; mixing
two of them raises :class:`fcn.backend.BackendError`. The arithmetic lives in the backend's kernel table
(:mod:`fcn.ops`); these functions check their inputs and keep the chapter's signatures and caches.
"""

from __future__ import annotations

from typing import Any

from .backend import namespace_of
from .validation import check_labels, check_same_float_dtype

__all__ = ["affine_forward", "affine_backward", "relu_forward", "relu_backward", "softmax_loss"]


def _flatten(xp: Any, x: Any) -> Any:
    """(N, d_1, ..., d_k) -> (N, D); a view for contiguous input."""
    return x if x.ndim == 2 else xp.reshape(x, (x.shape[0], -1))


def affine_forward(x: Any, w: Any, b: Any) -> tuple[Any, tuple]:
    """Fully connected layer: ``out = x.reshape(N, D) @ w + b``.

    Shapes: ``x (N, d_1, ..., d_k)`` with ``D = d_1 * ... * d_k``, ``w (D, M)``, ``b (M,)``, ``out (N, M)``.
    All three share one floating dtype. Returns ``(out, cache)`` with ``cache = (x, w, b)``.
    """
    be = namespace_of(x, w, b)
    check_same_float_dtype(be.xp, "affine_forward", x=x, w=w, b=b)
    x2 = _flatten(be.xp, x)
    if w.ndim != 2 or x2.shape[1] != w.shape[0] or tuple(b.shape) != (w.shape[1],):
        raise ValueError(
            f"affine_forward: shapes do not fit: x {tuple(x.shape)} flattens to {tuple(x2.shape)}, "
            f"w {tuple(w.shape)}, b {tuple(b.shape)}; need w (D, M) with D = {x2.shape[1]} and b (M,)"
        )
    return be.ops.affine_forward(x2, w, b), (x, w, b)


def affine_backward(dout: Any, cache: tuple, *, need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Backward pass of :func:`affine_forward`.

    Shapes: ``dout (N, M)`` -> ``dx (N, d_1, ..., d_k)``, ``dw (D, M)``, ``db (M,)``.
    ``need_dx=False`` skips the input gradient (``dx`` is ``None``): a network's first layer never needs
    it, and it costs as much as the weight gradient.
    """
    x, w, _ = cache
    be = namespace_of(dout, w)
    dx, dw, db = be.ops.affine_backward(dout, _flatten(be.xp, x), w, need_dx=need_dx)
    return (be.xp.reshape(dx, x.shape) if need_dx else None), dw, db


def relu_forward(x: Any) -> tuple[Any, Any]:
    """Rectified linear unit ``max(0, x)``, elementwise. Shapes: ``x`` any, ``out`` like ``x``.

    Returns ``(out, cache)`` with ``cache = x``.
    """
    return namespace_of(x).ops.relu(x), x


def relu_backward(dout: Any, cache: Any) -> Any:
    """Backward pass of :func:`relu_forward`: ``dx = dout`` where ``x > 0``, else 0. Shapes: like ``x``."""
    x = cache
    be = namespace_of(dout, x)
    # the table's kernel may work in place on its first argument: give it a copy, never the caller's dout
    return be.ops.relu_backward(be.xp.asarray(dout, copy=True), x)


def softmax_loss(scores: Any, y: Any) -> tuple[Any, Any]:
    """Softmax cross-entropy, averaged over the batch, and its gradient.

    Shapes: ``scores (N, C)`` floating, ``y (N,)`` integer labels in ``[0, C)``.
    Returns ``(loss, dscores)``: ``loss`` is a 0-d array on the scores' device (call ``float(loss)`` to
    read it; keeping it on the device avoids a GPU sync per step), ``dscores (N, C)``.

    Numerically stable: the row maximum is subtracted before exponentiating and the log-probabilities
    come from a log-sum-exp, so large scores neither overflow nor give ``log(0)``.
    """
    be = namespace_of(scores, y)
    xp = be.xp
    if scores.ndim != 2:
        raise ValueError(f"softmax_loss: scores must have shape (N, C), got {tuple(scores.shape)}")
    n, c = scores.shape
    check_labels(xp, y, n, c, where="softmax_loss: y")
    return be.ops.softmax_cross_entropy(scores, y)
