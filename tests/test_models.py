"""The models (fcn/models.py), ShallowLayerNet and FullyConnectedNet: the chapter's checks, cross-backend
equality, dropout, normalization and named initialisations, train and eval modes, predict,
``ShallowLayerNet.train``, bad input."""

import itertools
import json
import math

import numpy as np
import pytest
from helpers import ScaledNet, assert_grads_match_numeric, separable

import fcn
from fcn import FullyConnectedNet, ShallowLayerNet
from fcn.backend import to_host
from fcn.modules import Affine, AffineReLU, BatchNorm, Dropout, Layer, LayerNorm, ReLU


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


def _net_with_mean(shape=(3, 4, 6), seed=0, backend=None):
    """A net taking images of ``shape`` (C, H, W), with a mean image that differs at every pixel."""
    net = FullyConnectedNet(math.prod(shape), [7], 3, weight_scale=0.1, seed=seed, backend=backend)
    net.mean_image = np.random.default_rng(seed).uniform(0, 255, size=shape)
    return net


def test_channels_last_raw_images_are_transposed_not_reshaped(backend):
    net = _net_with_mean((3, 4, 6), backend=backend)  # height 4, width 6: a reshape would scramble the pixels
    raw = np.random.default_rng(2).integers(0, 256, size=(5, 3, 4, 6), dtype=np.uint8)
    prepared = raw.astype(np.float64) - net.mean_image
    expected = to_host(net.predict_proba(prepared))
    channels_last = np.ascontiguousarray(raw.transpose(0, 2, 3, 1))  # (5, 4, 6, 3), as Pillow gives images
    np.testing.assert_allclose(to_host(net.predict_proba(channels_last)), expected, rtol=1e-12)
    np.testing.assert_allclose(to_host(net.predict_proba(raw.reshape(5, -1))), expected, rtol=1e-12)  # flat rows
    on_device = net.predict(fcn.to_backend(channels_last, net.backend))  # device input stays on the device
    np.testing.assert_array_equal(to_host(on_device), np.argmax(expected, axis=1))


@pytest.mark.parametrize(
    ("shape", "channels_last"),
    [
        ((5, 6, 3), True),  # 3 channels last, and 5 cannot be a channel count
        ((3, 5, 6), False),
        ((3, 4, 4), False),  # a last axis of 4 after a first of 3: the first holds the channels
        ((4, 6, 3), False),  # ambiguous: 4 can be a channel count too, and channels first is the default
        ((5, 6, 2), False),  # 2 is no channel count (1, 3 or 4)
    ],
)
def test_without_a_mean_image_the_layout_of_raw_images_is_told_by_their_shape(shape, channels_last):
    """A model with no mean image takes raw ``(N, H, W, C)`` images for channels last only when ``C`` is 1, 3
    or 4 and ``H`` is not; everything else is read as ``(N, C, H, W)``."""
    net = FullyConnectedNet(math.prod(shape), [3], 2, seed=0)
    raw = np.random.default_rng(5).integers(0, 256, size=(2, *shape), dtype=np.uint8)
    expected = raw.transpose(0, 3, 1, 2) if channels_last else raw
    prepared = net.prepare(raw)
    assert prepared.shape == expected.shape
    np.testing.assert_array_equal(prepared, expected.astype(np.float64))


def test_an_integer_mean_image_is_subtracted_in_float64(backend):
    """A mean image of whole pixel values (uint8, as an image file holds it) works on every backend."""
    net = FullyConnectedNet(72, [7], 3, weight_scale=0.1, seed=0, backend=backend)
    net.mean_image = np.random.default_rng(6).integers(0, 256, size=(3, 4, 6), dtype=np.uint8)
    raw = np.random.default_rng(7).integers(0, 256, size=(2, 3, 4, 6), dtype=np.uint8)
    prepared = net.prepare(raw)
    assert prepared.dtype == net.dtype
    np.testing.assert_array_equal(to_host(prepared), raw.astype(np.float64) - net.mean_image)


