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

__all__ = ["Layer", "Affine", "ReLU", "AffineReLU", "Dropout", "BatchNorm", "LayerNorm"]


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
        """``dout (N, D_out)`` -> ``(dx (N, D_in) or None, {param name: gradient})``.

        A layer with ``decay`` also takes ``reg=``, the model's L2 strength, and adds ``reg * p`` to the gradient
        of each parameter ``p`` named there (so the kernel can fold it into the gradient's own product); the
        model passes ``reg`` to such layers only, when it is nonzero.
        """
        return dout, {}

    def backward_sgd(
        self, ops: Any, dout: Any, cache: Any, learning_rate: float, reg: float = 0.0
    ) -> tuple[Any, dict[str, Any]]:
        """:meth:`backward` for plain SGD: a layer may apply the step to its own parameters as it goes.

        Returns ``dx`` and the gradients of the parameters it did not update (the caller applies SGD to them).
        Here: none updated, the same as :meth:`backward` (``reg`` as there: given to layers with ``decay``).
        """
        return self.backward(ops, dout, cache, **({"reg": reg} if reg else {}))

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

    def backward(self, ops: Any, dout: Any, cache: Any, reg: float = 0.0) -> tuple[Any, dict[str, Any]]:
        x, w = cache
        dx, dw, db = ops.affine_backward(dout, x, w, need_dx=self.need_dx, reg=reg)
        return dx, {self.w: dw, self.b: db}

    def backward_sgd(
        self, ops: Any, dout: Any, cache: Any, learning_rate: float, reg: float = 0.0
    ) -> tuple[Any, dict[str, Any]]:
        """The weights take the step inside the product that would make their gradient; the bias is left."""
        x, w = cache
        dx, db = ops.affine_backward_sgd(dout, x, w, learning_rate=learning_rate, need_dx=self.need_dx, reg=reg)
        return dx, {self.b: db}


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
        out = ops.affine_relu_forward(x, w, params[self.b])
        return out, (x, w, out)

    def backward(self, ops: Any, dout: Any, cache: Any, reg: float = 0.0) -> tuple[Any, dict[str, Any]]:
        x, w, out = cache
        da = ops.relu_backward(dout, out)
        dx, dw, db = ops.affine_backward(da, x, w, need_dx=self.need_dx, reg=reg)
        return dx, {self.w: dw, self.b: db}

    def backward_sgd(
        self, ops: Any, dout: Any, cache: Any, learning_rate: float, reg: float = 0.0
    ) -> tuple[Any, dict[str, Any]]:
        x, w, out = cache
        return super().backward_sgd(ops, ops.relu_backward(dout, out), (x, w), learning_rate, reg=reg)


class Dropout(Layer):
    """Inverted dropout: in training, keep each unit with probability ``keep`` and scale it by ``1 / keep``.

    Shapes: ``x (N, D)``, ``out (N, D)``. In evaluation it is the identity.

    The mask of a training pass is a function of ``(seed, step, index)`` alone, drawn on the host
    (:func:`numpy.random.default_rng` of those three numbers) and moved to the device: repeated passes at
    one step see the same mask (so a network with dropout can be gradient-checked), successive steps fresh
    ones, and one seed gives the same masks on every backend and after a resume. The model sets ``step``
    (:meth:`fcn.FullyConnectedNet.set_step`; the Solver calls it before each training step).
    """

    def __init__(self, index: int, keep: float, seed: int):
        self.index, self.keep, self.seed = index, float(keep), int(seed)
        self.step = 0

    def forward(self, ops: Any, x: Any, params: dict, buffers: dict, train: bool) -> tuple[Any, Any]:
        if not train or self.keep == 1.0:
            return x, None
        rng = numpy.random.default_rng([self.seed, self.step, self.index])
        # float32 uniforms: half the cost of float64 ones; 2**-24 resolution is plenty for a probability
        keep_host = rng.random(tuple(x.shape), dtype=numpy.float32) < self.keep
        return ops.dropout(x, keep_host, self.keep)

    def backward(self, ops: Any, dout: Any, cache: Any) -> tuple[Any, dict[str, Any]]:
        return (dout if cache is None else ops.dropout_backward(dout, cache)), {}

    def __repr__(self) -> str:
        return f"Dropout(keep={self.keep})"


