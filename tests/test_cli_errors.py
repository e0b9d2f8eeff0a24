"""The ``fcn`` command as users run it: bad input and faults give one line and an exit code, runs never clash.

Every test here goes through the real entry point in a subprocess (``python -m fcn.cli``), with this checkout
first on the path, and looks at what a user sees: the exit code, stderr, and what is left on disk.

Exit codes (documented in ``fcn --help``): 0 success, 1 the command could not be carried out (backend, data,
checkpoint, training, file system), 2 the command line or its input is wrong, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

try:
    from _cifar_fixtures import tiny_train_args, write_cifar10
    from helpers import fcn_cli, one_error_line, tree
except ImportError:  # pragma: no cover - tests imported as a package
    from ._cifar_fixtures import tiny_train_args, write_cifar10
    from .helpers import fcn_cli, one_error_line, tree


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, n_per_train_batch=60, n_test=50)
    return root


def train(tiny_cifar: Path, cwd: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    small = ["--num-train", "250", "--num-val", "50", "--num-test", "50", "--batch-size", "50", "--quiet"]
    return fcn_cli("train", "--data-dir", str(tiny_cifar), "--no-download", *small, *extra, cwd=cwd, **kw)


# -- library errors: one line, an exit code, nothing left behind ---------------------------------------------


def test_unknown_backend(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--backend", "jax", "--num-iters", "2")
    assert result.returncode == 1
    assert "unknown backend 'jax'" in one_error_line(result)
    assert tree(tmp_path) == []  # no empty runs/... folder


def test_bad_kernel_switch_is_named_before_the_data_is_read(tmp_path):
    result = fcn_cli(
        "train", "--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", "o",
        cwd=tmp_path, env={"FCN_BLAS": "fast"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "FCN_BLAS='fast': expected 1/true/yes/on or 0/false/no/off" in one_error_line(result)
    assert tree(tmp_path) == []


def test_missing_data_offline(tmp_path):
    result = fcn_cli("train", "--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", "o", cwd=tmp_path)
    assert result.returncode == 1
    assert "FCN_DATA_DIR" in one_error_line(result)
    assert tree(tmp_path) == []


def test_more_images_than_the_files_hold(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--num-train", "100000", "--out", "run")
    assert result.returncode == 2
    assert "asked for 100050 training + validation images" in one_error_line(result)
    assert tree(tmp_path) == []


def test_unreadable_checkpoint_is_left_alone(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"not a checkpoint")
    result = train(tiny_cifar, tmp_path, "--out", str(out), "--resume", "--num-iters", "2")
    assert result.returncode == 1
    assert one_error_line(result).endswith("checkpoint.npz: not an fcn checkpoint (not a zip archive, as an .npz is)")
    assert tree(out) == ["checkpoint.npz"] and (out / "checkpoint.npz").read_bytes() == b"not a checkpoint"


def test_diverged_training(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--lr", "1e30", "--num-iters", "10", "--out", "run")
    assert result.returncode == 1
    assert "diverged" in one_error_line(result)
    assert {"run/history.json", "run/curves.png"} <= set(tree(tmp_path)) and "run/model.npz" not in tree(tmp_path)
    assert "diverged" in strict_json(tmp_path / "run" / "history.json")


def test_unwritable_out_fails_before_loading_data(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    # the data folder does not exist either: the output location must be checked first
    result = fcn_cli(
        "train", "--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", str(blocker / "run"), cwd=tmp_path
    )
    assert result.returncode == 1
    line = one_error_line(result)
    assert "a-file" in line and "FCN_DATA_DIR" not in line
    assert tree(tmp_path) == ["a-file"]


def test_out_that_is_a_file(tiny_cifar, tmp_path):
    (tmp_path / "run").write_text("x")
    result = train(tiny_cifar, tmp_path, "--out", "run", "--num-iters", "2")
    assert result.returncode == 1
    assert "not a folder" in one_error_line(result)
    assert (tmp_path / "run").read_text() == "x"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a POSIX user without root's override")
def test_read_only_out_folder(tiny_cifar, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = train(tiny_cifar, tmp_path, "--out", str(locked / "run"), "--num-iters", "2")
    finally:
        locked.chmod(0o700)
    assert result.returncode == 1
    assert "locked" in one_error_line(result)


def test_debug_shows_the_traceback(tiny_cifar, tmp_path):
    """``--debug``, or ``FCN_DEBUG`` on (or set to a word the switch rule does not know); off means one line."""
    for extra, env in ((["--debug"], None), ([], {"FCN_DEBUG": "1"}), ([], {"FCN_DEBUG": "verbose"})):
        result = train(tiny_cifar, tmp_path, "--backend", "jax", *extra, env=env)
        assert result.returncode == 1
        assert "Traceback" in result.stderr and "BackendError" in result.stderr
        assert result.stderr.rstrip().splitlines()[-1].startswith("fcn train: error: unknown backend")
    result = train(tiny_cifar, tmp_path, "--backend", "jax", env={"FCN_DEBUG": "off"})
    assert result.returncode == 1 and "unknown backend" in one_error_line(result)


def test_other_subcommands_get_the_same_treatment(tmp_path):
    """``main`` handles errors for every subcommand, not just ``train``."""
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (sweep extra): the sweep stops before the data")
    result = fcn_cli("sweep", "--data-dir", str(tmp_path / "nowhere"), "--no-download", cwd=tmp_path)
    assert result.returncode == 1
    assert "FCN_DATA_DIR" in one_error_line(result, "sweep")


# -- the command line itself: exit code 2 and a line naming the option ------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--num-iters", "-5"),
        ("--num-iters", "0"),
        ("--lr", "-1"),
        ("--lr", "0"),
        ("--lr", "inf"),
        ("--lr", "nan"),
        ("--lr-decay", "-1"),
        ("--lr-decay", "0"),
        ("--reg", "-5"),
        ("--reg", "nan"),
        ("--weight-scale", "-1"),
        ("--weight-scale", "inf"),
        ("--batch-size", "0"),
        ("--batch-size", "2.7"),
        ("--seed", "-1"),
        ("--num-train", "0"),
        ("--num-val", "-1"),
        ("--num-test", "-1"),
        ("--print-every", "0"),
    ],
)
def test_bad_numbers_are_refused(tiny_cifar, tmp_path, option, value):
    length = [] if option in ("--epochs", "--num-iters") else ["--epochs", "1"]  # short, should it run at all
    result = train(tiny_cifar, tmp_path, option, value, *length)
    assert result.returncode == 2
    assert option in one_error_line(result)
    assert tree(tmp_path) == []


def test_shallow_with_two_hidden_sizes_is_a_usage_error(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--hidden-dims", "10,10")
    assert result.returncode == 2
    assert "--model fc" in one_error_line(result)
    assert tree(tmp_path) == []


def test_patience_without_a_validation_set_is_a_usage_error(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--num-val", "0", "--patience", "2", "--epochs", "1")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "--patience" in line and "--num-val is 0" in line
    assert tree(tmp_path) == []


# -- runs never overwrite each other ----------------------------------------------------------------------------


def test_default_folders_of_runs_in_the_same_second_differ(tiny_cifar, tmp_path):
    clock = "cli.common.timestamp = lambda: '20260101T000000Z'"
    first = train(tiny_cifar, tmp_path, "--num-iters", "2", prelude=clock)
    second = train(tiny_cifar, tmp_path, "--num-iters", "3", prelude=clock)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["shallow-20260101T000000Z", "shallow-20260101T000000Z-2"]
    iterations = [json.loads((tmp_path / "runs" / r / "history.json").read_text())["iterations"] for r in runs]
    assert iterations == [2, 3]


def test_existing_out_is_not_overwritten(tiny_cifar, tmp_path):
    assert train(tiny_cifar, tmp_path, "--out", "run", "--num-iters", "2").returncode == 0
    before = {name: (tmp_path / "run" / name).read_bytes() for name in tree(tmp_path / "run")}
    result = train(tiny_cifar, tmp_path, "--out", "run", "--num-iters", "3")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "--resume" in line and "--overwrite" in line
    assert {name: (tmp_path / "run" / name).read_bytes() for name in tree(tmp_path / "run")} == before


def test_overwrite_replaces_the_run_explicitly(tiny_cifar, tmp_path):
    assert train(tiny_cifar, tmp_path, "--out", "run", "--num-iters", "2").returncode == 0
    (tmp_path / "run" / "notes.txt").write_text("mine")
    result = train(tiny_cifar, tmp_path, "--out", "run", "--num-iters", "3", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "history.json").read_text())["iterations"] == 3
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only fcn's own files are replaced


def test_resume_and_overwrite_exclude_each_other(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--out", "run", "--resume", "--overwrite")
    assert result.returncode == 2
    assert "--overwrite" in one_error_line(result)


def test_resume_needs_out(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--resume")
    assert result.returncode == 2
    assert "--out" in one_error_line(result)
    assert tree(tmp_path) == []


# -- training outcomes: no validation set, a net that blew up, resume ---------------------------------------------


def strict_json(path: Path):
    """Parse as strict JSON (NaN and Infinity are not JSON)."""

    def refuse(name):
        raise ValueError(f"{name} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def checkpoint_arrays(path: Path) -> dict:
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_no_validation_set_trains_and_resumes(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--num-val", "0", "--num-iters", "7", "--out", "run")
    assert result.returncode == 0, result.stderr
    assert "validation accuracy: n/a" in result.stdout
    summary = strict_json(tmp_path / "run" / "history.json")
    assert summary["best_val_acc"] is None and summary["val_acc"] is None and summary["val_acc_history"] == []
    result = train(tiny_cifar, tmp_path, "--num-val", "0", "--num-iters", "12", "--out", "run", "--resume")
    assert result.returncode == 0, result.stderr
    assert strict_json(tmp_path / "run" / "history.json")["iterations"] == 12


def test_parameters_that_blew_up_are_not_reported_as_trained(tiny_cifar, tmp_path):
    result = train(tiny_cifar, tmp_path, "--lr", "1e300", "--num-iters", "1", "--out", "run")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "W1" in line and "NaN or infinite" in line and "learning rate" in line
    assert tree(tmp_path) == ["run", "run/curves.png", "run/history.json"]  # what happened, but no model


def test_resume_with_a_changed_learning_rate_is_refused(tiny_cifar, tmp_path):
    assert train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run").returncode == 0
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    result = train(tiny_cifar, tmp_path, "--num-iters", "12", "--out", "run", "--resume", "--lr", "0.01")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "learning_rate 0.001 in the checkpoint, 0.01 here" in line
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before


def test_resume_with_another_training_set_size_says_so(tiny_cifar, tmp_path):
    assert train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "run").returncode == 0
    result = train(tiny_cifar, tmp_path, "--num-iters", "12", "--out", "run", "--resume", "--num-train", "200")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "250 training samples in the checkpoint, 200 here" in line and "learning rate" not in line


def test_extending_a_finished_run_equals_the_longer_run(tiny_cifar, tmp_path):
    import numpy as np

    # 7 iterations end mid-epoch with the best parameters (of iteration 5 or 7) restored into the model; the
    # extension must continue from where training stopped, as the longer run did
    assert train(tiny_cifar, tmp_path, "--num-iters", "7", "--out", "short").returncode == 0
    assert train(tiny_cifar, tmp_path, "--num-iters", "13", "--out", "short", "--resume").returncode == 0
    assert train(tiny_cifar, tmp_path, "--num-iters", "13", "--out", "long").returncode == 0
    extended = checkpoint_arrays(tmp_path / "short/checkpoint.npz")
    full = checkpoint_arrays(tmp_path / "long/checkpoint.npz")
    for key in full:
        # (the validation history differs by design: the short run was also evaluated at iteration 7)
        if key.startswith(("params/", "optim/")) or key == "loss_history":
            np.testing.assert_array_equal(extended[key], full[key], err_msg=key)


def test_interrupt_inside_an_update_then_resume_is_exact(tiny_cifar, tmp_path, monkeypatch):
    """Ctrl-C in the middle of a step's update (some parameters stepped, others not), in-process through fcn's
    main."""
    import numpy as np

    import fcn
    from fcn.cli import main

    def run(out, *extra):
        return main(
            [
                *tiny_train_args(tiny_cifar),
                "--quiet",
                "--num-iters",
                "12",
                "--out",
                str(out),
                *extra,
            ]
        )

    ops_class = type(fcn.get_backend("numpy").ops)
    real = ops_class.sgd
    calls = {"n": 0, "stop_at": None}

    def sgd_interrupted_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ops_class, "sgd", sgd_interrupted_once)
    assert run(tmp_path / "reference") == 0
    per_step, calls["n"] = calls["n"] // 12, 0  # sgd calls per step: 4, or 2 where the weights' step is folded
    assert per_step >= 2
    calls["stop_at"] = per_step * 7 + 2  # step 8, after its first parameter's update, before its last one
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path / "run")
    assert exit_info.value.code == 130
    monkeypatch.setattr(ops_class, "sgd", real)
    assert run(tmp_path / "run", "--resume") == 0
    resumed, reference = (
        checkpoint_arrays(tmp_path / "run/checkpoint.npz"),
        checkpoint_arrays(tmp_path / "reference/checkpoint.npz"),
    )
    for key in reference:
        if key.startswith(("params/", "best/", "optim/")) or key.endswith("_history"):
            np.testing.assert_array_equal(resumed[key], reference[key], err_msg=key)


# -- hostile input files: one line naming the file, nothing run, nothing waited for -----------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import numpy as np

    import fcn

    path = tmp_path_factory.mktemp("model") / "model.npz"
    fcn.save_model(fcn.FullyConnectedNet(3072, [4], 10, seed=0), path)
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    deep = path.with_name("deep.npz")
    np.savez(deep, **{**entries, "meta": np.asarray("[" * 100_000 + "]" * 100_000)})
    nan = path.with_name("nan.npz")
    np.savez(nan, **{**entries, "params/W2": np.full_like(entries["params/W2"], np.nan)})
    return path


def _png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(path, format="PNG")
    return path


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["predict", "{model}", "{tmp}/missing.png"], 2, "image {tmp}/missing.png does not exist"),
        (["predict", "{model}", "{tmp}/cat.ps.png"], 2, "{tmp}/cat.ps.png is not an image file fcn reads (PNG"),
        (["predict", "{model}", "{tmp}/fifo.png"], 2, "{tmp}/fifo.png is a FIFO, not a regular file"),
        (["predict", "{tmp}/fifo.npz", "{tmp}/cat.png"], 1, "{tmp}/fifo.npz is a FIFO, not a regular file"),
        (["predict", "{tmp}/cat.png", "{tmp}/cat.png"], 1, "{tmp}/cat.png: not an fcn model file (not a zip"),
        (["evaluate", "{tmp}/history.json"], 1, "{tmp}/history.json: not an fcn model file (not a zip archive"),
        (["predict", "{dir}/deep.npz", "{tmp}/cat.png"], 1, "{dir}/deep.npz: the model description is corrupt"),
        (["predict", "{dir}/nan.npz", "{tmp}/cat.png"], 1, "{dir}/nan.npz: parameter W2 holds NaN or infinite"),
    ],
    ids=["missing-image", "postscript", "fifo-image", "fifo-model", "png-model", "json-model", "deep-json", "nan"],
)
def test_hostile_input_files(model_file, tmp_path, args, code, message):
    _png(tmp_path / "cat.png")
    (tmp_path / "cat.ps.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    (tmp_path / "history.json").write_text(json.dumps({"loss_history": [2.3, 2.2]}))
    os.mkfifo(tmp_path / "fifo.png")
    os.mkfifo(tmp_path / "fifo.npz")
    fill = {"model": str(model_file), "dir": str(model_file.parent), "tmp": str(tmp_path)}
    result = fcn_cli(*(a.format(**fill) for a in args), cwd=tmp_path)
    assert result.returncode == code, result.stderr
    line = one_error_line(result, args[0])
    assert message.format(**fill) in line and "pickle" not in line
