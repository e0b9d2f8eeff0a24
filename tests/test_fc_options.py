"""FullyConnectedNet with dropout, batch/layer normalization and named initialisations: whole-net gradient checks
for every combination on every backend, train/eval behaviour, cross-backend equality, configuration, bad input."""

import itertools
import math

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, Solver, eval_numerical_gradient
from fcn.modules import Affine, AffineReLU, BatchNorm, Dropout, LayerNorm, ReLU

COMBINATIONS = list(itertools.product([None, "batchnorm", "layernorm"], [1.0, 0.6]))


def assert_grads_match_numeric(model, X, y, rtol=1e-6, atol=1e-8):
    """Analytic vs centred-difference gradients of every parameter (mixed tolerance: see test_models.py)."""
    _, grads = model.loss(X, y)
    assert sorted(grads) == sorted(model.params)
    for name in sorted(grads):
        num = fcn.to_host(eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False))
        np.testing.assert_allclose(fcn.to_host(grads[name]), num, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize(("normalization", "keep"), COMBINATIONS)
@pytest.mark.parametrize(("hidden_dims", "reg"), [([8], 0.0), ([8, 6], 0.3), ([6, 8, 5], 1.7)])
def test_whole_net_gradients_match_numeric(backend, rng, normalization, keep, hidden_dims, reg):
    N, D, C = 6, 7, 4
    X, y = rng.standard_normal((N, D)), rng.integers(C, size=N)
    net = FullyConnectedNet(
        D, hidden_dims, C, reg=reg, weight_scale="he", dropout_keep_ratio=keep, normalization=normalization,
        backend=backend, seed=3,
    )  # fmt: skip
    # generic biases, scales and shifts: with zeros, a sample whose units were all dropped would sit exactly on
    # a ReLU kink after the next layer (a normalised constant row is 0), where no numeric gradient exists
    for name in list(net.params):
        if name[0] in "bg":
            net.params[name] = (1.0 if name[0] == "g" else 0.0) + 0.3 * rng.standard_normal(net.params[name].shape)
    net.set_step(11)  # one fixed dropout mask for every pass of the check
    assert_grads_match_numeric(net, X, y)


def test_layer_list_for_each_option():
    def kinds(**kw):
        return [type(layer) for layer in FullyConnectedNet(8, [6, 5], 3, seed=0, **kw).layers]

    assert kinds() == [AffineReLU, AffineReLU, Affine]
    assert kinds(dropout_keep_ratio=0.5) == [AffineReLU, Dropout, AffineReLU, Dropout, Affine]
    assert kinds(normalization="batchnorm") == [Affine, BatchNorm, ReLU, Affine, BatchNorm, ReLU, Affine]
    assert kinds(normalization="layernorm", dropout_keep_ratio=0.9) == [
        Affine, LayerNorm, ReLU, Dropout, Affine, LayerNorm, ReLU, Dropout, Affine,
    ]  # fmt: skip
    net = FullyConnectedNet(8, [6, 5], 3, normalization="batchnorm", seed=0)
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    assert list(net.buffers) == ["running_mean1", "running_var1", "running_mean2", "running_var2"]
    assert [layer.need_dx for layer in net.layers if layer.params][0] is False
    np.testing.assert_array_equal(net.params["gamma2"], np.ones(5))
    np.testing.assert_array_equal(net.buffers["running_var1"], np.ones(6))
    assert sorted(FullyConnectedNet(8, [6], 3, normalization="layernorm", seed=0).buffers) == []


def test_normalization_parameters_are_not_l2_regularised(rng):
    X, y = rng.standard_normal((5, 8)), rng.integers(3, size=5)
    net = FullyConnectedNet(8, [6], 3, reg=0.0, normalization="batchnorm", seed=0)
    net.params["gamma1"] = rng.random(6) + 0.5
    loss0, grads0 = net.loss(X, y)
    net.reg = 2.0
    loss2, grads2 = net.loss(X, y)
    w = sum(float(np.sum(net.params[k] ** 2)) for k in ("W1", "W2"))
    assert float(loss2) - float(loss0) == pytest.approx(0.5 * 2.0 * w, rel=1e-12)
    np.testing.assert_array_equal(grads2["gamma1"], grads0["gamma1"])


def test_default_net_is_unchanged_by_the_new_options(rng):
    """No dropout and no normalization: the chapter's net, the same weights from the same seed."""
    plain = FullyConnectedNet(10, [7, 6], 3, weight_scale=0.1, seed=4)
    explicit = FullyConnectedNet(10, [7, 6], 3, weight_scale=0.1, seed=4, dropout_keep_ratio=1.0, normalization=None)
    draws = np.random.default_rng(4)
    np.testing.assert_array_equal(plain.params["W1"], 0.1 * draws.standard_normal((10, 7)))
    X = rng.standard_normal((4, 10))
    np.testing.assert_array_equal(plain.loss(X), explicit.loss(X))


@pytest.mark.parametrize(
    ("scale", "std"), [("he", lambda i, o: math.sqrt(2 / i)), ("xavier", lambda i, o: math.sqrt(2 / (i + o)))]
)
def test_named_weight_scales(scale, std):
    net = FullyConnectedNet(400, [300, 200], 100, weight_scale=scale, seed=0)
    for name, (fan_in, fan_out) in {"W1": (400, 300), "W2": (300, 200), "W3": (200, 100)}.items():
        assert np.std(net.params[name]) == pytest.approx(std(fan_in, fan_out), rel=0.02), name
    assert net.get_config()["weight_scale"] == scale


# -- training and evaluation modes -----------------------------------------------------------------------


def test_dropout_masks_follow_the_step(rng):
    X, y = rng.standard_normal((20, 8)), rng.integers(3, size=20)
    net = FullyConnectedNet(8, [30, 30], 3, dropout_keep_ratio=0.5, seed=0)
    net.set_step(1)
    a, b = float(net.loss(X, y)[0]), float(net.loss(X, y)[0])
    net.set_step(2)
    c = float(net.loss(X, y)[0])
    assert a == b and a != c
    same_seed = FullyConnectedNet(8, [30, 30], 3, dropout_keep_ratio=0.5, seed=0)
    same_seed.set_step(1)
    assert float(same_seed.loss(X, y)[0]) == a


def test_eval_mode_has_no_dropout_and_uses_running_statistics(rng):
    X, y = rng.standard_normal((50, 8)) * 3 + 1, rng.integers(3, size=50)
    net = FullyConnectedNet(8, [20], 3, dropout_keep_ratio=0.5, normalization="batchnorm", seed=0)
    scores = net.loss(X)  # y=None: evaluation, deterministic
    np.testing.assert_array_equal(net.loss(X), scores)
    np.testing.assert_array_equal(net.buffers["running_mean1"], np.zeros(20))  # not touched in evaluation
    net.loss(X, y)  # a training pass updates the running statistics ...
    assert np.any(net.buffers["running_mean1"] != 0)
    h = X @ net.params["W1"] + net.params["b1"]
    np.testing.assert_allclose(net.buffers["running_mean1"], 0.1 * h.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(net.buffers["running_var1"], 0.9 + 0.1 * h.var(axis=0), rtol=1e-12)
    # ... which evaluation then uses (and the scores are still free of dropout)
    after = net.loss(X)
    assert not np.array_equal(after, scores)
    np.testing.assert_array_equal(net.loss(X, mode="eval"), after)
    np.testing.assert_array_equal(net.predict(X), np.argmax(after, axis=1))


@pytest.mark.parametrize("normalization", ["batchnorm", "layernorm"])
def test_backends_agree_with_numpy(backend, rng, normalization):
    X, y = rng.standard_normal((9, 2, 3, 2)), rng.integers(4, size=9)
    kw = dict(reg=0.3, weight_scale="xavier", dropout_keep_ratio=0.7, normalization=normalization, seed=7)
    ref, net = FullyConnectedNet(12, [7, 6], 4, **kw), FullyConnectedNet(12, [7, 6], 4, backend=backend, **kw)
    for model in (ref, net):
        model.set_step(5)
    ref_loss, ref_grads = ref.loss(X, y)
    loss, grads = net.loss(X, y)
    assert abs(float(loss) - float(ref_loss)) < 1e-12
    for name, g in ref_grads.items():
        assert fcn.namespace_of(grads[name]).name == backend.name
        np.testing.assert_allclose(fcn.to_host(grads[name]), g, rtol=1e-10, atol=1e-12, err_msg=name)
    for name, b in ref.buffers.items():
        np.testing.assert_allclose(fcn.to_host(net.buffers[name]), b, rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(fcn.to_host(net.loss(X)), ref.loss(X), rtol=1e-10, atol=1e-12)


def test_float32_net_with_every_option(xp, rng):
    net = FullyConnectedNet(12, [7], 4, dtype="float32", dropout_keep_ratio=0.5, normalization="batchnorm", seed=0)
    loss, grads = net.loss(rng.standard_normal((6, 12)), rng.integers(4, size=6))
    assert loss.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    assert all(b.dtype == np.float32 for b in net.buffers.values())


def test_get_config_rebuilds_the_net(rng):
    net = FullyConnectedNet(
        12, [7, 5], 4, reg=0.1, weight_scale="he", dropout_keep_ratio=0.75, normalization="layernorm", seed=2
    )
    config = net.get_config()
    assert config["dropout_keep_ratio"] == 0.75 and config["normalization"] == "layernorm"
    twin = FullyConnectedNet(**config)
    for name, value in net.params.items():
        np.testing.assert_array_equal(twin.params[name], value)
    X, y = rng.standard_normal((3, 12)), rng.integers(4, size=3)
    net.set_step(4), twin.set_step(4)
    assert float(twin.loss(X, y)[0]) == float(net.loss(X, y)[0])


def test_model_file_keeps_normalization_dropout_and_running_statistics(backend, tmp_path, rng):
    X, y = rng.standard_normal((30, 12)), rng.integers(4, size=30)
    net = FullyConnectedNet(12, [7, 5], 4, weight_scale="he", dropout_keep_ratio=0.6, normalization="batchnorm", seed=1)
    net.loss(X, y)  # a training pass: running statistics away from their initial values
    path = fcn.save_model(net, tmp_path / "m.npz")
    loaded = fcn.load_model(path, backend=backend)
    assert loaded.get_config() == net.get_config()
    for name, value in net.buffers.items():
        np.testing.assert_array_equal(fcn.to_host(loaded.buffers[name]), value)
    np.testing.assert_allclose(fcn.to_host(loaded.loss(X)), net.loss(X), rtol=1e-12, atol=1e-12)


def test_unseeded_dropout_state_survives_a_checkpoint(tmp_path, rng):
    data = {"X_train": rng.standard_normal((40, 8)), "y_train": rng.integers(3, size=40)}
    data.update(X_val=data["X_train"][:10], y_val=data["y_train"][:10])
    net = FullyConnectedNet(8, [6], 3, dropout_keep_ratio=0.5)
    solver = Solver(net, data, batch_size=10, num_epochs=1, verbose=False, progress=False)
    solver.train()
    solver.save_checkpoint(tmp_path / "ck.npz")
    other = FullyConnectedNet(8, [6], 3, dropout_keep_ratio=0.5)
    assert other.dropout_seed != net.dropout_seed  # fresh entropy each time ...
    Solver(other, data, batch_size=10, num_epochs=1, verbose=False, progress=False).load_checkpoint(tmp_path / "ck.npz")
    assert other.dropout_seed == net.dropout_seed  # ... until restored
    X, y = rng.standard_normal((5, 8)), rng.integers(3, size=5)
    net.set_step(9), other.set_step(9)
    assert float(other.loss(X, y)[0]) == float(net.loss(X, y)[0])


# -- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 0.0, -0.1, 1.01, True, "0.5", float("nan")])
def test_keep_ratio_outside_0_1_is_refused(keep):
    with pytest.raises(ValueError, match=r"dropout_keep_ratio .* \(0, 1\]"):
        FullyConnectedNet(8, [6], 3, dropout_keep_ratio=keep)


@pytest.mark.parametrize("norm", ["batch", "BatchNorm", "groupnorm", True])
def test_unknown_normalization_is_refused(norm):
    with pytest.raises(ValueError, match=r"normalization must be None, 'batchnorm' or 'layernorm'"):
        FullyConnectedNet(8, [6], 3, normalization=norm)


@pytest.mark.parametrize("scale", ["kaiming", "", "HE"])
def test_unknown_weight_scale_name_is_refused(scale):
    with pytest.raises(ValueError, match=r"weight_scale must be a number >= 0, 'he' or 'xavier'"):
        FullyConnectedNet(8, [6], 3, weight_scale=scale)


@pytest.mark.parametrize("scale", [-1.0, float("inf"), True, None])
def test_bad_weight_scale_number_is_refused(scale):
    with pytest.raises((TypeError, ValueError), match="weight_scale must be"):
        FullyConnectedNet(8, [6], 3, weight_scale=scale)
