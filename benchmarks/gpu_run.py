#!/usr/bin/env python
"""Every GPU check and measurement of fcn as one command: ``python benchmarks/gpu_run.py OUTDIR --quick``.

Meant for an offline GPU machine (CuPy, PyTorch, NumPy and pytest installed; no CIFAR-10 copy: the measurements
use synthetic CIFAR-shaped data, and every result says so). Each part is a subprocess with its own time limit
(:data:`PARTS`), killed with its children when it runs past it; a part that fails or times out is recorded and
the next one runs. ``--quick`` keeps the whole run under 4 minutes on an H200 (the limits add up to 230 s):
the chapter's net only, float32, fewer timing rounds, the sanitizers over the small kernel tests. Without it
(the full mode) the deep net (3072-1024-512-10) and float64 are timed too, the whole test suite runs (its
CuPy cases included) and the sanitizers cover every fused-kernel test.

OUTDIR gets, per part, ``PART.log`` (its output) and ``PART.json`` (status, seconds, limit, command, reason
and its result: the probe's JSON, the JUnit counts, the sanitizer's error count), the JUnit XML files, and at
the end ``summary.md`` / ``summary.json`` built from every ``PART.json`` there (so ``--only PART,...`` reruns
some parts and keeps the others' results), plus ``gpu_run.log``. The exit code is 1 when a part run this
time failed or timed out.

``--dry-run`` walks the same path without a GPU (the CPU test suite runs it): the part selection, every
command printed and its pieces checked (scripts and test files exist, ``python -m`` modules are found, the
executables that only a GPU machine has are named where missing), ``env`` and ``fcn-info`` run for real, the
test parts collect their selection (an empty one fails), the probes parse their arguments and write results
of the real layout with made-up numbers, and the summary is written from them, marked as a dry run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROBE = "benchmarks/gpu_probe.py"
KERNEL_TESTS = "tests/test_fused_gpu.py"
#: What the sanitizers run in quick mode (pytest -k): every fused kernel, float32, at the tests' small sizes (no
#: 9000-row softmax, no 37-tensor update), and one short fused training run (adam, float32); the 5-step host-wait
#: check and the graph tests are left out (a sanitizer slows every launch; they are in ``tests``).
SANITIZER_SELECTION = (
    "(not float64 and not 9000 and not 37 and not training and not cuda_graph and not logging_points "
    "and not handful) or (training_steps and adam-float32)"
)
SANITIZER_ERRORS = 99  # compute-sanitizer's exit code when it found errors (pytest's own codes stay below 6)
DRY_LIMIT_S = 240  # a dry run on a slow CPU: env and fcn-info run for real, the whole suite is collected


@dataclass(frozen=True)
class Spec:
    """A part: its name, what it does (for the summary and the README), and its limits in seconds."""

    name: str
    what: str
    quick_s: int
    full_s: int
    gpu: bool = True  # needs a GPU to do its work (a dry run only checks its command)


PARTS = (
    Spec("env", "versions (Python, NumPy, CuPy, CUDA runtime and driver, PyTorch), nvidia-smi, imports", 12, 30, False),
    Spec("fcn-info", "`fcn info --json`: which backends work, the fused kernels' state", 13, 30, False),
    Spec("tests", "pytest -m gpu (full: the whole suite), no -x, --durations=0, JUnit XML", 68, 480),
    Spec("memcheck", "compute-sanitizer --tool memcheck over the fused-kernel tests (quick: small subset)", 30, 150),
    Spec("racecheck", "compute-sanitizer --tool racecheck over the same tests", 25, 150),
    Spec("bench-fcn", "fcn on CuPy: plain, fused, fused + CUDA graph; the GEMM floor (cuBLAS)", 20, 150),
    Spec("bench-torch", "the PyTorch peer, CUDA eager", 12, 60),
    Spec("bench-compile", 'the PyTorch peer through torch.compile(mode="reduce-overhead")', 35, 240),
    Spec("step", "one step: kernels launched (graph nodes), host waits over 5 steps, eager vs graph time", 15, 40),
)
SPECS = {s.name: s for s in PARTS}


def sanitizer() -> str | None:
    """compute-sanitizer's path: on PATH, else in $CUDA_HOME/bin or /usr/local/cuda/bin."""
    found = shutil.which("compute-sanitizer")
    homes = [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]
    candidates = [Path(h) / "bin" / "compute-sanitizer" for h in homes if h]
    return found or next((str(p) for p in candidates if p.is_file()), None)


