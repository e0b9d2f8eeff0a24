"""Writing files so that nothing is ever half-written: the one place fcn saves ``.npz`` files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy

__all__ = ["write_npz_atomically"]


def write_npz_atomically(path: Path, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` to ``path`` as an ``.npz`` (no pickle) through a temporary file and ``os.replace``.

    Readers see the old file or the new one, never half of one; an error or an interrupt leaves no
    temporary file behind.
    """
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
