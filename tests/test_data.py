"""The data sets (fcn/data.py): locating, downloading (offline: file:// and a loopback HTTP server), loading, splitting.

Nothing here touches the internet: an autouse fixture points the download URL at a closed local port and
the cache folder at tmp_path, so a test that accidentally triggers a download fails fast instead.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import re
import struct
import tarfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fcn.data as fd
from fcn.backend import to_host
from fcn.data import DatasetError

try:  # tests/ on sys.path (pytest's default "prepend" import mode, no tests/__init__.py)
    from _cifar_fixtures import CLASS_NAMES, make_batch, make_cifar10_archive, raw_cifar10, write_cifar10, write_pickle
except ImportError:  # tests collected as a package
    from ._cifar_fixtures import (  # type: ignore[no-redef]
        CLASS_NAMES,
        make_batch,
        make_cifar10_archive,
        raw_cifar10,
        write_cifar10,
        write_pickle,
    )


def _real_cifar10() -> Path:
    """The real CIFAR-10 folder named by ``FCN_DATA_DIR`` (read at import: the tests below unset it), if any."""
    given = Path(os.environ.get("FCN_DATA_DIR") or "/nonexistent")
    return given if given.name == "cifar-10-batches-py" else given / "cifar-10-batches-py"


REAL_CIFAR10 = _real_cifar10()
OFFLINE_URL = "http://127.0.0.1:9/offline-test/cifar-10-python.tar.gz"  # port 9 (discard): nothing listens

# 5 x 60 training images, 50 test images
N_TRAIN_TOTAL = 300
N_TEST_TOTAL = 50


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may reach the network or the user's real cache folder."""
    monkeypatch.setattr(fd, "CIFAR10_URL", OFFLINE_URL)
    monkeypatch.delenv("FCN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def cifar(tmp_path: Path) -> Path:
    """A synthetic dataset; returns the folder that *contains* cifar-10-batches-py."""
    root = tmp_path / "data"
    write_cifar10(root)
    return root


def small(root: Any, **kwargs: Any) -> dict[str, Any]:
    """get_CIFAR10_data sized for the synthetic set (240 train, 60 val = the tail, 20 test)."""
    args: dict[str, Any] = {"num_training": 240, "num_validation": 60, "num_test": 20, "root": root}
    args.update(kwargs)
    return fd.get_CIFAR10_data(**args)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------------------


def test_load_batch_matches_file_layout(tmp_path: Path) -> None:
    batch = make_batch(12, seed=3)
    path = tmp_path / "data_batch_1"
    write_pickle(path, batch)
    X, y = fd.load_CIFAR10_batch(path)
    assert X.shape == (12, 3, 32, 32) and X.dtype == np.uint8
    assert y.shape == (12,) and y.dtype == np.int64
    row = batch[b"data"][5]
    # channel planes of 1024 values each, rows of 32 pixels: red, then green, then blue
    np.testing.assert_array_equal(X[5, 0], row[:1024].reshape(32, 32))
    np.testing.assert_array_equal(X[5, 2, 31], row[-32:])
    assert y.tolist() == batch[b"labels"]


def test_load_CIFAR10_shapes_and_values(cifar: Path) -> None:
    Xtr, Ytr, Xte, Yte = fd.load_CIFAR10(cifar)
    assert Xtr.shape == (N_TRAIN_TOTAL, 3, 32, 32) and Xtr.dtype == np.uint8
    assert Ytr.shape == (N_TRAIN_TOTAL,) and Ytr.dtype == np.int64
    assert Xte.shape == (N_TEST_TOTAL, 3, 32, 32) and Xte.dtype == np.uint8
    assert Yte.shape == (N_TEST_TOTAL,) and Yte.dtype == np.int64
    rXtr, rYtr, rXte, rYte = raw_cifar10(cifar / "cifar-10-batches-py")
    np.testing.assert_array_equal(Xtr, rXtr)
    np.testing.assert_array_equal(Ytr, rYtr)
    np.testing.assert_array_equal(Xte, rXte)
    np.testing.assert_array_equal(Yte, rYte)


def test_str_keys_are_accepted(tmp_path: Path) -> None:
    """Files re-pickled under Python 3 have str keys; both spellings load."""
    write_cifar10(tmp_path, str_keys=True)
    Xtr, _, _, _ = fd.load_CIFAR10(tmp_path)
    assert Xtr.shape == (N_TRAIN_TOTAL, 3, 32, 32)
    assert fd.load_class_names(tmp_path) == CLASS_NAMES


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes as Python 2 ``str`` (the BINSTRING opcodes), as the published files hold them.

    Python 3's own protocol-2 pickles spell bytes as ``_codecs.encode(...)`` calls instead, so the synthetic
    files alone never exercise the opcodes the real dataset is made of.
    """

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def test_a_batch_pickled_by_python_2_loads(tmp_path: Path) -> None:
    """Python 2 strings (the keys, and the raw pixel bytes inside the array) come back as bytes, not text."""
    batch = make_batch(12, seed=4)
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        _Python2Pickler(f, protocol=2).dump(batch)
    assert b"_codecs" not in path.read_bytes()  # really the Python 2 spelling
    X, y = fd.load_CIFAR10_batch(path)
    np.testing.assert_array_equal(X.reshape(12, -1), batch[b"data"])
    assert y.tolist() == batch[b"labels"]


def test_class_names(cifar: Path) -> None:
    assert fd.load_class_names(cifar) == CLASS_NAMES
    assert fd.load_class_names(cifar / "cifar-10-batches-py") == CLASS_NAMES


# ----------------------------------------------------------------------------------------------------------
# Splits and preprocessing
# ----------------------------------------------------------------------------------------------------------


def test_get_data_shapes_keys_and_splits(cifar: Path) -> None:
    data = small(cifar)
    assert list(data) == ["X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "class_names", "mean_image"]
    shapes = {k: v.shape for k, v in data.items()}  # the chapter's print loop must work on every entry
    assert shapes == {
        "X_train": (240, 3, 32, 32),
        "y_train": (240,),
        "X_val": (60, 3, 32, 32),
        "y_val": (60,),
        "X_test": (20, 3, 32, 32),
        "y_test": (20,),
        "class_names": (10,),
        "mean_image": (3, 32, 32),
    }
    rXtr, rYtr, rXte, rYte = raw_cifar10(cifar / "cifar-10-batches-py")
    mean = rXtr[:240].astype(np.float64).mean(axis=0)
    # validation is the tail of the training rows, test the head of test_batch
    np.testing.assert_allclose(data["X_val"], rXtr[240:300] - mean, atol=1e-4)
    np.testing.assert_array_equal(data["y_val"], rYtr[240:300])
    np.testing.assert_allclose(data["X_test"], rXte[:20] - mean, atol=1e-4)
    np.testing.assert_array_equal(data["y_test"], rYte[:20])
    np.testing.assert_array_equal(data["y_train"], rYtr[:240])
    for k in ("y_train", "y_val", "y_test"):
        assert data[k].dtype == np.int64
    assert list(data["class_names"]) == CLASS_NAMES
    assert data["class_names"][data["y_test"]].shape == (20,)  # names index by label


def test_mean_subtraction(cifar: Path) -> None:
    data = small(cifar)
    rXtr = raw_cifar10(cifar / "cifar-10-batches-py")[0][:240]
    np.testing.assert_allclose(data["mean_image"], rXtr.astype(np.float64).mean(axis=0), rtol=1e-6)
    assert isinstance(data["mean_image"], np.ndarray)
    # the training split is centred; validation and test are shifted by the *training* mean only
    assert np.abs(data["X_train"].astype(np.float64).mean(axis=0)).max() < 1e-3
    np.testing.assert_allclose(data["X_train"], rXtr - rXtr.astype(np.float64).mean(axis=0), atol=1e-4)


def test_no_mean_subtraction_keeps_pixel_values(cifar: Path) -> None:
    data = small(cifar, subtract_mean=False)
    rXtr, _, rXte, _ = raw_cifar10(cifar / "cifar-10-batches-py")
    np.testing.assert_array_equal(data["X_train"], rXtr[:240].astype(np.float32))
    np.testing.assert_array_equal(data["X_test"], rXte[:20].astype(np.float32))
    assert data["mean_image"].shape == (3, 32, 32)  # still reported, for display


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float64")])
def test_dtype(cifar: Path, dtype: Any) -> None:
    data = small(cifar, dtype=dtype)
    want = np.dtype(dtype)
    for k in ("X_train", "X_val", "X_test", "mean_image"):
        assert data[k].dtype == want, k


@pytest.mark.parametrize("dtype", ["int32", "uint8", "bool"])
def test_non_float_dtype_is_rejected(cifar: Path, dtype: str) -> None:
    with pytest.raises(ValueError, match="floating"):
        small(cifar, dtype=dtype)


def test_array_api_strict_device(cifar: Path) -> None:
    xp = pytest.importorskip("array_api_strict")
    dev = xp.Device("device1")
    data = small(cifar, backend="array_api_strict", device=dev)
    ref = small(cifar)
    for k in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        assert data[k].device == dev, k
        np.testing.assert_array_equal(to_host(data[k]), ref[k])
    assert data["X_train"].dtype == xp.float32
    assert data["y_train"].dtype == xp.int64
    # class names and the mean stay on the host, for display
    assert isinstance(data["mean_image"], np.ndarray) and isinstance(data["class_names"], np.ndarray)


def test_array_api_strict_float64(cifar: Path) -> None:
    xp = pytest.importorskip("array_api_strict")
    data = small(cifar, backend="array_api_strict", device=xp.Device("device1"), dtype=xp.float64)
    assert data["X_val"].dtype == xp.float64


@pytest.mark.parametrize(
    ("kwargs", "available"),
    [
        ({"num_training": 250, "num_validation": 51}, "300"),
        ({"num_training": 301, "num_validation": 0}, "300"),
        ({"num_test": 51}, "50"),
    ],
)
def test_too_many_images(cifar: Path, kwargs: dict[str, int], available: str) -> None:
    with pytest.raises(ValueError, match=rf"only {available}\b"):
        small(cifar, **kwargs)


@pytest.mark.parametrize("kwargs", [{"num_training": True}, {"num_test": False}])
def test_a_flag_is_not_a_count(cifar, kwargs):
    with pytest.raises(TypeError, match=f"{next(iter(kwargs))} must be an integer count"):
        small(cifar, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_training": 0}, r"num_training must be at least 1, got 0"),
        ({"num_validation": -1}, r"num_validation must be >= 0, got -1"),
        ({"num_test": -5}, r"num_test must be >= 0, got -5"),
    ],
)
def test_bad_counts(cifar: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small(cifar, **kwargs)


@pytest.mark.parametrize(("n_train", "n_val"), [(100, 10), (59, 2), (1, 130)])
def test_splits_may_end_partway_through_a_batch(cifar: Path, n_train: int, n_val: int) -> None:
    """The training and validation rows run on from one batch file into the next, wherever they stop."""
    data = small(cifar, num_training=n_train, num_validation=n_val, subtract_mean=False)
    rXtr, rYtr = raw_cifar10(cifar / "cifar-10-batches-py")[:2]
    np.testing.assert_array_equal(data["X_train"], rXtr[:n_train])
    np.testing.assert_array_equal(data["y_train"], rYtr[:n_train])
    np.testing.assert_array_equal(data["X_val"], rXtr[n_train : n_train + n_val])
    np.testing.assert_array_equal(data["y_val"], rYtr[n_train : n_train + n_val])


def test_a_single_training_image_is_enough(cifar: Path) -> None:
    """One image is the smallest training split: its mean image is that image, and it centres to zero."""
    data = small(cifar, num_training=1, num_validation=0)
    first = raw_cifar10(cifar / "cifar-10-batches-py")[0][0]
    np.testing.assert_array_equal(data["mean_image"], first.astype(np.float32))
    assert data["X_train"].shape == (1, 3, 32, 32) and not data["X_train"].any()


def test_the_default_test_split_is_the_first_1000_test_images(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_test=1001)
    rXte, rYte = raw_cifar10(tmp_path / "cifar-10-batches-py")[2:]
    data = fd.get_CIFAR10_data(num_training=240, num_validation=60, subtract_mean=False, root=tmp_path)
    np.testing.assert_array_equal(data["X_test"], rXte[:1000])
    np.testing.assert_array_equal(data["y_test"], rYte[:1000])


def test_reads_only_the_batches_it_needs(cifar: Path) -> None:
    """60 training + validation images live in data_batch_1: a damaged data_batch_5 is never opened."""
    (cifar / "cifar-10-batches-py" / "data_batch_5").write_bytes(b"garbage")
    data = small(cifar, num_training=50, num_validation=10)
    assert data["X_train"].shape == (50, 3, 32, 32) and data["X_val"].shape == (10, 3, 32, 32)
    with pytest.raises(DatasetError, match="data_batch_5"):
        small(cifar)


# ----------------------------------------------------------------------------------------------------------
# Locating the data
# ----------------------------------------------------------------------------------------------------------


def test_root_may_be_parent_or_batches_dir(cifar: Path) -> None:
    a = small(cifar)
    b = small(cifar / "cifar-10-batches-py")
    np.testing.assert_array_equal(a["X_val"], b["X_val"])
    assert fd.find_cifar10(cifar) == cifar / "cifar-10-batches-py"
    assert fd.find_cifar10(str(cifar / "cifar-10-batches-py")) == cifar / "cifar-10-batches-py"


def test_root_may_be_a_batches_dir_with_another_name(tmp_path: Path) -> None:
    d = write_cifar10(tmp_path)
    renamed = d.rename(tmp_path / "my-cifar")
    assert fd.find_cifar10(renamed) == renamed
    assert small(renamed)["X_train"].shape == (240, 3, 32, 32)


def test_a_renamed_batches_folder_with_files_missing_is_reported_incomplete(tmp_path: Path) -> None:
    """data_batch_1 marks a batches folder: missing other files, it is incomplete, not a place to download to."""
    renamed = write_cifar10(tmp_path).rename(tmp_path / "my-cifar")
    (renamed / "data_batch_2").unlink()
    assert fd.locate_cifar10(renamed) == (renamed, tmp_path)
    with pytest.raises(DatasetError, match=r"my-cifar is incomplete: missing data_batch_2\."):
        fd.find_cifar10(renamed, download=True)
    assert "data_batch_2" not in leftovers(renamed) and len(leftovers(renamed)) == 6  # nothing was added to it


@pytest.mark.parametrize("point_at", ["parent", "batches"])
def test_env_var(cifar: Path, monkeypatch: pytest.MonkeyPatch, point_at: str) -> None:
    target = cifar if point_at == "parent" else cifar / "cifar-10-batches-py"
    monkeypatch.setenv("FCN_DATA_DIR", str(target))
    assert fd.find_cifar10() == cifar / "cifar-10-batches-py"
    assert small(None)["X_test"].shape == (20, 3, 32, 32)
    assert fd.load_CIFAR10()[0].shape == (N_TRAIN_TOTAL, 3, 32, 32)


@pytest.mark.parametrize("via", ["env", "root", "cache"])
def test_a_data_folder_that_is_a_file_is_refused_before_any_download(tmp_path, monkeypatch, via):
    (tmp_path / "cifar.tar.gz").write_bytes(b"")
    monkeypatch.setattr(fd, "download_cifar10", lambda *a, **k: pytest.fail("a download was tried"))
    if via == "env":
        monkeypatch.setenv("FCN_DATA_DIR", str(tmp_path / "cifar.tar.gz"))
    if via == "cache":  # the per-user cache folder, with no FCN_DATA_DIR set
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        (tmp_path / "fcn").write_bytes(b"")
    shown = "FCN_DATA_DIR=" if via == "env" else ""
    given = re.escape(f"{shown}{tmp_path / ('fcn' if via == 'cache' else 'cifar.tar.gz')}")
    with pytest.raises(DatasetError, match=rf"data folder {given} is not a folder"):
        small(tmp_path / "cifar.tar.gz" if via == "root" else None)


def test_explicit_root_beats_env_var(cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCN_DATA_DIR", str(tmp_path / "elsewhere"))
    assert fd.find_cifar10(cifar) == cifar / "cifar-10-batches-py"


def test_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fd.default_data_dir() == tmp_path / "xdg-cache" / "fcn"
    monkeypatch.setenv("FCN_DATA_DIR", str(tmp_path / "mine"))
    assert fd.default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("FCN_DATA_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fd.default_data_dir() == tmp_path / "home" / ".cache" / "fcn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec says relative paths are invalid
    assert fd.default_data_dir() == tmp_path / "home" / ".cache" / "fcn"


def test_default_location_is_the_cache_dir(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "xdg-cache" / "fcn")
    assert fd.find_cifar10() == tmp_path / "xdg-cache" / "fcn" / "cifar-10-batches-py"


def test_missing_data_without_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="FCN_DATA_DIR") as info:
        small(tmp_path / "nothing-here", download=False)
    assert "cs.toronto.edu" in str(info.value) or "offline-test" in str(info.value)
    assert not (tmp_path / "nothing-here").exists()


def test_incomplete_folder_names_missing_files(cifar: Path) -> None:
    (cifar / "cifar-10-batches-py" / "data_batch_3").unlink()
    (cifar / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_3.*batches\.meta|batches\.meta.*data_batch_3"):
        fd.find_cifar10(cifar)
    # present-but-incomplete is never overwritten by a download
    with pytest.raises(DatasetError, match="incomplete"):
        small(cifar)
    with pytest.raises(DatasetError, match="incomplete"):
        fd.download_cifar10(cifar, url=OFFLINE_URL, progress=False)


@pytest.mark.parametrize(
    ("call", "advice"),
    [
        (fd.find_cifar10, r"Delete the folder to download it again, or copy the missing files in\. Download "),
        (
            lambda root: fd.download_cifar10(root, url=OFFLINE_URL, progress=False),
            r"not overwriting it\. Delete it and try again\. Download ",
        ),
    ],
    ids=["find", "download"],
)
def test_an_incomplete_folder_says_how_to_repair_it(cifar: Path, call: Callable[[Path], Any], advice: str) -> None:
    (cifar / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DatasetError, match=advice):
        call(cifar)


def test_the_manual_instructions_name_the_file_that_marks_a_batches_folder(tmp_path: Path) -> None:
    """Whoever follows them by hand ends up with a folder that is recognised as the batches folder."""
    with pytest.raises(DatasetError) as info:
        fd.find_cifar10(tmp_path / "d")
    [named] = re.findall(r"extract it so that (\S+) exists", str(info.value))
    marker = Path(named)
    assert marker.parent == tmp_path / "d" / "cifar-10-batches-py"
    renamed = tmp_path / "my-cifar"  # recognised by that file alone, whatever the folder is called
    renamed.mkdir()
    write_pickle(renamed / marker.name, make_batch(1, seed=0))
    assert fd.locate_cifar10(renamed) == (renamed, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# Damaged files
# ----------------------------------------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    batch = make_batch(60, seed=1)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00this is not a pickle" * 10)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not a dict":
        write_pickle(path, [1, 2, 3])
    elif how == "no labels":
        del batch[b"labels"]
        write_pickle(path, batch)
    elif how == "no data":
        del batch[b"data"]
        write_pickle(path, batch)
    elif how == "wrong shape":
        batch[b"data"] = batch[b"data"].reshape(60, 3, 32, 32)
        write_pickle(path, batch)
    elif how == "wrong width":
        batch[b"data"] = batch[b"data"][:, :3000]
        write_pickle(path, batch)
    elif how == "wrong dtype":
        batch[b"data"] = batch[b"data"].astype(np.float32)
        write_pickle(path, batch)
    elif how == "list data":
        batch[b"data"] = batch[b"data"].tolist()
        write_pickle(path, batch)
    elif how == "label too big":
        batch[b"labels"][7] = 10
        write_pickle(path, batch)
    elif how == "negative label":
        batch[b"labels"][0] = -1
        write_pickle(path, batch)
    elif how == "length mismatch":
        batch[b"labels"] = batch[b"labels"][:-1]
        write_pickle(path, batch)
    elif how == "non-integer labels":
        batch[b"labels"] = ["cat"] * 60
        write_pickle(path, batch)
    else:  # pragma: no cover
        raise AssertionError(how)


# A damaged pickle's message gives the unpickler's own error and says how to get a good copy.
CORRUPT = r"truncated or corrupt \(\w+: .*\); delete it and download the dataset again"
DAMAGE = {
    "truncated": CORRUPT,
    "garbage": CORRUPT,
    "empty": CORRUPT,
    "not a dict": "holds a list, expected a dict",
    "no labels": "no 'labels' entry",
    "no data": "no 'data' entry",
    "wrong shape": r"shape \(60, 3, 32, 32\)",
    "wrong width": r"shape \(60, 3000\)",
    "wrong dtype": "float32 array, expected a uint8",
    "list data": "list, expected a uint8",
    "label too big": r"0\.\.10, expected 0\.\.9",
    "negative label": r"-1\.\.9, expected 0\.\.9",
    "length mismatch": "60 images but labels of shape",
    "non-integer labels": "not integers",
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.parametrize("name", ["data_batch_2", "test_batch"])
def test_damaged_batch_names_file_and_problem(cifar: Path, how: str, name: str) -> None:
    path = cifar / "cifar-10-batches-py" / name
    _damage(path, how)
    with pytest.raises(DatasetError, match=DAMAGE[how]) as info:
        fd.get_CIFAR10_data(root=cifar, num_training=250, num_validation=50, num_test=20)
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match=DAMAGE[how]):
        fd.load_CIFAR10(cifar)


def test_a_batch_that_is_no_regular_file_is_refused_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "data_batch_1")
    with pytest.raises(DatasetError, match=r"data_batch_1 is a FIFO, not a regular file: not a readable CIFAR-10 file"):
        fd.load_CIFAR10_batch(tmp_path / "data_batch_1")  # opening it would wait for a writer forever


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc")
def test_a_batch_that_cannot_be_read_says_why() -> None:
    """/proc/self/mem is a regular file whose first byte cannot be read (EIO): an I/O error, not "corrupt"."""
    with pytest.raises(DatasetError, match=r"cannot read CIFAR-10 file /proc/self/mem: .*Input/output error"):
        fd.load_CIFAR10_batch("/proc/self/mem")


def test_missing_batch_file_is_named(cifar: Path) -> None:
    path = cifar / "cifar-10-batches-py" / "data_batch_4"
    path.unlink()
    with pytest.raises(DatasetError, match="data_batch_4"):
        fd.load_CIFAR10_batch(path)
    with pytest.raises(DatasetError, match="data_batch_4"):
        fd.load_CIFAR10(cifar)


def test_damaged_meta(cifar: Path) -> None:
    meta = cifar / "cifar-10-batches-py" / "batches.meta"
    write_pickle(meta, {b"label_names": [b"a", b"b"]})
    with pytest.raises(DatasetError, match=r"batches\.meta: 2 label names"):
        fd.load_class_names(cifar)
    meta.write_bytes(b"\x80\x02}q")
    with pytest.raises(DatasetError, match=r"batches\.meta.*truncated or corrupt"):
        fd.load_class_names(cifar)


@pytest.mark.parametrize(
    "names", [list(range(10)), [b"cat"] * 9 + [3], None, 10], ids=["ints", "one int", "None", "an int"]
)
def test_label_names_that_are_not_a_list_of_strings_are_refused(cifar: Path, names: Any) -> None:
    """Ten ints would otherwise pass as ten "names", and a non-list would fail with a bare TypeError."""
    write_pickle(cifar / "cifar-10-batches-py" / "batches.meta", {b"label_names": names})
    with pytest.raises(DatasetError, match=r"batches\.meta: 'label_names' is not a list of strings"):
        fd.load_class_names(cifar)


class _Exploit:
    """Unpickling this would call os.system: the loader must refuse the global instead."""

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_unpickler_refuses_foreign_globals(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": []}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"refusing to load global (posix|os|nt)\.system"):
        fd.load_CIFAR10_batch(path)


# ----------------------------------------------------------------------------------------------------------
# Downloading, offline
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str]:
    """A synthetic cifar-10-python.tar.gz and its MD5, in its own folder."""
    src = tmp_path / "src"
    src.mkdir()
    return make_cifar10_archive(src, n_per_train_batch=20, n_test=10)


class _Server:
    """A loopback HTTP server serving fixed bodies; ``routes[path] = (body, declared_length)``.

    ``hooks[path]()`` runs when that path is requested, before the answer: what "another process" does
    while a download is under way. A path in ``silent`` gets no answer at all: the connection stays open
    until ``release`` is set (at the latest after 3 s), then closes.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int]] = {}
        self.hooks: dict[str, Callable[[], None]] = {}
        self.silent: set[str] = set()
        self.release = threading.Event()
        self.user_agents: list[str | None] = []  # the User-Agent of each request, in order
        routes, hooks, silent, release, user_agents = (
            self.routes,
            self.hooks,
            self.silent,
            self.release,
            self.user_agents,
        )

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                user_agents.append(self.headers.get("User-Agent"))
                if self.path in silent:
                    release.wait(3)
                    self.close_connection = True
                    return
                if self.path in hooks:
                    hooks[self.path]()
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, declared = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(body)  # may be shorter than declared: a transfer cut short

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(timeout=5)


