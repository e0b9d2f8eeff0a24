"""Output folders for runs: a new folder per run, never another run's, checked writable before any work starts.

- :func:`new_run_dir` creates ``<parent>/<name>`` exclusively (``mkdir`` without ``exist_ok``, so two
  processes can never get the same folder); when that name is taken, ``<name>-2``, ``<name>-3``, ...
- :func:`prepare_out_dir` accepts a folder the user named: a new or empty folder is fine; a folder that
  already holds files is refused unless the caller continues that run (``resume``) or replaces it
  (``overwrite``), so no run silently replaces another one's checkpoint and history.
- Both probe that the folder is writable (a temporary file is created and removed), so a read-only or full
  location fails at once, not after the first epoch.
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

__all__ = ["RunDir", "RunExistsError", "new_run_dir", "prepare_out_dir"]


class RunExistsError(ValueError):
    """The output folder already holds another run (pass resume or overwrite, or choose another folder)."""


@dataclass
class RunDir:
    """A run's output folder and the folders created to make it (deepest first)."""

    path: Path
    created: list[Path] = field(default_factory=list)

    def discard(self) -> None:
        """Remove the folders this run created, deepest first, as long as they are empty.

        A run that failed after producing something (a checkpoint, a history) keeps its folder; a folder that
        existed before the run is left as it is.
        """
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


def _mkdir_parents(folder: Path) -> list[Path]:
    """Create ``folder``'s missing ancestors; returns those created (deepest first)."""
    missing = _missing_parents(folder.parent)
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
    return missing


def new_run_dir(parent: str | os.PathLike[str], name: str, *, max_tries: int = 1000) -> RunDir:
    """Create a fresh folder ``parent/name`` (or ``name-2``, ``name-3``, ... when taken) for this run only."""
    parent = Path(parent)
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"cannot create a run folder in {parent}: it is a file, not a folder")
    created_parents = _mkdir_parents(parent / name)
    for i in range(1, max_tries + 1):
        path = parent / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()  # exclusive: fails if another run (even in another process) took the name first
        except FileExistsError:
            continue
        run = RunDir(path, [path, *created_parents])
        try:
            _check_writable(path)
        except OSError:
            run.discard()
            raise
        return run
    raise FileExistsError(f"{parent / name} and {max_tries - 1} numbered variants already exist")


#: Files ``fcn train`` writes into its output folder (replaced by ``--overwrite``; nothing else is touched).
TRAIN_OUTPUTS = ("checkpoint.npz", "model.npz", "history.json", "curves.png", "weights.png")


def prepare_out_dir(out: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> RunDir:
    """Check (and create if needed) the output folder the user named.

    Raises :class:`RunExistsError` when ``out`` already holds files and neither ``resume`` nor ``overwrite``
    is given, ``NotADirectoryError`` when it is a file, and ``OSError`` when it cannot be created or written.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--out {path} is a file, not a folder")
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if entries and not (resume or overwrite):
            listing = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise RunExistsError(
                f"--out {path} already holds files ({listing}); pass --resume to continue that run, "
                "--overwrite to replace it, or choose another folder"
            )
        _check_writable(path)
        return RunDir(path, [])
    created = _missing_parents(path)
    path.mkdir(parents=True)
    run = RunDir(path, created)
    try:
        _check_writable(path)
    except OSError:
        run.discard()
        raise
    return run
