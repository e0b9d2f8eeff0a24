"""Layers as objects (fcn/modules.py): names, parameters, the input gradient a first layer skips, and a new layer
written as one class."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import Scale, ScaledNet

import fcn
from fcn import FullyConnectedNet
from fcn.backend import to_host
from fcn.modules import Affine, AffineReLU, BatchNorm, Dropout, Layer, LayerNorm, ReLU


def test_layer_names_and_repr():

    layer = AffineReLU(2, 4, 3, 0.1)
    assert layer.params == ("W2", "b2") and layer.decay == ("W2",) and layer.buffers == ()
    assert (
        repr(layer) == "AffineReLU(W2, b2)"
        and repr(ReLU()) == "ReLU()"
        and repr(Affine(1, 2, 2, 1.0)) == "Affine(W1, b1)"
    )
    assert Layer().params == () and Layer().init_params(np.random.default_rng(0)) == {} and Layer().init_buffers() == {}
    init = layer.init_params(np.random.default_rng(0))
    assert init["W2"].shape == (4, 3) and init["b2"].shape == (3,) and not init["b2"].any()
    np.testing.assert_allclose(init["W2"], 0.1 * np.random.default_rng(0).standard_normal((4, 3)))


def test_affine_then_relu_layers_equal_the_fused_layer(backend, rng):
    """AffineReLU is documented as Affine followed by ReLU: the same loss and gradients, any identity in between."""

    class Unfused(FullyConnectedNet):
        def build_layers(self):
            dims = [self.input_dim, *self.hidden_dims, self.num_classes]
            layers = []
            for i in range(1, self.num_layers):
                layers += [Affine(i, dims[i - 1], dims[i], self.weight_scale), Layer(), ReLU()]
            return [*layers, Affine(self.num_layers, dims[-2], dims[-1], self.weight_scale)]

    X, y = rng.standard_normal((6, 5)), rng.integers(3, size=6)
    fused = FullyConnectedNet(5, [7, 4], 3, reg=0.2, weight_scale=0.5, seed=1, backend=backend)
    unfused = Unfused(5, [7, 4], 3, reg=0.2, weight_scale=0.5, seed=1, backend=backend)
    assert sorted(unfused.params) == sorted(fused.params)
    loss_f, grads_f = fused.loss(X, y)
    loss_u, grads_u = unfused.loss(X, y)
    assert float(loss_u) == pytest.approx(float(loss_f), rel=1e-12)
    for name in grads_f:
        np.testing.assert_allclose(to_host(grads_u[name]), to_host(grads_f[name]), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(to_host(unfused.loss(X)), to_host(fused.loss(X)), rtol=1e-12)


@pytest.mark.parametrize("fused", [False, True])
def test_a_layer_without_need_dx_returns_no_input_gradient(backend, rng, fused):

    layer = (AffineReLU if fused else Affine)(1, 4, 3, 0.1)
    params = {k: backend.asarray(v) for k, v in layer.init_params(rng).items()}
    x, dout = backend.asarray(rng.standard_normal((2, 4))), backend.asarray(rng.standard_normal((2, 3)))
    ops = backend.ops
    _, cache = layer.forward(ops, x, params, {}, True)
    dx, grads = layer.backward(ops, dout, cache)
    assert tuple(dx.shape) == (2, 4) and sorted(grads) == ["W1", "b1"]
    layer.need_dx = False
    _, cache = layer.forward(ops, x, params, {}, True)
    dx, grads = layer.backward(ops, backend.asarray(rng.standard_normal((2, 3))), cache)
    assert dx is None and sorted(grads) == ["W1", "b1"]


def test_a_new_layer_is_one_class_and_is_gradient_checked(backend, rng):
    X, y = rng.standard_normal((4, 6)), rng.integers(3, size=4)
    net = ScaledNet(6, [5, 4], 3, reg=0.2, weight_scale=0.3, seed=0, backend=backend)
    assert sorted(net.params) == ["W1", "W2", "W3", "b1", "b2", "b3", "s1", "s2"]
    assert sorted(net.buffers) == ["seen1", "seen2"]
    _, grads = net.loss(X, y)
    for name in sorted(net.params):
        num = fcn.eval_numerical_gradient(lambda _: net.loss(X, y)[0], net.params[name], verbose=False)
        np.testing.assert_allclose(fcn.to_host(grads[name]), fcn.to_host(num), rtol=1e-6, atol=1e-8, err_msg=name)
    # the L2 term covers weight matrices only, not the scales
    net.reg = 0.0
    no_reg = fcn.to_host(net.loss(X, y)[1]["s1"])
    np.testing.assert_allclose(fcn.to_host(grads["s1"]), no_reg, rtol=1e-12)


@pytest.mark.parametrize("keep", [0.2, 0.8])
def test_dropout_keeps_each_unit_with_probability_keep_and_scales_it_by_one_over_keep(backend, keep):
    """Not 1 - keep: with keep = 0.2 or 0.8 the two differ by far more than the sampling error (500 x 400 draws)."""
    x = backend.asarray(np.ones((500, 400)))
    out, _ = Dropout(1, keep, seed=3).forward(backend.ops, x, {}, {}, True)
    out = to_host(out)
    kept = out != 0
    assert abs(kept.mean() - keep) < 0.01
    np.testing.assert_allclose(out[kept], 1.0 / keep, rtol=1e-12)


def test_batchnorm_backward_in_evaluation_holds_the_running_statistics_fixed(backend, rng):
    """In evaluation ``out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``: a linear map of x,
    so ``dx = dout * gamma / sqrt(running_var + eps)``, with no terms through the batch's own statistics."""
    layer = BatchNorm(1, 5)
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    mean, var = rng.standard_normal(5), rng.random(5) + 0.5
    params = {"gamma1": backend.asarray(gamma), "beta1": backend.asarray(beta)}
    buffers = {"running_mean1": backend.asarray(mean), "running_var1": backend.asarray(var)}
    x, dout = rng.standard_normal((6, 5)) * 3 + 1, rng.standard_normal((6, 5))
    _, cache = layer.forward(backend.ops, backend.asarray(x), params, buffers, False)
    dx, grads = layer.backward(backend.ops, backend.asarray(dout), cache)
    np.testing.assert_allclose(to_host(dx), dout * gamma / np.sqrt(var + layer.eps), rtol=1e-12)
    np.testing.assert_allclose(to_host(grads["beta1"]), dout.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        to_host(grads["gamma1"]), (dout * (x - mean) / np.sqrt(var + layer.eps)).sum(axis=0), rtol=1e-12
    )


