"""Files written whole or not at all: every file fcn writes (models, checkpoints, figures, histories) goes here.

:func:`write_atomic` hands a new temporary file in the destination's folder (``.<name>.<random>.tmp``) to the
function that writes the content, flushes it to disk and moves it onto the destination with ``os.replace``:

- a reader sees the old file or the new one, never half of one; an error or an interrupt leaves the old file as it
  was and no temporary file behind;
- a symlink at the destination is replaced by the new file, never followed, so nothing outside the folder is
  written through it;
- the file gets the permissions of any new file, ``0o666`` less the umask: the temporary file is created with
  that mode and the system applies the umask (``tempfile.mkstemp`` would make every file private, ``0o600``);
- the writer holds an advisory lock on its temporary file until it is renamed, so :func:`stale_temp_files` tells
  what a writer killed mid-write (SIGKILL, power loss) left behind from a file being written right now.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["write_atomic", "write_text_atomic", "stale_temp_files"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _temp_name(name: str, token: str) -> str:
    """The temporary file's name for destination ``name``: ``.<name>.<8 hex digits>.tmp`` (hidden, per writer)."""
    return f".{name}.{token}.tmp"


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file next to ``path`` (never an existing one, never through a symlink) and its descriptor."""
    for _ in range(100):
        tmp = path.with_name(_temp_name(path.name, secrets.token_hex(4)))
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp  # O_EXCL: fails on anything already there, symlinks too
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}: 100 names were taken")


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` with ``write(file)`` (a binary file open for writing) atomically; returns the path.

    The folder is created if needed. The content is on disk before the rename, so a crash cannot leave a
    renamed empty file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)  # same folder: os.replace is atomic only within one file system
    try:
        with os.fdopen(fd, "wb") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file closes, or the process dies
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(tmp, path)  # still locked: no other writer takes it for a leftover
        if fcntl is None:
            os.replace(tmp, path)  # where there are no locks, an open file may not be renamable
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`write_atomic`."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda f: f.write(data))


def stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files of :func:`write_atomic` for ``path`` that a killed writer left behind.

    Only regular files named as :func:`write_atomic` names them for this ``path``; a file that a live writer is
    still writing (it holds the lock) is not listed, nor is any file where there are no locks (Windows).
    """
    path = Path(path)
    before, _, after = _temp_name(path.name, "\0").partition("\0")  # the naming rule, around its random part
    name = re.compile(re.escape(before) + "[0-9a-f]{8}" + re.escape(after))
    try:
        candidates = [p for p in path.parent.iterdir() if name.fullmatch(p.name)]
    except OSError:  # no folder yet: nothing left behind
        return []
    return [p for p in candidates if p.is_file() and not p.is_symlink() and not _being_written(p)]


def _being_written(path: Path) -> bool:
    if fcntl is None:  # no advisory locks: a file's writer cannot be told from a dead one's leftover
        return True
    try:
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # locked by a live writer (BlockingIOError), vanished or unreadable: not ours to remove
        return True
    return False