def test_predict_proba_of_rows_of_very_different_scale():
    """Each row's softmax is taken on its own: a row of small scores next to one of huge scores keeps its
    probabilities (a shift shared by the whole batch would underflow it to 0 / 0)."""
    net = FullyConnectedNet(2, [], 3, seed=0)  # softmax regression: scores = X @ W1 + b1
    net.params["W1"] = np.asarray([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    X = np.asarray([[0.0, 0.0], [1000.0, 0.0]])  # scores (0, 0, 0) and (1000, 2000, 3000)
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba, [[1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]], rtol=1e-12)


def test_predict_proba_of_raw_images_sums_to_one_per_row():
    net = _net_with_mean()
    raw = np.random.default_rng(3).integers(0, 256, size=(9, 4, 6, 3), dtype=np.uint8)
    proba = net.predict_proba(raw)
    assert proba.shape == (9, 3) and proba.dtype == net.dtype and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(np.argmax(proba, axis=1), net.predict(raw))


def test_float_images_without_stored_preprocessing_are_used_as_given():
    net = FullyConnectedNet(72, [7], 3, weight_scale=0.1, seed=0)  # no mean image
    X = np.random.default_rng(4).normal(size=(4, 4, 6, 3))  # shaped like channels-last images, but float
    scores = fcn.to_host(net.loss(X.reshape(4, -1)))
    np.testing.assert_array_equal(net.predict(X), np.argmax(scores, axis=1))


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (np.zeros((2, 3, 6, 4), np.uint8), ValueError, r"raw images have shape \(3, 6, 4\), but the model's are"),
        (np.zeros((2, 3, 4, 5), np.uint8), ValueError, "60 features per sample .* expects 72"),
        (np.zeros((2,), np.uint8), ValueError, "X must have shape"),
    ],
    ids=["width-and-height-swapped", "wrong-size", "one-dimensional"],
)
def test_raw_images_that_do_not_fit_the_model_are_refused(images, error, message):
    with pytest.raises(error, match=message):
        _net_with_mean().predict(images)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_broken_mean_image_is_blamed_on_the_model(bad):
    net = _net_with_mean()
    net.mean_image[1, 0, 0] = bad
    with pytest.raises(ValueError, match="the model's mean_image holds NaN or infinite values"):
        net.predict(np.zeros((1, 3, 4, 6), np.uint8))


def test_raw_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match="raw must be True, False or None"):
        _net_with_mean().predict(np.zeros((1, 3, 4, 6), np.uint8), raw="yes")


# -- FullyConnectedNet: construction, arguments, the layer list -----------------------------------------------------


