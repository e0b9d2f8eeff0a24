"""``benchmarks/gpu_run.py --dry-run``: every part attempted without a GPU, exit code 0, summary written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_attempts_every_part_and_writes_the_summary(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_run.py"), str(out), "--dry-run"],
        cwd=tmp_path,  # from another folder: the script finds the repository itself
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    parts = {p["name"]: p for p in summary["parts"]}
    assert list(parts) == ["env", "tests-gpu", "tests-rest", "bench-plain", "bench-fused", "probe"]
    assert summary["dry_run"] is True
    assert parts["env"]["status"] == "ok" and "python" in summary["env"]
    for name in ("tests-gpu", "tests-rest"):  # the suites are collected, not run
        assert parts[name]["status"] == "ok", parts[name]
        assert "--collect-only" in parts[name]["command"]
    for name in ("bench-plain", "bench-fused"):  # bench_train.py knows every flag the GPU run passes
        assert parts[name]["status"] == "skipped" and "checked the flags" in parts[name]["reason"], parts[name]
    assert parts["probe"]["status"] == "skipped" and parts["probe"]["reason"]
    md = (out / "summary.md").read_text()
    assert "dry run" in md and "| probe | skipped |" in md
    log = (out / "gpu_run.log").read_text()
    assert "== env" in log and "== probe: skipped" in log


def test_help_runs_from_another_folder(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_run.py"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "--dry-run" in proc.stdout
