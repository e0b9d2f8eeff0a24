"""What a run leaves in its output folder when things go wrong: kept checkpoints, one writer, whole files.

Every test runs ``fcn`` in a subprocess (:func:`helpers.fcn_cli`) on a tiny synthetic CIFAR-10 and looks at what
a user sees: the exit code, the one line of output, the files left. Faults are planted by a ``prelude`` that
replaces one function before ``main`` runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cifar_fixtures import write_cifar10
from helpers import fcn_cli, one_error_line, tree

#: 250 training images in batches of 50: an epoch is 5 iterations, and each epoch end writes a checkpoint.
SMALL = ["--num-train", "250", "--num-val", "50", "--num-test", "50", "--batch-size", "50", "--quiet"]


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, n_per_train_batch=60, n_test=50)
    return root


def train(tiny_cifar: Path, cwd: Path, *extra: str, **kw):
    return fcn_cli("train", "--data-dir", str(tiny_cifar), "--no-download", *SMALL, *extra, cwd=cwd, **kw)


def fault(target: str, error: str) -> str:
    """A prelude that makes ``target`` (``module:name``, ``module:Class.method``) raise ``error`` (an expression)."""
    module, name = target.split(":")
    return f"import errno, {module} as m\ndef boom(*a, **k): raise {error}\nm.{name} = boom"


# -- a failure after the run produced something keeps the folder ---------------------------------------------------

DISK_FULL = "OSError(errno.ENOSPC, 'No space left on device', 'curves.png')"


@pytest.mark.parametrize(
    ("error", "code"),
    [("KeyboardInterrupt", 130), (DISK_FULL, 1)],
    ids=["ctrl-c-while-plotting", "disk-full-while-plotting"],
)
def test_a_failure_after_checkpoints_keeps_the_folder(tiny_cifar, tmp_path, error, code):
    result = train(
        tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run", prelude=fault("fcn.plotting:plot_stats", error)
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert {"checkpoint.npz", "model.npz"} <= set(tree(tmp_path / "run"))


def test_a_print_error_at_the_end_keeps_the_folder(tiny_cifar, tmp_path):
    # a terminal that cannot show the folder's name: the last lines fail, after every file was written
    result = train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "rün", env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode != 0
    assert {"checkpoint.npz", "model.npz", "history.json"} <= set(tree(tmp_path / "rün"))


def test_a_failure_before_anything_was_written_removes_the_folder(tiny_cifar, tmp_path):
    result = train(
        tiny_cifar, tmp_path, "--num-iters", "7", "--out", "a/run", prelude=fault("fcn.solver:Solver.train", DISK_FULL)
    )
    assert result.returncode == 1
    one_error_line(result)
    assert tree(tmp_path) == []  # the folder and the parent it created