EITHER = (TypeError, ValueError)  # TypeError for a value of the wrong type, ValueError for one out of range


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_dim": 0}, EITHER, r"^input_dim must be a positive integer, got 0$"),
        ({"input_dim": True}, EITHER, r"^input_dim must be an integer, got True \(bool\)$"),
        ({"input_dim": 6.0}, EITHER, r"^input_dim must be an integer, got 6\.0 \(float\)$"),
        ({"hidden_dims": [5, -1]}, EITHER, r"^hidden_dims entries must be a positive integer, got -1$"),
        ({"hidden_dims": None}, TypeError, "hidden_dims"),
        ({"hidden_dims": [5, 2.5]}, TypeError, "hidden_dims"),
        ({"num_classes": 0}, EITHER, r"^num_classes must be a positive integer, got 0$"),
        ({"reg": -0.5}, EITHER, r"^reg must be >= 0, got -0\.5$"),
        ({"reg": float("nan")}, EITHER, r"^reg must be a finite number, got nan$"),
        ({"reg": "0.1"}, TypeError, "reg"),
        ({"weight_scale": -1.0}, EITHER, r"^weight_scale must be >= 0, got -1$"),
        ({"weight_scale": float("inf")}, EITHER, r"^weight_scale must be a finite number, got inf$"),
        ({"weight_scale": None}, TypeError, "weight_scale"),
        ({"dtype": None}, TypeError, "dtype"),
        ({"dtype": "int32"}, TypeError, "dtype"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_constructor_arguments_are_checked_with_a_clear_message(kwargs, error, message):
    args = {"input_dim": 6, "hidden_dims": [5], "num_classes": 3, **kwargs}
    with pytest.raises(error, match=message):
        FullyConnectedNet(**args)


def test_constructor_edge_values_are_accepted():
    net = FullyConnectedNet(1, np.int64(2), 1, reg=0.0, weight_scale=0.0, seed=0)
    assert net.hidden_dims == [2] and net.num_layers == 2
    assert all(not np.any(v) for v in net.params.values())  # weight_scale 0: all zeros
    assert FullyConnectedNet(6, 4, 3).hidden_dims == [4]
    assert FullyConnectedNet(6, [], 3).num_layers == 1  # softmax regression


def test_repr_names_the_shape_and_the_settings():
    net = FullyConnectedNet(6, [5, 4], 3, reg=0.5, dtype="float32")
    assert repr(net) == "FullyConnectedNet(6-5-4-3, reg=0.5, backend=numpy, dtype=float32)"
    assert repr(ShallowLayerNet(8, 10, 2)) == "ShallowLayerNet(8-10-2, reg=0.0, backend=numpy, dtype=float64)"
    both = FullyConnectedNet(6, [5], 3, normalization="batchnorm", dropout_keep_ratio=0.5)
    assert repr(both) == (
        "FullyConnectedNet(6-5-3, reg=0.0, batchnorm, dropout_keep_ratio=0.5, backend=numpy, dtype=float64)"
    )


def test_get_config_rebuilds_the_same_network():

    net = FullyConnectedNet(6, [5, 4], 3, reg=0.25, weight_scale=0.3, dtype="float32", seed=9)
    config = json.loads(json.dumps(net.get_config()))
    assert config == {
        "input_dim": 6,
        "hidden_dims": [5, 4],
        "num_classes": 3,
        "reg": 0.25,
        "weight_scale": 0.3,
        "dtype": "float32",
        "seed": 9,
        "dropout_keep_ratio": 1.0,
        "normalization": None,
    }
    twin = FullyConnectedNet(**config)
    assert sorted(twin.params) == sorted(net.params)
    for name, value in net.params.items():
        np.testing.assert_array_equal(twin.params[name], value)
        assert twin.params[name].dtype == np.float32


def test_fully_connected_net_constructor_defaults():
    """The defaults fit CIFAR-10: 3072 inputs, one hidden layer of 100, 10 classes."""
    net = FullyConnectedNet(seed=0)
    assert (net.input_dim, net.hidden_dims, net.num_classes, net.reg) == (3072, [100], 10, 0.0)
    assert net.weight_scale == 1e-2 and net.dtype == np.float64
    assert (net.dropout_keep_ratio, net.normalization) == (1.0, None)
    assert net.params["W2"].shape == (100, 10) and net.params["b2"].shape == (10,)


def test_shallow_get_config_rebuilds_the_same_shallow_net():
    """The shallow net's config speaks its own constructor: one ``hidden_dim``, no dropout or normalization."""
    net = ShallowLayerNet(6, 4, 3, weight_scale=0.3, reg=0.25, dtype="float32", seed=9)
    config = json.loads(json.dumps(net.get_config()))
    assert config == {
        "input_dim": 6,
        "hidden_dim": 4,
        "num_classes": 3,
        "reg": 0.25,
        "weight_scale": 0.3,
        "dtype": "float32",
        "seed": 9,
    }
    twin = ShallowLayerNet(**config)
    assert sorted(twin.params) == sorted(net.params)
    for name, value in net.params.items():
        np.testing.assert_array_equal(twin.params[name], value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FullyConnectedNet(12, [5, 4], 3, weight_scale=0.3, normalization="batchnorm", seed=1),
        lambda: ShallowLayerNet(12, 5, 3, weight_scale=0.3, reg=0.1, seed=1),
    ],
    ids=["fully-connected", "shallow"],
)
def test_a_saved_model_loads_back_as_the_same_model(tmp_path, rng, make):
    net = make()
    net.params["b1"] = rng.standard_normal(5)  # a trained value, not the seed's
    path = net.save(tmp_path / "net.npz")
    assert path == tmp_path / "net.npz" and path.is_file()
    loaded = fcn.load_model(path)
    assert type(loaded) is type(net) and loaded.get_config() == net.get_config()
    X = rng.standard_normal((4, 12))
    np.testing.assert_array_equal(fcn.to_host(loaded.loss(X)), fcn.to_host(net.loss(X)))


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


def test_a_model_refuses_a_dtype_its_namespace_lacks_or_that_is_not_floating():
    with pytest.raises(ValueError, match="not available"):
        FullyConnectedNet(4, [3], 2, dtype="float99")
    with pytest.raises(TypeError, match="real floating"):
        FullyConnectedNet(4, [3], 2, dtype="int64")


@pytest.mark.parametrize("dtype", [float, 3, "sum"], ids=["python-float", "a-number", "a-function-name"])
def test_a_dtype_that_is_no_dtype_at_all_is_refused_with_a_type_error(backend, dtype):
    """``float`` or a name the namespace holds that is no dtype (``"sum"``) is refused as any other bad dtype."""
    with pytest.raises(TypeError, match="dtype must be a real floating type"):
        FullyConnectedNet(4, [3], 2, dtype=dtype, backend=backend)


