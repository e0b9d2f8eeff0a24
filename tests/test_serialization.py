"""Model files (fcn/serialization.py): save on any backend,
load on any backend, no pickle, atomic writes, clear errors naming the file."""

import importlib.util
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import host_copy, rewrite_npz

import fcn
from fcn import FullyConnectedNet, serialization
from fcn.serialization import MODEL_FORMAT, ModelFileError, load_model, register_model, save_model

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _fixture_builders():
    """tests/fixtures/make_fixtures.py as a module: the data the committed fixtures were computed from."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scores(net, X):
    return fcn.to_host(net.loss(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_from_every_backend_to_numpy(backend, tmp_path, rng, dtype):
    net = fcn.FullyConnectedNet(48, [7, 5], 4, reg=0.3, weight_scale=0.1, backend=backend, dtype=dtype, seed=3)
    # training-like changes, so the file must carry the values and not just the seed
    net.params["b1"] = rng.standard_normal(7)
    X = rng.standard_normal((6, 3, 4, 4))
    path = save_model(net, tmp_path / "model.npz")
    assert path == tmp_path / "model.npz"

    loaded = load_model(path)  # NumPy by default, wherever it was saved
    assert type(loaded) is fcn.FullyConnectedNet and loaded.backend.name == "numpy"
    assert (loaded.input_dim, loaded.hidden_dims, loaded.num_classes) == (48, [7, 5], 4)
    assert loaded.reg == 0.3 and loaded.weight_scale == 0.1
    saved = host_copy(net.params)
    for name, value in host_copy(loaded.params).items():
        assert value.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(value, saved[name])  # bit for bit
    np.testing.assert_allclose(_scores(loaded, X), _scores(net, X), rtol=1e-5 if dtype == "float32" else 1e-12)
    assert loaded.mean_image is None and loaded.class_names is None


def test_round_trip_from_numpy_to_every_backend(backend, tmp_path, rng):
    net = fcn.ShallowLayerNet(12, 9, 3, weight_scale=0.2, reg=0.05, dtype="float64", seed=1)
    path = net.save(tmp_path / "shallow.npz")
    loaded = load_model(path, backend=backend)
    assert type(loaded) is fcn.ShallowLayerNet and loaded.hidden_dim == 9 and loaded.reg == 0.05
    assert loaded.backend.name == backend.name
    X = rng.standard_normal((5, 12))
    np.testing.assert_allclose(_scores(loaded, backend.asarray(X)), _scores(net, X), rtol=1e-12)
    X_dev, y = backend.asarray(X), backend.asarray(np.array([0, 1, 2, 0, 1]))
    loss_a, _ = loaded.loss(X_dev, y)
    loss_b, _ = net.loss(X, np.array([0, 1, 2, 0, 1]))
    assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-12)


def test_preprocessing_travels_with_the_model(tmp_path, rng):
    net = fcn.FullyConnectedNet(3 * 32 * 32, [8], 10, dtype="float32", seed=0)
    mean = rng.uniform(0, 255, size=(3, 32, 32)).astype(np.float32)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    net.mean_image, net.class_names = mean, names
    loaded = load_model(net.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.mean_image, mean)
    assert loaded.mean_image.shape == (3, 32, 32) and loaded.class_names == names

    # keyword arguments take precedence over the attributes
    other = list("abcdefghij")
    loaded2 = load_model(save_model(net, tmp_path / "m2.npz", class_names=other))
    assert loaded2.class_names == other


def test_class_names_may_be_an_array_as_a_data_file_holds_them(tmp_path):
    # np.load gives the names of a data set as an array of str, not a list
    net = fcn.FullyConnectedNet(6, [4], 3, seed=0)
    loaded = load_model(save_model(net, tmp_path / "m.npz", class_names=np.array(["cat", "dog", "ship"])))
    assert loaded.class_names == ["cat", "dog", "ship"] and all(type(n) is str for n in loaded.class_names)


def test_file_is_plain_arrays_and_json(tmp_path):
    net = fcn.FullyConnectedNet(6, [4], 3, seed=0)
    path = save_model(net, tmp_path / "m.npz", class_names=["x", "y", "z"])
    with np.load(path, allow_pickle=False) as npz:  # no entry needs pickle
        entries = {k: npz[k] for k in npz.files}
    assert set(entries) == {"meta", "params/W1", "params/b1", "params/W2", "params/b2"}
    assert all(v.dtype != object for v in entries.values())
    meta = json.loads(str(entries["meta"]))
    assert meta["format"] == MODEL_FORMAT and meta["class"] == "FullyConnectedNet"
    expected = {"input_dim": 6, "hidden_dims": [4], "num_classes": 3, "reg": 0.0, "weight_scale": 0.01}
    expected.update(dropout_keep_ratio=1.0, normalization=None)
    assert {k: v for k, v in meta["config"].items() if k != "seed"} == expected  # get_config may add the seed
    assert meta["dtype"] == "float64" and meta["class_names"] == ["x", "y", "z"]
    assert meta["fcn_version"] == fcn.__version__


def test_get_config_is_used_when_the_model_has_it(tmp_path):
    net = fcn.FullyConnectedNet(6, [4], 3, seed=0)
    # placement keys are dropped: the reader chooses backend, device and dtype
    net.get_config = lambda: {"input_dim": 6, "hidden_dims": [4], "num_classes": 3, "reg": 0.5, "dtype": "float64"}
    path = save_model(net, tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        config = json.loads(str(npz["meta"]))["config"]
    assert config == {"input_dim": 6, "hidden_dims": [4], "num_classes": 3, "reg": 0.5}
    assert load_model(path).reg == 0.5


def test_buffers_are_saved_and_restored(tmp_path, rng):
    net = fcn.FullyConnectedNet(6, [4], 3, seed=0)
    net.buffers = {"running_mean1": rng.standard_normal(4)}
    path = save_model(net, tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["buffers/running_mean1"], net.buffers["running_mean1"])
    # this model class has no buffers of its own, so the file does not fit it
    with pytest.raises(ModelFileError, match=r"m\.npz holds buffers \['running_mean1'\]"):
        load_model(path)


def test_overwrite_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_model(fcn.FullyConnectedNet(6, [5], 3, seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left behind


def test_save_creates_the_folder(tmp_path):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "a" / "b" / "m.npz")
    assert path.is_file()


def test_save_rejects_what_it_cannot_rebuild(tmp_path):
    class MyNet(fcn.FullyConnectedNet):
        pass

    with pytest.raises(ValueError, match="MyNet"):
        save_model(MyNet(6, [4], 3), tmp_path / "m.npz")
    net = fcn.FullyConnectedNet(6, [4], 3)
    with pytest.raises(ValueError, match="class_names has 2 entries but the model has 3 classes"):
        save_model(net, tmp_path / "m.npz", class_names=["a", "b"])
    with pytest.raises(ValueError, match="mean_image has shape"):
        save_model(net, tmp_path / "m.npz", mean_image=np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        save_model(net, tmp_path / "m.npz", mean_image=np.full(6, np.nan))
    assert not (tmp_path / "m.npz").exists()


def test_model_file_of_release_0_1_0_loads_and_scores_as_it_did(backend):
    # written and scored by fcn 0.1.0 (tests/fixtures/make_fixtures.py); the format must keep reading it
    expected = json.loads((FIXTURES / "expected.json").read_text())
    net = load_model(FIXTURES / "model-0.1.0.npz", backend=backend)
    assert type(net) is fcn.FullyConnectedNet and net.normalization == "batchnorm"
    assert net.class_names == ["a", "b", "c"] and net.mean_image.shape == (3, 4, 4)
    probe = _fixture_builders().fixture_data(seed=1)["X_train"][:5]
    np.testing.assert_allclose(_scores(net, backend.asarray(probe)), expected["model_scores"], rtol=1e-12)


@pytest.fixture
def registry(monkeypatch):
    """The registry of model classes, restored after the test (a class registered by a test stays out of others)."""
    monkeypatch.setattr(serialization, "_MODEL_CLASSES", dict(serialization._MODEL_CLASSES))


def test_a_registered_class_of_your_own_round_trips(tmp_path, registry):
    @register_model
    class WideNet(fcn.FullyConnectedNet):
        pass

    net = WideNet(6, [5], 3, seed=2)
    loaded = load_model(save_model(net, tmp_path / "wide.npz"))
    assert type(loaded) is WideNet
    np.testing.assert_array_equal(fcn.to_host(loaded.params["W1"]), fcn.to_host(net.params["W1"]))


def test_register_model_refuses_what_it_could_not_rebuild(registry):
    class NoConfig:
        def loss(self, X, y=None): ...

    with pytest.raises(TypeError, match="NoConfig cannot be saved and loaded: it has no get_config"):
        register_model(NoConfig)
    with pytest.raises(TypeError, match="takes a class"):
        register_model(fcn.FullyConnectedNet(6, [4], 3))

    class FullyConnectedNet(fcn.FullyConnectedNet):  # the name a file stores is taken
        pass

    with pytest.raises(
        ValueError,
        match=r"'FullyConnectedNet' is already registered \(.*\); model files name classes by their name, so it must",
    ):
        register_model(FullyConnectedNet)
    assert register_model(fcn.FullyConnectedNet) is fcn.FullyConnectedNet  # registering again changes nothing
    assert set(serialization._MODEL_CLASSES) == {"FullyConnectedNet", "ShallowLayerNet"}


class _Minimal:
    """The least a model class of your own needs to be saved and loaded: params, loss and get_config (no buffers,
    no mean_image, no class_names attributes)."""

    def __init__(self, dim=3, backend=None, dtype="float64"):
        self.dim = dim
        self.params = {"w": np.arange(dim, dtype=dtype)} if dim else {}

    def loss(self, X, y=None):
        return X @ self.params["w"]

    def get_config(self):
        return {"dim": self.dim}


def test_a_class_of_your_own_needs_only_params_loss_and_get_config(tmp_path, registry):
    cls = register_model(type("Minimal", (_Minimal,), {}))
    net = cls(4)
    net.params["w"] = np.array([0.5, -1.0, 2.0, 3.0])
    loaded = load_model(save_model(net, tmp_path / "m.npz"))
    assert type(loaded) is cls and loaded.dim == 4
    np.testing.assert_array_equal(loaded.params["w"], [0.5, -1.0, 2.0, 3.0])
    assert loaded.mean_image is None and loaded.class_names is None


def test_a_model_without_any_array_cannot_be_saved(tmp_path, registry):
    cls = register_model(type("Minimal", (_Minimal,), {}))
    with pytest.raises(ValueError, match="Minimal has no parameters to save"):
        save_model(cls(0), tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_a_class_registered_after_saving_is_found_by_name_only(tmp_path, registry):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    rewrite_npz(path, lambda e: e["meta"].update({"class": "Mine"}))
    with pytest.raises(ModelFileError, match="must be registered with fcn.serialization.register_model"):
        load_model(path)

    @register_model
    class Mine(fcn.FullyConnectedNet):
        pass

    assert type(load_model(path)) is Mine


# -- errors name the file ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"model file .*nowhere\.npz does not exist"):
        load_model(tmp_path / "nowhere.npz")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ModelFileError, match="is a folder"):
        load_model(tmp_path)


def _png(path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(path, format="PNG")


def _npy(path):
    with open(path, "wb") as f:  # np.save(path) would add .npy to the name
        np.save(f, np.zeros(3))


@pytest.mark.parametrize(
    ("make", "held"),
    [
        (lambda p: p.write_bytes(b"not a zip file at all"), "not a zip archive, as an .npz is"),
        (lambda p: p.write_bytes(b""), "not a zip archive, as an .npz is"),
        (lambda p: p.write_text(json.dumps({"loss_history": [2.3]})), "not a zip archive, as an .npz is"),
        (_png, "not a zip archive, as an .npz is"),
        (_npy, "it holds a single .npy array"),
    ],
    ids=["garbage", "empty", "json", "png", "npy"],
)
def test_a_file_that_is_no_archive_is_not_a_model_file(tmp_path, make, held):
    path = tmp_path / "m.npz"
    make(path)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == f"{path}: not an fcn model file ({held})"  # no advice to unpickle it


@pytest.mark.parametrize("size", [200, -200], ids=["head", "tail"])
def test_truncated_file(tmp_path, size):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    data = path.read_bytes()
    path.write_bytes(data[:size])
    with pytest.raises(ModelFileError, match=r"m\.npz is not a readable fcn model file \(BadZipFile"):
        load_model(path)


def test_checkpoint_is_not_a_model(tmp_path):
    X, y = np.random.default_rng(0).standard_normal((20, 6)), np.arange(20) % 3
    net = fcn.FullyConnectedNet(6, [4], 3, seed=0)
    solver = fcn.Solver(
        net,
        {"X_train": X, "y_train": y, "X_val": X, "y_val": y},
        num_iters=1,
        batch_size=10,
        verbose=False,
        progress=False,
    )
    ck = solver.save_checkpoint(tmp_path / "checkpoint.npz")
    with pytest.raises(
        ModelFileError,
        match=r"is a training checkpoint, not a model file: use the model\.npz that fcn train writes next to it, "
        r"or fcn\.save_model\(net, path\)",
    ):
        load_model(ck)


def test_pickle_files(tmp_path):
    np.savez(tmp_path / "obj.npz", meta=np.array([{"format": MODEL_FORMAT}], dtype=object))
    with pytest.raises(ModelFileError, match=r"obj\.npz is not a readable fcn model file: meta holds Python objects"):
        load_model(tmp_path / "obj.npz")


def test_npz_without_meta(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, W1=np.zeros(3))
    with pytest.raises(ModelFileError, match=r"arrays\.npz is not an fcn model file"):
        load_model(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda e: e.update({"params/W1": np.zeros((6, 5))}),
            r"parameter W1 has shape \(6, 5\), the model's is \(6, 4\)",
        ),
        (lambda e: e.pop("params/b2"), r"holds params \['W1', 'W2', 'b1'\]"),
        (lambda e: e["meta"].update({"class": "Pickle"}), "class 'Pickle', which this version of fcn"),
        (lambda e: e["meta"].update({"class": "Params"}), "class 'Params', which this version of fcn"),
        (lambda e: e["meta"].update({"format": "fcn-model-99"}), "unknown model file format 'fcn-model-99'"),
        (lambda e: e["meta"]["config"].update({"hidden_dims": [-1]}), "cannot rebuild FullyConnectedNet"),
        (lambda e: e["meta"]["config"].update({"colour": "red"}), "cannot rebuild FullyConnectedNet"),
        (lambda e: e["meta"].update({"class_names": ["a"]}), "class_names has 1 entries"),
        (lambda e: e.update({"mean_image": np.zeros(7)}), "mean_image has shape"),
        (lambda e: e.update({"mean_image": np.full(6, np.nan)}), "mean_image holds NaN or infinite values"),
        (
            lambda e: e["params/W2"].__setitem__((0, 0), np.nan),
            r"parameter W2 holds NaN or infinite values \(saved from a run that diverged\?\): its predictions would be "
            "meaningless$",
        ),
        (lambda e: e["params/b1"].__setitem__(1, np.inf), "parameter b1 holds NaN or infinite values"),
        (lambda e: e["meta"].update({"class_names": "abc"}), "class_names must be a list of names"),
        # the description lists the arrays the file holds: a file that disagrees with its own description is corrupt
        (lambda e: e["meta"].update({"params": ["W1", "b1", "W2"]}), r"holds params \['W1', 'W2', 'b1', 'b2'\]"),
        (lambda e: e["meta"].update({"buffers": ["running_mean1"]}), r"holds buffers \[\]"),
    ],
    ids=[
        "shape",
        "missing-param",
        "unknown-class",
        "not-a-model-class",
        "format",
        "bad-config",
        "unknown-arg",
        "class-names",
        "mean-image",
        "nan-mean-image",
        "nan-weight",
        "inf-bias",
        "class-names-string",
        "params-not-as-described",
        "buffers-not-as-described",
    ],
)
def test_inconsistent_file(tmp_path, change, message):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    rewrite_npz(path, change)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert "m.npz" in str(info.value)


def test_corrupt_meta(tmp_path):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    entries["meta"] = np.asarray("{not json")
    np.savez(path, **entries)
    with pytest.raises(ModelFileError, match=r"m\.npz: the model description is corrupt"):
        load_model(path)


def test_unavailable_backend_fails_before_reading(tmp_path):
    with pytest.raises(fcn.BackendError, match="unknown backend"):
        load_model(tmp_path / "nowhere.npz", backend="no-such-backend")


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError) and fcn.ModelFileError is ModelFileError


@pytest.mark.parametrize("bad", [np.nan, -1.0])
def test_batchnorm_buffers_are_checked_on_load(tmp_path, bad):
    net = fcn.FullyConnectedNet(6, [4], 3, normalization="batchnorm", seed=0)
    path = save_model(net, tmp_path / "m.npz")
    rewrite_npz(path, lambda e: e["buffers/running_var1"].__setitem__(0, bad))
    with pytest.raises(ModelFileError, match=r"m\.npz: buffer running_var1 holds (NaN or infinite|negative)"):
        load_model(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mean_image": np.zeros((2, 1, 3))}, r"channels-last shape \(2, 1, 3\).* channels first \(3, 2, 1\)"),
        (
            {"mean_image": np.zeros((2, 3))},
            r"mean_image has shape \(2, 3\); give it as the model's input is laid out: flat \(6,\) or one image, "
            r"channels first \(C, H, W\) with C = 1, 3 or 4$",
        ),
        ({"mean_image": np.zeros((1, 6))}, r"mean_image has shape \(1, 6\); give it as the model's input"),
        ({"class_names": "abc"}, "class_names must be a list of names, one per class, got str 'abc'"),
    ],
)
def test_save_refuses_preprocessing_it_would_get_wrong(tmp_path, kwargs, message):
    net = fcn.FullyConnectedNet(6, [4], 3, seed=0)
    with pytest.raises((ValueError, TypeError), match=message):
        save_model(net, tmp_path / "m.npz", **kwargs)
    assert not (tmp_path / "m.npz").exists()


def test_a_channels_last_mean_image_is_refused_with_its_channels_first_shape(tmp_path):
    # the mean of images stored as (H, W, C): right size, wrong order, which a reshape would silently scramble
    net = fcn.FullyConnectedNet(3 * 32 * 32, [2], 3, seed=0)
    with pytest.raises(ValueError, match=r"channels-last shape \(32, 32, 3\).* channels first \(3, 32, 32\), or flat"):
        save_model(net, tmp_path / "m.npz", mean_image=np.zeros((32, 32, 3)))


def test_json_nested_too_deep_is_a_corrupt_file_not_a_crash(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, meta=np.asarray("[" * 100_000 + "]" * 100_000))
    with pytest.raises(ModelFileError, match=r"m\.npz: the model description is corrupt"):
        load_model(path)


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


# -- hostile files: nothing is read, allocated or run that the model does not need --------------------------------


@pytest.mark.parametrize("meta", ["[1, 2]", '"a string"', "3", "null"], ids=["list", "string", "number", "null"])
def test_a_description_that_is_no_json_object_is_corrupt(tmp_path, meta):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    np.savez(path, **{**entries, "meta": np.asarray(meta)})
    with pytest.raises(ModelFileError, match=r"m\.npz: the model description is corrupt \(not a JSON object\)"):
        load_model(path)


def _bomb_entry(path, name, shape, dtype="<f8"):
    """Add entry ``name`` to the .npz at ``path``: a header declaring ``shape`` and as many zero bytes, which
    compress about a thousandfold (a zip bomb)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf, zf.open(f"{name}.npy", "w", force_zip64=True) as f:
        f.write(header.getvalue())
        for _ in range(math.prod(shape) * np.dtype(dtype).itemsize >> 20):
            f.write(bytes(1 << 20))


