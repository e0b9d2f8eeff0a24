"""Smoke tests of the benchmark scripts: tiny sizes, files written, keys present. No timing assertions.

The scripts live in ``benchmarks/`` (a folder of scripts, not a package), so they are loaded by path,
the same way ``python benchmarks/bench_train.py`` runs them.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` by path (registered in sys.modules so dataclasses can resolve it)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_train() -> ModuleType:
    return load_script("bench_train")


@pytest.fixture(scope="module")
def bench_layers() -> ModuleType:
    return load_script("bench_layers")


def read_outputs(paths: dict[str, Path]) -> tuple[dict[str, Any], str]:
    """Check the three files exist and are what they claim; return the JSON payload and the markdown."""
    assert set(paths) == {"json", "md", "png"}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0, p
    assert paths["png"].read_bytes()[:8] == PNG_MAGIC
    payload = json.loads(paths["json"].read_text())
    for key in ("date", "machine", "versions", "blas", "data", "args", "results", "load_average", "git"):
        assert key in payload, key
    # fcn.sysinfo.machine_info() plus what the benchmarks add
    assert {"cpu", "cores", "python", "platform", "gpu"} <= set(payload["machine"])
    assert {"hostname", "usable_cores", "memory_gib", "torch_gpu"} <= set(payload["machine"])
    assert {"numpy", "array-api-compat", "torch", "fcn"} <= set(payload["versions"])
    assert {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} <= set(payload["blas"]["env"])
    assert "threadpool_info" in payload["blas"]
    return payload, paths["md"].read_text()


def test_bench_train_quick(bench_train: ModuleType, tmp_path: Path) -> None:
    """Both nets, float32, torch peer where installed, profile on: every section of the report is filled."""
    paths = bench_train.main(["--quick", "--dtypes", "float32", "--out", str(tmp_path)])
    assert paths["json"].parent == tmp_path and paths["json"].name.startswith("train-")
    payload, md = read_outputs(paths)
    assert payload["data"].startswith("synthetic")
    recs = payload["results"]
    runners = {(r["net"], r["runner"]) for r in recs}
    assert {("shallow", "fcn[numpy]"), ("shallow", "gemm-floor[numpy]"), ("deep", "fcn[numpy]")} <= runners
    assert ("shallow", "gather+gemm-floor[numpy]") in runners
    for r in recs:
        assert r["iteration"]["n"] >= 2 and r["iteration"]["median_s"] > 0
        assert {"p10_s", "p90_s", "iqr_s"} <= set(r["iteration"])
        assert {"ratio_to_floor", "ratio_to_gather_floor", "ratio_to_torch", "images_per_s", "dims"} <= set(r)
        assert "other_load_during_iterations" in r and r["attempts"] == 1
    fcn_rec = next(r for r in recs if r["runner"] == "fcn[numpy]")
    assert {"epoch", "epoch_from_median_s", "eval_predict", "eval_check_accuracy"} <= set(fcn_rec)
    assert fcn_rec["ratio_to_floor"] > 0 and fcn_rec["ratio_to_gather_floor"] > 0
    assert {t["kind"] for t in payload["targets"]} == {"issue", "reference"}
    assert all(isinstance(t["met"], bool) for t in payload["targets"])
    if payload["versions"]["torch"] is not None:
        torch_rec = next(r for r in recs if r["runner"] == "torch[cpu]")
        assert torch_rec["ratio_to_torch"] == pytest.approx(1.0) and "eval" in torch_rec
        assert fcn_rec["ratio_to_torch"] is not None and len(payload["targets"]) == 4
    prof = payload["profile"]
    assert prof["reference"] and prof["cprofile_top_by_tottime"] and prof["step_median_s"] > 0
    assert prof["in_situ"]["stages"] and prof["in_situ"]["total"]["median_s"] > 0
    assert prof["gather_floor_median_s"] > 0 and "other_load" in prof
    assert "## Per iteration" in md and "fcn[numpy]" in md and "Where one fcn NumPy" in md
    assert "The issue's targets" in md and "Realistic references" in md


def test_bench_train_without_torch(
    bench_train: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch stays optional: with its import failing the run completes and says the peer was skipped."""
    common = sys.modules["_common"]
    real = common.optional_import
    monkeypatch.setattr(common, "optional_import", lambda name: None if name == "torch" else real(name))
    paths = bench_train.main(
        ["--quick", "--dtypes", "float64", "--nets", "shallow", "--no-profile", "--out", str(tmp_path)]
    )
    payload, _ = read_outputs(paths)
    assert "PyTorch peer: skipped" in capsys.readouterr().out
    assert all("torch" not in r["runner"] for r in payload["results"])
    assert all(r["ratio_to_torch"] is None for r in payload["results"])
    assert payload["profile"] is None