def test_huge_weight_scale_is_named():
    with pytest.raises(ValueError, match=r"weight_scale=1e\+300.*float32"):
        FullyConnectedNet(12, [5], 3, weight_scale=1e300, dtype="float32")


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


def test_default_layer_list():
    net = FullyConnectedNet(12, [8, 6], 3, seed=0)
    assert [type(layer) for layer in net.layers] == [AffineReLU, AffineReLU, Affine]
    assert [layer.need_dx for layer in net.layers] == [False, True, True]
    assert sorted(net.params) == ["W1", "W2", "W3", "b1", "b2", "b3"] and dict(net.buffers) == {}


def test_only_the_first_layer_skips_its_input_gradient():
    net = FullyConnectedNet(4, [3, 3], 2, seed=0)
    assert [layer.need_dx for layer in net.layers] == [False, True, True]


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


# -- parameters -----------------------------------------------------------------------------------------------------


def test_model_parameters_follow_the_model_dtype_and_device(backend):
    net = FullyConnectedNet(4, [3], 2, seed=0, backend=backend, dtype="float32")
    net.params["W1"] = np.ones((4, 3))  # host float64 assigned: stored on the backend, as float32
    assert net.params["W1"].dtype == backend.xp.float32
    assert fcn.namespace_of(net.params["W1"]).name == backend.name
    np.testing.assert_array_equal(to_host(net.params["W1"]), np.ones((4, 3), dtype=np.float32))


def test_params_dict_casts_and_moves_every_way_of_setting(backend):
    net = FullyConnectedNet(3, [2], 2, seed=0, backend=backend, dtype="float32")
    net.params.update({"b1": np.ones(2)}, b2=np.full(2, 2.0))
    assert net.params["b1"].dtype == backend.xp.float32 and net.params["b2"].dtype == backend.xp.float32
    np.testing.assert_array_equal(fcn.to_host(net.params["b2"]), [2.0, 2.0])
    assert fcn.namespace_of(net.params["b1"]).name == backend.name
    got = net.params.setdefault("arrays", np.zeros(3))
    assert got.dtype == backend.xp.float32 and fcn.namespace_of(got).name == backend.name
    kept = net.params.setdefault("b2", np.zeros(2))
    np.testing.assert_array_equal(fcn.to_host(kept), [2.0, 2.0])


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


# -- training and evaluation modes ----------------------------------------------------------------------------------


def test_loss_mode_is_checked():
    net = FullyConnectedNet(4, [3], 2, seed=0)
    with pytest.raises(ValueError, match="mode must be 'train' or 'eval'"):
        net.loss(np.ones((2, 4)), mode="test")
    scores_eval = net.loss(np.ones((2, 4)), mode="eval")
    np.testing.assert_array_equal(scores_eval, net.loss(np.ones((2, 4))))


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


def test_loss_modes_reach_the_layers():

    seen: list = []

    class Spy(Layer):
        def forward(self, ops, x, params, buffers, train):
            seen.append(train)
            return x, None

    class SpiedNet(FullyConnectedNet):
        def build_layers(self):
            return [Spy(), *super().build_layers()]

    net = SpiedNet(4, [3], 2, seed=0)
    X, y = np.ones((2, 4)), np.asarray([0, 1])
    net.loss(X)
    net.loss(X, y)
    net.loss(X, mode="train")
    net.loss(X, y, mode="eval")
    net.loss(X, y, mode="train")
    assert seen == [False, True, True, False, True]


def test_a_forward_pass_that_loses_a_cache_is_refused():
    """Layers and caches are paired from the end: a ``forward`` (overridden in a subclass) that returns one cache
    too few must stop the backward pass, not pair the layers with the wrong caches or skip one silently."""

    class LossyNet(FullyConnectedNet):
        def forward(self, X, *, train=False):
            scores, caches = super().forward(X, train=train)
            return scores, caches[1:]

    net = LossyNet(4, [3], 2, seed=0)
    with pytest.raises(ValueError):
        net.loss(np.ones((2, 4)), np.asarray([0, 1]))


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


# -- dropout and normalization: gradients, backends, float32 --------------------------------------------------------


COMBINATIONS = list(itertools.product([None, "batchnorm", "layernorm"], [1.0, 0.6]))


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


@pytest.mark.parametrize("normalization", ["batchnorm", "layernorm"])
def test_nets_with_normalization_agree_with_numpy(backend, rng, normalization):
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


