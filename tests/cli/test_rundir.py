"""What a run leaves in its output folder when things go wrong: kept checkpoints, one writer, whole files.

Every test runs ``fcn`` in a subprocess (:func:`helpers.fcn_cli`) on a tiny synthetic CIFAR-10 and looks at what
a user sees: the exit code, the one line of output, the files left. Faults are planted by a ``prelude`` that
replaces one function before ``main`` runs.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from _cifar_fixtures import write_cifar10
from helpers import fcn_cli, fcn_command, one_error_line, tree

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
    assert "checkpoint.npz" in tree(tmp_path / "run")  # to resume from: that finishes the run
    assert not [name for name in tree(tmp_path / "run") if name.startswith(".staged-")]


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


# -- --overwrite replaces a run only with one that succeeded; --resume needs a checkpoint --------------------------


def test_a_failing_overwrite_keeps_the_previous_model_and_history(tiny_cifar, tmp_path):
    assert train(tiny_cifar, tmp_path, "--num-iters", "2", "--out", "run").returncode == 0
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("model.npz", "history.json", "curves.png")}
    planted = fault("fcn.plotting:plot_weights", DISK_FULL)
    result = train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run", "--overwrite", prelude=planted)
    assert result.returncode == 1
    assert "No space left on device" in one_error_line(result)
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    assert not [name for name in tree(tmp_path / "run") if name.startswith(".staged-")]


def test_a_successful_overwrite_replaces_the_run(tiny_cifar, tmp_path):
    assert train(tiny_cifar, tmp_path, "--num-iters", "2", "--out", "run").returncode == 0
    assert train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run", "--overwrite").returncode == 0
    assert json.loads((tmp_path / "run" / "history.json").read_text())["iterations"] == 7
    assert tree(tmp_path / "run") == ["checkpoint.npz", "curves.png", "history.json", "model.npz", "weights.png"]


@pytest.mark.parametrize("folder", ["missing", "empty", "not-a-run"])
def test_resume_without_a_checkpoint_is_refused(tiny_cifar, tmp_path, folder):
    out = tmp_path / "run"
    if folder != "missing":
        out.mkdir()
    if folder == "not-a-run":
        (out / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    result = train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run", "--resume")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "--resume" in line and "no run/checkpoint.npz to continue from" in line
    assert tree(tmp_path) == before


# -- one writer per folder -----------------------------------------------------------------------------------------

#: A prelude that holds ``fcn train`` just before training (its folder made and locked) until the file ``go``
#: exists, after saying so with the file ``started`` (both in the working folder, outside the run's).
HOLD = """import os, time, fcn.solver as m
real = m.Solver.train
def held(self, *a, **k):
    open("started", "w").close()
    while not os.path.exists("go"):
        time.sleep(0.02)
    return real(self, *a, **k)
m.Solver.train = held"""


def test_a_second_writer_for_a_folder_is_refused(tiny_cifar, tmp_path):
    command, env = fcn_command(
        "train", "--data-dir", str(tiny_cifar), "--no-download", *SMALL, "--num-iters", "7", "--out", "run",
        prelude=HOLD,
    )  # fmt: skip
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        others = {
            "train": train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run"),
            "resume": train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run", "--resume"),
            "sweep": fcn_cli("sweep", "--data-dir", str(tiny_cifar), "--no-download", "--out", "run", cwd=tmp_path),
        }
    finally:
        (tmp_path / "go").touch()
        out, err = first.communicate(timeout=300)
    for command, result in others.items():
        assert result.returncode == 2, (command, result.stderr)
        line = one_error_line(result, "sweep" if command == "sweep" else "train")
        assert "run is in use by another fcn command" in line, line
    assert first.returncode == 0, err
    assert json.loads((tmp_path / "run" / "history.json").read_text())["iterations"] == 7
    assert tree(tmp_path / "run") == ["checkpoint.npz", "curves.png", "history.json", "model.npz", "weights.png"]


# -- every file written whole, through no symlink, with the umask's permissions ------------------------------------


def test_run_files_replace_symlinks_and_honour_the_umask(tiny_cifar, tmp_path):
    assert train(tiny_cifar, tmp_path, "--num-iters", "5", "--out", "run").returncode == 0
    outside = tmp_path / "outside"
    outside.write_text("keep me")
    for name in ("history.json", "curves.png"):
        (tmp_path / "run" / name).unlink()
        (tmp_path / "run" / name).symlink_to(outside)
    umask = "import os\nos.umask(0o027)"
    result = train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run", "--resume", prelude=umask)
    assert result.returncode == 0, result.stderr
    assert outside.read_text() == "keep me"
    for name in tree(tmp_path / "run"):
        path = tmp_path / "run" / name
        assert not path.is_symlink(), name
        assert oct(path.stat().st_mode & 0o777) == oct(0o640), name


# -- the log of a redirected run -----------------------------------------------------------------------------------


def test_a_redirected_run_logs_plain_lines(tiny_cifar, tmp_path):
    small = [a for a in SMALL if a != "--quiet"]
    result = fcn_cli(
        "train", "--data-dir", str(tiny_cifar), "--no-download", *small, "--num-iters", "7", "--out", "run",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # (text mode reads a \r as a line end: the bar's frames show as lines with its rate)
    assert "it/s" not in result.stderr + result.stdout
    assert "train acc" in result.stdout


def test_the_last_line_says_which_parameters_were_kept(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--num-iters", "12", "--out", "run")
    assert result.returncode == 0, result.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())["val_acc_history"]
    best = max(history)
    last = result.stdout.splitlines()[-1]
    assert last == f"best val acc {best:.3f} at epoch {history.index(best) + 1}, parameters of that epoch kept"


# -- a diverged run keeps its record ---------------------------------------------------------------------------------

#: Training "diverges" in the second epoch, after the first epoch's checkpoint was written.
DIVERGE_LATE = """import fcn.training.history as h
real = h.History.check_params_finite
def late(self):
    if self.iteration > 5:
        raise h.TrainingDiverged("the parameters W1 became NaN or infinite by iteration 10")
    return real(self)
h.History.check_params_finite = late"""


def test_a_run_diverging_after_a_checkpoint_keeps_it_with_its_history(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--num-iters", "12", "--out", "run", prelude=DIVERGE_LATE)
    assert result.returncode == 1
    assert "NaN or infinite" in one_error_line(result)
    assert tree(tmp_path / "run") == ["checkpoint.npz", "curves.png", "history.json"]
    assert "NaN or infinite" in json.loads((tmp_path / "run" / "history.json").read_text())["diverged"]


def test_a_diverging_overwrite_keeps_the_previous_run(tiny_cifar, tmp_path):
    assert train(tiny_cifar, tmp_path, "--num-iters", "2", "--out", "run").returncode == 0
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("model.npz", "history.json", "curves.png")}
    result = train(tiny_cifar, tmp_path, "--num-iters", "12", "--out", "run", "--overwrite", "--lr", "1e30")
    assert result.returncode == 1
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
