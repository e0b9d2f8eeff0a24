"""fcn.atomic: files written whole or not at all, symlinks replaced (never followed), the umask honoured."""

from __future__ import annotations

import os
import stat

import pytest

from fcn.atomic import write_atomic, write_text_atomic


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