def _assert_installed(dest: Path) -> None:
    assert leftovers(dest) == ["cifar-10-batches-py"]  # no temporary files or folders left behind
    Xtr, _, Xte, _ = fd.load_CIFAR10(dest)
    assert Xtr.shape == (100, 3, 32, 32) and Xte.shape == (10, 3, 32, 32)


def test_download_file_url(archive: tuple[Path, str], tmp_path: Path) -> None:
    path, md5 = archive
    dest = tmp_path / "dest" / "nested"  # created on demand
    got = fd.download_cifar10(dest, url=path.as_uri(), md5=md5, progress=False)
    assert got == dest / "cifar-10-batches-py"
    _assert_installed(dest)
    # a complete install is reused: no second download (the URL is unreachable now)
    assert fd.download_cifar10(dest, url=OFFLINE_URL, progress=False) == got


def test_download_http(archive: tuple[Path, str], tmp_path: Path, server: _Server) -> None:
    path, md5 = archive
    body = path.read_bytes()
    server.routes["/cifar.tar.gz"] = (body, len(body))
    dest = tmp_path / "dest"
    fd.download_cifar10(dest, url=server.url("/cifar.tar.gz"), md5=md5.upper(), progress=True, timeout=10)
    _assert_installed(dest)


def test_a_download_says_which_client_is_asking(archive: tuple[Path, str], tmp_path: Path, server: _Server) -> None:
    """The server sees fcn's own User-Agent (some sites refuse urllib's default one)."""
    path, md5 = archive
    body = path.read_bytes()
    server.routes["/cifar.tar.gz"] = (body, len(body))
    fd.download_cifar10(tmp_path / "dest", url=server.url("/cifar.tar.gz"), md5=md5, progress=False, timeout=10)
    assert server.user_agents == ["fcn-cifar10-downloader"]


