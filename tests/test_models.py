"""ShallowLayerNet and FullyConnectedNet: the chapter's checks, cross-backend equality, bad input."""

import math

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, ShallowLayerNet, eval_numerical_gradient


def assert_grads_match_numeric(model, X, y, rtol=1e-6, atol=1e-8):
    """Analytic vs centred-difference gradients for every parameter.

    A mixed tolerance instead of the chapter's bare rel_error: entries whose true gradient is ~0 (dead
    ReLUs) make rel_error blow up on 1e-11 noise without anything being wrong.
    """
    _, grads = model.loss(X, y)
    assert sorted(grads) == sorted(model.params)
    for name in sorted(grads):
        num = fcn.to_host(eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False))
        ana = fcn.to_host(grads[name])
        np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol, err_msg=name)


def seed_shallow_net(backend):
    """The chapter's ShallowLayerNet fixture with hand-set parameters."""
    N, D, H, C = 3, 5, 50, 7
    model = ShallowLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-2, backend=backend)
    model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    model.params["b1"] = np.linspace(-0.1, 0.9, num=H)
    model.params["W2"] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    y = np.asarray([0, 5, 1])
    return model, X, y


def test_shallow_init(backend):
    std = 1e-2
    model = ShallowLayerNet(input_dim=5, hidden_dim=50, num_classes=7, weight_scale=std, backend=backend, seed=0)
    p = {k: fcn.to_host(v) for k, v in model.params.items()}
    assert abs(p["W1"].std() - std) < std / 10
    assert abs(p["W2"].std() - std) < std / 10
    assert np.all(p["b1"] == 0) and np.all(p["b2"] == 0)
    assert p["W1"].shape == (5, 50) and p["b2"].shape == (7,)