# -- predict --------------------------------------------------------------------------------------------------------


def test_predict_in_chunks_equals_predict_at_once(backend, rng):
    net = FullyConnectedNet(5, [30], 4, weight_scale=1.0, seed=2, backend=backend)
    X = 5 * rng.standard_normal((11, 5))
    whole = fcn.to_host(net.predict(X))
    expected = np.argmax(fcn.to_host(net.loss(X)), axis=1)
    np.testing.assert_array_equal(whole, expected)
    for size in (1, 3, 11, 50):
        np.testing.assert_array_equal(fcn.to_host(net.predict(X, batch_size=size)), expected)
    assert len(np.unique(expected)) > 1  # the check means something
    # host input gives host labels; device input keeps the device
    assert type(net.predict(X)) is np.ndarray
    on_device = net.predict(backend.asarray(X))
    assert fcn.namespace_of(on_device).name == backend.name
    empty = net.predict(np.zeros((0, 5)))
    assert tuple(empty.shape) == (0,)


def test_predict_of_no_samples_stays_on_the_device(backend):
    net = FullyConnectedNet(3, [2], 2, seed=0, backend=backend)
    empty = net.predict(backend.asarray(np.zeros((0, 3))))
    assert tuple(empty.shape) == (0,)
    assert fcn.namespace_of(empty).name == backend.name
    if backend.device is not None:
        assert empty.device == backend.device


def test_three_dimensional_inputs_are_flattened_like_any_other(backend, rng):
    net = FullyConnectedNet(12, [5], 3, weight_scale=0.5, seed=0, backend=backend)
    X, y = rng.standard_normal((4, 3, 4)), rng.integers(3, size=4)
    np.testing.assert_allclose(fcn.to_host(net.loss(X)), fcn.to_host(net.loss(X.reshape(4, 12))), rtol=1e-13)
    loss3, grads3 = net.loss(X, y)
    loss2, grads2 = net.loss(X.reshape(4, 12), y)
    assert float(loss3) == float(loss2)
    np.testing.assert_array_equal(fcn.to_host(net.predict(X)), fcn.to_host(net.predict(X.reshape(4, 12))))


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5])
def test_predict_batch_size_is_checked(batch_size):
    net = FullyConnectedNet(12, [5], 3, seed=0)
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        net.predict(np.zeros((4, 12)), batch_size=batch_size)


def test_predict_with_non_finite_parameters_raises():
    net = FullyConnectedNet(12, [5], 3, seed=0)
    W1 = fcn.to_host(net.params["W1"]).copy()
    W1[0, 0] = np.nan
    net.params["W1"] = W1
    with pytest.raises(ValueError, match="W1.*(NaN|infinite)"):
        net.predict(np.zeros((4, 12)))


# -- ShallowLayerNet: constructor, and train() where every argument takes effect ------------------------------------


def test_shallow_net_constructor_defaults():
    net = ShallowLayerNet(seed=0)
    assert (net.input_dim, net.hidden_dim, net.num_classes, net.reg) == (3072, 100, 10, 0.0)
    assert net.weight_scale == 1e-3 and net.dtype == np.float64
    assert 0.8e-3 < np.std(net.params["W1"]) < 1.2e-3
    other = ShallowLayerNet(4, 3, 2, 0.5, 0.25, seed=1)
    assert (other.weight_scale, other.reg) == (0.5, 0.25)
    np.testing.assert_allclose(other.params["W1"], 0.5 * np.random.default_rng(1).standard_normal((4, 3)))


def test_shallow_net_passes_backend_device_and_dtype_on():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    net = ShallowLayerNet(4, 3, 2, backend="array_api_strict", device=dev, dtype="float32", seed=0)
    assert net.backend.name == "array_api_strict" and net.backend.device == dev
    assert net.params["W1"].dtype == strict.float32 and net.params["W1"].device == dev


