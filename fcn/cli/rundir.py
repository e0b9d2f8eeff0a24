"""Output folders for runs: a new folder per run, never another run's, checked writable before any work starts.

- :func:`new_run_dir` creates ``<parent>/<name>`` exclusively (``mkdir`` without ``exist_ok``, so two
  processes can never get the same folder); when that name is taken, ``<name>-2``, ``<name>-3``, ...
- :func:`prepare_out_dir` accepts a folder the user named: a new or empty folder is fine; a folder that
  already holds files is refused unless the caller continues that run (``resume``) or replaces it
  (``overwrite``), so no run silently replaces another one's checkpoint and history.
- Both probe that the folder is writable (a temporary file is created and removed), so a read-only or full
  location fails at once, not after the first epoch.
- One writer per folder: a command that writes into a folder holds an exclusive lock on ``.fcn.lock`` there
  (``fcntl.flock``, released when the command ends, and by the system should the process die); a second
  command for the same folder is refused with :class:`FolderInUseError` before it changes anything.
- :class:`RunDir` remembers which folders it created, so a run that fails before producing anything can
  remove them again (:meth:`RunDir.discard`) and leave no empty ``runs/...`` behind. A folder that holds
  anything (a checkpoint, a history) is never removed: ``rmdir`` removes empty folders only, so the check and
  the removal are one step.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, so no lock (fcn's CLI is tested on Linux and macOS)
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderInUseError", "LOCK_NAME", "Outputs", "RunDir", "RunExistsError", "claim", "new_run_dir"]
__all__ += ["prepare_out_dir"]

#: The lock file in a folder that a command is writing to (removed again when the command ends).
LOCK_NAME = ".fcn.lock"


class RunExistsError(ValueError):
    """The output folder already holds another run (pass resume or overwrite, or choose another folder)."""


class FolderInUseError(RunExistsError):
    """Another fcn command is writing to the output folder right now (it holds the folder's lock)."""


def _take_lock(folder: Path) -> int | None:
    """Lock ``folder`` for this process: the open lock file's descriptor, or :class:`FolderInUseError`."""
    if fcntl is None:  # pragma: no cover
        return None
    lock = folder / LOCK_NAME
    while True:
        # O_NOFOLLOW: a symlink planted as the lock file is an error, not a file elsewhere to create or lock
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUseError(
                f"{folder} is in use by another fcn command (it holds {lock}); wait for it to end or choose "
                "another folder"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder before us removes the file when it ends: if it did so after we opened it, we locked a file
        # nobody else will see. Lock the one that is there now instead.
        try:
            if os.stat(lock, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@dataclass
class RunDir:
    """A run's output folder, the folders created to make it (deepest first) and the folder's lock."""

    path: Path
    created: list[Path] = field(default_factory=list)
    lock_fd: int | None = None

    def lock(self) -> None:
        """Take the folder's lock (:class:`FolderInUseError` when another command holds it)."""
        if self.lock_fd is None:
            self.lock_fd = _take_lock(self.path)

    def release(self) -> None:
        """Give the lock back: the lock file is removed while still held, then closed."""
        if self.lock_fd is None:
            return
        try:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
        finally:
            os.close(self.lock_fd)
            self.lock_fd = None

    def discard(self) -> None:
        """Give the lock back and remove the folders this run created, deepest first, as long as they are empty.

        A run that failed after producing something (a checkpoint, a history) keeps its folder; a folder that
        existed before the run is left as it is.
        """
        self.release()
        for folder in self.created:
            try:
                folder.rmdir()  # only if empty: what the run wrote, or another run's folder, stays
            except OSError:
                break


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    return missing


def _check_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``: raises ``OSError`` when it cannot be written."""
    fd, probe = tempfile.mkstemp(prefix=".fcn-write-test-", dir=folder)
    os.close(fd)
    os.unlink(probe)


def _mkdirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; returns those this call created (deepest first)."""
    created: list[Path] = []
    try:
        for p in reversed(_missing_parents(folder)):
            try:
                p.mkdir()
            except FileExistsError:  # another process made it meanwhile: not ours to remove
                continue
            created.insert(0, p)
    except BaseException:
        RunDir(folder, created).discard()
        raise
    return created


def new_run_dir(parent: str | os.PathLike[str], name: str, *, max_tries: int = 1000) -> RunDir:
    """Create a fresh folder ``parent/name`` (or ``name-2``, ``name-3``, ... when taken) for this run only."""
    parent = Path(parent)
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"cannot create a run folder in {parent}: it is a file, not a folder")
    created_parents = _mkdirs(parent)
    for i in range(1, max_tries + 1):
        path = parent / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()  # exclusive: fails if another run (even in another process) took the name first
        except FileExistsError:
            continue
        run = RunDir(path, [path, *created_parents])
        try:
            _check_writable(path)
            run.lock()  # no other run can have this new folder, but a --resume of it must wait for this one
        except BaseException:
            run.discard()
            raise
        return run
    raise FileExistsError(f"{parent / name} and {max_tries - 1} numbered variants already exist")


class Outputs:
    """A run's result files, written under temporary names and moved into place together once all are written.

    ``path(name)`` is where to write ``name`` now (``.staged-<name>`` in the folder: same suffix, so writers that
    go by it still can); :meth:`commit` moves every staged file onto its name with ``os.replace`` (a symlink
    there is replaced, never followed), :meth:`discard` removes them. A failure while the results are written
    (a Ctrl-C while plotting, a full disk) leaves the previous result, if any, as it was.
    """

    PREFIX = ".staged-"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.staged: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        staged = self.folder / f"{self.PREFIX}{name}"
        self.staged[name] = staged
        return staged

    def commit(self) -> None:
        for name, staged in self.staged.items():
            os.replace(staged, self.folder / name)
        self.staged = {}

    def discard(self) -> None:
        for staged in self.staged.values():
            staged.unlink(missing_ok=True)
        self.staged = {}


def claim(out: str | os.PathLike[str]) -> RunDir:
    """Create the folder ``out`` if needed and take its lock, for a command that writes there.

    Raises ``NotADirectoryError`` when ``out`` is a file and :class:`FolderInUseError` when another command
    holds the folder; a folder this call created is removed again then. :meth:`RunDir.discard` gives it back.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--out {path} is a file, not a folder")
    run = RunDir(path, _mkdirs(path))
    try:
        run.lock()
    except BaseException:
        run.discard()
        raise
    return run


_TRAIN_ADVICE = "pass --resume to continue that run, --overwrite to replace it, or choose another folder"


def prepare_out_dir(
    out: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False, advice: str = _TRAIN_ADVICE
) -> RunDir:
    """Check (and create if needed) the output folder the user named, and take its lock.

    Raises :class:`RunExistsError` when ``out`` already holds files and neither ``resume`` nor ``overwrite``
    is given, :class:`FolderInUseError` when another command writes there, ``NotADirectoryError`` when it is a
    file, and ``OSError`` when it cannot be created or written. Nothing it created is left behind then.
    ``advice`` ends the message of a folder that holds files: what the command offers instead.
    """
    run = claim(out)
    try:
        entries = sorted(p.name for p in run.path.iterdir() if p.name != LOCK_NAME)
        if entries and not (resume or overwrite):
            listing = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise RunExistsError(f"--out {run.path} already holds files ({listing}); {advice}")
        _check_writable(run.path)
    except BaseException:
        run.discard()
        raise
    return run