def test_shallow_known_scores_and_losses(backend):
    """The chapter's reference values (computed by the original implementation)."""
    model, X, y = seed_shallow_net(backend)
    correct_scores = np.asarray(
        [[11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
         [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
         [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319]]
    )  # fmt: skip
    scores = model.loss(X)
    assert np.abs(fcn.to_host(scores) - correct_scores).sum() < 1e-6
    loss, _ = model.loss(X, y)
    assert abs(float(loss) - 3.4702243556) < 1e-10
    model.reg = 1.0
    loss, _ = model.loss(X, y)
    assert abs(float(loss) - 26.5948426952) < 1e-10


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_shallow_gradients(backend, reg):
    model, X, y = seed_shallow_net(backend)
    model.reg = reg
    assert_grads_match_numeric(model, X, y)


@pytest.mark.parametrize("hidden_dims", [[20], [20, 30], [20, 30, 20]])
@pytest.mark.parametrize("reg", [0.0, 0.11, 3.14])
def test_fc_gradients(backend, rng, hidden_dims, reg):
    N, D, C = 2, 15, 10
    X, y = rng.standard_normal((N, D)), rng.integers(C, size=N)
    model = FullyConnectedNet(D, hidden_dims, C, reg=reg, weight_scale=5e-2, backend=backend, seed=0)
    assert_grads_match_numeric(model, X, y)


def test_initial_loss_is_log_c_for_small_weights(backend, rng):
    X, y = rng.standard_normal((20, 3072)), rng.integers(10, size=20)
    model = FullyConnectedNet(3072, [100, 100], 10, weight_scale=1e-4, backend=backend, seed=0)
    loss, _ = model.loss(X, y)
    assert abs(float(loss) - math.log(10)) < 1e-3


def test_seed_positional_signature():
    net = FullyConnectedNet(3 * 32 * 32, [100, 100], 10, 0.5, 1e-1)
    assert net.reg == 0.5 and net.weight_scale == 1e-1 and sorted(net.params) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    shallow = ShallowLayerNet(32 * 32 * 3, 100, 10)
    assert shallow.weight_scale == 1e-3 and shallow.hidden_dim == 100


@pytest.mark.parametrize("hidden_dims", [[7], [7, 6]])
def test_backends_agree_with_numpy(backend, rng, hidden_dims):
    """Same seed -> identical parameters; loss, scores and every gradient equal to NumPy float64."""
    X, y = rng.standard_normal((9, 2, 3, 2)), rng.integers(4, size=9)
    ref = FullyConnectedNet(12, hidden_dims, 4, reg=0.3, weight_scale=0.5, seed=7)
    net = FullyConnectedNet(12, hidden_dims, 4, reg=0.3, weight_scale=0.5, seed=7, backend=backend)
    for name in ref.params:
        np.testing.assert_array_equal(fcn.to_host(net.params[name]), ref.params[name])
    ref_loss, ref_grads = ref.loss(X, y)
    loss, grads = net.loss(X, y)
    assert abs(float(loss) - float(ref_loss)) < 1e-12
    for name in ref_grads:
        assert fcn.namespace_of(grads[name]).name == backend.name
        np.testing.assert_allclose(fcn.to_host(grads[name]), ref_grads[name], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fcn.to_host(net.loss(X)), ref.loss(X), rtol=1e-12, atol=1e-14)


def test_float32_model(backend, rng):
    X, y = rng.standard_normal((9, 12)), rng.integers(4, size=9)
    ref = FullyConnectedNet(12, [7], 4, reg=0.3, weight_scale=0.5, seed=7)
    net = FullyConnectedNet(12, [7], 4, reg=0.3, weight_scale=0.5, seed=7, backend=backend, dtype="float32")
    loss, grads = net.loss(X, y)
    assert loss.dtype == backend.xp.float32
    assert all(g.dtype == backend.xp.float32 for g in grads.values())
    ref_loss, ref_grads = ref.loss(X, y)
    assert abs(float(loss) - float(ref_loss)) < 1e-5
    for name in ref_grads:
        np.testing.assert_allclose(fcn.to_host(grads[name]), ref_grads[name], rtol=1e-4, atol=1e-5)


def test_predict_returns_the_inputs_namespace(backend, rng):
    net = FullyConnectedNet(6, [5], 3, seed=0, backend=backend)
    X = rng.standard_normal((25, 6))
    host_labels = net.predict(X, batch_size=10)
    assert isinstance(host_labels, np.ndarray) and host_labels.shape == (25,)
    dev_labels = net.predict(backend.asarray(X))
    assert fcn.namespace_of(dev_labels).name == backend.name
    np.testing.assert_array_equal(fcn.to_host(dev_labels), host_labels)
    np.testing.assert_array_equal(host_labels, np.argmax(fcn.to_host(net.loss(X)), axis=1))


def test_train_on_separable_data(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 20))
    y = np.argmax(X @ rng.standard_normal((20, 4)), axis=1)
    net = ShallowLayerNet(20, 64, 4, weight_scale=1e-1, backend=backend, seed=0)
    stats = net.train(
        X[:500],
        y[:500],
        X[500:],
        y[500:],
        learning_rate=0.5,
        learning_rate_decay=0.98,
        num_iters=500,
        batch_size=50,
        seed=0,
    )
    assert len(stats["loss_history"]) == 500
    assert len(stats["val_acc_history"]) == len(stats["train_acc_history"]) == 50  # once per epoch
    assert stats["loss_history"][-1] < 0.5 * stats["loss_history"][0]
    assert stats["best_val_acc"] >= 0.9
    assert (net.predict(X[500:]) == y[500:]).mean() == pytest.approx(stats["best_val_acc"])


# -- bad input -------------------------------------------------------------------------------------------


@pytest.fixture
def small_net(backend):
    return FullyConnectedNet(6, [5], 3, seed=0, backend=backend)


def test_wrong_feature_count(small_net):
    with pytest.raises(ValueError, match="7 features per sample.*expects 6"):
        small_net.loss(np.zeros((2, 7)))


def test_one_dimensional_input(small_net):
    with pytest.raises(ValueError, match=r"shape \(N, d_1, ..., d_k\)"):
        small_net.loss(np.zeros(6))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input(small_net, bad):
    X = np.zeros((2, 6))
    X[1, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        small_net.loss(X)


def test_labels_out_of_range(small_net):
    with pytest.raises(ValueError, match=r"outside \[0, 3\): min 0, max 3"):
        small_net.loss(np.zeros((2, 6)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"min -1"):
        small_net.loss(np.zeros((2, 6)), np.array([-1, 0]))


def test_non_integer_labels(small_net):
    with pytest.raises(TypeError, match="integer class labels"):
        small_net.loss(np.zeros((2, 6)), np.array([0.0, 1.0]))


def test_label_count_mismatch(small_net):
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        small_net.loss(np.zeros((2, 6)), np.array([0, 1, 2]))


def test_non_numeric_input(small_net):
    with pytest.raises(TypeError, match="real numbers"):
        small_net.loss(np.zeros((2, 6), dtype=bool))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="hidden_dims"):
        FullyConnectedNet(6, [5, 0], 3)
    with pytest.raises(ValueError, match="reg"):
        FullyConnectedNet(6, [5], 3, reg=-1)
    with pytest.raises(TypeError, match="real floating"):
        FullyConnectedNet(6, [5], 3, dtype="int32")


def test_device_arrays_of_another_device_are_refused():
    strict = pytest.importorskip("array_api_strict")
    net = FullyConnectedNet(6, [5], 3, backend="array_api_strict", device=strict.Device("device1"))
    with pytest.raises(fcn.BackendError, match="device"):
        net.loss(strict.asarray(np.zeros((2, 6))))


def test_integer_images_are_cast_to_the_model_dtype(small_net):
    scores = small_net.loss(np.full((2, 6), 3, dtype=np.uint8))
    assert scores.dtype == small_net.dtype


# -- a trained model carries its preprocessing -------------------------------------------------------------------


def _model_with_mean(tmp_path):
    from fixtures.make_fixtures import HERE

    return fcn.load_model(HERE / "model-0.1.0.npz")


def test_raw_uint8_images_get_the_models_preprocessing(tmp_path):
    net = _model_with_mean(tmp_path)
    net.mean_image = np.linspace(0, 255, 48).reshape(3, 4, 4)
    raw = np.random.default_rng(0).integers(0, 256, size=(7, 3, 4, 4), dtype=np.uint8)
    prepared = raw.astype(np.float64) - net.mean_image  # as fcn.get_CIFAR10_data prepares the training data
    np.testing.assert_array_equal(net.predict(raw), net.predict(prepared))
    np.testing.assert_array_equal(net.predict(np.moveaxis(raw, 1, -1)), net.predict(prepared))  # channels last
    np.testing.assert_allclose(net.predict_proba(raw), net.predict_proba(prepared), rtol=1e-12)
    # float pixels are taken as preprocessed unless said otherwise
    np.testing.assert_array_equal(net.predict(raw.astype(np.float64), raw=True), net.predict(prepared))


def test_predict_proba_is_the_softmax_of_the_scores(tmp_path):
    net = _model_with_mean(tmp_path)
    X = np.random.default_rng(1).normal(size=(5, 3, 4, 4))
    scores = fcn.to_host(net.loss(X))
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba, expected, rtol=1e-12)
    assert proba.shape == (5, 3) and net.predict_proba(X[:0]).shape == (0, 3)