def test_batchnorm_refuses_to_train_on_one_sample_and_changes_nothing(backend, rng):
    """One sample is its own batch mean: every output and every gradient would be 0. Evaluation of one sample
    (a single prediction) uses the running statistics and is fine, and two samples train."""
    layer = BatchNorm(1, 5)
    params = {"gamma1": backend.asarray(np.ones(5)), "beta1": backend.asarray(np.zeros(5))}
    buffers = {"running_mean1": backend.asarray(np.zeros(5)), "running_var1": backend.asarray(np.ones(5))}
    one, two = backend.asarray(rng.standard_normal((1, 5))), backend.asarray(rng.standard_normal((2, 5)))
    with pytest.raises(ValueError, match=r"batch normalization needs at least 2 samples per training batch, got 1"):
        layer.forward(backend.ops, one, params, buffers, True)
    np.testing.assert_array_equal(to_host(buffers["running_mean1"]), np.zeros(5))  # not updated by the refusal
    np.testing.assert_array_equal(to_host(buffers["running_var1"]), np.ones(5))
    out, _ = layer.forward(backend.ops, one, params, buffers, False)
    np.testing.assert_allclose(to_host(out), to_host(one) / np.sqrt(1 + layer.eps), rtol=1e-12)
    out, _ = layer.forward(backend.ops, two, params, buffers, True)
    np.testing.assert_allclose(np.abs(to_host(out)), np.ones((2, 5)), rtol=1e-4)  # two samples: +-1 each
    assert not np.array_equal(to_host(buffers["running_mean1"]), np.zeros(5))


class DecayedScale(Scale):
    """A new layer whose parameter is under the L2 term and which writes no ``backward_sgd`` of its own."""

    def __init__(self, index, dim):
        super().__init__(index, dim)
        self.decay = (self.s,)

    def backward(self, ops, dout, cache, reg=0.0):
        dx, grads = super().backward(ops, dout, cache)
        return dx, {self.s: grads[self.s] + reg * cache[1]}


