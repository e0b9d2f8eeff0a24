"""Using a trained model: image files prepared like CIFAR-10, `fcn evaluate` and `fcn predict`."""

import json
import os
import pickle
import re
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

import fcn
import fcn.data as fd
from fcn.cli import main
from fcn.inference import (
    ImageFileError,
    confusion_matrix,
    evaluate,
    load_image,
    predict_files,
    printable,
)
from fcn.plotting import plot_confusion_matrix

try:
    from _cifar_fixtures import CLASS_NAMES, make_cifar10_archive, raw_cifar10, tiny_train_args, write_cifar10
except ImportError:  # pragma: no cover - tests imported as a package
    from ._cifar_fixtures import CLASS_NAMES, make_cifar10_archive, raw_cifar10, tiny_train_args, write_cifar10

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny_cifar(tmp_path):
    return write_cifar10(tmp_path / "data", n_per_train_batch=60, n_test=50)


@pytest.fixture
def trained(tiny_cifar, tmp_path):
    """A model trained by `fcn train` on the tiny data: (run folder, batches folder)."""
    out = tmp_path / "run"
    main(
        [
            *tiny_train_args(tiny_cifar),
            "--num-iters",
            "10",
            "--model",
            "fc",
            "--hidden-dims",
            "16",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    return out, tiny_cifar


def _softmax(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference_proba(net, X):
    """Class probabilities of a one-hidden-layer net computed here with plain NumPy (not fcn's layers)."""
    p = {k: fcn.to_host(v).astype(np.float64) for k, v in net.params.items()}
    h = np.maximum(X.reshape(len(X), -1) @ p["W1"] + p["b1"], 0)
    return _softmax(h @ p["W2"] + p["b2"])


class _FixedProba:
    """A model other than fcn's: it gives the same ``proba`` row for every image and has no ``input_dim``."""

    def __init__(self, proba):
        self.proba = np.asarray(proba)

    def predict_proba(self, X):
        return np.repeat(self.proba[None], len(X), axis=0)


# -- reading images -----------------------------------------------------------------------------------------------


def test_any_size_is_resized_to_cifar_layout(tmp_path):
    path = tmp_path / "solid.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path)
    img = load_image(path)
    assert img.shape == (3, 32, 32) and img.dtype == np.uint8
    # channel planes in CIFAR-10's order: red, green, blue
    assert (img[0] == 10).all() and (img[1] == 200).all() and (img[2] == 30).all()


def test_a_32x32_png_is_read_exactly_as_the_dataset_row(tiny_cifar, tmp_path):
    _, _, X_test, _ = raw_cifar10(tiny_cifar)
    row = X_test[7]  # (3, 32, 32) uint8
    path = tmp_path / "row.png"
    Image.fromarray(row.transpose(1, 2, 0)).save(path)  # PNG is lossless
    np.testing.assert_array_equal(load_image(path), row)


def test_grey_rgba_and_jpeg(tmp_path):
    Image.new("L", (20, 20), 77).save(tmp_path / "grey.png")
    assert (load_image(tmp_path / "grey.png") == 77).all()
    Image.new("RGBA", (40, 40), (1, 2, 3, 0)).save(tmp_path / "rgba.png")
    img = load_image(tmp_path / "rgba.png")
    assert tuple(img[:, 0, 0]) == (1, 2, 3)
    Image.new("RGB", (300, 200), (250, 20, 20)).save(tmp_path / "photo.jpg", quality=95)
    img = load_image(tmp_path / "photo.jpg")
    assert img.shape == (3, 32, 32)
    assert np.abs(img.reshape(3, -1).mean(axis=1) - [250, 20, 20]).max() < 4  # JPEG is lossy


def test_unreadable_images_name_the_file(tmp_path):
    with pytest.raises(ImageFileError, match=r"image .*missing\.png does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ImageFileError, match=r"notes\.txt is not an image file fcn reads"):
        load_image(tmp_path / "notes.txt")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageFileError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageFileError, match="is a folder"):
        load_image(tmp_path)


def test_postscript_is_never_handed_to_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    ran = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: ran.append(a) or Image.new("RGB", (8, 8)))
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    (tmp_path / "cat.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    with pytest.raises(ImageFileError, match=r"cat\.png is not an image file fcn reads \(PNG, JPEG"):
        load_image(tmp_path / "cat.png")
    assert ran == []


@pytest.mark.parametrize("make", [os.mkfifo, lambda p: os.symlink("/dev/zero", p)], ids=["fifo", "device"])
def test_only_regular_files_are_opened(tmp_path, make):
    make(tmp_path / "cat.png")
    with pytest.raises(ImageFileError, match=r"cat\.png is a (FIFO|device), not a regular file"):
        load_image(tmp_path / "cat.png")  # opening a FIFO would wait for a writer forever


def _png_header(path, width, height):
    """A PNG that declares ``width`` x ``height`` greyscale pixels and holds none (a few dozen bytes)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_an_image_declaring_too_many_pixels_is_refused(tmp_path):
    _png_header(tmp_path / "huge.png", 20_000, 20_000)
    with pytest.raises(ImageFileError, match=r"image .*huge\.png is too large to read \(.*400000000 pixels"):
        load_image(tmp_path / "huge.png")


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with "rotate 90 degrees" in its EXIF data is read upright, as viewers show it."""
    stored = np.zeros((32, 64, 3), np.uint8)  # 64 wide, 32 high: left half red, right half blue
    stored[:, :32, 0], stored[:, 32:, 2] = 255, 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer turns it 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif)
    img = load_image(tmp_path / "photo.png").astype(int)
    upright = np.rot90(stored, k=-1)  # 32 wide, 64 high: top half red, bottom half blue
    assert upright[0, 0, 0] == 255 and upright[-1, 0, 2] == 255
    assert img[0, :12].mean() > 200 and img[2, :12].mean() < 50  # red at the top
    assert img[2, -12:].mean() > 200 and img[0, -12:].mean() < 50  # blue at the bottom


@pytest.mark.parametrize(
    ("array", "suffix", "grey"),
    [
        (np.full((32, 32), 32768, np.uint16), "png", 128),  # 16-bit mid-grey: Pillow's convert makes it white
        (np.full((32, 32), 65535, np.uint16), "png", 255),
        (np.full((32, 32), 0.5, np.float32), "tiff", 128),  # float mid-grey: Pillow's convert makes it black
        (np.full((32, 32), 1.0, np.float32), "tiff", 255),
    ],
    ids=["16-bit-png-grey", "16-bit-png-white", "float-tiff-grey", "float-tiff-white"],
)
def test_wide_samples_are_scaled_to_8_bits(tmp_path, array, suffix, grey):
    Image.fromarray(array).save(tmp_path / f"img.{suffix}")
    np.testing.assert_array_equal(load_image(tmp_path / f"img.{suffix}"), np.full((3, 32, 32), grey, np.uint8))


@pytest.mark.parametrize(
    ("array", "grey"),
    [
        (np.full((32, 32), -0.5, np.float32), 0),  # below black
        (np.full((32, 32), 2.0, np.float32), 255),  # above white
        (np.full((32, 32), -np.inf, np.float32), 0),
        (np.full((32, 32), np.inf, np.float32), 255),
        (np.full((32, 32), np.nan, np.float32), 0),
        (np.full((32, 32), -5, np.int32), 0),  # a 32-bit integer TIFF below zero
    ],
    ids=["float-below-0", "float-above-1", "float-minus-inf", "float-plus-inf", "float-nan", "int32-negative"],
)
def test_wide_samples_out_of_range_read_as_black_or_white_without_warnings(tmp_path, array, grey):
    """Samples outside black..white are clipped to them (not wrapped around 8 bits), quietly: a NumPy overflow
    warning while reading a picture would only puzzle the user."""
    Image.fromarray(array).save(tmp_path / "img.tiff")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = load_image(tmp_path / "img.tiff")
    np.testing.assert_array_equal(img, np.full((3, 32, 32), grey, np.uint8))


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cat", "cat"),
        ("chat noir \u00e9\u732b", "chat noir \u00e9\u732b"),  # letters of any script print as they are
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # an escape sequence would recolour the terminal
        ("dog\ncat.png: truck 0.999", "dog\\ncat.png: truck 0.999"),  # a forged output line
        ("a\rb\tc\x00", "a\\rb\\tc\\x00"),
        ("\udcff", "\\udcff"),
    ],
    ids=["plain", "unicode", "escape", "newline", "controls", "surrogate"],
)
def test_printable_escapes_what_would_act_on_the_terminal(text, shown):
    assert printable(text) == shown


# -- predictions ----------------------------------------------------------------------------------------------


def test_predict_files_uses_the_model_preprocessing(tiny_cifar, tmp_path):
    _, _, X_test, _ = raw_cifar10(tiny_cifar)
    net = fcn.FullyConnectedNet(3072, [12], 10, weight_scale=1e-3, dtype="float64", seed=4)
    net.mean_image = np.random.default_rng(0).uniform(0, 255, (3, 32, 32))
    net.class_names = list(CLASS_NAMES)
    paths = []
    for i in (0, 3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(X_test[i].transpose(1, 2, 0)).save(paths[-1])

    result = predict_files(net, paths, top=3)

    expected = _reference_proba(net, X_test[[0, 3]].astype(np.float64) - net.mean_image)
    for ranked, proba in zip(result, expected, strict=True):
        best = np.argsort(-proba)[:3]
        assert [name for name, _ in ranked] == [CLASS_NAMES[j] for j in best]
        np.testing.assert_allclose([p for _, p in ranked], proba[best], rtol=1e-9)


def test_predict_files_without_class_names_and_bad_arguments(tmp_path):
    Image.new("RGB", (8, 8), (5, 5, 5)).save(tmp_path / "a.png")
    net = fcn.FullyConnectedNet(3072, [4], 5, seed=0)
    (ranked,) = predict_files(net, [tmp_path / "a.png"], top=10)
    assert len(ranked) == 5 and all(name.startswith("class ") for name, _ in ranked)
    assert sum(p for _, p in ranked) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="top must be at least 1"):
        predict_files(net, [tmp_path / "a.png"], top=0)
    with pytest.raises(ValueError, match="3x32x32 images"):
        predict_files(fcn.FullyConnectedNet(10, [4], 3), [tmp_path / "a.png"])


@pytest.mark.parametrize(
    ("use", "what"),
    [
        (lambda net, tmp_path: predict_files(net, [tmp_path / "a.png"]), "predicting image files"),
        (lambda net, tmp_path: evaluate(net, tmp_path / "no-data", download=False), "evaluating on CIFAR-10"),
    ],
    ids=["predict_files", "evaluate"],
)
def test_a_model_not_made_for_cifar_images_is_refused_saying_for_what(tmp_path, use, what):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    message = f"{what} needs a model that takes 3x32x32 images (3072 features), not 10"
    with pytest.raises(ValueError, match=re.escape(message)):
        use(fcn.FullyConnectedNet(10, [4], 3), tmp_path)


def test_predict_files_takes_any_model_with_predict_proba(tmp_path):
    """A model that does not declare ``input_dim`` (not one of fcn's) is trusted to take the images."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (ranked,) = predict_files(_FixedProba([0.2, 0.5, 0.3]), [tmp_path / "a.png"], top=2)
    assert ranked == [("class 1", 0.5), ("class 2", 0.3)]


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8], ids=["bool", "uint8"])
def test_predict_files_ranks_hard_votes_first(tmp_path, dtype):
    """A model whose ``predict_proba`` votes 0/1 (as booleans or unsigned integers) has its vote ranked first."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (ranked,) = predict_files(_FixedProba(np.array([0, 0, 1, 0], dtype)), [tmp_path / "a.png"], top=2)
    assert ranked == [("class 2", 1.0), ("class 0", 0.0)]


def test_predict_files_of_no_files_is_empty():
    assert predict_files(fcn.FullyConnectedNet(3072, [4], 10, seed=0), []) == []


def test_confusion_matrix():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="2 true labels but 1 predictions"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


@pytest.mark.parametrize(
    "as_labels",
    [list, lambda a: np.array(a, np.int64), lambda a: np.array(a, np.uint8), lambda a: np.array(a, np.float64)],
    ids=["list", "int64", "uint8", "float64"],
)
def test_confusion_matrix_counts_labels_of_any_numeric_type(as_labels):
    """Labels stored as uint8 (as small label sets often are) or as whole floats count as the same integers; with
    20 classes a pair index ``true * 20 + predicted`` no longer fits in 8 bits."""
    y_true, y_pred = [19, 19, 0, 13, 13], [19, 0, 0, 13, 12]
    expected = np.zeros((20, 20), np.int64)
    np.add.at(expected, (y_true, y_pred), 1)
    cm = confusion_matrix(as_labels(y_true), as_labels(y_pred), 20)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 3], [0, 1], r"true labels must lie in [0, 3), got 0..3"),
        ([0, 1], [-1, 2], r"predictions must lie in [0, 3), got -1..2"),
    ],
    ids=["true-labels", "predictions"],
)
def test_confusion_matrix_says_which_labels_are_out_of_range(y_true, y_pred, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        confusion_matrix(np.array(y_true), np.array(y_pred), 3)


def test_plot_confusion_matrix(tmp_path):
    plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="3 class names for a 2x2"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a", "b", "c"])


# -- the commands -------------------------------------------------------------------------------------------------


def test_train_writes_a_model_file(trained):
    out, batches = trained
    net = fcn.load_model(out / "model.npz")
    assert type(net) is fcn.FullyConnectedNet and net.hidden_dims == [16]
    assert net.class_names == CLASS_NAMES
    X_train, _, _, _ = raw_cifar10(batches)
    # the mean of the training split (the first 250 images), as fcn train subtracted it
    np.testing.assert_allclose(net.mean_image, X_train[:250].astype(np.float64).mean(axis=0), rtol=1e-6)
    # the checkpoint's best parameters (restored at the end; its params/ are the last ones, to continue from)
    with np.load(out / "checkpoint.npz", allow_pickle=False) as ck:
        for name, value in net.params.items():
            np.testing.assert_array_equal(value, ck[f"best/{name}"])


def test_evaluate_reproduces_the_training_test_accuracy(trained, capsys):
    out, batches = trained
    summary = json.loads((out / "history.json").read_text())
    capsys.readouterr()
    assert (
        main(["evaluate", str(out / "model.npz"), "--data-dir", str(batches), "--no-download", "--num-test", "50"]) == 0
    )
    printed = capsys.readouterr().out
    assert f"test accuracy: {summary['test_acc']:.4f} (" in printed
    figure = out / "model-confusion.png"
    assert f"confusion matrix: {figure}" in printed and figure.read_bytes()[:8] == PNG_MAGIC
    for name in CLASS_NAMES:
        assert f"  {name} " in printed


def test_evaluate_on_an_empty_test_batch_says_so(tmp_path):
    batches = write_cifar10(tmp_path / "data", n_per_train_batch=4, n_test=4)
    empty = {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}
    (batches / "test_batch").write_bytes(pickle.dumps(empty, protocol=4))  # a batch the unpickler reads
    with pytest.raises(fcn.DatasetError, match=r"test_batch holds no test images"):
        evaluate(fcn.FullyConnectedNet(3072, [4], 10, seed=0), batches, download=False)


def test_evaluate_per_class_accuracy_and_confusion(trained, tmp_path):
    out, batches = trained
    net = fcn.load_model(out / "model.npz")
    result = evaluate(net, batches, download=False)
    _, _, X_test, y_test = raw_cifar10(batches)
    pred = np.argmax(_reference_proba(net, X_test.astype(np.float64) - net.mean_image), axis=1)
    assert result["num_images"] == 50 and result["accuracy"] == pytest.approx(np.mean(pred == y_test))
    for c in range(10):
        assert result["per_class_accuracy"][c] == pytest.approx(np.mean(pred[y_test == c] == c))
    assert result["confusion"].sum(axis=1).tolist() == np.bincount(y_test, minlength=10).tolist()
    assert result["class_names"] == CLASS_NAMES

    with pytest.raises(ValueError, match=r"num_test must be in 1\.\.50"):
        evaluate(net, batches, num_test=51, download=False)


def test_evaluate_downloads_the_dataset_when_absent(tmp_path, monkeypatch):
    archive, md5 = make_cifar10_archive(tmp_path, n_per_train_batch=4, n_test=20)
    monkeypatch.setattr(fd, "CIFAR10_URL", archive.as_uri())  # a local file: no network
    monkeypatch.setattr(fd, "CIFAR10_MD5", md5)
    result = evaluate(fcn.FullyConnectedNet(3072, [4], 10, seed=0), tmp_path / "fresh")
    assert result["num_images"] == 20
    assert result["data_file"] == str(tmp_path / "fresh" / "cifar-10-batches-py" / "test_batch")


def test_evaluate_reports_every_class_of_the_model(tiny_cifar):
    """A model with more classes than CIFAR-10's gets a row and a column for each; a class with no test image has
    a NaN accuracy (not 0: nothing was measured)."""
    net = fcn.FullyConnectedNet(3072, [4], 12, seed=0)
    result = evaluate(net, tiny_cifar, download=False)
    _, _, _, y_test = raw_cifar10(tiny_cifar)
    assert result["confusion"].shape == (12, 12)
    assert result["confusion"].sum(axis=1).tolist() == np.bincount(y_test, minlength=12).tolist()
    assert len(result["per_class_accuracy"]) == 12 and np.isnan(result["per_class_accuracy"][10:]).all()
    assert result["class_names"] == [f"class {i}" for i in range(12)]


def test_a_loaded_model_predicts_on_raw_images_as_evaluate_and_predict_do(trained, tmp_path):
    """The model file fcn train writes carries its preprocessing: uint8 test images go to net.predict as they are."""
    out, batches = trained
    net = fcn.load_model(out / "model.npz")
    _, _, X_test, y_test = raw_cifar10(batches)
    result = evaluate(net, batches, download=False)
    assert np.mean(net.predict(X_test) == y_test) == result["accuracy"]
    np.testing.assert_array_equal(net.predict(X_test), np.argmax(_reference_proba(net, X_test - net.mean_image), 1))
    Image.fromarray(X_test[3].transpose(1, 2, 0)).save(tmp_path / "a.png")
    (ranked,) = predict_files(net, [tmp_path / "a.png"], top=1)
    assert ranked[0][1] == pytest.approx(float(net.predict_proba(X_test[3:4]).max()), rel=1e-6)


def test_evaluate_writes_the_figure_where_asked(trained, tmp_path, capsys):
    out, batches = trained
    figure = tmp_path / "figs" / "cm.png"
    main(["evaluate", str(out / "model.npz"), "--data-dir", str(batches), "--no-download", "--out", str(figure)])
    assert figure.read_bytes()[:8] == PNG_MAGIC and f"confusion matrix: {figure}" in capsys.readouterr().out


def test_predict_prints_the_top_three(trained, tmp_path, capsys):
    out, batches = trained
    _, _, X_test, _ = raw_cifar10(batches)
    images = [tmp_path / "a.png", tmp_path / "b.jpg"]
    Image.fromarray(X_test[0].transpose(1, 2, 0)).save(images[0])
    Image.new("RGB", (120, 80), (200, 180, 20)).save(images[1])
    capsys.readouterr()
    assert main(["predict", str(out / "model.npz"), *map(str, images)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    net = fcn.load_model(out / "model.npz")
    expected = predict_files(net, images)
    for line, image, ranked in zip(lines, images, expected, strict=True):
        assert line == f"{image}: " + ", ".join(f"{n} {p:.3f}" for n, p in ranked)
        probs = [p for _, p in ranked]
        assert len(ranked) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-12


def test_predict_prints_class_names_from_the_file_escaped(tmp_path, capsys):
    forged = ["\x1b[2J\x1b[31mcat", "dog\nimg.png: truck 1.000"]
    net = fcn.FullyConnectedNet(3072, [4], 2, seed=0)
    fcn.save_model(net, tmp_path / "m.npz", class_names=forged)
    Image.new("RGB", (8, 8)).save(tmp_path / "img.png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "img.png")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and len(out.splitlines()) == 1
    assert "\\x1b[2J\\x1b[31mcat" in out and "dog\\nimg.png: truck 1.000" in out


def test_command_errors_name_the_file(trained, tmp_path, capsys):
    out, batches = trained

    def error_of(argv, exit_code=1):
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == exit_code and len(err.splitlines()) == 1 and "Traceback" not in err, err
        return err

    assert re.search(
        r"no-model\.npz does not exist",
        error_of(["evaluate", str(tmp_path / "no-model.npz"), "--data-dir", str(batches), "--no-download"]),
    )
    assert "checkpoint.npz is a training checkpoint" in error_of(["predict", str(out / "checkpoint.npz"), "x.png"])
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    # an image that cannot be read is bad input, as a bad option is: 2
    assert "bad.png" in error_of(["predict", str(out / "model.npz"), str(tmp_path / "bad.png")], 2)
    assert "missing.png does not exist" in error_of(
        ["predict", str(out / "model.npz"), str(tmp_path / "missing.png")], 2
    )
    (tmp_path / "no-data").mkdir()
    assert "FCN_DATA_DIR" in error_of(
        ["evaluate", str(out / "model.npz"), "--data-dir", str(tmp_path / "no-data"), "--no-download"]
    )
