"""``.npz`` files, the one place fcn writes and reads them: whole or not at all, and never through pickle.

:func:`write_npz` writes through a temporary file and ``os.replace``, so a reader sees the old file or the new
one, never half of one. :func:`read_npz` reads with ``allow_pickle=False`` (loading a file never runs code) and
turns every way a file can be missing or damaged into one :class:`NpzError` naming the file, which callers
re-raise as their own error type (checkpoints as :class:`fcn.CheckpointError`, model files as
:class:`fcn.ModelFileError`).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy

__all__ = ["NpzError", "write_npz", "read_npz"]


class NpzError(ValueError):
    """An ``.npz`` file is missing, a folder, unreadable, corrupt, or needs pickle. The message names the file.

    ``path`` is the file; ``missing`` is True when it does not exist.
    """

    def __init__(self, message: str, path: Path, *, missing: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.missing = missing


def write_npz(path: str | os.PathLike[str], arrays: dict[str, Any]) -> Path:
    """Write ``arrays`` to ``path`` as an ``.npz`` (no pickle) atomically and return the path.

    The arrays go to a temporary file in the same folder (created if needed), which is flushed to disk and then
    moved into place with ``os.replace``. An error or an interrupt leaves the previous file, if any, as it was
    and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder: os.replace is atomic only within one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename, so a crash cannot leave a renamed empty file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_npz(path: str | os.PathLike[str], *, what: str = "file") -> dict[str, numpy.ndarray]:
    """Every array of the ``.npz`` at ``path``, read into memory, by name.

    ``what`` names the kind of file in the messages (``"fcn checkpoint"``: "... is not a readable fcn
    checkpoint"). Raises :class:`NpzError` when the file does not exist, is a folder, holds a single ``.npy``
    array, needs pickle, or is not a readable archive (truncated, corrupt, not a zip file at all).
    """
    path = Path(path)
    if path.is_dir():
        raise NpzError(f"{path} is a folder, not a readable {what}", path)
    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end: regular files only
        raise NpzError(f"{path} is not a regular file, not a readable {what}", path)
    try:
        # Opened here, not by numpy.load, so the file is closed however the reading fails.
        with open(path, "rb") as f:
            npz = numpy.load(f, allow_pickle=False)
            if not isinstance(npz, numpy.lib.npyio.NpzFile):
                raise NpzError(f"{path} is not a readable {what}: it holds a single array, not an .npz archive", path)
            with npz:
                return {name: npz[name] for name in npz.files}  # reading an entry is where a corrupt one fails
    except FileNotFoundError:
        raise NpzError(f"{what} {path} does not exist", path, missing=True) from None
    except NpzError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NpzError(f"{path} is not a readable {what} ({type(exc).__name__}: {exc})", path) from exc
