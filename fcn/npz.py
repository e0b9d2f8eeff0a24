"""Reading and writing ``.npz`` files so that nothing is ever half-written: the one place fcn does either."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy

__all__ = ["NpzError", "read_npz", "write_npz"]


class NpzError(ValueError):
    """A file is not a readable ``.npz`` (the message names it)."""


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` to ``path`` as an ``.npz`` (no pickle) through a temporary file and ``os.replace``.

    Readers see the old file or the new one, never half of one; an error or an interrupt leaves no
    temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_npz(path: Path) -> dict[str, numpy.ndarray]:
    """Every array of the ``.npz`` at ``path``, read with ``allow_pickle=False`` (loading never runs code)."""
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise NpzError(f"{path} is not a readable .npz file ({exc})") from exc