def test_get_data_downloads_when_absent(
    archive: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, md5 = archive
    monkeypatch.setattr(fd, "CIFAR10_URL", path.as_uri())
    monkeypatch.setattr(fd, "CIFAR10_MD5", md5)
    dest = tmp_path / "fresh"
    data = fd.get_CIFAR10_data(num_training=80, num_validation=20, num_test=10, root=dest)
    assert data["X_train"].shape == (80, 3, 32, 32)
    assert leftovers(dest) == ["cifar-10-batches-py"]
    # root naming the batches folder itself installs next to it, not inside it
    dest2 = tmp_path / "fresh2" / "cifar-10-batches-py"
    assert fd.get_CIFAR10_data(num_training=80, num_validation=20, num_test=10, root=dest2)["y_val"].shape == (20,)
    assert leftovers(dest2.parent) == ["cifar-10-batches-py"]


def test_get_data_checks_the_download_against_the_published_md5(
    archive: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = archive
    monkeypatch.setattr(fd, "CIFAR10_URL", path.as_uri())
    monkeypatch.setattr(fd, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fd.get_CIFAR10_data(num_training=10, num_validation=0, num_test=0, root=tmp_path / "fresh")
    assert leftovers(tmp_path / "fresh") == []


def test_download_into_an_existing_empty_folder(archive: tuple[Path, str], tmp_path: Path) -> None:
    path, md5 = archive
    dest = tmp_path / "dest"
    dest.mkdir()
    fd.download_cifar10(dest, url=path.as_uri(), md5=md5, progress=False)
    _assert_installed(dest)


@pytest.mark.parametrize("progress", [True, False])
def test_the_progress_bar_shows_only_when_asked(
    archive: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], progress: bool
) -> None:
    path, md5 = archive
    fd.download_cifar10(tmp_path / "dest", url=path.as_uri(), md5=md5, progress=progress)
    err = capsys.readouterr().err
    assert ("CIFAR-10" in err) if progress else err == ""


def test_the_progress_bar_counts_up_to_the_archive_size(
    archive: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The size is known in advance, so the bar ends at 100% and shows bytes in k/M units ("341k/341k")."""
    from tqdm import tqdm

    path, md5 = archive
    fd.download_cifar10(tmp_path / "dest", url=path.as_uri(), md5=md5, progress=True)
    err = capsys.readouterr().err
    size = tqdm.format_sizeof(path.stat().st_size)
    assert "CIFAR-10: 100%" in err and f"{size}/{size}" in err, err


def test_a_download_streams_the_archive_instead_of_holding_it(tmp_path: Path) -> None:
    """The real archive is 170 MB: it goes to disk piece by piece, never whole through memory.

    The 8 MB body here fails its checksum once received, which keeps the test to the transfer itself.
    """
    body = tmp_path / "big.tar.gz"
    body.write_bytes(os.urandom(8 << 20))
    tracemalloc.start()
    try:
        _expect_clean_failure(tmp_path / "dest", "checksum mismatch", url=body.as_uri(), md5="0" * 32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes for an 8 MB download"


def test_a_server_that_never_answers_times_out(tmp_path: Path, server: _Server) -> None:
    server.silent.add("/never")
    start = time.monotonic()
    _expect_clean_failure(tmp_path / "dest", r"\(TimeoutError: timed out\)", url=server.url("/never"), timeout=0.2)
    assert time.monotonic() - start < 2


def test_while_downloading_the_data_folder_holds_only_a_hidden_temporary_folder(
    archive: tuple[Path, str], tmp_path: Path, server: _Server
) -> None:
    """Nothing that looks like a dataset appears before the install; a leftover says what it was."""
    path, md5 = archive
    body = path.read_bytes()
    dest = tmp_path / "dest"
    seen: list[list[str]] = []
    server.routes["/cifar.tar.gz"] = (body, len(body))
    server.hooks["/cifar.tar.gz"] = lambda: seen.append(leftovers(dest))
    fd.download_cifar10(dest, url=server.url("/cifar.tar.gz"), md5=md5, progress=False, timeout=10)
    [during] = seen
    assert len(during) == 1 and during[0].startswith(".cifar-10-download"), during
    _assert_installed(dest)


@pytest.mark.parametrize("theirs", ["complete", "incomplete"])
def test_a_dataset_installed_meanwhile_by_another_process(
    archive: tuple[Path, str], tmp_path: Path, server: _Server, theirs: str
) -> None:
    """Theirs wins: a complete one is used as it is, an incomplete one is reported, and neither is touched."""
    path, md5 = archive
    body = path.read_bytes()
    dest = tmp_path / "dest"

    def other_process() -> None:
        write_cifar10(dest)  # 300 training images; the archive has 100
        if theirs == "incomplete":
            (dest / "cifar-10-batches-py" / "test_batch").unlink()

    server.routes["/cifar.tar.gz"] = (body, len(body))
    server.hooks["/cifar.tar.gz"] = other_process
    url = server.url("/cifar.tar.gz")
    if theirs == "complete":
        assert fd.download_cifar10(dest, url=url, md5=md5, progress=False, timeout=10) == dest / "cifar-10-batches-py"
        assert fd.load_CIFAR10(dest)[0].shape == (N_TRAIN_TOTAL, 3, 32, 32)
    else:
        with pytest.raises(DatasetError, match="could not download"):
            fd.download_cifar10(dest, url=url, md5=md5, progress=False, timeout=10)
        assert not (dest / "cifar-10-batches-py" / "test_batch").exists()
    assert leftovers(dest) == ["cifar-10-batches-py"]


def test_get_data_download_through_env_var(
    archive: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, md5 = archive
    monkeypatch.setattr(fd, "CIFAR10_URL", path.as_uri())
    monkeypatch.setattr(fd, "CIFAR10_MD5", md5)
    monkeypatch.setenv("FCN_DATA_DIR", str(tmp_path / "env-data"))
    fd.get_CIFAR10_data(num_training=10, num_validation=0, num_test=0)
    assert leftovers(tmp_path / "env-data") == ["cifar-10-batches-py"]


def _expect_clean_failure(dest: Path, match: str, timeout: float = 10, **kwargs: Any) -> DatasetError:
    with pytest.raises(DatasetError, match=match) as info:
        fd.download_cifar10(dest, progress=False, timeout=timeout, **kwargs)
    assert leftovers(dest) == []  # no cifar-10-batches-py, no .part file, no extraction folder
    msg = str(info.value)
    assert "FCN_DATA_DIR" in msg and kwargs["url"] in msg  # says what to do by hand
    return info.value


def test_md5_mismatch_file_url(archive: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = archive
    _expect_clean_failure(tmp_path / "dest", "checksum mismatch", url=path.as_uri(), md5="0" * 32)


def test_a_checksum_mismatch_gives_both_digests(archive: tuple[Path, str], tmp_path: Path) -> None:
    path, md5 = archive
    wrong = "0123456789ABCDEF" * 2  # given in capitals, compared (and shown) in lower case
    _expect_clean_failure(tmp_path / "dest", f"MD5 is {md5}, expected {wrong.lower()}\\.", url=path.as_uri(), md5=wrong)


def test_md5_mismatch_http(archive: tuple[Path, str], tmp_path: Path, server: _Server) -> None:
    path, _ = archive
    body = path.read_bytes()
    server.routes["/x.tgz"] = (body, len(body))
    _expect_clean_failure(tmp_path / "dest", "checksum mismatch", url=server.url("/x.tgz"), md5="0" * 32)


def test_truncated_transfer_http(archive: tuple[Path, str], tmp_path: Path, server: _Server) -> None:
    """The server promises the whole file but hangs up halfway; the MD5 given is the full file's."""
    path, md5 = archive
    body = path.read_bytes()
    server.routes["/half.tgz"] = (body[: len(body) // 2], len(body))
    _expect_clean_failure(tmp_path / "dest", "cut short|IncompleteRead", url=server.url("/half.tgz"), md5=md5)


def test_truncated_archive_file_url(archive: tuple[Path, str], tmp_path: Path) -> None:
    path, md5 = archive
    half = tmp_path / "half.tar.gz"
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _expect_clean_failure(tmp_path / "dest", "checksum mismatch", url=half.as_uri(), md5=md5)
    # with the check switched off, the broken gzip stream itself is caught
    _expect_clean_failure(tmp_path / "dest", "could not download", url=half.as_uri(), md5=None)


def test_corrupt_archive(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"definitely not gzip" * 100)
    md5 = hashlib.md5(bad.read_bytes()).hexdigest()
    _expect_clean_failure(tmp_path / "dest", "could not download", url=bad.as_uri(), md5=md5)


def test_archive_without_dataset(tmp_path: Path) -> None:
    tgz = tmp_path / "other.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    _expect_clean_failure(tmp_path / "dest", "lacks cifar-10-batches-py", url=tgz.as_uri(), md5=None)


def test_an_archive_missing_some_files_names_them(tmp_path: Path) -> None:
    src = write_cifar10(tmp_path / "src")
    (src / "data_batch_2").unlink()
    (src / "batches.meta").unlink()
    tgz = tmp_path / "partial.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    missing = r"lacks cifar-10-batches-py/data_batch_2, batches\.meta\. "
    _expect_clean_failure(tmp_path / "dest", missing, url=tgz.as_uri(), md5=None)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "backslash", "symlink"])
def test_unsafe_archive_members_are_refused(tmp_path: Path, kind: str) -> None:
    tgz = tmp_path / "evil.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        if kind == "symlink":
            info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        else:
            # a leading backslash is a plain character on POSIX but the root of the drive on Windows
            name = {"dotdot": "../escaped.txt", "absolute": "/tmp/fcn-test-escaped.txt", "backslash": "\\escaped.txt"}[
                kind
            ]
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    dest = tmp_path / "dest"
    _expect_clean_failure(dest, "outside the target folder|link or special file", url=tgz.as_uri(), md5=None)
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize("url", [OFFLINE_URL, "http://127.0.0.1:9/x"])
def test_unreachable_url(tmp_path: Path, url: str) -> None:
    start = time.monotonic()
    err = _expect_clean_failure(tmp_path / "dest", "could not download", url=url)
    assert time.monotonic() - start < 10
    assert "ConnectionRefused" in str(err) or "refused" in str(err).lower()


def test_http_error(tmp_path: Path, server: _Server) -> None:
    err = _expect_clean_failure(tmp_path / "dest", "could not download", url=server.url("/missing"))
    assert "(HTTPError: Not Found)" in str(err)  # the kind of failure and the server's reason


def test_get_data_without_network_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        fd.get_CIFAR10_data(root=tmp_path / "d")
    msg = str(info.value)
    assert "FCN_DATA_DIR" in msg and OFFLINE_URL in msg and str(tmp_path / "d") in msg
    assert leftovers(tmp_path / "d") == []


# ----------------------------------------------------------------------------------------------------------
# The real dataset, when a copy is available next to the repository
# ----------------------------------------------------------------------------------------------------------

needs_real = pytest.mark.skipif(
    not (REAL_CIFAR10 / "data_batch_1").is_file(), reason="FCN_DATA_DIR names no CIFAR-10 copy"
)


@needs_real
def test_real_cifar10_raw() -> None:
    Xtr, Ytr, Xte, Yte = fd.load_CIFAR10(REAL_CIFAR10)
    assert Xtr.shape == (50000, 3, 32, 32) and Xtr.dtype == np.uint8
    assert Xte.shape == (10000, 3, 32, 32) and Yte.shape == (10000,)
    assert np.bincount(Ytr, minlength=10).tolist() == [5000] * 10
    assert np.bincount(Yte, minlength=10).tolist() == [1000] * 10
    assert fd.load_class_names(REAL_CIFAR10.parent) == CLASS_NAMES


@needs_real
def test_real_cifar10_default_splits() -> None:
    data = fd.get_CIFAR10_data(root=REAL_CIFAR10, dtype="float32")
    assert data["X_train"].shape == (49000, 3, 32, 32) and data["X_train"].dtype == np.float32
    assert data["y_train"].shape == (49000,)
    assert data["X_val"].shape == (1000, 3, 32, 32) and data["y_val"].shape == (1000,)
    assert data["X_test"].shape == (1000, 3, 32, 32) and data["y_test"].shape == (1000,)
    assert list(data["class_names"]) == CLASS_NAMES
    # train + val is the whole training set, whose classes are balanced
    all_train = np.concatenate([data["y_train"], data["y_val"]])
    assert np.bincount(all_train, minlength=10).tolist() == [5000] * 10
    assert np.abs(data["X_train"].mean(axis=0, dtype=np.float64)).max() < 1e-3
    assert 100 < data["mean_image"].mean() < 150  # raw pixel scale: mean of CIFAR-10 is about 120


@needs_real
def test_real_cifar10_array_api_strict() -> None:
    xp = pytest.importorskip("array_api_strict")
    dev = xp.Device("device1")
    data = fd.get_CIFAR10_data(1000, 100, 100, root=REAL_CIFAR10, backend="array_api_strict", device=dev)
    assert data["X_train"].shape == (1000, 3, 32, 32) and data["X_train"].device == dev
    assert data["y_test"].shape == (100,) and data["y_test"].device == dev
    assert data["X_val"].dtype == xp.float32 and data["y_val"].dtype == xp.int64