class BatchNorm(Layer):
    """Batch normalization of each feature over the batch, then a learned scale ``gamma`` and shift ``beta``.

    Shapes: ``x (N, D)``, ``gamma{i} (D,)`` (starts at 1), ``beta{i} (D,)`` (starts at 0), ``out (N, D)``.
    Training passes use the batch's mean and (biased) variance and update the buffers
    ``running_mean{i}`` (starts at 0) and ``running_var{i}`` (starts at 1) as
    ``running = momentum * running + (1 - momentum) * batch``; evaluation uses the running statistics.
    """

    def __init__(self, index: int, dim: int, momentum: float = 0.9, eps: float = 1e-5):
        self.gamma, self.beta = f"gamma{index}", f"beta{index}"
        self.mean, self.var = f"running_mean{index}", f"running_var{index}"
        self.params, self.buffers = (self.gamma, self.beta), (self.mean, self.var)
        self.dim, self.momentum, self.eps = dim, momentum, eps

    def init_params(self, rng: numpy.random.Generator) -> dict[str, numpy.ndarray]:
        return {self.gamma: numpy.ones(self.dim), self.beta: numpy.zeros(self.dim)}

    def init_buffers(self) -> dict[str, numpy.ndarray]:
        return {self.mean: numpy.zeros(self.dim), self.var: numpy.ones(self.dim)}

    def forward(self, ops: Any, x: Any, params: dict, buffers: dict, train: bool) -> tuple[Any, Any]:
        gamma, beta = params[self.gamma], params[self.beta]
        if train and x.shape[0] < 2:
            raise ValueError(
                f"batch normalization needs at least 2 samples per training batch, got {x.shape[0]}: the batch's "
                "statistics would be the sample itself, and every gradient 0; use a larger batch size"
            )
        if train:
            out, (xhat, std), mean, var = ops.batchnorm_train(x, gamma, beta, self.eps)
            ops.running_average(buffers[self.mean], mean, self.momentum)
            ops.running_average(buffers[self.var], var, self.momentum)
        else:
            out, (xhat, std) = ops.batchnorm_eval(x, gamma, beta, buffers[self.mean], buffers[self.var], self.eps)
        return out, (xhat, gamma, std, train)

    def backward(self, ops: Any, dout: Any, cache: Any) -> tuple[Any, dict[str, Any]]:
        xhat, gamma, std, train = cache
        dx, dgamma, dbeta = ops.norm_backward(dout, xhat, gamma, std, 0 if train else None)
        return dx, {self.gamma: dgamma, self.beta: dbeta}


class LayerNorm(Layer):
    """Layer normalization of each sample over its features, then a learned scale ``gamma`` and shift ``beta``.

    Shapes: ``x (N, D)``, ``gamma{i} (D,)`` (starts at 1), ``beta{i} (D,)`` (starts at 0), ``out (N, D)``.
    The same in training and evaluation; no buffers.
    """

    def __init__(self, index: int, dim: int, eps: float = 1e-5):
        self.gamma, self.beta = f"gamma{index}", f"beta{index}"
        self.params = (self.gamma, self.beta)
        self.dim, self.eps = dim, eps

    def init_params(self, rng: numpy.random.Generator) -> dict[str, numpy.ndarray]:
        return {self.gamma: numpy.ones(self.dim), self.beta: numpy.zeros(self.dim)}

    def forward(self, ops: Any, x: Any, params: dict, buffers: dict, train: bool) -> tuple[Any, Any]:
        gamma = params[self.gamma]
        out, (xhat, std) = ops.layernorm(x, gamma, params[self.beta], self.eps)
        return out, (xhat, gamma, std)

    def backward(self, ops: Any, dout: Any, cache: Any) -> tuple[Any, dict[str, Any]]:
        xhat, gamma, std = cache
        dx, dgamma, dbeta = ops.norm_backward(dout, xhat, gamma, std, 1)
        return dx, {self.gamma: dgamma, self.beta: dbeta}
