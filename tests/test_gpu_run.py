"""``benchmarks/gpu_run.py`` and ``benchmarks/gpu_probe.py`` without a GPU: the dry run walks the whole path.

These tests check the set-up (argument parsing, part selection, commands and the files they name, the output
folder, the summary); none of them runs anything on a GPU, and a dry run's summary says so.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import fcn

ROOT = Path(__file__).resolve().parents[1]
GPU_RUN = ROOT / "benchmarks" / "gpu_run.py"
PROBE = ROOT / "benchmarks" / "gpu_probe.py"
no_gpu = pytest.mark.skipif(fcn.has_gpu(), reason="checks the behaviour without a GPU")


@pytest.fixture(scope="module")
def gpu_run() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("gpu_run", GPU_RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_run"] = module  # its dataclasses look their module up while the file is executed
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_run"]


def script(path: Path, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """One quick dry run of every part, from a folder outside the checkout."""
    where = tmp_path_factory.mktemp("elsewhere")
    return script(GPU_RUN, "run", "--quick", "--dry-run", cwd=where), where / "run"


@pytest.mark.slow
def test_dry_run_walks_every_part_and_writes_the_layout(gpu_run, quick_dry_run):
    proc, out = quick_dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for spec in gpu_run.PARTS:  # each part: its log, its record, the command it would run on a GPU
        record = json.loads((out / f"{spec.name}.json").read_text())
        assert (out / f"{spec.name}.log").read_text().startswith("$ ")
        assert record["status"] == "checked" and record["dry_run"] and record["mode"] == "quick", record
        assert record["command"] == gpu_run.command(spec.name, True, out)
        assert f"== {spec.name} (limit" in proc.stdout
    env = json.loads((out / "env.result.json").read_text())  # env runs for real, anywhere
    assert env["versions"]["numpy"] and env["python"] and env["missing"] == [] and {"gpu", "driver"} <= set(env)
    for name in ("tests", "memcheck", "racecheck"):  # the selections are not empty
        assert json.loads((out / f"{name}.json").read_text())["result"]["collected"] > 0
    for name in ("bench-fcn", "bench-torch", "bench-compile", "step"):  # results of the real layout, made up
        result = json.loads((out / f"{name}.result.json").read_text())
        assert result["dry_run"] is True and result["data"].startswith("synthetic CIFAR-shaped")
    assert {p["name"] for p in json.loads((out / "summary.json").read_text()).values()} == set(gpu_run.SPECS)
    assert (out / "gpu_run.log").read_text().count("\n== ") == len(gpu_run.PARTS)


@pytest.mark.slow
def test_dry_run_summary_never_reads_as_a_gpu_result(quick_dry_run):
    _, out = quick_dry_run
    md = (out / "summary.md").read_text()
    assert md.startswith("# fcn GPU run (DRY RUN)") and "nothing here ran on a GPU" in md
    assert "| ok |" not in md and "| fcn-graph | 3072-100-10 | float32 |" in md and "dry run: made up" in md
    assert "synthetic CIFAR-shaped data" in md and "GPU: none" in md
    assert "| memcheck | quick | checked |" in md and "compute-sanitizer" in md  # missing here: named


def test_full_mode_commands(gpu_run, tmp_path):
    out = tmp_path
    tests = gpu_run.command("tests", False, out)
    assert "--durations=0" in tests and "-x" not in tests and f"--junitxml={out}/tests.xml" in tests
    assert "-m" not in tests[3:] and gpu_run.command("tests", True, out)[-2:] == ["-m", "gpu"]
    bench = gpu_run.command("bench-fcn", False, out)
    assert (
        bench[bench.index("--nets") + 1] == "shallow,deep" and bench[bench.index("--dtypes") + 1] == "float32,float64"
    )
    memcheck = gpu_run.command("memcheck", False, out)
    assert memcheck[1:3] == ["--tool", "memcheck"] and "-k" not in memcheck
    quick = gpu_run.command("racecheck", True, out)
    assert quick[1:3] == ["--tool", "racecheck"] and quick[-2:] == ["-k", gpu_run.SANITIZER_SELECTION]


def test_full_mode_dry_run_parses_the_probe_arguments(tmp_path):
    proc = script(GPU_RUN, str(tmp_path / "run"), "--dry-run", "--only", "bench-torch,step", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    rows = json.loads((tmp_path / "run" / "bench-torch.result.json").read_text())["rows"]
    assert {(r["dims"], r["dtype"]) for r in rows} == {(d, t) for d in ("3072-100-10", "3072-1024-512-10")
                                                       for t in ("float32", "float64")}  # fmt: skip


def test_only_reruns_some_parts_and_keeps_the_others(tmp_path):
    out = tmp_path / "run"
    assert script(GPU_RUN, str(out), "--quick", "--dry-run", "--only", "step", cwd=tmp_path).returncode == 0
    first = json.loads((out / "step.json").read_text())["finished"]
    proc = script(GPU_RUN, str(out), "--quick", "--dry-run", "--only", "bench-torch", cwd=tmp_path)
    assert proc.returncode == 0 and "== step" not in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"step", "bench-torch"} and summary["step"]["finished"] == first
    assert "| step | quick | checked |" in (out / "summary.md").read_text()


def test_unknown_part_is_refused_with_the_list(tmp_path):
    proc = script(GPU_RUN, str(tmp_path / "run"), "--only", "step,nope", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown part(s) nope" in proc.stderr and "bench-compile" in proc.stderr
    assert not (tmp_path / "run").exists()


@no_gpu
def test_a_real_run_without_a_gpu_refuses_in_one_line(tmp_path):
    proc = script(GPU_RUN, str(tmp_path / "run"), "--quick", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--dry-run" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_failing_part_is_recorded_and_the_run_goes_on(gpu_run, tmp_path, monkeypatch, capsys):
    real = gpu_run.command
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    monkeypatch.setattr(gpu_run, "command", lambda name, *a: failing if name == "env" else real(name, *a))
    code = gpu_run.main([str(tmp_path), "--quick", "--dry-run", "--only", "env,step"])
    assert code == 1 and "failed or timed out: env" in capsys.readouterr().out
    env, step = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("env", "step"))
    assert env["status"] == "failed" and env["reason"] == "exit code 3"
    assert step["status"] == "checked"  # the part after the failure ran
    assert "| env | quick | failed |" in (tmp_path / "summary.md").read_text()


def test_a_dry_run_fails_a_part_whose_command_names_a_missing_piece(gpu_run, tmp_path, monkeypatch, capsys):
    broken = {"step": [sys.executable, "benchmarks/gone.py"], "fcn-info": [sys.executable, "-m", "fcn.gone"]}
    monkeypatch.setattr(gpu_run, "command", lambda name, *a: broken[name])
    assert gpu_run.main([str(tmp_path), "--quick", "--dry-run", "--only", "step,fcn-info"]) == 1
    records = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in broken}
    assert records["step"]["status"] == "failed" and records["step"]["reason"] == "missing: benchmarks/gone.py"
    assert records["fcn-info"]["reason"] == "missing: module fcn.gone"
    broken_here, gpu_only = gpu_run.missing_pieces(["compute-sanitizer-x", sys.executable, "tests/conftest.py"])
    assert broken_here == [] and gpu_only[0].startswith("compute-sanitizer-x (looked on PATH")  # named, not failed
    capsys.readouterr()


def test_a_part_past_its_limit_is_killed_with_its_children(gpu_run, tmp_path):
    pid_file = tmp_path / "child.pid"
    start = time.perf_counter()
    status, reason, _ = gpu_run.execute(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], tmp_path / "l", 1)
    assert status == "timeout" and "limit of 1 s" in reason and time.perf_counter() - start < 10
    state = Path(f"/proc/{pid_file.read_text().strip()}/status")

    def gone() -> bool:
        try:
            return "zombie" in state.read_text()
        except FileNotFoundError:
            return True

    deadline = time.perf_counter() + 5  # a SIGKILL is delivered asynchronously: allow the kernel a moment
    while not gone() and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert gone()  # the grandchild went with the group


def test_judging_results(gpu_run):
    def judged(status, result, dry=False):
        record = {"status": status, "reason": "", "result": result}
        gpu_run.judge(record, dry)
        return record

    all_skipped = {"junit": {"tests": 5, "failures": 0, "errors": 0, "skipped": 5}}
    assert judged("ok", all_skipped)["status"] == "failed"  # a GPU run whose tests all skipped tested nothing
    assert judged("ok", all_skipped, dry=True)["status"] == "ok"
    sanitizer = gpu_run.sanitizer_findings("========= ERROR SUMMARY: 2 errors\n")
    assert "2 error(s)" in judged("failed", sanitizer)["reason"]
    refused = gpu_run.sanitizer_findings("========= Error: Device not supported\n========= ERROR SUMMARY: 1 error")
    assert judged("failed", refused)["status"] == "skipped"
    assert gpu_run.sanitizer_findings("RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)")["hazards"] == 0
    assert judged("failed", {"errors": ["fcn-graph shallow float32: boom"]})["reason"].endswith("boom")


def test_junit_counts_and_summary_of_made_up_gpu_results(gpu_run, tmp_path):
    (tmp_path / "t.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.a" name="slow" time="2.5"><failure message="x"/></testcase>'
        '<testcase classname="tests.a" name="fast" time="0.1"/></testsuite></testsuites>'
    )
    junit = gpu_run.junit_counts(tmp_path / "t.xml")
    assert junit["tests"] == 3 and junit["failed_tests"] == ["tests.a::slow"] and junit["slowest"][0][1] == 2.5
    versions = {"cupy": "14.2.0", "torch": "2.11.0", "numpy": "2.5"}
    env = {"gpu": "NVIDIA H200", "driver": "580.1", "cuda_runtime": "13.0", "torch_cuda": "13.0", "python": "3.12",
           "versions": versions, "date": "2026-12-01 10:00 UTC"}  # fmt: skip
    row = {"runner": "fcn-fused", "dims": "3072-100-10", "dtype": "float32", "iteration_s": 2e-4, "epoch_s": 0.0196,
           "images_per_s": 2.5e6, "note": "FusedCupyOps"}  # fmt: skip
    base = {"mode": "quick", "seconds": 1.0, "limit_s": 20, "reason": "", "notes": []}
    records = {
        "env": {**base, "name": "env", "status": "ok", "result": env},
        "tests": {**base, "name": "tests", "status": "failed", "result": {"junit": junit}, "reason": "exit code 1"},
        "bench-fcn": {**base, "name": "bench-fcn", "status": "ok", "result": {"rows": [row], "errors": []}},
        "step": {**base, "name": "step", "status": "timeout", "result": None, "reason": "ran past its limit"},
    }
    md = gpu_run.summary_markdown(records)
    assert "GPU: NVIDIA H200; driver 580.1; CUDA runtime 13.0; CuPy 14.2.0; PyTorch 2.11.0" in md
    assert "date: 2026-12-01" in md and "DRY RUN" not in md
    assert "| tests | quick | failed | 1.0 | 20 | 3 (1 / 1) | exit code 1 |" in md
    assert "| fcn-fused | 3072-100-10 | float32 | 0.200 | 0.020 | 2500000 | FusedCupyOps |" in md
    assert "| step | quick | timeout |" in md


def test_quick_limits_fit_four_minutes_and_the_readme_lists_every_part(gpu_run):
    assert sum(s.quick_s for s in gpu_run.PARTS) <= 230  # under 4 minutes with the runner's own seconds
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    for s in gpu_run.PARTS:
        assert re.search(rf"^\| `{s.name}` \|.*\| {s.quick_s} \| {s.full_s} \|$", readme, re.M), s.name


def test_docs_give_the_offline_gpu_command_in_one_line():
    lines = [x for x in (ROOT / "docs" / "gpu.md").read_text().splitlines() if "benchmarks/gpu_run.py" in x]
    command = next(x for x in lines if "--no-index --find-links" in x)
    assert "array-api-compat" in command and "PYTHONPATH=" in command and "--quick" in command


def test_help_runs_from_another_folder(tmp_path):
    proc = script(GPU_RUN, "--help", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "--only" in proc.stdout


@pytest.mark.parametrize("args", [["--help"], ["bench", "--help"], ["step", "--help"], ["env", "--help"]])
def test_probe_parses_its_arguments_from_another_folder(tmp_path, args):
    proc = script(PROBE, *args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and "usage: gpu_probe.py" in proc.stdout, proc.stderr


def test_probe_refuses_unknown_runners(tmp_path):
    proc = script(PROBE, "bench", "--runners", "fcn-fused,fast", "--out", "x.json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "unknown runners: fast" in proc.stderr


@no_gpu
@pytest.mark.parametrize("command", ["bench", "step"])
def test_probe_refuses_cleanly_without_a_gpu(tmp_path, command):
    proc = script(PROBE, command, "--out", str(tmp_path / "r.json"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip() == proc.stderr.strip().splitlines()[0]
    assert proc.stderr.startswith(f"gpu_probe.py {command}: needs a CUDA GPU") and not (tmp_path / "r.json").exists()
