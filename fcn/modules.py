"""Layers as small objects: the building blocks of :class:`fcn.FullyConnectedNet`.

A layer owns no arrays. It names its parameters (``params``, e.g. ``("W1", "b1")``) and its non-trainable
state (``buffers``, e.g. running statistics), creates their initial values on the host, and maps an input
to an output through the backend's kernel table::

    out, cache = layer.forward(ops, x, params, buffers, train)
    dx, grads = layer.backward(ops, dout, cache)        # grads: {param name: gradient}

``params`` and ``buffers`` are the model's dicts (looked up by the names the layer declares); ``train``
says whether this is a training step (dropout active, batch statistics used and running ones updated) or
an evaluation. A new kind of layer is one subclass of :class:`Layer`; the model, the training loop and the
checkpoints handle any layer through this interface.
"""

from __future__ import annotations

from typing import Any

import numpy

__all__ = ["Layer", "Affine", "ReLU", "AffineReLU"]


class Layer:
    """Base class: a layer with no parameters, no buffers, and the identity as its map.

    Attributes:
        params: names of the layer's parameters in ``model.params``.
        buffers: names of its non-trainable state in ``model.buffers``.
        decay: the subset of ``params`` the model's L2 term applies to (weights, not biases or scales).
        need_dx: whether ``backward`` must return the input gradient (the network's first layer with
            parameters sets it to False: that gradient is never used and costs as much as the weights').
    """

    params: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    decay: tuple[str, ...] = ()
    need_dx: bool = True

    def init_params(self, rng: numpy.random.Generator) -> dict[str, numpy.ndarray]:
        """Initial parameter values on the host, in float64 (the model casts and moves them)."""
        return {}

    def init_buffers(self) -> dict[str, numpy.ndarray]:
        """Initial buffer values on the host, in float64."""
        return {}

    def forward(self, ops: Any, x: Any, params: dict, buffers: dict, train: bool) -> tuple[Any, Any]:
        """``x (N, D_in)`` -> ``(out (N, D_out), cache)``; may update ``buffers`` when ``train``."""
        return x, None

    def backward(self, ops: Any, dout: Any, cache: Any) -> tuple[Any, dict[str, Any]]:
        """``dout (N, D_out)`` -> ``(dx (N, D_in) or None, {param name: gradient})``."""
        return dout, {}

    def __repr__(self) -> str:
        names = ", ".join(self.params + self.buffers)
        return f"{type(self).__name__}({names})"


class Affine(Layer):
    """Fully connected layer ``out = x @ W + b``.

    Shapes: ``x (N, D)``, ``W (D, M)``, ``b (M,)``, ``out (N, M)``. Weights start as
    ``weight_scale * standard_normal``, biases at zero.
    """

    def __init__(self, index: int, fan_in: int, fan_out: int, weight_scale: float):
        self.w, self.b = f"W{index}", f"b{index}"
        self.params = (self.w, self.b)
        self.decay = (self.w,)
        self.fan_in, self.fan_out, self.weight_scale = fan_in, fan_out, weight_scale

    def init_params(self, rng: numpy.random.Generator) -> dict[str, numpy.ndarray]:
        return {
            self.w: self.weight_scale * rng.standard_normal((self.fan_in, self.fan_out)),
            self.b: numpy.zeros(self.fan_out),
        }

    def forward(self, ops: Any, x: Any, params: dict, buffers: dict, train: bool) -> tuple[Any, Any]:
        w = params[self.w]
        return ops.affine_forward(x, w, params[self.b]), (x, w)

    def backward(self, ops: Any, dout: Any, cache: Any) -> tuple[Any, dict[str, Any]]:
        x, w = cache
        dx, dw, db = ops.affine_backward(dout, x, w, need_dx=self.need_dx)
        return dx, {self.w: dw, self.b: db}


class ReLU(Layer):
    """Rectified linear unit ``max(0, x)``, elementwise. Shapes: ``x (N, D)``, ``out (N, D)``."""

    def forward(self, ops: Any, x: Any, params: dict, buffers: dict, train: bool) -> tuple[Any, Any]:
        out = ops.relu(x)
        return out, out

    def backward(self, ops: Any, dout: Any, cache: Any) -> tuple[Any, dict[str, Any]]:
        return ops.relu_backward(dout, cache), {}


class AffineReLU(Affine):
    """:class:`Affine` then :class:`ReLU` in one layer: the bias add and the ReLU are one pass over the output.

    Shapes: ``x (N, D)``, ``W (D, M)``, ``b (M,)``, ``out (N, M)``. The same parameters and arithmetic as
    the two layers in sequence (the chapter's ``affine_relu_forward`` sandwich).
    """

    def forward(self, ops: Any, x: Any, params: dict, buffers: dict, train: bool) -> tuple[Any, Any]:
        w = params[self.w]
        out = ops.bias_relu(x @ w, params[self.b])
        return out, (x, w, out)

    def backward(self, ops: Any, dout: Any, cache: Any) -> tuple[Any, dict[str, Any]]:
        x, w, out = cache
        da = ops.relu_backward(dout, out)
        dx, dw, db = ops.affine_backward(da, x, w, need_dx=self.need_dx)
        return dx, {self.w: dw, self.b: db}
