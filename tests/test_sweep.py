"""`fcn sweep` / `fcn.sweep.run_sweep`: search-space specs, one trial, and sweeps on Ray Tune with ASHA.

The Ray tests share one local Ray session (2 CPUs, no dashboard, temp files under pytest's tmp folder),
started once for the module and shut down at its end, and one small sweep whose results several tests
inspect: Ray's start-up costs seconds, the trials themselves milliseconds. Without Ray they are skipped;
the "Ray is not installed" message is tested with Ray's import blocked.
"""

import json
import math
import os
import signal
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import fcn
from fcn import sweep
from fcn.cli import main
from fcn.sweep import MissingRayError, SweepError, TrialSettings, parse_spec, resolve_space, run_sweep, train_trial

try:
    from _cifar_fixtures import write_cifar10
    from helpers import fcn_cli, one_error_line
except ImportError:  # pragma: no cover - tests imported as a package
    from ._cifar_fixtures import write_cifar10
    from .helpers import fcn_cli, one_error_line

CHANCE = 0.1
GOOD_LR, TINY_LR, DIVERGING_LR = 0.05, 1e-6, 1e4
PNG = b"\x89PNG\r\n\x1a\n"


def blobs(n: int, seed: int, dim: int = 20, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Ten Gaussian blobs: separable by a small net in a few epochs, at chance for an untrained one."""
    centers = np.random.default_rng(0).normal(size=(classes, dim))
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return (centers[y] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    (Xtr, ytr), (Xv, yv), (Xte, yte) = blobs(400, 1), blobs(200, 2), blobs(200, 3)
    return {"X_train": Xtr, "y_train": ytr, "X_val": Xv, "y_val": yv, "X_test": Xte, "y_test": yte}


# A grid over three learning rates (good, too small to learn, diverging), random reg and hidden size.
SPACE = {
    "learning_rate": {"grid": [GOOD_LR, TINY_LR, DIVERGING_LR]},
    "reg": {"loguniform": [1e-4, 1e-2]},
    "hidden_dims": [16, 32],
    "batch_size": 50,
    "weight_scale": 1e-2,
}
SWEEP_ARGS = dict(num_samples=2, num_iters=80, verbose=False)  # 6 trials of 10 epochs of 8 steps


@pytest.fixture
def no_ray(monkeypatch):
    """Make ``import ray`` fail, as on a machine without the extra."""
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


# ------------------------------------------------------------------------------------------------------------
# Search spaces: one parser for command-line strings, file values and dicts
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        ("lr", "1e-4..1e-2", {"loguniform": [1e-4, 1e-2]}),
        ("learning_rate", {"loguniform": [1e-4, 1e-2]}, {"loguniform": [1e-4, 1e-2]}),
        ("reg", "log:1e-3..1", {"loguniform": [1e-3, 1.0]}),
        ("reg", {"log": ["1e-3", 1]}, {"loguniform": [1e-3, 1.0]}),
        ("lr_decay", "0.9..0.99", {"uniform": [0.9, 0.99]}),
        ("lr-decay", "grid:0.9,0.95", {"grid": [0.9, 0.95]}),
        ("reg", "0.6", 0.6),
        ("reg", 0.25, 0.25),
        ("hidden_dims", "100,200,512x256", {"choice": [[100], [200], [512, 256]]}),
        ("hidden_dims", [100, [512, 256]], {"choice": [[100], [512, 256]]}),
        ("hidden", "512x256", [512, 256]),
        ("hidden", "50..400", {"lograndint": [50, 400]}),
        ("batch_size", "uniform:100..500", {"randint": [100, 500]}),
        ("update_rule", "sgd,adam", {"choice": ["sgd", "adam"]}),
        ("update_rule", "grid:sgd,adamw", {"grid": ["sgd", "adamw"]}),
        ("weight_decay", "1e-4..1e-1", {"loguniform": [1e-4, 0.1]}),
        ("lr_schedule", "step,cosine", {"choice": ["step", "cosine"]}),
        ("warmup_epochs", "0..2", {"uniform": [0.0, 2.0]}),
        ("augment", "none,flip,flip+crop", {"choice": [None, "flip", "flip,crop"]}),
        ("augment", ["flip,crop"], "flip,crop"),
        ("clip_grad_norm", "1..10", {"loguniform": [1.0, 10.0]}),
        ("clip_grad_norm", "none", None),
        ("dropout_keep", "0.5..1", {"uniform": [0.5, 1.0]}),
        ("normalization", "none,batchnorm,layernorm", {"choice": [None, "batchnorm", "layernorm"]}),
    ],
)
def test_parse_spec(name, spec, expected):
    assert parse_spec(name, spec) == expected


@pytest.mark.parametrize(
    ("name", "spec", "match"),
    [
        ("momentum", 0.9, "unknown sweep parameter"),
        ("learning_rate", "1e-2..1e-4", "low <= high"),
        ("reg", "log:0..1", "positive bounds"),
        ("update_rule", "nesterov", "bad value"),
        ("update_rule", "sgd..adam", "range"),
        ("batch_size", "12.5", "positive integer"),
        ("hidden_dims", "100x0", "positive integers"),
        ("reg", {"grid": [1], "choice": [2]}, "exactly one key"),
        ("reg", {"normal": [0, 1]}, "unknown search kind"),
        ("reg", "grid:1..2", "comma-separated"),
        ("reg", "log:1e-3", "range lo..hi"),
        ("lr_schedule", "exponential", "expected one of step, cosine, linear"),
        ("augment", "rotate", r"expected one of none, flip, crop, flip\+crop"),
        ("normalization", "batchnorm..layernorm", "range"),
    ],
)
def test_parse_spec_rejects(name, spec, match):
    with pytest.raises(SweepError, match=match):
        parse_spec(name, spec)


def test_resolve_space_fills_train_defaults_and_checks_the_model():
    space = resolve_space({"lr": "1e-4..1e-2"}, model="shallow")
    assert space["reg"] == 0.6 and space["batch_size"] == 500 and space["hidden_dims"] == [100]
    assert space["weight_scale"] == 1e-3 and resolve_space({}, model="fc")["weight_scale"] == 1e-2
    assert resolve_space(None)["learning_rate"] == {"loguniform": [3e-4, 1e-2]}  # the default space
    with pytest.raises(SweepError, match="need model 'fc'"):
        resolve_space({"hidden_dims": "100,512x256"}, model="shallow")
    with pytest.raises(SweepError, match="given twice"):
        resolve_space({"lr": 0.1, "learning_rate": 0.2})
    with pytest.raises(SweepError, match="normalization need model 'fc'"):
        resolve_space({"normalization": "batchnorm,layernorm"}, model="shallow")
    every = resolve_space({}, model="fc")  # every searchable setting, at fcn train's value
    assert every["lr_schedule"] == "step" and every["augment"] is None and every["warmup_epochs"] == 0.0
    assert every["update_rule"] == "sgd" and every["clip_grad_norm"] is None and every["weight_decay"] is None
    assert every["dropout_keep_ratio"] == 1.0 and every["normalization"] is None and every["lr_decay"] == 0.95


def test_train_trial_builds_the_trainconfig_from_the_drawn_values(data):
    config = {**resolve_space({}, model="fc"), "hidden_dims": [16], "weight_scale": 1e-2, "batch_size": 50}
    config.update(update_rule="adamw", weight_decay=1e-3, lr_schedule="cosine", warmup_epochs=0.5,
                  clip_grad_norm=5.0, normalization="layernorm", dropout_keep_ratio=0.9)  # fmt: skip
    outcome, solver = train_trial(config, data, TrialSettings(model="fc", num_iters=16))
    assert outcome["status"] == "completed"
    settings = solver.config
    assert (settings.update_rule, settings.lr_schedule, settings.warmup_epochs) == ("adamw", "cosine", 0.5)
    assert settings.optim_config["weight_decay"] == 1e-3 and settings.optim_config["learning_rate"] == 1e-3
    assert settings.clip_grad_norm == 5.0 and settings.batch_size == 50 and settings.num_iters == 16
    assert "layernorm" in repr(solver.model) and "dropout_keep_ratio=0.9" in repr(solver.model)
    # a rule without a weight decay ignores the one drawn for adamw
    _, solver = train_trial({**config, "update_rule": "adam"}, data, TrialSettings(model="fc", num_iters=8))
    assert "weight_decay" not in solver.config.optim_config


def test_specs_become_tunes_own_search_spaces():
    tune = pytest.importorskip("ray.tune")
    lr = sweep.to_tune({"loguniform": [1e-4, 1e-2]}, tune)
    assert (lr.lower, lr.upper) == (1e-4, 1e-2) and isinstance(lr.get_sampler(), tune.search.sample.LogUniform)
    hidden = sweep.to_tune({"lograndint": [50, 400]}, tune)
    assert (hidden.lower, hidden.upper) == (50, 401)  # Tune excludes the upper bound; the spec includes it
    assert sweep.to_tune({"grid": [0.9, 0.95]}, tune) == tune.grid_search([0.9, 0.95])
    assert sweep.to_tune({"choice": [[100], [200]]}, tune).categories == [[100], [200]]
    assert sweep.to_tune(0.6, tune) == 0.6


def test_space_files_json_and_toml(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"lr": {"loguniform": [1e-4, 1e-2]}, "hidden_dims": [100, 200]}))
    space = sweep.load_space(tmp_path / "s.json")
    assert space == {"learning_rate": {"loguniform": [1e-4, 1e-2]}, "hidden_dims": {"choice": [[100], [200]]}}
    pytest.importorskip("tomllib", reason="TOML needs Python 3.11+")
    (tmp_path / "s.toml").write_text('[space]\nlearning_rate = "1e-4..1e-2"\nhidden_dims = [100, 200]\n')
    assert sweep.load_space(tmp_path / "s.toml") == space
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SweepError, match="not valid JSON"):
        sweep.load_space(tmp_path / "bad.json")


DEEP = "[" * 100_000 + "]" * 100_000  # deeper than any recursive parser goes


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("s.json", b'{"lr": 0.1, "learning_rate": 0.2}', r"learning_rate given twice \(as 'lr' and 'learning_rate'\)"),
        ("s.json", b'{"hidden_dims": [200], "hidden": 100}', "hidden_dims given twice"),
        ("s.json", b'{"hidden_dims": true}', "bad value True for hidden_dims: .*not true/false"),
        ("s.json", b'{"hidden_dims": [100, false]}', "bad value False for hidden_dims"),
        ("s.json", b'{"batch_size": true}', "bad value True for batch_size"),
        ("s.json", b'{"reg": "caf\xe9"}', "is not UTF-8 text"),
        ("s.json", DEEP.encode(), "nested too deeply"),
        ("s.json", b'{"lr": ' + DEEP.encode() + b"}", "nested too deeply"),
        ("s.toml", b"lr = 0.1\nlearning_rate = 0.2\n", "learning_rate given twice"),
        ("s.toml", b"hidden_dims = true\n", "bad value True for hidden_dims"),
        ("s.toml", b"lr = " + DEEP.encode() + b"\n", "nested too deeply"),
    ],
)
def test_bad_space_files_are_one_line_errors_naming_the_file(name, content, match, tmp_path):
    if name.endswith(".toml"):
        pytest.importorskip("tomllib", reason="TOML needs Python 3.11+")
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(sweep.SweepInputError, match=match) as info:
        sweep.load_space(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_space_that_is_not_a_regular_file_is_refused_unread(tmp_path):
    os.mkfifo(tmp_path / "space.json")  # reading it would block until a writer came
    with pytest.raises(sweep.SweepInputError, match="space.json is not a regular file"):
        sweep.load_space(tmp_path / "space.json")


@pytest.mark.parametrize("space", [{"lr": 0.1, "learning_rate": 0.2}, {"hidden": 100, "hidden_dim": 200}])
def test_a_parameter_given_under_two_names_is_refused(space):
    with pytest.raises(sweep.SweepInputError, match="given twice"):
        resolve_space(space)


def test_the_sweep_draws_every_update_rule(tmp_path):
    """The rules a sweep can draw are the update-rule table's, adamw included, and its help lists them."""
    assert sweep.PARAMETERS["update_rule"].choices == tuple(fcn.optim.RULES)
    help_text = " ".join(fcn_cli("sweep", "--help", cwd=tmp_path).stdout.split())
    assert f"(one of {', '.join(fcn.optim.RULES)})" in help_text and "adamw" in help_text


def test_cli_bad_space_file_exits_2_naming_it(tmp_path):
    (tmp_path / "space.json").write_text('{"lr": ' + DEEP + "}")
    result = fcn_cli("sweep", "--space", "space.json", "--out", "o", cwd=tmp_path)
    assert result.returncode == 2 and "space.json is nested too deeply" in one_error_line(result, "sweep")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------------------
# Without Ray: errors found before anything runs, and one trial
# ------------------------------------------------------------------------------------------------------------


def test_missing_ray_names_the_extra(no_ray, tmp_path):
    # Raised before any data is read: the data folder here does not exist.
    with pytest.raises(MissingRayError, match=r'pip install "fcn-cifar\[sweep\]"') as info:
        run_sweep(data_dir=tmp_path / "nowhere", download=False, out=tmp_path / "out")
    assert isinstance(info.value, ImportError)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", str(tmp_path / "o")])
    assert str(exit_info.value.code) == f"fcn sweep: {sweep.RAY_MISSING_MESSAGE}"


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--epochs", "0", "must be a positive integer, got 0"),
        ("--epochs", "-2", "must be a positive integer, got -2"),
        ("--num-iters", "0", "must be a positive integer, got 0"),
        ("--reduction-factor", "1", "must be a number >= 2, got 1.0"),  # Ray's ASHA asserts on it
        ("--reduction-factor", "1.5", "must be a number >= 2, got 1.5"),
        ("--grace-period", "0", "must be a finite number > 0, got '0'"),  # argparse's own check
        ("--trial-num-train", "0", "must be a positive integer, got '0'"),
        ("--num-val", "0", "must be at least 1 (trials are ranked by validation accuracy), got 0"),
    ],
)
def test_bad_sweep_arguments_are_one_line_errors_before_ray_starts(option, value, problem, tmp_path):
    # no Ray is needed to refuse them, no data is read (the data folder does not exist), no folder is made
    result = fcn_cli("sweep", option, value, "--data-dir", str(tmp_path / "nowhere"), "--no-download",
                     "--out", str(tmp_path / "o"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    line = one_error_line(result, "sweep")
    assert option in line and problem in line
    assert not (tmp_path / "o").exists()


def test_a_sweep_into_a_folder_holding_results_is_refused_and_changes_nothing(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "summary.json").write_text('{"from": "an earlier sweep"}')
    result = fcn_cli("sweep", "--data-dir", str(tmp_path / "nowhere"), "--no-download", "--out", "o", cwd=tmp_path)
    assert result.returncode == 2
    assert "o already holds files (summary.json); choose another folder" in one_error_line(result, "sweep")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["summary.json"]
    assert (tmp_path / "o" / "summary.json").read_text() == '{"from": "an earlier sweep"}'


@pytest.mark.parametrize(
    ("argument", "value", "problem"),
    [
        ("epochs", 0, "must be a positive integer, got 0"),
        ("num_samples", 2.5, "must be a positive integer, got 2.5"),
        ("trial_num_train", 0, "must be a positive integer, got 0"),  # 0 is not "all"
        ("trial_num_train", True, "must be a positive integer, got True"),
        ("grace_period", -1, "must be a number > 0, got -1"),
        ("grace_period", 0, "must be a number > 0, got 0"),
        ("reduction_factor", 1, "must be a number >= 2, got 1"),
        ("reduction_factor", float("nan"), "must be a number >= 2, got nan"),
        ("max_concurrent", 0, "must be a positive integer, got 0"),
        ("cpus_per_trial", 0, "must be a number > 0, got 0"),
        ("num_cpus", 0, "must be a positive integer, got 0"),
        ("search_seed", -1, "must be an integer >= 0, got -1"),
        ("scheduler", "hyperband", "must be 'asha' or 'fifo', got 'hyperband'"),
        ("model", "cnn", "must be 'shallow' or 'fc', got 'cnn'"),
    ],
)
def test_run_sweep_checks_its_arguments_before_anything_starts(no_ray, argument, value, problem, tmp_path):
    # Ray's import is blocked: the argument is refused before Ray is looked for, the data read or a folder made
    with pytest.raises(sweep.SweepInputError) as info:
        run_sweep(data_dir=tmp_path / "nowhere", download=False, out=tmp_path / "o", **{argument: value})
    assert str(info.value) == f"{argument} {problem}" and info.value.argument == argument
    assert isinstance(info.value, ValueError) and not (tmp_path / "o").exists()


def test_a_sweep_without_validation_samples_is_refused(data, tmp_path):
    """Trials are ranked by validation accuracy: no validation set, no ranking (refused before Ray starts)."""
    empty_val = {**data, "X_val": data["X_val"][:0], "y_val": data["y_val"][:0]}
    with pytest.raises(SweepError, match=r"^data has no validation samples \(y_val is empty\)"):
        run_sweep(data=empty_val, num_iters=4, out=tmp_path / "o")
    with pytest.raises(SweepError, match=r"^num_val must be at least 1 \(trials are ranked by validation accuracy\)"):
        run_sweep(num_val=0, num_iters=4, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_train_trial_reports_every_epoch(data):
    config = {**resolve_space({**SPACE, "learning_rate": GOOD_LR, "reg": 1e-3, "hidden_dims": 16}), "hidden_dims": 16}
    settings = TrialSettings(num_iters=20)
    reports = []
    outcome, solver = train_trial(config, data, settings, report=reports.append)
    # 8 steps an epoch: reports after epochs 1 and 2, and at the last step (2.5 epochs)
    assert [r["iteration"] for r in reports] == [8, 16, 20] and reports[-1]["epoch"] == 2.5
    assert [r["val_acc"] for r in reports] == solver.val_acc_history and outcome["status"] == "completed"
    assert reports[-1]["best_val_acc"] == outcome["best_val_acc"] and not reports[-1]["diverged"]

    reports.clear()
    outcome, _ = train_trial({**config, "learning_rate": DIVERGING_LR}, data, settings, report=reports.append)
    assert outcome["status"] == "diverged" and reports[-1]["diverged"] and math.isnan(reports[-1]["val_acc"])
    outcome, _ = train_trial(config, data, TrialSettings(num_iters=None, epochs=0))
    assert outcome["status"] == "error" and outcome["iterations"] == 0  # trained nothing: never "completed"


def result(trial_id, config=None, error=None, **metrics):
    """A stand-in for a Tune ``Result``: what Tune hands back for a trial (no metrics if it never reported)."""
    if config is not None:
        metrics = {"trial_id": trial_id, "config": config, **metrics}
    return SimpleNamespace(metrics=metrics, error=error, path=f"/runs/tune/{trial_id}")


def test_trial_rows_from_tune_results():
    cfg = {"learning_rate": 0.1, "hidden_dims": 16}
    names = ["learning_rate", "hidden_dims"]
    done = dict(best_val_acc=0.5, val_acc=0.4, epoch=10.0, time_total_s=3.0)
    rows = {
        r["trial"]: r
        for r in [
            sweep.trial_row(result("a", cfg, iteration=80, num_iters=80, **done), names, {"a", "b", "z"}),
            sweep.trial_row(result("b", cfg, iteration=16, num_iters=80, **done), names, {"a", "b", "z"}),
            sweep.trial_row(result("z", cfg, iteration=0, num_iters=0, **done), names, {"a", "b", "z"}),
            sweep.trial_row(result("c", cfg, iteration=16, num_iters=80, **done), names, {"a", "b", "z"}),
            sweep.trial_row(result("d"), names, {"a", "b", "z"}),  # never started: no metrics, no config
            sweep.trial_row(result("e", cfg, error=ValueError("bad")), names, {"a", "b", "z"}),
        ]
    }
    assert {k: r["status"] for k, r in rows.items()} == {
        "a": "completed",
        "b": "stopped",
        "z": "stopped",
        "c": "interrupted",
        "d": "interrupted",
        "e": "error",
    }
    assert rows["a"]["config"] == {"learning_rate": 0.1, "hidden_dims": [16]} and rows["d"]["config"] == {}
    assert rows["e"]["error"] == "bad" and math.isnan(rows["c"]["best_val_acc"])
    ordered = list(rows.values())
    best = sweep.results.sort_rows(ordered)
    assert best["trial"] == "a" and [r["trial"] for r in ordered][:2] == ["a", "b"]  # 0 iterations: not ranked


def test_plot_sweep_log_axes(tmp_path):
    rows = [
        {"best_val_acc": 0.4, "config": {"learning_rate": 1e-3, "reg": 0.1, "hidden_dims": [100]}},
        {"best_val_acc": 0.5, "config": {"learning_rate": 3e-3, "reg": 0.01, "hidden_dims": [400]}},
        {"best_val_acc": float("nan"), "config": {"learning_rate": 1.0, "reg": 0.5, "hidden_dims": [100]}},
        {"best_val_acc": float("nan"), "config": {}},  # interrupted before it started
    ]
    fig = sweep.plot_sweep(rows, tmp_path / "p.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG


def test_result_files_replace_symlinks_instead_of_writing_through_them(tmp_path):
    """Each file goes through a temporary file and os.replace: a symlink in the output folder is replaced, and
    what it pointed at (outside the folder) is left as it was."""
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("keep")
    for name in ("trials.csv", "trials.json", "sweep.png"):
        (out / name).symlink_to(outside)
    rows = [{"trial": "a", "status": "completed", "best_val_acc": 0.5, "last_val_acc": 0.5, "iterations": 8,
             "epochs": 1.0, "seconds": 1.0, "config": {"learning_rate": 1e-3, "reg": 0.1}, "error": ""}]  # fmt: skip
    sweep.results.write_tables(rows, ["learning_rate", "reg"], out)
    sweep.plot_sweep(rows, out / "sweep.png")
    assert outside.read_text() == "keep"
    names = sorted(p.name for p in out.iterdir())  # no temporary file left behind
    assert names == ["sweep.png", "trials.csv", "trials.json"] and not any(p.is_symlink() for p in out.iterdir())
    assert (out / "trials.csv").read_text().splitlines()[1].startswith("a,completed,0.5,")


# ------------------------------------------------------------------------------------------------------------
# With Ray (one shared session and one shared sweep)
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    # A short temp dir (Ray's socket paths must stay under ~107 characters) inside pytest's tmp folder.
    temp_dir = tmp_path_factory.mktemp("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(temp_dir),
        logging_level="ERROR",
        log_to_driver=False,
        configure_logging=False,
    )
    yield temp_dir
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_sweep(ray_session, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return run_sweep(SPACE, data=data, out=out, grace_period=1, reduction_factor=2, search_seed=1, **SWEEP_ARGS)


def test_ray_sweep_finds_the_good_region(ray_sweep):
    assert len(ray_sweep.trials) == 6 and not ray_sweep.interrupted
    best = ray_sweep.best
    assert best["config"]["learning_rate"] == GOOD_LR
    assert best["best_val_acc"] > 0.8 > CHANCE + 0.5
    assert ray_sweep.retrained["val_acc"] > 0.8 and ray_sweep.retrained["test_acc"] > 0.8
    for row in ray_sweep.trials:
        assert row["status"] in ("completed", "stopped", "diverged"), row
        if row["status"] == "stopped":  # ASHA cut it before the end
            assert row["iterations"] < 80
        if row["config"]["learning_rate"] == TINY_LR and row["status"] == "completed":
            assert row["best_val_acc"] < CHANCE + 0.15  # near chance: the good region is what wins
    assert ray_sweep.summary["scheduler"] == "asha" and ray_sweep.summary["ray_version"]


def test_ray_diverging_trial_is_recorded_not_fatal(ray_sweep):
    diverged = [r for r in ray_sweep.trials if r["config"]["learning_rate"] == DIVERGING_LR]
    assert len(diverged) == 2
    for row in diverged:
        assert row["status"] == "diverged" and math.isnan(row["best_val_acc"]) and "diverged" in row["error"]
    assert ray_sweep.trials[-1]["status"] == "diverged"  # sorted best first, failures last


def test_ray_results_files(ray_sweep, ray_session):
    out = ray_sweep.out
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 6
    assert {"trial", "status", "best_val_acc", "iterations", "seconds", "learning_rate"} <= set(rows[0])
    assert rows[-1]["best_val_acc"] is None  # NaN is written as null: strict JSON
    csv_lines = (out / "trials.csv").read_text().splitlines()
    assert csv_lines[0].startswith("trial,status,best_val_acc") and len(csv_lines) == 7
    assert ",diverged," in csv_lines[-1]
    assert (out / "sweep.png").read_bytes()[:8] == PNG
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status_counts"]["diverged"] == 2 and summary["best"]["config"]["learning_rate"] == GOOD_LR
    assert summary["space"]["learning_rate"] == {"grid": [GOOD_LR, TINY_LR, DIVERGING_LR]}
    # Tune's files are under the output folder, Ray's session files under the test's temp dir
    assert any((out / "ray_results" / "tune").iterdir())
    assert any(ray_session.glob("session_*"))

    # the checkpoint is a Solver checkpoint of the best configuration
    hidden = summary["best"]["config"]["hidden_dims"][0]
    net = fcn.ShallowLayerNet(20, hidden, 10, dtype="float32")
    d = {
        k: np.zeros((50, 20), np.float32) if k.startswith("X") else np.zeros(50, np.int64)
        for k in ("X_train", "y_train", "X_val", "y_val")
    }
    solver = fcn.Solver(net, d, batch_size=50, verbose=False, progress=False)
    with pytest.warns(UserWarning, match="other settings"):  # a solver for inspection, not the sweep's settings
        solver.load_checkpoint(out / "best_checkpoint.npz", strict=False)
    assert solver.iteration == 80 and solver.best_val_acc == pytest.approx(ray_sweep.retrained["best_val_acc"])


def test_ray_best_model_file_and_history(ray_sweep, data):
    """The retrained best configuration is written as fcn train writes a run: a model file fcn.load_model reads
    (the same predictions as the retrained network's test accuracy) and its history."""
    out, retrained = ray_sweep.out, ray_sweep.retrained
    assert retrained["model_file"] == str(out / "model.npz")
    net = fcn.load_model(out / "model.npz")
    predicted = np.argmax(np.asarray(net.loss(data["X_test"])), axis=1)
    assert np.mean(predicted == data["y_test"]) == pytest.approx(retrained["test_acc"]) and retrained["test_acc"] > 0.8
    history = json.loads((out / "history.json").read_text())
    assert history["iterations"] == 80 and history["test_acc"] == pytest.approx(retrained["test_acc"])
    assert history["config"] == ray_sweep.best["config"] and history["settings"]["batch_size"] == 50
    assert len(history["loss_history"]) == 80 and history["data_dir"] is None  # arrays given in Python


def test_a_failing_trial_is_recorded_with_its_error(ray_session, data, tmp_path):
    bad = dict(data, X_val=data["X_val"].copy())
    bad["X_val"][0, 0] = np.nan  # every trial's Solver refuses this
    with pytest.raises(SweepError, match="X_val contains NaN"):
        run_sweep({"lr": GOOD_LR}, data=bad, out=tmp_path, num_samples=2, num_iters=8, verbose=False)
    rows = json.loads((tmp_path / "trials.json").read_text())  # the table is written anyway
    assert [r["status"] for r in rows] == ["error", "error"]
    assert rows[0]["error"] == "ValueError: X_val contains NaN or infinite values"  # the trial's error, not Ray's


def test_gpu_trials_on_a_cluster_without_gpus_fail_at_once(ray_session, data, tmp_path):
    with pytest.raises(SweepError, match="no GPU"):
        run_sweep({"lr": GOOD_LR}, data=data, backend="cupy", out=tmp_path / "gpu", num_samples=1, verbose=False)
    assert not (tmp_path / "gpu").exists()


def test_ctrl_c_reports_what_finished(ray_session, data, tmp_path):
    """Ctrl-C during a sweep (Tune catches SIGINT): the finished trials are tabled, the rest 'interrupted'."""
    from ray import tune

    class CtrlC(tune.Callback):  # presses Ctrl-C once the first trial has ended
        def on_trial_complete(self, iteration, trials, trial, **info):
            os.kill(os.getpid(), signal.SIGINT)

    space = {"lr": GOOD_LR, "hidden_dims": 16, "batch_size": 50, "weight_scale": 1e-2}
    result = run_sweep(
        space,
        data=data,
        out=tmp_path,
        num_samples=4,
        num_iters=8,
        scheduler="fifo",
        max_concurrent=1,
        verbose=False,
        callbacks=[CtrlC()],
    )
    assert result.interrupted and result.retrained is None
    statuses = [r["status"] for r in result.trials]
    assert statuses[0] == "completed" and result.best["trial"] == result.trials[0]["trial"]
    assert set(statuses[1:]) == {"interrupted"} and len(statuses) == 4
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 5 and (tmp_path / "sweep.png").exists()


def synthetic_cifar_args(tmp_path) -> list[str]:
    """``fcn sweep`` options for a tiny sweep on a synthetic CIFAR-10 written under ``tmp_path``."""
    write_cifar10(tmp_path / "data", n_per_train_batch=60, n_test=50)
    args = ["--data-dir", str(tmp_path / "data"), "--no-download", "--num-train", "250", "--num-val", "50"]
    return [*args, "--num-test", "50", "--batch-size", "50", "--num-iters", "10", "--out", str(tmp_path / "run")]


def test_ray_cli_on_synthetic_cifar(ray_session, tmp_path, capsys):
    out = tmp_path / "run"
    args = [*synthetic_cifar_args(tmp_path), "--hidden-dims", "8", "--lr", "grid:1e-4,1e-3"]
    assert main(["sweep", *args, "--num-samples", "1", "--quiet"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "2 trials" in printed and "test acc" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_trials"] == 2 and summary["cluster"]["cpus"] == 2 and summary["command"].startswith("fcn sweep")
    assert summary["space"]["hidden_dims"] == [8] and summary["space"]["reg"]["loguniform"]
    assert summary["data"]["X_train"] == [250, 3, 32, 32]
    assert {"cpu", "cores", "python", "platform", "gpu"} <= set(summary["machine"])
    assert (out / "best_checkpoint.npz").exists() and (out / "trials.csv").exists()
    # the best model is a model file fcn evaluate reads, scoring the test images as the retrained network did
    assert f"fcn evaluate {out / 'model.npz'}" in printed
    evaluated = fcn_cli("evaluate", str(out / "model.npz"), "--data-dir", str(tmp_path / "data"), "--no-download",
                        cwd=tmp_path)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"test accuracy: {summary['retrained']['test_acc']:.4f} (" in evaluated.stdout
    history = json.loads((out / "history.json").read_text())
    assert history["data_dir"] == str(tmp_path / "data") and history["command"] == summary["command"]


def test_ray_cli_searches_the_schedule_and_augmentation(ray_session, tmp_path):
    """Two trials, a grid over the schedule and a draw of the augmentation: each trains with what it drew."""
    out = tmp_path / "run"
    args = [*synthetic_cifar_args(tmp_path), "--hidden-dims", "8", "--lr", "1e-3", "--reg", "0.01"]
    args += ["--lr-schedule", "grid:step,cosine", "--augment", "none,flip", "--search-seed", "3"]
    assert main(["sweep", *args, "--num-samples", "1", "--scheduler", "fifo", "--quiet"]) == 0
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}
    assert sorted(r["lr_schedule"] for r in rows) == ["cosine", "step"]
    assert sorted(str(r["augment"]) for r in rows) == ["None", "flip"]  # this search seed draws both
    summary = json.loads((out / "summary.json").read_text())
    assert summary["space"]["lr_schedule"] == {"grid": ["step", "cosine"]}
    assert summary["space"]["augment"] == {"choice": [None, "flip"]}
    # the retrained best run's checkpoint records the settings its Solver trained with: the best trial's
    with np.load(out / "best_checkpoint.npz", allow_pickle=False) as ck:
        meta = json.loads(str(ck["meta"]))
    best = summary["best"]["config"]
    saved = meta["settings"]
    assert (saved["lr_schedule"], saved["augment"]) == (best["lr_schedule"], best["augment"])


@pytest.mark.parametrize("how", ["during the trials", "while loading"])
def test_cli_ctrl_c_exits_130(how, monkeypatch, tmp_path, capsys):
    row = {"trial": "a", "status": "interrupted", "best_val_acc": float("nan"), "iterations": 3, "config": {}}

    def fake_run_sweep(space, **kwargs):
        if how == "while loading":
            raise KeyboardInterrupt
        return sweep.SweepResult([row], None, None, tmp_path, 1.0, interrupted=True)

    monkeypatch.setattr(fcn.cli.sweep, "run_sweep", fake_run_sweep)
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--out", str(tmp_path)])
    assert info.value.code == 130 and "fcn sweep: interrupted" in capsys.readouterr().err


def test_missing_data_fails_before_ray_starts_and_leaves_nothing(tmp_path):
    pytest.importorskip("ray.tune")
    with pytest.raises(fcn.data.DatasetError, match="FCN_DATA_DIR"):
        run_sweep(data_dir=tmp_path / "nowhere", download=False, out=tmp_path / "out", verbose=False)
    assert not (tmp_path / "out").exists()
