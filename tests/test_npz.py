"""fcn/npz.py: the one .npz writer (atomic) and reader (no pickle, one error type naming the file)."""

import io

import numpy as np
import pytest

from fcn.npz import NpzError, read_npz, write_npz


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_round_trip(tmp_path):
    arrays = {"a": np.arange(3), "group/b": np.eye(2, dtype=np.float32)}
    path = write_npz(tmp_path / "new" / "x.npz", arrays)  # the folder is created
    assert path == tmp_path / "new" / "x.npz"
    read = read_npz(path)
    assert set(read) == set(arrays)
    for name, value in arrays.items():
        assert read[name].dtype == value.dtype
        np.testing.assert_array_equal(read[name], value)


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "x.npz", {"a": np.zeros(2)})
    before = path.read_bytes()

    def interrupted(f, **arrays):
        f.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_npz(path, {"a": np.ones(2)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(NpzError, match=r"^fcn checkpoint .*nowhere\.npz does not exist$") as info:
        read_npz(tmp_path / "nowhere.npz", what="fcn checkpoint")
    assert info.value.missing and info.value.path == tmp_path / "nowhere.npz"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), r"x\.npz is a folder, not a readable file"),
        (lambda p: p.write_bytes(b"not a zip"), r"x\.npz is not a readable file \(ValueError"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(40)), r"x\.npz is not a readable file \(BadZipFile"),
        (lambda p: p.write_bytes(_npy_bytes(np.zeros(2))), r"x\.npz is not a readable file: it holds a single array"),
        (lambda p: np.savez(p, a=np.array([None], dtype=object)), r"x\.npz is not a readable file .*pickle"),
    ],
    ids=["folder", "garbage", "bad-zip", "npy", "pickle"],
)
def test_unreadable(tmp_path, make, message):
    path = tmp_path / "x.npz"
    make(path)
    with pytest.raises(NpzError, match=message) as info:
        read_npz(path)
    assert not info.value.missing


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    with pytest.raises(NpzError, match="is not a regular file"):
        read_npz(fifo)  # opening a FIFO for reading would wait for a writer forever
