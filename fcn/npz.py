"""``.npz`` files, the one place fcn writes and reads them: whole or not at all, and never through pickle.

:func:`write_npz` writes through :func:`fcn.atomic.write_atomic` (a temporary file and ``os.replace``), so a
reader sees the old file or the new one, never half of one.
:func:`read_npz` reads with ``allow_pickle=False`` (loading a file never runs code) and
turns every way a file can be missing or damaged into one :class:`NpzError` naming the file, which callers
re-raise as their own error type (checkpoints as :class:`fcn.CheckpointError`, model files as
:class:`fcn.ModelFileError`). :class:`NpzArchive` reads entry by entry, each entry's header before its data.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy

from .atomic import write_atomic
from .validation import InputFileError, regular_file

__all__ = ["NpzError", "NpzArchive", "write_npz", "read_npz"]


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

    As :func:`fcn.atomic.write_atomic` writes every file: through a temporary file in the same folder (created if
    needed), flushed to disk and moved into place with ``os.replace``. An error or an interrupt leaves the
    previous file, if any, as it was and no temporary file behind.
    """
    return write_atomic(path, lambda f: numpy.savez(f, **arrays))


def _a(what: str) -> str:
    """``what`` with its article, as the messages say it: "an fcn model file", "a file"."""
    return f"{'an' if what[:1] in '.aeiou' or what.startswith('fcn') else 'a'} {what}"


class NpzArchive:
    """An ``.npz`` opened for reading entry by entry: an entry's header (shape, dtype) is read without its data.

    A reader that knows its format looks at :attr:`names`, checks the headers of the entries it wants against
    what they should be, and only then reads their data with :meth:`read`: entries it does not ask for are never
    decompressed, and a header declaring a huge array is refused before memory is allocated for it. Use it as a
    context manager. Every failure is an :class:`NpzError` naming the file.
    """

    def __init__(self, path: str | os.PathLike[str], what: str = ".npz file") -> None:
        self.what = what
        try:
            self.path = regular_file(path, what)  # a FIFO or a device would block or never end
        except InputFileError as exc:
            raise NpzError(str(exc), exc.path, missing=exc.missing) from None
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise NpzError(f"cannot read {what} {self.path}: {exc.strerror or exc}", self.path) from None
        try:
            self._zip = zipfile.ZipFile(self._file)
            members = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            self._file.seek(0)
            start = self._file.read(8)
            self._file.close()
            if start.startswith(b"PK\x03\x04"):  # a zip archive, cut short or damaged
                raise NpzError(
                    f"{self.path} is not a readable {what} ({type(exc).__name__}: {exc})", self.path
                ) from exc
            single = start.startswith(numpy.lib.format.MAGIC_PREFIX)
            held = "it holds a single .npy array" if single else "not a zip archive, as an .npz is"
            raise NpzError(f"{self.path}: not {_a(what)} ({held})", self.path) from None
        self._members = {m.filename[: -len(".npy")]: m for m in members if m.filename.endswith(".npy")}

    @property
    def names(self) -> list[str]:
        """The names of the archive's arrays, in the archive's order."""
        return list(self._members)

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def _corrupt(self, name: str, exc: BaseException) -> NpzError:
        return NpzError(f"{self.path} is not a readable {self.what} ({name}: {type(exc).__name__}: {exc})", self.path)

    def header(self, name: str) -> tuple[tuple[int, ...], numpy.dtype[Any]]:
        """``(shape, dtype)`` of entry ``name``, from its ``.npy`` header alone (no data is read).

        Object arrays (which would need pickle) and headers that do not match the entry's size are refused.
        """
        member = self._members[name]
        try:
            with self._zip.open(member) as f:
                version = numpy.lib.format.read_magic(f)
                read_header = numpy.lib.format.read_array_header_1_0
                if version != (1, 0):  # 2.0 and 3.0 differ from 1.0 in the header's length field only
                    read_header = numpy.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
                offset = f.tell()
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise self._corrupt(name, exc) from exc
        if dtype.hasobject:
            raise NpzError(
                f"{self.path} is not a readable {self.what}: {name} holds Python objects (pickle)", self.path
            )
        declared = math.prod(shape) * dtype.itemsize
        if offset + declared != member.file_size:  # truncated, or a header forged to look small or large
            raise self._corrupt(
                name, ValueError(f"its header declares {declared} bytes of data, it holds {member.file_size - offset}")
            )
        return tuple(shape), dtype

    def read(self, name: str) -> numpy.ndarray:
        """The array ``name`` (never through pickle); its header is checked first, as by :meth:`header`."""
        self.header(name)
        try:
            with self._zip.open(self._members[name]) as f:
                return numpy.lib.format.read_array(f, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a damaged entry fails here
            raise self._corrupt(name, exc) from exc


def read_npz(
    path: str | os.PathLike[str], *, what: str = ".npz file", select: Callable[[str], bool] | None = None
) -> dict[str, numpy.ndarray]:
    """The arrays of the ``.npz`` at ``path`` (those whose name passes ``select``; default: all), by name.

    ``what`` names the kind of file in the messages (``"fcn checkpoint"``: "... is not a readable fcn
    checkpoint"). Raises :class:`NpzError` when the file does not exist, is a folder or not a regular file, is
    not an archive (a single ``.npy`` array, a text file, an image), needs pickle, or is truncated or corrupt.
    Readers that can tell how large their arrays should be use :class:`NpzArchive`, which checks before reading.
    """
    with NpzArchive(path, what) as npz:
        return {name: npz.read(name) for name in npz.names if select is None or select(name)}
