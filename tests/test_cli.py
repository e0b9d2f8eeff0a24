"""`fcn train` end to end on a tiny synthetic CIFAR-10 written in the real file format."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fcn
from fcn.cli import main

try:
    from _cifar_fixtures import tiny_train_args, write_cifar10
except ImportError:  # pragma: no cover - tests imported as a package
    from ._cifar_fixtures import tiny_train_args, write_cifar10


@pytest.fixture
def tiny_cifar(tmp_path):
    write_cifar10(tmp_path / "data", n_per_train_batch=60, n_test=50)
    return tmp_path / "data"


def run_train(tiny_cifar, out, *extra):
    return main(
        [
            *tiny_train_args(tiny_cifar),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def test_train_writes_history_plots_and_checkpoint(tiny_cifar, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_train(tiny_cifar, out, "--num-iters", "12") == 0
    printed = capsys.readouterr().out
    assert "final validation accuracy" in printed and "test accuracy" in printed
    summary = json.loads((out / "history.json").read_text())
    assert len(summary["loss_history"]) == 12 and summary["iterations"] == 12
    assert len(summary["val_acc_history"]) == 3  # epochs of 5 steps: ends at 5, 10, and the final step
    assert 0.0 <= summary["test_acc"] <= 1.0 and summary["config"]["reg"] == 0.6
    for name in ("curves.png", "weights.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(out / "checkpoint.npz", allow_pickle=False) as ck:
        assert ck["params/W1"].shape == (3072, 100)


def test_fc_adam_and_resume(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    args = ["--model", "fc", "--hidden-dims", "32,16", "--update-rule", "adam", "--lr", "1e-3"]
    run_train(tiny_cifar, out, *args, "--epochs", "1")
    run_train(tiny_cifar, out, *args, "--epochs", "2", "--resume")
    summary = json.loads((out / "history.json").read_text())
    assert summary["iterations"] == 10 and len(summary["loss_history"]) == 10
    assert "FullyConnectedNet(3072-32-16-10" in summary["model"]


def test_missing_data_without_download_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("fcn train: error: ") and "FCN_DATA_DIR" in err
    assert not (tmp_path / "o").exists()


def test_bad_hidden_dims_are_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--hidden-dims", "100,-3"])
    assert "positive integers" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "fcn.cli", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--hidden-dims" in result.stdout
    script = Path(sys.executable).with_name("fcn")
    if script.exists():
        assert subprocess.run([str(script), "--help"], capture_output=True).returncode == 0


def test_interrupt_saves_a_resumable_checkpoint(tiny_cifar, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_step = fcn.Solver._step

    def step_then_interrupt(self):
        real_step(self)
        if self.iteration == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(fcn.Solver, "_step", step_then_interrupt)
    with pytest.raises(SystemExit) as exit_info:
        run_train(tiny_cifar, out, "--num-iters", "12")
    assert exit_info.value.code == 130
    assert "--resume" in capsys.readouterr().err
    with np.load(out / "checkpoint.npz", allow_pickle=False) as ck:
        assert json.loads(str(ck["meta"]))["iteration"] == 7
    assert len(json.loads((out / "history.json").read_text())["loss_history"]) == 7

    monkeypatch.setattr(fcn.Solver, "_step", real_step)
    run_train(tiny_cifar, out, "--num-iters", "12", "--resume")
    assert json.loads((out / "history.json").read_text())["iterations"] == 12