def test_shallow_train_defaults_match_the_chapter():
    """Defaults: lr 1e-3, decay 0.95 per epoch, 100 iterations, batches of 200, quiet."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((400, 8)), rng.integers(3, size=400)
    net = ShallowLayerNet(8, 10, 3, weight_scale=0.1, seed=0)
    stats = net.train(X, y, X[:50], y[:50], seed=0, progress=False)
    assert len(stats["loss_history"]) == 100
    assert len(stats["val_acc_history"]) == 50  # 400 / 200 = 2 steps per epoch
    twin = ShallowLayerNet(8, 10, 3, weight_scale=0.1, seed=0)
    explicit = twin.train(
        X, y, X[:50], y[:50], 1e-3, 0.95, None, 100, 200, False, seed=0, progress=False, update_rule="sgd"
    )
    assert explicit["loss_history"] == stats["loss_history"]
    assert net.reg == 0.0  # reg=None keeps the model's own


def shallow_data(seed=0, n=100):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 8))
    y = np.argmax(X @ rng.standard_normal((8, 3)), axis=1)
    return X[:80], y[:80], X[80:], y[80:]


BASE = dict(learning_rate=5e-2, learning_rate_decay=0.5, reg=0.0, num_iters=12, batch_size=20, verbose=False)


def shallow_train(data=None, **changes):
    X, y, X_val, y_val = shallow_data() if data is None else data
    net = ShallowLayerNet(8, 10, 3, weight_scale=0.1, seed=0)
    kw = dict(BASE, **changes)
    stats = net.train(X, y, X_val, y_val, seed=4, progress=False, **kw)
    return net, stats


def test_shallow_train_defaults_to_its_documented_shape():
    net, stats = shallow_train()
    assert len(stats["loss_history"]) == 12
    assert len(stats["train_acc_history"]) == 3 and len(stats["val_acc_history"]) == 3  # 80 / 20 = 4 steps/epoch
    assert stats["best_val_acc"] == max(stats["val_acc_history"])


def test_shallow_train_uses_its_training_data():
    _, base = shallow_train()
    X, y, X_val, y_val = shallow_data()
    _, other = shallow_train(data=(X[::-1].copy(), (y[::-1] + 1) % 3, X_val, y_val))
    assert other["loss_history"] != base["loss_history"]


def test_shallow_train_scores_on_its_validation_data():
    _, base = shallow_train()
    X, y, X_val, y_val = shallow_data()
    _, other = shallow_train(data=(X, y, X_val, (y_val + 1) % 3))
    assert other["loss_history"] == base["loss_history"]  # same training ...
    assert other["val_acc_history"] != base["val_acc_history"]  # ... scored against other labels


def test_shallow_train_learning_rate_takes_effect():
    _, base = shallow_train()
    _, other = shallow_train(learning_rate=1e-3)
    assert other["loss_history"][0] == base["loss_history"][0]  # same start
    assert other["loss_history"][1:] != base["loss_history"][1:]


def test_shallow_train_learning_rate_decay_takes_effect():
    _, base = shallow_train()
    _, other = shallow_train(learning_rate_decay=1.0)
    n = 4  # steps per epoch: the first epoch is identical, the decay shows from the second on
    assert other["loss_history"][:n] == base["loss_history"][:n]
    assert other["loss_history"][n:] != base["loss_history"][n:]


def test_shallow_train_reg_takes_effect():
    _, base = shallow_train()
    net, other = shallow_train(reg=0.5)
    assert net.reg == 0.5
    assert other["loss_history"][0] > base["loss_history"][0]


def test_shallow_train_num_iters_takes_effect():
    _, stats = shallow_train(num_iters=5)
    assert len(stats["loss_history"]) == 5


def test_shallow_train_batch_size_takes_effect():
    _, stats = shallow_train(batch_size=40)  # 2 steps per epoch: 6 epochs in 12 steps
    assert len(stats["loss_history"]) == 12
    assert len(stats["val_acc_history"]) == 6


def test_shallow_train_verbose_takes_effect(capsys):
    shallow_train(verbose=False)
    assert capsys.readouterr().out == ""
    shallow_train(verbose=True)
    out = capsys.readouterr().out
    assert "loss" in out and "val acc" in out


def test_shallow_train_passes_solver_options_through():
    _, sgd = shallow_train()
    _, adam = shallow_train(update_rule="adam", optim_config={"beta1": 0.5})
    _, adam2 = shallow_train(update_rule="adam")
    assert adam["loss_history"][1:] != sgd["loss_history"][1:]
    assert adam["loss_history"][1:] != adam2["loss_history"][1:]


@pytest.mark.parametrize("reg", [-5.0, float("nan"), float("inf")])
def test_chapter_train_rejects_a_bad_reg(reg):
    data = separable()
    net = FullyConnectedNet(12, [5], 3, seed=0)
    with pytest.raises(ValueError, match="reg"):
        net.train(data["X_train"], data["y_train"], data["X_val"], data["y_val"], reg=reg, num_iters=2)
    assert net.reg == 0.0
