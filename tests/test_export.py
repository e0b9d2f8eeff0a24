"""Models as ONNX files (fcn/export.py, ``fcn export``): ONNX Runtime gives fcn's probabilities and classes on
1,000 test images (the CIFAR-10 copy in ``FCN_DATA_DIR`` where one is set, else synthetic labelled images), for
the chapter's net and nets with batch or layer normalization and dropout; the command writes atomically,
refuses to overwrite, and names the extra to install when ONNX is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ScaledNet

import fcn
from fcn.export import ONNX_MISSING_MESSAGE, MissingOnnxError, build_onnx, export_onnx

REPO = Path(__file__).resolve().parents[1]
NUM_TEST = 1000


def _cifar_copy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """2,000 training and 1,000 test images of the CIFAR-10 copy in FCN_DATA_DIR, or None where there is none."""
    from fcn.data import TEST_BATCH, find_cifar10, load_CIFAR10_batch

    if not os.environ.get("FCN_DATA_DIR"):
        return None
    root = find_cifar10(None, download=False)
    X_train, y_train = load_CIFAR10_batch(root / "data_batch_1")
    X_test, y_test = load_CIFAR10_batch(root / TEST_BATCH)
    return X_train[:2000], y_train[:2000], X_test[:NUM_TEST], y_test[:NUM_TEST]


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(n, 3, 32, 32)`` whose colour depends on the label (so a net learns something), and labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    tint = 12.0 * y[:, None, None, None] * np.array([1.0, -1.0, 0.5])[None, :, None, None]
    return np.clip(rng.normal(100.0 + tint, 50.0, size=(n, 3, 32, 32)), 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def data():
    copy = _cifar_copy()
    if copy is not None:
        return copy
    return (*_synthetic(2000, 0), *_synthetic(NUM_TEST, 1))


#: The nets checked: the chapter's (fcn train's defaults), and deeper ones with normalization and dropout.
NETS = {
    "chapter": (lambda: fcn.ShallowLayerNet(reg=0.6, dtype="float32", seed=0), {"learning_rate": 1e-3}),
    "batchnorm-dropout": (
        lambda: fcn.FullyConnectedNet(
            hidden_dims=[100, 50], normalization="batchnorm", dropout_keep_ratio=0.5, weight_scale="he",
            dtype="float32", seed=0,
        ),
        {"learning_rate": 1e-3, "update_rule": "adam"},
    ),
    "layernorm-dropout-float64": (
        lambda: fcn.FullyConnectedNet(
            hidden_dims=[100, 50], normalization="layernorm", dropout_keep_ratio=0.8, weight_scale="he", seed=0
        ),
        {"learning_rate": 1e-3, "update_rule": "adam"},
    ),
}  # fmt: skip


@pytest.fixture(scope="module", params=list(NETS))
def trained(request, data):
    """A net of NETS trained briefly (its batchnorm running statistics away from 0 and 1) with a mean image."""
    X_train, y_train, _, _ = data
    build, options = NETS[request.param]
    net = build()
    net.mean_image = X_train.mean(axis=0)
    net.class_names = [f"c{i}" for i in range(10)]
    X = net.prepare(X_train)
    net.train(X, y_train, X[:200], y_train[:200], num_iters=40, batch_size=200, **options)
    return net


def _session(path_or_model):
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install onnxruntime)")
    source = path_or_model if isinstance(path_or_model, (str, Path)) else path_or_model.SerializeToString()
    return ort.InferenceSession(str(source) if isinstance(source, Path) else source, providers=["CPUExecutionProvider"])


def test_onnx_runtime_gives_fcns_classes_and_probabilities(trained, data, tmp_path):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    X_test = data[2]
    path = export_onnx(trained, tmp_path / "model.onnx")
    probabilities, label = _session(path).run(["probabilities", "label"], {"images": X_test})
    expected = trained.predict_proba(X_test)  # raw uint8: fcn applies the mean image, as the graph does
    assert probabilities.shape == (NUM_TEST, 10) and probabilities.dtype == expected.dtype
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(label, trained.predict(X_test))
    np.testing.assert_array_equal(np.argmax(probabilities, axis=1), trained.predict(X_test))


def test_features_input_takes_preprocessed_floats(trained, data):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    X_test = data[2][:200]
    features = (X_test.astype(np.float64) - trained.mean_image).astype(trained.dtype).reshape(len(X_test), -1)
    (probabilities,) = _session(build_onnx(trained, input="features")).run(["probabilities"], {"features": features})
    np.testing.assert_allclose(probabilities, trained.predict_proba(features), rtol=0, atol=1e-5)


# -- the library function: what it refuses, and writing whole files -------------------------------------------------


def _small_net(**options):
    net = fcn.FullyConnectedNet(12, [5], 3, weight_scale=0.1, seed=0, **options)
    net.mean_image = np.linspace(0, 255, 12).reshape(3, 2, 2)
    return net


@pytest.mark.parametrize(
    ("mean_shape", "input_shape"),
    [((3, 2, 2), [3, 2, 2]), ((12,), [12]), (None, [12])],
    ids=["image-mean", "flat-mean", "no-mean"],
)
def test_the_images_input_has_the_mean_images_layout(mean_shape, input_shape):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    net = _small_net()
    net.mean_image = None if mean_shape is None else net.mean_image.reshape(mean_shape)
    model = build_onnx(net)
    (images,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim]
    assert images.name == "images" and dims == ["N", *input_shape]
    raw = np.random.default_rng(5).integers(0, 256, size=(6, *input_shape), dtype=np.uint8)
    (probabilities,) = _session(model).run(["probabilities"], {"images": raw})
    np.testing.assert_allclose(probabilities, net.predict_proba(raw), rtol=0, atol=1e-12)  # float64: to rounding


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as on a machine without the extra
    with pytest.raises(MissingOnnxError, match=r'pip install "fcn-cifar\[onnx\]"'):
        export_onnx(_small_net(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "message"),
    [
        (lambda: ScaledNet(12, [5], 3, seed=0), {}, ValueError, "cannot export a Scale layer to ONNX"),
        (_small_net, {"input": "pixels"}, ValueError, "input must be 'images'.* or 'features'"),
        (lambda: object(), {}, TypeError, "a model built from fcn layers"),
    ],
    ids=["unknown-layer", "unknown-input", "not-a-model"],
)
def test_what_cannot_be_exported_is_refused(make, kwargs, error, message):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    with pytest.raises(error, match=message):
        build_onnx(make(), **kwargs)


def test_a_diverged_model_is_refused():
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    net = _small_net()
    net.params["W1"] = np.full((12, 5), np.nan)
    with pytest.raises(ValueError, match="W1 hold NaN"):
        build_onnx(net)


def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="already exists"):
        export_onnx(_small_net(), path)
    assert path.read_bytes() == b"old"
    export_onnx(_small_net(), path, overwrite=True)
    assert path.read_bytes() == build_onnx(_small_net()).SerializeToString()
    with pytest.raises(ValueError, match="is a folder"):
        export_onnx(_small_net(), tmp_path, overwrite=True)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fcn.export.os.replace", fail)
    with pytest.raises(OSError, match="No space"):
        export_onnx(_small_net(), path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"] and path.read_bytes() == b"old"


# -- the command -----------------------------------------------------------------------------------------------------


def fcn_cli(*args: str, cwd: Path, prelude: str = "") -> subprocess.CompletedProcess:
    """Run ``fcn ARGS`` from this checkout; ``prelude`` is Python run before ``main`` (e.g. to hide a package)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("FCN_DEBUG",)}
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")])
    code = f"import sys\n{prelude}\nimport fcn.cli as cli\nsys.exit(cli.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=environ, capture_output=True, text=True)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith("fcn export: error: "), lines[0]
    return lines[0]