def command(name: str, quick: bool, out: Path) -> list[str]:
    """The command line of part ``name`` (a sanitizer part without compute-sanitizer gets the bare name)."""
    py = sys.executable
    pytest = [py, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", f"--junitxml={out / name}.xml"]
    timing = ["--warmup", "5", "--rounds", "3", "--calls", "20"] if quick else ["--warmup", "10", "--rounds", "7"]
    sizes = ["--nets", "shallow", "--dtypes", "float32"] if quick else ["--nets", "shallow,deep"]
    sizes += [] if quick else ["--dtypes", "float32,float64", "--calls", "50"]
    bench = [py, PROBE, "bench", *sizes, *timing, "--out", str(out / f"{name}.result.json"), "--runners"]
    if name == "env":
        return [py, PROBE, "env", "--out", str(out / "env.result.json")]
    if name == "fcn-info":
        return [py, "-m", "fcn.cli", "info", "--json"]
    if name == "tests":
        return [*pytest, "--durations=0", *(["-m", "gpu"] if quick else [])]
    if name in ("memcheck", "racecheck"):
        select = ["-k", SANITIZER_SELECTION] if quick else []
        tool = [sanitizer() or "compute-sanitizer", "--tool", name, "--error-exitcode", str(SANITIZER_ERRORS)]
        return [*tool, py, PROBE, "pytest-nopool", "--", *pytest[3:], KERNEL_TESTS, *select]
    if name == "bench-fcn":
        return [*bench, "fcn-plain,fcn-fused,fcn-graph,gemm-floor"]
    if name == "bench-torch":
        return [*bench, "torch-eager"]
    if name == "bench-compile":
        return [*bench, "torch-compiled"]
    if name == "step":
        return [py, PROBE, "step", "--steps", "50" if quick else "100", "--out", str(out / "step.result.json")]
    raise KeyError(name)


# -- dry run: the same commands, checked and turned into ones that need no GPU ---------------------------------


def missing_pieces(cmd: Sequence[str]) -> tuple[list[str], list[str]]:
    """(pieces missing here that every machine needs, executables missing here that only a GPU machine has)."""
    broken, gpu_only = [], []
    if cmd[0] != sys.executable and not (shutil.which(cmd[0]) or Path(cmd[0]).is_file()):
        gpu_only.append(f"{Path(cmd[0]).name} (looked on PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    for i, arg in enumerate(cmd):
        if i >= 2 and cmd[i - 1] == "-m" and cmd[i - 2] == sys.executable and importlib.util.find_spec(arg) is None:
            broken.append(f"module {arg}")
        elif arg.endswith(".py") or arg.startswith("tests/"):
            if not (ROOT / arg).exists():
                broken.append(arg)
    return broken, gpu_only


def dry_command(spec: Spec, cmd: list[str]) -> list[str]:
    """What a dry run executes instead: probes with --dry-run, pytest collecting only, sanitizers unwrapped."""
    if not spec.gpu:
        return cmd
    cmd = cmd[cmd.index(sys.executable) :]  # without compute-sanitizer in front
    if PROBE in cmd:
        i = cmd.index(PROBE) + 1
        return [*cmd[:i], "--dry-run", *cmd[i:]]
    return [*cmd, "--collect-only"]


# -- running a part --------------------------------------------------------------------------------------------


class Log:
    """Prints and appends to OUTDIR/gpu_run.log."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        with self.path.open("a") as f:
            f.write(text + "\n")


def execute(cmd: Sequence[str], logfile: Path, limit: float) -> tuple[str, str, float]:
    """Run ``cmd`` in its own process group, output to ``logfile``; returns (status, reason, seconds).

    Past ``limit`` the whole group is killed: a hung GPU process must not hold the device for the next part.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    with logfile.open("w") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        try:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return "failed", f"could not start: {exc}", 0.0
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timeout", f"ran past its limit of {limit:.0f} s", round(time.perf_counter() - start, 2)
    seconds = round(time.perf_counter() - start, 2)
    return ("ok", "", seconds) if rc == 0 else ("failed", f"exit code {rc}", seconds)


def junit_counts(path: Path) -> dict[str, Any] | None:
    """Tests, failures, errors, skipped; the failed tests' names and the 10 slowest tests, from a JUnit file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    counts: dict[str, Any] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    cases = suite.findall("testcase")
    bad = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    counts["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for c in bad][:30]
    slow = sorted(cases, key=lambda c: -float(c.get("time", 0)))[:10]
    counts["slowest"] = [[f"{c.get('classname')}::{c.get('name')}", float(c.get("time", 0))] for c in slow]
    return counts


def sanitizer_findings(text: str) -> dict[str, Any]:
    """compute-sanitizer's closing counts, and whether it refused the device."""
    found: dict[str, Any] = {}
    if m := re.search(r"ERROR SUMMARY: (\d+) error", text):
        found["errors"] = int(m.group(1))
    if m := re.search(r"RACECHECK SUMMARY: (\d+) hazard", text):
        found["hazards"] = int(m.group(1))
    if "Device not supported" in text:
        found["unsupported"] = "compute-sanitizer does not support this device or runtime ('Device not supported')"
    return found


def part_result(name: str, out: Path, log_text: str) -> Any:
    """What the part measured: the probe's JSON, fcn info's JSON, JUnit counts (and sanitizer counts)."""
    result_file = out / f"{name}.result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    if name == "fcn-info" and "{" in log_text:
        try:
            return json.loads(log_text[log_text.index("{") : log_text.rindex("}") + 1])
        except json.JSONDecodeError:
            return None
    if name in ("tests", "memcheck", "racecheck"):
        collected = re.search(r"(\d+)(?:/\d+)? tests? collected", log_text)  # what a dry run's collection found
        found = {"collected": int(collected.group(1))} if collected else {}
        return {"junit": junit_counts(out / f"{name}.xml"), **found, **sanitizer_findings(log_text)}
    return None


def judge(record: dict[str, Any], dry: bool) -> None:
    """Sharpen status and reason from the result: what failed inside a part, and a run that tested nothing."""
    result = record["result"] if isinstance(record["result"], dict) else {}
    junit = result.get("junit") or {}
    if result.get("unsupported") and record["status"] == "failed":
        record["status"], record["reason"] = "skipped", result["unsupported"]
    elif result.get("errors") and isinstance(result["errors"], int):
        record["reason"] = f"the sanitizer reported {result['errors']} error(s); " + record["reason"]
    elif isinstance(result.get("errors"), list) and result["errors"]:
        record["reason"] = "; ".join(result["errors"])[:500]
    if junit and (junit["failures"] or junit["errors"]):
        record["reason"] = f"{junit['failures']} failed, {junit['errors']} errors; " + record["reason"]
    if not dry and junit and junit["tests"] and junit["skipped"] == junit["tests"] and record["status"] == "ok":
        record["status"], record["reason"] = "failed", "every selected test was skipped (no GPU seen by the tests)"
    if result.get("missing"):
        record["reason"] = f"missing packages: {', '.join(result['missing'])}; " + record["reason"]


def run_part(spec: Spec, quick: bool, dry: bool, out: Path, log: Log) -> dict[str, Any]:
    """Run (or dry-run) one part and write OUTDIR/PART.json; returns that record."""
    cmd = command(spec.name, quick, out)
    limit = DRY_LIMIT_S if dry else (spec.quick_s if quick else spec.full_s)
    (out / f"{spec.name}.result.json").unlink(missing_ok=True)  # a stale result must not pass for this run's
    log(f"\n== {spec.name} (limit {limit} s): {shlex.join(cmd)}")
    record: dict[str, Any] = {"name": spec.name, "mode": "quick" if quick else "full", "dry_run": dry,
                              "command": cmd, "limit_s": limit, "notes": []}  # fmt: skip
    broken, gpu_only = missing_pieces(cmd)
    if gpu_only:
        record["notes"].append("not here: " + ", ".join(gpu_only))
    run_cmd = dry_command(spec, cmd) if dry else cmd
    if broken:
        record.update(status="failed", reason=f"missing: {', '.join(broken)}", seconds=0.0)
    elif gpu_only and not dry:
        record.update(status="skipped", reason=f"not found: {', '.join(gpu_only)}", seconds=0.0)
    else:
        if run_cmd != cmd:
            log(f"   dry run executes: {shlex.join(run_cmd)}")
        status, reason, seconds = execute(run_cmd, out / f"{spec.name}.log", limit)
        record.update(status=status, reason=reason, seconds=seconds)
    log_text = (out / f"{spec.name}.log").read_text(errors="replace") if (out / f"{spec.name}.log").is_file() else ""
    record["result"] = part_result(spec.name, out, log_text)
    judge(record, dry)
    if dry and record["status"] == "ok":
        record["status"] = "checked"  # never "ok": a dry run verifies the set-up, not the GPU
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out / f"{spec.name}.json").write_text(json.dumps(record, indent=1, default=str))
    tail = "\n".join(log_text.rstrip().splitlines()[-15:]) if record["status"] != "ok" else ""
    log(
        (tail + "\n" if tail else "")
        + f"-- {spec.name}: {record['status']} in {record['seconds']} s {record['reason']}"
    )
    for note in record["notes"]:
        log(f"   note: {note}")
    return record


# -- summary ---------------------------------------------------------------------------------------------------


def fmt(value: Any, scale: float = 1.0, digits: int = 3) -> str:
    """A number for a table cell (scaled, rounded); "-" where the result has none."""
    return "-" if not isinstance(value, (int, float)) else f"{value * scale:.{digits}f}"


def header(records: dict[str, dict[str, Any]]) -> list[str]:
    """Title, the dry-run warning, GPU, driver, CUDA, CuPy, PyTorch, NumPy, the date, the data."""
    env = records.get("env", {}).get("result") or {}
    versions = env.get("versions") or {}
    dry = any(r.get("dry_run") for r in records.values())
    lines = ["# fcn GPU run" + (" (DRY RUN)" if dry else ""), ""]
    if dry:
        lines += ["**Dry run on a machine without a GPU: nothing here ran on a GPU, and every timing is made up "
                  "(it only checks the layout).**", ""]  # fmt: skip
    lines += [
        f"- GPU: {env.get('gpu') or 'none'}; driver {env.get('driver') or '-'}; "
        f"CUDA runtime {env.get('cuda_runtime') or '-'}; CuPy {versions.get('cupy') or '-'}; "
        f"PyTorch {versions.get('torch') or '-'} (CUDA {env.get('torch_cuda') or '-'}); "
        f"NumPy {versions.get('numpy') or '-'}; Python {env.get('python', '-')}",
        f"- date: {env.get('date') or time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "- data: synthetic CIFAR-shaped data (49000 training images 3x32x32, standard normal), not CIFAR-10",
        "",
    ]
    return lines


def timing_rows(records: dict[str, dict[str, Any]]) -> list[str]:
    """The benchmark parts' rows: ms per iteration, a full-CIFAR epoch, images per second; their errors."""
    lines = ["## Training step, per iteration (batch 500; epoch = 98 iterations)", "",
             "| runner | net | dtype | ms / iteration | epoch s | images / s | note |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in ("bench-fcn", "bench-torch", "bench-compile"):
        result = records.get(name, {}).get("result") or {}
        for r in result.get("rows", []):
            cells = [r["runner"], r["dims"], r["dtype"], fmt(r["iteration_s"], 1e3), fmt(r["epoch_s"])]
            cells += [fmt(r["images_per_s"], digits=0), r.get("note", "")]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [f"| {name}: error | | | | | | {e} |" for e in result.get("errors", [])]
    return [*lines, ""]


def step_rows(records: dict[str, dict[str, Any]]) -> list[str]:
    """The step probe: launches per step, host waits, host time to queue a step, time per step."""
    result = records.get("step", {}).get("result") or {}
    lines = ["## One training step (3072-100-10, batch 500, float32, sgd)", "",
             "| variant | kernels per step (graph nodes) | host waited in 5 steps | host ms to queue a step "
             "| ms / step |",
             "|---|---|---|---|---|"]  # fmt: skip
    for label, v in (result.get("variants") or {}).items():
        launches = v.get("launches") or {}
        kernels = (
            f"{launches.get('kernel', '?')} of {launches.get('total', '?')}" if launches else v.get("launches_error")
        )
        lines.append(f"| {label} | {kernels or v.get('error', '-')} | {v.get('host_waited_during_5_steps', '-')} | "
                     f"{fmt(v.get('host_queue_s_per_step'), 1e3)} | {fmt(v.get('step_s'), 1e3)} |")  # fmt: skip
    return [*lines, ""]


def summary_markdown(records: dict[str, dict[str, Any]]) -> str:
    """summary.md: header, one row per part, tests and sanitizer counts, the timings, the step probe."""
    lines = header(records)
    lines += ["## Parts", "", "| part | mode | status | seconds | limit s | tests (failed / skipped) | reason |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in records.items():
        result = r.get("result") if isinstance(r.get("result"), dict) else {}
        junit = result.get("junit") or {}
        tests = f"{junit['tests']} ({junit['failures'] + junit['errors']} / {junit['skipped']})" if junit else ""
        tests = f"collected {result['collected']}" if r.get("dry_run") and "collected" in result else tests
        extra = "; ".join(f"{k} {result[k]}" for k in ("errors", "hazards") if isinstance(result.get(k), int))
        reason = "; ".join(filter(None, [r.get("reason", ""), extra, *r.get("notes", [])]))
        lines.append(f"| {name} | {r['mode']} | {r['status']} | {r['seconds']} | {r['limit_s']} | {tests} | {reason} |")
    lines.append("")
    return "\n".join(lines + timing_rows(records) + step_rows(records))


def write_summary(out: Path, log: Log) -> None:
    """summary.md and summary.json from every PART.json in OUTDIR (earlier runs' parts included)."""
    records = {
        s.name: json.loads((out / f"{s.name}.json").read_text()) for s in PARTS if (out / f"{s.name}.json").is_file()
    }
    (out / "summary.json").write_text(json.dumps(records, indent=1, default=str))
    (out / "summary.md").write_text(summary_markdown(records))
    log("\n" + (out / "summary.md").read_text())


def no_gpu_reason() -> str | None:
    """Why this machine cannot do a real run, or None."""
    try:
        import fcn
    except Exception as exc:  # the package itself is broken: say so before any part runs
        return f"fcn does not import ({type(exc).__name__}: {exc})"
    if not fcn.has_cupy():
        return "CuPy is not installed"
    return None if fcn.has_gpu() else "CuPy is installed but no CUDA GPU is visible"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    listing = "\n".join(f"  {s.name:<14} {s.quick_s:>3} s / {s.full_s:>3} s  {s.what}" for s in PARTS)
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"parts (limit with --quick / without):\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("outdir", type=Path, help="folder for the logs, results, JUnit files and summary.md")
    ap.add_argument("--quick", action="store_true", help="under 4 minutes on an H200 (limits add up to 230 s)")
    ap.add_argument("--only", help=f"comma-separated parts to (re)run: {', '.join(SPECS)}")
    ap.add_argument("--dry-run", action="store_true", help="walk the whole run without a GPU (nothing measured)")
    args = ap.parse_args(argv)
    args.parts = args.only.split(",") if args.only else list(SPECS)
    unknown = [p for p in args.parts if p not in SPECS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(SPECS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))  # this checkout's fcn, also for the dry run's module checks
    if not args.dry_run and (reason := no_gpu_reason()):
        print(f"gpu_run.py: no GPU here ({reason}); --dry-run checks the set-up without one", file=sys.stderr)
        return 2
    out: Path = args.outdir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_run.log")
    mode = "quick" if args.quick else "full"
    log(f"fcn GPU run ({mode}{', dry run' if args.dry_run else ''}) -> {out}; parts: {', '.join(args.parts)}")
    done = [run_part(SPECS[name], args.quick, args.dry_run, out, log) for name in args.parts]
    write_summary(out, log)
    failed = [r["name"] for r in done if r["status"] in ("failed", "timeout")]
    log(f"failed or timed out: {', '.join(failed)}" if failed else "every part run finished (see the statuses above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
