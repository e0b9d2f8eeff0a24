"""fcn/npz.py: the one .npz writer (atomic) and reader (no pickle, one error type naming the file)."""

import io
import os
import zipfile

import numpy as np
import pytest

from fcn.npz import NpzArchive, NpzError, read_npz, write_npz


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
        (lambda p: p.mkdir(), r"x\.npz is a folder, not a readable \.npz file"),
        (lambda p: p.write_bytes(b"not a zip"), r"x\.npz: not an \.npz file \(not a zip archive"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(40)), r"x\.npz is not a readable \.npz file \(BadZipFile"),
        (lambda p: p.write_bytes(_npy_bytes(np.zeros(2))), r"x\.npz: not an \.npz file \(it holds a single \.npy"),
        (lambda p: np.savez(p, a=np.array([None], dtype=object)), r"x\.npz .*: a holds Python objects \(pickle\)"),
        (lambda p: _forged(p, b"\x00" * 100), r"x\.npz is not a readable \.npz file \(a: .*declares 800 bytes"),
    ],
    ids=["folder", "garbage", "bad-zip", "npy", "pickle", "truncated-entry"],
)
def test_unreadable(tmp_path, make, message):
    path = tmp_path / "x.npz"
    make(path)
    with pytest.raises(NpzError, match=message) as info:
        read_npz(path)
    assert not info.value.missing and info.value.path == path
    assert "allow_pickle" not in str(info.value)  # never advice to unpickle a file that is not what it should be


def _forged(path, data, shape=(100,)):
    """An .npz whose entry ``a`` has a float64 header of ``shape`` followed by ``data``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.npy", header.getvalue() + data)


def test_headers_are_read_without_the_data(tmp_path, monkeypatch):
    """A zip bomb: 128 MiB of zeros compress to 128 KB; the header says so before anything is inflated."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("small.npy", _npy_bytes(np.arange(3.0)))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**24,)})
        with zf.open("bomb.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(128):
                f.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    inflated = []
    real_read = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array", lambda f, **kw: inflated.append(f.name) or real_read(f, **kw))
    with NpzArchive(path) as npz:
        assert npz.names == ["small", "bomb"]
        assert npz.header("bomb") == ((2**24,), np.dtype("<f8"))
        np.testing.assert_array_equal(npz.read("small"), np.arange(3.0))
    assert set(read_npz(path, select=lambda name: name != "bomb")) == {"small"}
    assert inflated == ["small.npy", "small.npy"]


@pytest.mark.parametrize("make", [os.mkfifo, lambda p: os.symlink("/dev/zero", p)], ids=["fifo", "device"])
def test_only_regular_files_are_opened(tmp_path, make):
    path = tmp_path / "model.npz"
    make(path)
    with pytest.raises(NpzError, match=r"model\.npz is a (FIFO|device), not a regular file"):
        read_npz(path)  # opening a FIFO for reading would wait for a writer forever; /dev/zero never ends


@pytest.mark.parametrize(
    ("what", "expected"),
    [("checkpoint", "not a checkpoint"), ("fcn model file", "not an fcn model file"), ("image", "not an image")],
)
def test_messages_name_the_kind_of_file_with_its_article(tmp_path, what, expected):
    path = tmp_path / "x.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(NpzError, match=f": {expected} \\(not a zip archive"):
        NpzArchive(path, what)


def test_the_kind_of_file_defaults_to_an_npz_file(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(NpzError, match=r": not an \.npz file \("):
        NpzArchive(path)


def test_a_file_that_cannot_be_opened_is_named(tmp_path, monkeypatch):
    path = tmp_path / "x.npz"
    write_npz(path, {"a": np.zeros(2)})

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("fcn.npz.open", refused, raising=False)  # root reads any file: refuse it here instead
    with pytest.raises(NpzError, match=r"^cannot read \.npz file .*x\.npz: Permission denied$") as info:
        read_npz(path)
    assert info.value.path == path and not info.value.missing


def test_a_header_that_cannot_be_parsed_names_the_entry_and_the_cause(tmp_path):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", b"this is no npy header at all")
    with pytest.raises(NpzError, match=r"x\.npz is not a readable \.npz file \(a: ValueError: ") as info:
        NpzArchive(path).header("a")
    assert info.value.path == path


def test_damaged_data_behind_a_good_header_names_the_entry_and_the_cause(tmp_path):
    """A stored (uncompressed) entry with one data byte flipped: the header checks out, the CRC does not."""
    path = tmp_path / "x.npz"
    payload = _npy_bytes(np.arange(8192.0))  # larger than what reading the header pulls in
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.npy", payload)
    raw = bytearray(path.read_bytes())
    at = raw.index(payload) + len(payload) - 1
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with NpzArchive(path) as npz:
        assert npz.header("a") == ((8192,), np.dtype("<f8"))
        with pytest.raises(NpzError, match=r"x\.npz is not a readable \.npz file \(a: BadZipFile: ") as info:
            npz.read("a")
    assert info.value.path == path