@pytest.fixture
def inflated(monkeypatch):
    """The names of the .npz entries whose data is read."""
    names = []
    real = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array", lambda f, **kw: names.append(f.name) or real(f, **kw))
    return names


def test_entries_that_are_no_part_of_the_format_are_never_inflated(tmp_path, inflated):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    _bomb_entry(path, "extra", (2**24,))  # 128 MiB of data in a file of 0.2 MB
    assert path.stat().st_size < 1 << 20
    inflated.clear()
    load_model(path)
    assert "extra.npy" not in inflated and "meta.npy" in inflated


@pytest.mark.parametrize(
    ("entry", "shape", "message"),
    [
        ("params/W1", (6, 2**21), r"parameter W1 has shape \(6, 2097152\), the model's is \(6, 4\)"),
        ("mean_image", (2**24,), r"mean_image has shape \(16777216,\) and dtype float64; the model takes 6"),
        ("meta", (2**22,), r"the model description is corrupt \(a <U1 array of shape \(4194304,\)\)"),
    ],
    ids=["param", "mean-image", "meta"],
)
def test_declared_shapes_are_checked_before_any_data_is_read(tmp_path, inflated, entry, shape, message):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    rewrite_npz(path, lambda e: e.pop(entry, None) if entry != "meta" else None)
    if entry == "meta":
        with np.load(path, allow_pickle=False) as npz:
            entries = {k: npz[k] for k in npz.files if k != "meta"}
        np.savez(path, **entries)
    _bomb_entry(path, entry, shape, "<U1" if entry == "meta" else "<f8")
    inflated.clear()
    with pytest.raises(ModelFileError, match=message):
        load_model(path)
    assert f"{entry}.npy" not in inflated