@pytest.fixture
def model_file(tmp_path):
    net = _small_net(normalization="batchnorm", dropout_keep_ratio=0.5)
    net.class_names = ["cat", "dog", "ship"]
    return net.save(tmp_path / "model.npz")


def test_fcn_export_writes_an_onnx_file(model_file, tmp_path):
    onnx = pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    result = fcn_cli("export", str(model_file), "out/model.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "out" / "model.onnx"
    assert f"wrote {Path('out/model.onnx')}" in result.stdout
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["images"] and [o.name for o in model.graph.output] == [
        "probabilities",
        "label",
    ]
    assert {p.key: p.value for p in model.metadata_props}["class_names"] == '["cat", "dog", "ship"]'
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file, not mkstemp's 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no temporary left


def test_fcn_export_refuses_to_overwrite_without_overwrite(model_file, tmp_path):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    result = fcn_cli("export", str(model_file), str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert "already exists; pass --overwrite" in _one_error_line(result) and out.read_bytes() == b"old"
    result = fcn_cli("export", str(model_file), str(out), "--overwrite", "--input", "features", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() != b"old" and b"features" in out.read_bytes()


def test_fcn_export_without_onnx_names_the_extra(model_file, tmp_path):
    result = fcn_cli("export", str(model_file), "m.onnx", cwd=tmp_path, prelude="sys.modules['onnx'] = None")
    assert result.returncode == 1
    assert _one_error_line(result) == f"fcn export: error: {ONNX_MISSING_MESSAGE}"
    assert not (tmp_path / "m.onnx").exists()


def test_fcn_export_of_a_missing_model_file(tmp_path):
    pytest.importorskip("onnx", reason='the onnx extra is not installed (pip install "fcn-cifar[onnx]")')
    result = fcn_cli("export", "nowhere.npz", "m.onnx", cwd=tmp_path)
    assert result.returncode == 1 and "nowhere.npz" in _one_error_line(result)
    assert not (tmp_path / "m.onnx").exists()
