"""Smoke tests of ``benchmarks/bench_train.py``: tiny sizes, files written, keys present. No timing assertions.

The script lives in ``benchmarks/`` (a folder of scripts, not a package), so it is loaded by path, the same
way ``python benchmarks/bench_train.py`` runs it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import fcn

try:
    from _cifar_fixtures import write_cifar10
except ImportError:  # pragma: no cover - tests imported as a package
    from ._cifar_fixtures import write_cifar10

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_train", BENCH / "bench_train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_outputs(paths: dict[str, Path]) -> tuple[dict[str, Any], str]:
    """Check the three files exist and are what they claim; return the JSON payload and the markdown."""
    assert set(paths) == {"json", "md", "png"}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads(paths["json"].read_text())
    for key in ("date", "data", "args", "config", "environment", "results", "targets", "skipped", "fused_kernels"):
        assert key in payload, key
    env = payload["environment"]
    assert {"cpu", "cores", "python", "platform", "gpu", "torch_gpu"} <= set(env["machine"])
    assert {"numpy", "torch"} <= set(env["versions"]) and "load_average_1min" in env and "blas" in env
    return payload, paths["md"].read_text()


def test_quick_run_with_every_net(bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """shallow, deep and tiny are timed with their floors (and PyTorch where installed); bn-dropout is built
    where this fcn has the options, else skipped with a note; FCN_FUSED_KERNELS is recorded."""
    monkeypatch.setenv("FCN_FUSED_KERNELS", "1")
    paths = bench.main(["--quick", "--dtypes", "float32", "--nets", "shallow,deep,tiny,bn-dropout", "--profile", "3"]
                       + ["--out", str(tmp_path)])  # fmt: skip
    assert paths["json"].parent == tmp_path and paths["json"].name.startswith("train-")
    assert paths["json"].name.endswith("-fused.json")
    payload, md = read_outputs(paths)
    assert payload["data"].startswith("synthetic") and payload["fused_kernels"] == "1"
    recs = payload["results"]
    runners = {(r["net"], r["runner"]) for r in recs}
    for net in ("shallow", "deep", "tiny"):
        assert {(net, "fcn[numpy]"), (net, "gemm-floor[numpy]"), (net, "gather+gemm-floor[numpy]")} <= runners
    for r in recs:
        assert r["iteration"]["n"] >= 2 and r["iteration"]["median_s"] > 0 and r["fused_kernels"] == "1"
        assert {"p10_s", "p90_s", "iqr_s"} <= set(r["iteration"])
    tiny = next(r for r in recs if (r["net"], r["runner"]) == ("tiny", "fcn[numpy]"))
    assert tiny["dims"] == [32, 16, 10] and tiny["batch_size"] == 8
    assert {"epoch", "eval", "profile"} <= set(tiny) and tiny["profile"][0]["calls"] > 0
    assert tiny["ratio_to_floor"] > 0 and tiny["ratio_to_gather_floor"] > 0
    assert isinstance(payload["environment"]["warnings"], list) and "cpu_vector_level" in payload["environment"]
    for r in recs:  # every record names the library its matrix products run on
        assert r["blas"] and all(isinstance(b, str) and b for b in r["blas"])
        assert r["p10_ratio_to_gather_floor"] > 0
    floor = next(r for r in recs if (r["net"], r["runner"]) == ("shallow", "gemm-floor[numpy]"))
    assert floor["blas"][0].startswith("openblas") or floor["blas"][0].startswith("not known")
    if importlib.util.find_spec("jax") is not None:
        assert ("tiny", "jax[cpu]") in runners and tiny["ratio_to_jax"] > 0
        assert any(t["what"].startswith("fcn / JAX jit") for t in payload["targets"])
        assert not any(r["net"] == "bn-dropout" for r in recs) or any(
            "jax[cpu]: the JAX peer runs plain nets only" in n for n in payload["skipped"]
        )
    if payload["environment"]["versions"]["torch"] is not None:
        assert ("tiny", "torch[cpu]") in runners and tiny["ratio_to_torch"] > 0
        assert any(t["what"].startswith("per-step Python overhead") for t in payload["targets"])
    built = any(r["net"] == "bn-dropout" for r in recs)
    assert built or payload["skipped"][0].startswith("bn-dropout")
    assert "| tiny | 32-16-10 | 8 | float32 | fcn[numpy] |" in md and "FCN_FUSED_KERNELS=1" in md


def test_without_torch_and_with_real_data(bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """torch stays optional; --data-dir reads CIFAR-10 with fcn.data (here a tiny copy in the real format)."""
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails, as where it is not installed
    monkeypatch.setitem(sys.modules, "jax", None)  # and import jax
    monkeypatch.delenv("FCN_FUSED_KERNELS", raising=False)
    folder = write_cifar10(tmp_path / "data", n_per_train_batch=20, n_test=10)
    paths = bench.main(["--quick", "--data-dir", str(folder), "--n-train", "80", "--n-val", "10", "--batch-size", "20"]
                       + ["--dtypes", "float64", "--nets", "shallow", "--out", str(tmp_path / "out")])  # fmt: skip
    payload, md = read_outputs(paths)
    printed = capsys.readouterr().out
    assert "PyTorch peer: skipped" in printed and "JAX peer: skipped" in printed
    assert payload["data"] == "cifar10 (from --data-dir)" and payload["fused_kernels"] == "0"
    assert str(tmp_path) not in paths["json"].read_text() + md  # no local paths in results meant to be shared
    assert all("torch" not in r["runner"] and r["ratio_to_torch"] is None for r in payload["results"])
    assert all("jax" not in r["runner"] and r["ratio_to_jax"] is None for r in payload["results"])
    assert {r["dtype"] for r in payload["results"]} == {"float64"}


def test_script_runs_as_a_file_from_anywhere() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "bench_train.py"), "--help"], capture_output=True, text=True, cwd="/", timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout and "bn-dropout" in result.stdout


def test_kernel_benchmark_checks_every_table(tmp_path: Path) -> None:
    """bench_kernels.py: every kernel on every table here, each checked against the float64 reference."""
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH / "bench_kernels.py")
    assert spec is not None and spec.loader is not None
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    paths = kernels.main(["--quick", "--out", str(tmp_path)])
    payload = json.loads(paths["json"].read_text())
    names = {"reference", "numpy"} | ({"numpy+blas"} if importlib.util.find_spec("scipy") else set())
    records = payload["results"]
    assert {r["table"] for r in records} >= names
    assert {r["kernel"] for r in records} == set(kernels.kernel_cases(kernels.SIZES["quick"]))
    # every kernel of the reference table, but for the helpers made of other kernels or of no arithmetic
    public = {name for name in dir(fcn.ops.Ops) if not name.startswith("_") and callable(getattr(fcn.ops.Ops, name))}
    assert {r["kernel"] for r in records} == public - {"class_ids", "take_batch", "update_all"}
    assert {"affine_backward", "affine_relu_forward", "softmax_cross_entropy", "adam"} <= {r["kernel"] for r in records}
    bad = [(r["kernel"], r["dtype"], r["table"], r["max_rel_error"]) for r in records if not r["ok"]]
    assert not bad
    assert all(r["median_s"] > 0 for r in records)
    assert "| affine_backward | float64 | numpy |" in paths["md"].read_text()
