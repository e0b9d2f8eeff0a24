"""A fresh virtual environment installs fcn-cifar from this checkout, and its `fcn` command trains, saves,
evaluates and predicts end to end (tiny synthetic CIFAR-10 in the real file format, no download)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import fcn

try:
    from _cifar_fixtures import write_cifar10
except ImportError:  # pragma: no cover - tests imported as a package
    from ._cifar_fixtures import write_cifar10

ROOT = Path(__file__).resolve().parents[2]
# What a source distribution holds: enough to build and install the package.
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "fcn")
OFFLINE_SIGNS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "NewConnectionError",
    "ConnectTimeoutError",
)


def _run(args, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_fresh_install_trains_evaluates_and_predicts(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCE_FILES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, src / name)

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", venv])
    if made.returncode != 0:
        pytest.skip(f"this Python cannot create virtual environments: {made.stderr.strip()[-300:]}")
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    # Nothing from the developer's environment may leak in: the installed package must stand on its own.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}

    installed = _run([python, "-m", "pip", "install", "--quiet", src], env=env, timeout=900)
    output = installed.stdout + installed.stderr
    if installed.returncode != 0 and any(sign in output for sign in OFFLINE_SIGNS):
        pytest.skip("the package index cannot be reached, so the dependencies cannot be installed")
    assert installed.returncode == 0, output[-3000:]

    # Installed under its distribution name, imported as fcn, from the virtual environment (not this checkout).
    probe = _run(
        [
            python,
            "-c",
            "import fcn, importlib.metadata as m, pathlib; p = pathlib.Path(fcn.__file__).parent; "
            "print(m.version('fcn-cifar'), (p / 'py.typed').is_file(), p)",
        ],
        env=env,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    version, typed, location = probe.stdout.split(maxsplit=2)
    assert version == fcn.__version__ and typed == "True"
    assert Path(location.strip()).resolve().is_relative_to(venv.resolve())

    data = write_cifar10(tmp_path / "data", n_per_train_batch=60, n_test=50)
    fcn_cmd = bindir / "fcn"
    common = ["--data-dir", data, "--no-download"]

    train = _run(
        [fcn_cmd, "train", *common, "--num-train", "250", "--num-val", "50", "--num-test", "50"]
        + ["--batch-size", "50", "--num-iters", "10", "--out", tmp_path / "run", "--quiet"],
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr
    model = tmp_path / "run" / "model.npz"
    assert model.is_file() and "test accuracy" in train.stdout

    figure = tmp_path / "confusion.png"
    evaluate = _run([fcn_cmd, "evaluate", model, *common, "--out", figure], env=env, cwd=tmp_path, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "test accuracy:" in evaluate.stdout
    assert "of 50 images)" in evaluate.stdout and "  airplane " in evaluate.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    image = tmp_path / "some.png"
    Image.new("RGB", (80, 60), (120, 160, 220)).save(image)
    predict = _run([fcn_cmd, "predict", model, image], env=env, cwd=tmp_path, timeout=300)
    assert predict.returncode == 0, predict.stderr
    line = predict.stdout.strip()
    assert line.startswith(f"{image}: ") and line.count(",") == 2

    missing = _run([fcn_cmd, "predict", model, tmp_path / "missing.png"], env=env, cwd=tmp_path, timeout=300)
    assert missing.returncode != 0 and "missing.png" in missing.stderr