def write_fake_cifar10(root: Path, per_batch: int = 20) -> Path:
    """A tiny CIFAR-10 folder in the dataset's on-disk format (bytes-keyed protocol-2 pickles)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [i % 10 for i in range(per_batch)],
        }
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"class{i}".encode() for i in range(10)]}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return d


def test_data_selection(bench_train: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real CIFAR-10 via fcn.data when found (the output says so), synthetic with a printed reason otherwise."""
    common = sys.modules["_common"]
    missing = common.load_data(tmp_path / "nowhere", 30, 5)
    assert missing.kind == "synthetic (30, 3, 32, 32)" and missing.X_train.shape == (30, 3, 32, 32)
    assert "synthetic" in capsys.readouterr().out
    pytest.importorskip("fcn.data")
    folder = write_fake_cifar10(tmp_path)
    paths = bench_train.main(
        ["--data-dir", str(folder), "--n-train", "80", "--n-val", "10", "--batch-size", "20", "--quick"]
        + ["--dtypes", "float32", "--nets", "shallow", "--no-torch", "--no-profile", "--out", str(tmp_path / "out")]
    )
    payload, md = read_outputs(paths)
    assert payload["data"] == f"cifar10 ({folder})"
    assert payload["config"]["num_train"] == 80
    assert f"cifar10 ({folder})" in md


def test_bench_layers_quick(bench_layers: ModuleType, tmp_path: Path) -> None:
    """Every layer op is timed next to its raw twin, per dtype."""
    paths = bench_layers.main(["--quick", "--out", str(tmp_path)])
    assert paths["json"].name.startswith("layers-")
    payload, md = read_outputs(paths)
    ops = {r["op"] for r in payload["results"]}
    assert {"affine_forward L1", "affine_backward L1 (no dx)", "relu_forward", "relu_backward"} <= ops
    assert any(op.startswith("softmax_loss") for op in ops)
    assert {r["dtype"] for r in payload["results"]} == {"float32", "float64"}
    for r in payload["results"]:
        assert r["fcn"]["median_s"] > 0 and r["raw"]["median_s"] > 0 and r["fcn_over_raw"] > 0
    assert "fcn / raw" in md


def test_profile_step_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """profile_step.py runs on its own: prints the breakdown as markdown and writes --json."""
    profile_step = load_script("profile_step")
    out = tmp_path / "profile.json"
    prof = profile_step.main(["--quick", "--dtype", "float64", "--json", str(out)])
    assert prof["dtype"] == "float64" and prof["dims"] == [3072, 16, 10]
    assert json.loads(out.read_text())["in_situ"]["stages"]
    text = capsys.readouterr().out
    assert "Where one fcn NumPy float64 iteration goes" in text and "Solver.step()" in text


def test_scripts_run_as_files() -> None:
    """``python benchmarks/<script>.py --help`` works from another working directory (no package import)."""
    import subprocess

    for script in ("bench_train.py", "bench_layers.py", "profile_step.py"):
        result = subprocess.run(
            [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, cwd="/", timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "--quick" in result.stdout
