"""fcn.atomic: files written whole or not at all, symlinks replaced (never followed), the umask honoured."""

from __future__ import annotations

import os
import secrets
import shutil
import stat

import pytest

import fcn.atomic
from fcn.atomic import stale_temp_files, write_atomic, write_text_atomic


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_a_new_file_has_the_mode_the_umask_gives(tmp_path, umask):
    path = write_text_atomic(tmp_path / "history.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_symlink_at_the_destination_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (tmp_path / "run").mkdir()
    link = tmp_path / "run" / "curves.png"
    link.symlink_to(outside)
    write_atomic(link, lambda f: f.write(b"new"))
    assert outside.read_text() == "keep me"
    assert not link.is_symlink() and link.read_bytes() == b"new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, fail)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_a_name_taken_by_another_temporary_is_skipped_not_overwritten(tmp_path, monkeypatch):
    """Temporary names are random; one that is already there (another writer's, a leftover) is left alone."""
    taken = tmp_path / ".model.npz.00000000.tmp"
    taken.write_bytes(b"someone else's")
    tokens = iter(["00000000", "11111111"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(tokens))
    path = write_atomic(tmp_path / "model.npz", lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and taken.read_bytes() == b"someone else's"


def test_a_file_being_written_is_not_a_stale_temporary(tmp_path):
    """A live writer's temporary file is locked, so it is not listed; a dead writer's leftover is."""
    path = tmp_path / "history.json"
    leftover = tmp_path / ".history.json.0123abcd.tmp"
    leftover.write_bytes(b"half")
    seen = []
    write_atomic(path, lambda f: seen.append(stale_temp_files(path)))
    assert seen == [[leftover]] and stale_temp_files(path) == [leftover]


def test_without_advisory_locks_files_are_still_written_whole(tmp_path, monkeypatch):
    """Where there are no locks (Windows) the file is renamed once closed; no leftover can be told apart."""
    monkeypatch.setattr(fcn.atomic, "fcntl", None)
    path = write_text_atomic(tmp_path / "run" / "history.json", "{}")
    assert path.read_text() == "{}" and [p.name for p in path.parent.iterdir()] == ["history.json"]
    (path.parent / ".history.json.0123abcd.tmp").write_bytes(b"half")
    assert stale_temp_files(path) == []


def test_the_writers_error_is_not_masked_when_its_temporary_is_already_gone(tmp_path):
    """Cleaning up after a failed write must not replace the caller's error with one of its own."""
    folder = tmp_path / "run"

    def fail(f):
        shutil.rmtree(folder)  # the folder is removed (by the user, a cleanup job) while the file is written
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(folder / "model.npz", fail)
