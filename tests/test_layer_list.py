"""Models as a list of layers: a new layer is one class; buffers and any rule's state survive checkpoints."""

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, Solver
from fcn.modules import Affine, AffineReLU, Layer


class Scale(Layer):
    """A toy layer: ``out = x * s`` per feature, and a running mean of its input kept as a buffer."""

    def __init__(self, index, dim):
        self.s, self.seen = f"s{index}", f"seen{index}"
        self.params, self.buffers = (self.s,), (self.seen,)
        self.dim = dim

    def init_params(self, rng):
        return {self.s: 1.0 + 0.1 * rng.standard_normal(self.dim)}

    def init_buffers(self):
        return {self.seen: np.zeros(self.dim)}

    def forward(self, ops, x, params, buffers, train):
        if train:
            buffers[self.seen] = 0.9 * buffers[self.seen] + 0.1 * ops.xp.mean(x, axis=0)
        return x * params[self.s], (x, params[self.s])

    def backward(self, ops, dout, cache):
        x, s = cache
        return dout * s, {self.s: ops.xp.sum(dout * x, axis=0)}


class ScaledNet(FullyConnectedNet):
    """The chapter's net with a Scale layer after each hidden layer: one method, nothing else touched."""

    def build_layers(self):
        dims = [self.input_dim, *self.hidden_dims, self.num_classes]
        layers = []
        for i in range(1, self.num_layers):
            layers += [AffineReLU(i, dims[i - 1], dims[i], self.weight_scale), Scale(i, dims[i])]
        return layers + [Affine(self.num_layers, dims[-2], dims[-1], self.weight_scale)]


def separable(n=200, d=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ rng.standard_normal((d, c)), axis=1)
    return {"X_train": X[:150], "y_train": y[:150], "X_val": X[150:], "y_val": y[150:]}


def solver_for(model, **kw):
    options = dict(batch_size=25, num_epochs=4, verbose=False, progress=False, seed=3)
    options.update(kw)
    return Solver(model, separable(), **options)


def test_default_layer_list():
    net = FullyConnectedNet(12, [8, 6], 3, seed=0)
    assert [type(layer) for layer in net.layers] == [AffineReLU, AffineReLU, Affine]
    assert [layer.need_dx for layer in net.layers] == [False, True, True]
    assert sorted(net.params) == ["W1", "W2", "W3", "b1", "b2", "b3"] and dict(net.buffers) == {}


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


def test_mode_is_explicit():
    net = ScaledNet(6, [5], 3, seed=0)
    X, y = np.ones((2, 6)), np.asarray([0, 1])
    net.loss(X)  # scores: evaluation, running statistics untouched
    assert np.all(net.buffers["seen1"] == 0)
    net.loss(X, y, mode="eval")
    assert np.all(net.buffers["seen1"] == 0)
    net.loss(X, y)  # the chapter's default with labels: a training pass
    assert np.any(net.buffers["seen1"] != 0)
    with pytest.raises(ValueError, match="mode must be 'train' or 'eval'"):
        net.loss(X, mode="test")


def test_buffers_survive_checkpoint_resume(backend, tmp_path):
    full = solver_for(ScaledNet(12, [16], 3, weight_scale=0.1, seed=0, backend=backend))
    full.train()
    first = solver_for(
        ScaledNet(12, [16], 3, weight_scale=0.1, seed=0, backend=backend), num_epochs=2, checkpoint=tmp_path / "c.npz"
    )
    first.train()
    resumed = solver_for(ScaledNet(12, [16], 3, weight_scale=0.1, seed=0, backend=backend))
    resumed.load_checkpoint(tmp_path / "c.npz")
    resumed.train()
    np.testing.assert_allclose(resumed.loss_history, full.loss_history, rtol=1e-10)
    for name in ("seen1", "s1", "W1"):
        store = resumed.model.buffers if name in resumed.model.buffers else resumed.model.params
        other = full.model.buffers if name in full.model.buffers else full.model.params
        np.testing.assert_allclose(fcn.to_host(store[name]), fcn.to_host(other[name]), rtol=1e-9, err_msg=name)


def test_best_snapshot_restores_buffers_with_parameters():
    snapshots = {}

    def remember(solver):
        snapshots[len(solver.val_acc_history)] = np.copy(solver.model.buffers["seen1"])

    solver = solver_for(ScaledNet(12, [16], 3, weight_scale=0.1, seed=0), on_epoch_end=remember, lr_decay=0.5)
    solver.train()
    best_epoch = 1 + int(np.argmax(solver.val_acc_history))
    np.testing.assert_array_equal(solver.model.buffers["seen1"], snapshots[best_epoch])


def clipped_sgd(w, dw, config=None):
    """A user's rule with array state of its own: SGD on gradients clipped to a running RMS."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 0.05)
    xp = fcn.namespace_of(w).xp
    if "rms" not in config:
        config["rms"] = xp.ones_like(w)
    config["rms"] = 0.9 * config["rms"] + 0.1 * xp.abs(dw)
    config["steps"] = config.get("steps", 0) + 1
    w -= config["learning_rate"] * xp.clip(dw, -config["rms"], config["rms"])
    return w, config


def test_custom_rule_with_array_state_survives_checkpoint(backend, tmp_path):
    def make(**kw):
        net = FullyConnectedNet(12, [16], 3, weight_scale=0.1, seed=0, backend=backend)
        return solver_for(net, update_rule=clipped_sgd, **kw)

    full = make()
    full.train()
    first = make(num_epochs=2, checkpoint=tmp_path / "c.npz")
    first.train()
    with np.load(tmp_path / "c.npz") as npz:
        assert "optim/W1/rms" in npz.files  # the array went in as state, not into the JSON
    resumed = make()
    resumed.load_checkpoint(tmp_path / "c.npz")
    assert resumed.optim_configs["W1"]["steps"] == first.iteration
    assert fcn.namespace_of(resumed.optim_configs["W1"]["rms"]).name == backend.name
    resumed.train()
    np.testing.assert_allclose(resumed.loss_history, full.loss_history, rtol=1e-10)
    for name, value in full.model.params.items():
        np.testing.assert_allclose(fcn.to_host(resumed.model.params[name]), fcn.to_host(value), rtol=1e-9)


def test_failed_load_leaves_the_solver_as_it_was(tmp_path):
    solver = solver_for(ScaledNet(12, [16], 3, seed=0), num_epochs=1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "c.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["best_buffers/seen1"] = np.zeros(5)  # a wrong shape, after the parameters in the file
    np.savez(tmp_path / "bad.npz", **arrays)
    other = solver_for(ScaledNet(12, [16], 3, seed=1), num_epochs=1)
    before = {k: np.copy(v) for k, v in other.model.params.items()}
    with pytest.raises(fcn.CheckpointError, match="best buffer seen1 has shape"):
        other.load_checkpoint(tmp_path / "bad.npz")
    for name, value in before.items():
        np.testing.assert_array_equal(other.model.params[name], value)
    assert other.iteration == 0
