"""`fcn train` with dropout, normalization, AdamW, schedules, augmentation, early stopping and clipping."""

import json

import numpy as np
import pytest

from fcn.cli import main

try:
    from _cifar_fixtures import write_cifar10
except ImportError:  # pragma: no cover - tests imported as a package
    from ._cifar_fixtures import write_cifar10

MODERN = [
    "--model", "fc", "--hidden-dims", "32,16", "--normalization", "batchnorm", "--dropout-keep", "0.7",
    "--weight-scale", "he", "--update-rule", "adamw", "--weight-decay", "5e-4", "--reg", "5e-4",
    "--lr-schedule", "cosine", "--warmup-epochs", "1", "--augment", "flip,crop", "--patience", "5",
    "--clip-grad-norm", "5",
]  # fmt: skip


@pytest.fixture
def tiny_cifar(tmp_path):
    write_cifar10(tmp_path / "data", n_per_train_batch=60, n_test=50)
    return tmp_path / "data"


def run_train(tiny_cifar, out, *extra):
    common = ["--data-dir", str(tiny_cifar), "--no-download", "--num-train", "250", "--num-val", "50"]
    common += ["--num-test", "50", "--batch-size", "50", "--out", str(out), "--quiet"]
    return main(["train", *common, *extra])


def test_every_new_option_from_the_command_line(tiny_cifar, tmp_path):
    out = tmp_path / "run"
    assert run_train(tiny_cifar, out, *MODERN, "--epochs", "3") == 0
    summary = json.loads((out / "history.json").read_text())
    assert summary["iterations"] == 15
    assert "batchnorm" in summary["model"] and "dropout_keep_ratio=0.7" in summary["model"]
    config = summary["config"]
    assert config["augment"] == "flip,crop" and config["lr_schedule"] == "cosine" and config["weight_decay"] == 5e-4
    with np.load(out / "checkpoint.npz", allow_pickle=False) as ck:
        assert "buffers/running_mean1" in ck.files and "best_buffers/running_var2" in ck.files
        meta = json.loads(str(ck["meta"]))
    assert meta["update_rule"] == "adamw" and meta["optim_config"]["weight_decay"] == 5e-4
    assert meta["base_learning_rate"] == 1e-3


def test_interrupted_run_resumes_to_the_same_result(tiny_cifar, tmp_path, monkeypatch):
    import fcn

    once, twice = tmp_path / "once", tmp_path / "twice"
    run_train(tiny_cifar, once, *MODERN, "--epochs", "3")
    real_step = fcn.Solver._step

    def step_then_interrupt(self):
        real_step(self)
        if self.iteration == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(fcn.Solver, "_step", step_then_interrupt)
    with pytest.raises(SystemExit):
        run_train(tiny_cifar, twice, *MODERN, "--epochs", "3")
    monkeypatch.setattr(fcn.Solver, "_step", real_step)
    run_train(tiny_cifar, twice, *MODERN, "--epochs", "3", "--resume")
    first = json.loads((once / "history.json").read_text())
    second = json.loads((twice / "history.json").read_text())
    assert second["loss_history"] == first["loss_history"]
    assert second["val_acc_history"] == first["val_acc_history"] and second["test_acc"] == first["test_acc"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dropout-keep", "1.5"], "keep probability must be in (0, 1]"),
        (["--dropout-keep", "0"], "keep probability must be in (0, 1]"),
        (["--augment", "rotate"], "unknown augmentation 'rotate'"),
        (["--weight-scale", "kaiming"], "must be a finite number >= 0, 'he' or 'xavier'"),
        (["--patience", "0"], "must be a positive integer"),
        (["--clip-grad-norm", "-1"], "must be a finite number > 0"),
        (["--normalization", "groupnorm"], "invalid choice: 'groupnorm'"),
        (["--lr-schedule", "exp"], "invalid choice: 'exp'"),
    ],
)
def test_bad_flags_are_refused_with_one_line(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--update-rule", "adam", "--weight-decay", "1e-2"], "--weight-decay is AdamW's"),
        (["--model", "shallow", "--normalization", "batchnorm"], "need --model fc"),
        (["--model", "shallow", "--dropout-keep", "0.5"], "need --model fc"),
    ],
)
def test_inconsistent_flags_stop_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert main(["train", "--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
