"""``fcn evaluate`` from the command line: which test data it reads, and where its figure goes.

The data, first match wins: ``--data-dir`` (which must exist), the data folder the model's run recorded in the
history.json next to it, ``$FCN_DATA_DIR``, the user cache. Every message about the data names ``--data-dir``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

try:
    from _cifar_fixtures import write_cifar10
    from helpers import fcn_cli, one_error_line
except ImportError:  # pragma: no cover - tests imported as a package
    from ._cifar_fixtures import write_cifar10
    from .helpers import fcn_cli, one_error_line

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The folder of a short ``fcn train --data-dir <50 test images>`` run, as the README's first steps make."""
    root = tmp_path_factory.mktemp("evaluate")
    write_cifar10(root / "data", n_per_train_batch=60, n_test=50)
    small = ["--num-train", "250", "--num-val", "50", "--num-test", "50", "--batch-size", "50", "--num-iters", "2"]
    result = fcn_cli("train", "--data-dir", "data", "--no-download", *small, "--quiet", "--out", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


@pytest.fixture(scope="module")
def other_data(tmp_path_factory) -> Path:
    """Another CIFAR-10 folder, with 30 test images: output saying "of 30 images" was read from here."""
    root = tmp_path_factory.mktemp("other-data")
    write_cifar10(root, n_per_train_batch=10, n_test=30)
    return root


@pytest.fixture(scope="module")
def no_cached_data(tmp_path_factory) -> dict[str, str]:
    """The environment of a user with no CIFAR-10 in the cache (one cache, so matplotlib builds its own once)."""
    return {"XDG_CACHE_HOME": str(tmp_path_factory.mktemp("empty-cache"))}


@pytest.fixture
def evaluate(no_cached_data):
    """``fcn evaluate ARGS`` with nothing in the user cache and no ``$FCN_DATA_DIR`` unless ``env`` sets one."""

    def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return fcn_cli("evaluate", *args, cwd=cwd, env={**no_cached_data, **(env or {})})

    return run


def test_evaluate_reads_the_data_the_run_trained_on(evaluate, run):
    result = evaluate("run/model.npz", "--no-download", cwd=run.parent)
    assert result.returncode == 0, result.stderr
    assert " of 50 images)" in result.stdout
    data = run.parent / "data" / "cifar-10-batches-py" / "test_batch"
    assert f"test images: {data} (the data folder of the run" in result.stdout


def test_a_relative_data_dir_is_found_from_another_folder(evaluate, run):
    """The run was trained with ``--data-dir data`` (relative): its history records the folder absolutely."""
    result = evaluate("model.npz", "--no-download", cwd=run)
    assert result.returncode == 0, result.stderr
    assert " of 50 images)" in result.stdout


def test_the_run_s_data_comes_before_fcn_data_dir(evaluate, run, other_data):
    result = evaluate("run/model.npz", "--no-download", cwd=run.parent, env={"FCN_DATA_DIR": str(other_data)})
    assert result.returncode == 0, result.stderr
    assert " of 50 images)" in result.stdout


@pytest.mark.parametrize("history", [None, {"data_dir": "gone"}, ["not", "a", "run"]], ids=["none", "gone", "other"])
def test_without_the_run_s_data_fcn_data_dir_is_next(evaluate, run, other_data, tmp_path, history):
    shutil.copy(run / "model.npz", tmp_path / "model.npz")
    if history is not None:
        (tmp_path / "history.json").write_text(json.dumps(history))
    result = evaluate("model.npz", "--no-download", cwd=tmp_path, env={"FCN_DATA_DIR": str(other_data)})
    assert result.returncode == 0, result.stderr
    assert " of 30 images)" in result.stdout and "($FCN_DATA_DIR)" in result.stdout


def test_data_dir_comes_first(evaluate, run, other_data):
    result = evaluate("run/model.npz", "--data-dir", str(other_data), "--no-download", cwd=run.parent)
    assert result.returncode == 0, result.stderr
    assert " of 30 images)" in result.stdout and "(--data-dir)" in result.stdout


def test_a_data_dir_that_does_not_exist_is_an_error_not_a_download_target(evaluate, run):
    result = evaluate("run/model.npz", "--data-dir", "typo", cwd=run.parent)  # downloads allowed
    assert result.returncode == 2
    assert one_error_line(result, "evaluate") == "fcn evaluate: error: --data-dir typo not found"
    assert not (run.parent / "typo").exists()


@pytest.mark.parametrize("args", [["evaluate", "model.npz"], ["train", "--out", "new-run"]], ids=lambda a: a[0])
def test_messages_about_missing_data_name_the_option(no_cached_data, run, tmp_path, args):
    shutil.copy(run / "model.npz", tmp_path / "model.npz")  # no history.json: the (empty) cache is looked in
    result = fcn_cli(*args, "--no-download", cwd=tmp_path, env=no_cached_data)
    assert result.returncode == 1
    line = one_error_line(result, args[0])
    assert "CIFAR-10 not found" in line and "--data-dir" in line and "root=" not in line


@pytest.mark.parametrize(
    ("out", "written"),
    [
        (None, "run/model-confusion.png"),
        ("cm.png", "cm.png"),
        ("confusion", "confusion.png"),
        ("figs/cm", "figs/cm.png"),
        ("new-folder/", "new-folder/model-confusion.png"),
        ("a-folder", "a-folder/model-confusion.png"),
    ],
    ids=["default", "png", "no-suffix", "no-suffix-in-new-folder", "new-folder", "existing-folder"],
)
def test_the_figure_is_written_where_the_message_says(evaluate, run, tmp_path, out, written):
    shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("*-confusion.png"))  # of other tests
    (tmp_path / "a-folder").mkdir()
    before = set(tmp_path.rglob("*"))
    data = ["--data-dir", str(run.parent / "data"), "--no-download"]
    result = evaluate("run/model.npz", *data, *(["--out", out] if out else []), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if line.startswith("confusion matrix: ")]
    assert printed == [f"confusion matrix: {Path(written)}"]
    assert (tmp_path / written).read_bytes()[:8] == PNG_MAGIC
    created = {p for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    assert created == {tmp_path / written}