def test_a_description_longer_than_the_limit_is_never_read(tmp_path, inflated):
    """A model description is a few names and numbers: a real one padded with spaces to the limit is read, one
    character more is refused from its header alone."""
    limit = serialization.MAX_META_CHARS
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    np.savez_compressed(path, **{**entries, "meta": np.asarray(str(entries["meta"]).ljust(limit))})
    assert load_model(path).hidden_dims == [4]

    np.savez_compressed(path, **{**entries, "meta": np.asarray(str(entries["meta"]).ljust(limit + 1))})
    inflated.clear()
    with pytest.raises(ModelFileError, match=rf"m\.npz: the model description is corrupt \(a <U{limit + 1} array"):
        load_model(path)
    assert "meta.npy" not in inflated


def test_a_model_too_large_to_build_names_its_size(tmp_path):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz")
    rewrite_npz(path, lambda e: e["meta"]["config"].update({"hidden_dims": [10**15]}))
    with pytest.raises(
        ModelFileError, match=r"m\.npz describes a model too large .*'hidden_dims': \[1000000000000000\]"
    ):
        load_model(path)


def test_only_regular_files_are_opened(tmp_path):
    os.mkfifo(tmp_path / "model.npz")
    with pytest.raises(ModelFileError, match=r"model\.npz is a FIFO, not a regular file"):
        load_model(tmp_path / "model.npz")  # opening it would wait for a writer forever


def test_class_names_that_are_no_utf8_text_are_refused(tmp_path):
    path = save_model(fcn.FullyConnectedNet(6, [4], 3, seed=0), tmp_path / "m.npz", class_names=["a", "b", "c"])
    rewrite_npz(path, lambda e: e["meta"].update({"class_names": ["a", "b", "\udcff"]}))  # a lone surrogate
    with pytest.raises(ModelFileError, match=r"m\.npz: class_names entry 2 .* is not UTF-8 text"):
        load_model(path)
