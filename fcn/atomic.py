"""Files written whole or not at all: every file fcn writes (models, checkpoints, figures, histories) goes here.

:func:`write_atomic` hands a new temporary file in the destination's folder (``.<name>.<random>.tmp``) to the
function that writes the content, flushes it to disk and moves it onto the destination with ``os.replace``:

- a reader sees the old file or the new one, never half of one; an error or an interrupt leaves the old file as it
  was and no temporary file behind;
- a symlink at the destination is replaced by the new file, never followed, so nothing outside the folder is
  written through it;
- the file gets the permissions of any new file, ``0o666`` less the umask: the temporary file is created with
  that mode and the system applies the umask (``tempfile.mkstemp`` would make every file private, ``0o600``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["write_atomic", "write_text_atomic"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new file next to ``path`` (never an existing one, never through a symlink) and its descriptor."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
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
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`write_atomic`."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda f: f.write(data))
