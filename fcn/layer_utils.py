"""Sandwich layers: common layer sequences as one forward/backward pair."""

from __future__ import annotations

from typing import Any

from .layers import affine_backward, affine_forward, relu_backward, relu_forward

__all__ = ["affine_relu_forward", "affine_relu_backward"]


def affine_relu_forward(x: Any, w: Any, b: Any) -> tuple[Any, tuple]:
    """Affine layer followed by ReLU.

    Shapes: ``x (N, d_1, ..., d_k)``, ``w (D, M)``, ``b (M,)``, ``out (N, M)``.
    Returns ``(out, cache)`` with ``cache = (affine_cache, relu_cache)``.
    """
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout: Any, cache: tuple, *, need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Backward pass of :func:`affine_relu_forward`: ``dout (N, M)`` -> ``(dx, dw, db)`` shaped like the inputs.

    ``need_dx=False`` skips the input gradient (``dx`` is ``None``), as for a network's first layer.
    """
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    return affine_backward(da, fc_cache, need_dx=need_dx)
