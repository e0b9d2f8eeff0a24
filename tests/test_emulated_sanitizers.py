"""The emulated kernels under AddressSanitizer + UBSan and under ThreadSanitizer, and the emulator's own checks.

Each run is a subprocess (``tests/emulation/sanitize_driver.py``) with the sanitizer's runtime preloaded. Every
kernel must run clean; renamed, broken copies of kernels (``tests/emulation/planted.py``) must make each tool
fire: a read one element past the end for AddressSanitizer, a removed ``__syncthreads`` for ThreadSanitizer, and
a divergent barrier and a thread that leaves early for the emulator (it aborts naming the line).
Skipped, with the reason, where g++ or a sanitizer runtime is missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fcn.ops import cuda

try:  # tests/ on sys.path (pytest's default "prepend" import mode, no tests/__init__.py)
    from emulation import build, planted, require_gxx
except ImportError:
    from .emulation import build, planted, require_gxx

ROOT = Path(__file__).resolve().parent.parent
RUNTIMES = {"asan": "libasan.so", "tsan": "libtsan.so"}
OPTIONS = {
    "ASAN_OPTIONS": "detect_leaks=0",  # the interpreter's own allocations are not this test's business
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    "TSAN_OPTIONS": "halt_on_error=1:exitcode=66",
}


def runtime(variant: str) -> str | None:
    """The sanitizer runtime to preload, or None where g++ has none."""
    path = subprocess.run([build.gxx(), f"-print-file-name={RUNTIMES[variant]}"], capture_output=True, text=True)
    name = path.stdout.strip()
    return name if os.path.isabs(name) and os.path.exists(name) else None


@pytest.fixture(scope="module")
def built():
    """Every variant the tests run, compiled before the first of them (two at a time: the machine's cores)."""
    require_gxx()
    source = cuda.kernel_source()
    variants = ["plain"] + [v for v in RUNTIMES if runtime(v)]
    sources = {v: planted.planted_source(source, sanitized=v != "plain") for v in variants}
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda v: build.build(sources[v], cuda.COMPILE_OPTIONS, v), variants))
    return sources["plain"], variants


def drive(variant: str, what: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **OPTIONS, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    if variant in RUNTIMES:
        env["LD_PRELOAD"] = runtime(variant)
    cmd = [sys.executable, "-m", "tests.emulation.sanitize_driver", variant, what]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def need(built, variant: str) -> None:
    if variant not in built[1]:
        pytest.skip(f"g++ has no {RUNTIMES[variant]} (the {variant} runtime) on this machine")


def line_of(source: str, text: str) -> int:
    """The line of ``text`` in the source as compiled (after the kernels that are not emulated are cut out)."""
    stripped = build.strip_kernels(source)
    return stripped[: stripped.index(text)].count("\n") + 1


@pytest.mark.slow
@pytest.mark.parametrize("variant, what", [("asan", "all"), ("tsan", "each")])
def test_every_kernel_runs_clean_under_the_sanitizer(built, variant, what):
    need(built, variant)
    result = drive(variant, what)
    assert result.returncode == 0 and "driver: done" in result.stdout, result.stderr[-6000:]
    assert "Sanitizer" not in result.stderr and "runtime error" not in result.stderr, result.stderr[-6000:]


@pytest.mark.slow
def test_address_sanitizer_reports_the_planted_overread(built):
    need(built, "asan")
    result = drive("asan", "overread")
    assert result.returncode != 0 and "driver: done" not in result.stdout
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in result.stderr, result.stderr[-6000:]
    assert "READ of size 4" in result.stderr and "softmax_overread" in result.stderr, result.stderr[-6000:]


@pytest.mark.slow
def test_thread_sanitizer_reports_the_removed_barrier(built):
    need(built, "tsan")
    result = drive("tsan", "race")
    assert result.returncode == 66, result.stderr[-6000:]
    assert "WARNING: ThreadSanitizer: data race" in result.stderr and "block_sum_race" in result.stderr


@pytest.mark.parametrize(
    "what, message, text",
    [("divergent", "divergent __syncthreads", "if (warp == 0) __syncthreads();"),
     ("deadlock", "deadlock: warp shuffle", "value += __shfl_down_sync(FCN_FULL_MASK, value, offset);")],
)  # fmt: skip
def test_the_emulator_aborts_on_a_bad_barrier_naming_the_line(built, what, message, text):
    result = drive("plain", what)
    assert result.returncode == -signal.SIGABRT, (result.returncode, result.stderr[-3000:])
    assert message in result.stderr, result.stderr[-3000:]
    # the planted line is named either as where this thread waits or as where the others do (whichever came first)
    line = line_of(built[0], text)
    assert re.search(rf"fused\.cu:{line}:|at line {line}\b", result.stderr), (line, result.stderr[-3000:])