SGD_LAYERS = {  # (layer, input width, output width)
    "affine": (lambda: Affine(1, 4, 3, 0.5), 4, 3),
    "affine_relu": (lambda: AffineReLU(1, 4, 3, 0.5), 4, 3),
    "relu": (ReLU, 4, 4),
    "dropout": (lambda: Dropout(1, 0.5, seed=2), 4, 4),
    "batchnorm": (lambda: BatchNorm(1, 4), 4, 4),
    "layernorm": (lambda: LayerNorm(1, 4), 4, 4),
    "new_layer_with_decay": (lambda: DecayedScale(1, 4), 4, 4),
}


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("reg", [0.0, 0.3])
@pytest.mark.parametrize("kind", SGD_LAYERS)
def test_backward_sgd_is_backward_then_the_sgd_step(backend, rng, kind, reg, need_dx):
    """The plain-SGD backward pass (what ``loss_and_sgd`` runs on every layer): the gradients it returns are
    ``backward``'s, every parameter it does not return has taken the step ``p - lr * dp`` already, and ``dx``
    is ``backward``'s too (from the weights before the step; ``None`` where the layer needs no input gradient).
    ``reg`` reaches layers with ``decay`` whether or not they write their own ``backward_sgd``."""
    make, d_in, d_out = SGD_LAYERS[kind]
    lr, ops = 0.1, backend.ops
    layer = make()
    layer.need_dx = need_dx
    initial = layer.init_params(rng)
    initial = {name: value + 0.3 * rng.standard_normal(value.shape) for name, value in initial.items()}
    x, dout = rng.standard_normal((5, d_in)), rng.standard_normal((5, d_out))
    extra = {"reg": reg} if layer.decay and reg else {}

    def run(sgd):
        params = {name: backend.asarray(value.copy()) for name, value in initial.items()}
        buffers = {name: backend.asarray(value) for name, value in layer.init_buffers().items()}
        _, cache = layer.forward(ops, backend.asarray(x), params, buffers, True)
        g = backend.asarray(dout.copy())  # a fresh array: a backward pass may overwrite its dout
        dx, grads = layer.backward_sgd(ops, g, cache, lr, **extra) if sgd else layer.backward(ops, g, cache, **extra)
        return (None if dx is None else to_host(dx)), {k: to_host(v) for k, v in grads.items()}, params

    dx, grads, _ = run(sgd=False)
    dx_sgd, grads_sgd, stepped = run(sgd=True)
    assert sorted(grads) == sorted(layer.params) and set(grads_sgd) <= set(grads)
    assert (dx is None) == (dx_sgd is None) == (kind.startswith("affine") and not need_dx)
    if dx is not None:
        np.testing.assert_allclose(dx_sgd, dx, rtol=1e-12, atol=1e-14)
    for name in layer.params:
        if name in grads_sgd:  # left to the caller: returned, and the parameter untouched
            np.testing.assert_allclose(grads_sgd[name], grads[name], rtol=1e-12, atol=1e-14, err_msg=name)
            np.testing.assert_array_equal(to_host(stepped[name]), initial[name], err_msg=name)
        else:
            expected = initial[name] - lr * grads[name]
            np.testing.assert_allclose(to_host(stepped[name]), expected, rtol=1e-12, atol=1e-14, err_msg=name)
    if kind.startswith("affine"):  # the weights take the step inside the layer, the bias is left to the caller
        assert sorted(grads_sgd) == ["b1"]


def test_a_fresh_model_draws_the_dropout_masks_of_the_first_training_step(rng):
    """The Solver's first step is step 0: a training pass of a model no Solver has stepped yet (a loss or a
    gradient check by hand) sees the masks that first step will see, not those of a later one."""
    X, y = rng.standard_normal((8, 6)), rng.integers(3, size=8)
    net = FullyConnectedNet(6, [20, 20], 3, dropout_keep_ratio=0.5, seed=4)
    fresh = float(net.loss(X, y)[0])
    net.set_step(0)
    assert float(net.loss(X, y)[0]) == fresh
    net.set_step(1)
    assert float(net.loss(X, y)[0]) != fresh


def test_a_dropout_mask_is_the_documented_function_of_seed_step_and_layer(backend):
    """Bit for bit what makes masks the same on every backend and after a resume: a unit is kept where its
    float32 uniform from ``default_rng([seed, step, index])`` is below ``keep``. ``keep`` is set to one of those
    uniforms, so one unit sits on the boundary: it is dropped (a draw equal to ``keep`` is not below it), which is
    what makes the keep probability exactly ``keep`` on the grid of float32 uniforms."""
    seed, step, index, shape = 9, 3, 2, (6, 7)
    uniforms = np.random.default_rng([seed, step, index]).random(shape, dtype=np.float32)
    keep = float(uniforms[1, 2])
    assert 0.05 < keep < 0.95
    layer = Dropout(index, keep, seed)
    layer.step = step
    out, _ = layer.forward(backend.ops, backend.asarray(np.ones(shape)), {}, {}, True)
    kept = to_host(out) != 0
    np.testing.assert_array_equal(kept, uniforms < np.float32(keep))
    assert not kept[1, 2]
