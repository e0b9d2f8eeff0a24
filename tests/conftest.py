"""Shared fixtures: every backend test runs on NumPy, on array-api-strict's non-default device, and on CuPy.

array-api-strict's ``device1`` refuses implicit conversion to NumPy and refuses mixing with the default
device, as CuPy does with host arrays, so the CPU suite catches what would break on a GPU. The CuPy case
is marked ``gpu`` and skipped, with the reason, where no GPU is present.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tqdm import tqdm

import fcn

# tqdm's default lock holds a multiprocessing semaphore, shared by every process forked after it exists. A
# forked test process killed while holding it (a mutation-testing worker that ran past its time limit) leaves
# it taken for good, and every later process then hangs on its first progress bar: a lock of this process only.
tqdm.set_lock(threading.RLock())

BACKENDS = [
    pytest.param(("numpy", None), id="numpy"),
    pytest.param(("array_api_strict", "device1"), id="strict-device1"),
    pytest.param(("cupy", None), id="cupy", marks=pytest.mark.gpu),
    # one more Array-API namespace (through array-api-compat), where PyTorch happens to be installed
    pytest.param(("torch", None), id="torch"),
]


def _gpu_skip_reason() -> str | None:
    if not fcn.has_cupy():
        return "CuPy is not installed (pip install 'fcn-cifar[cuda12]' on a GPU machine)"
    if not fcn.has_gpu():
        return "CuPy is installed but no CUDA GPU is visible"
    return None


def make_backend(name: str, device_name: str | None) -> fcn.Backend:
    if name == "cupy":
        reason = _gpu_skip_reason()
        if reason:
            pytest.skip(reason)
    if name == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed (optional: one more Array-API namespace)")
    if name == "array_api_strict":
        strict = pytest.importorskip("array_api_strict")
        return fcn.get_backend(name, strict.Device(device_name) if device_name else None)
    return fcn.get_backend(name)


@pytest.fixture(params=BACKENDS)
def backend(request) -> fcn.Backend:
    """A :class:`fcn.Backend` for each available backend."""
    return make_backend(*request.param)


@pytest.fixture
def xp(backend):
    return backend.xp


@pytest.fixture
def to_dev(backend):
    """Copy a host array to the backend under test."""
    return lambda a: backend.asarray(np.asarray(a))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _skip_reason(report: pytest.TestReport) -> str:
    """The reason a test was skipped: the text of ``pytest.skip(...)`` or of the ``skipif`` mark."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line per skip reason, most frequent first, instead of pytest's one line per skipped test (``-ra``)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped or config.getoption("reportchars", "") not in ("", "fE"):
        return  # nothing skipped, or the user asked for pytest's own report (-rs, -ra)
    counts: dict[str, int] = {}
    for report in skipped:
        reason = _skip_reason(report)
        counts[reason] = counts.get(reason, 0) + 1
    terminalreporter.section(f"{len(skipped)} skipped, by reason", sep="-")
    for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        terminalreporter.write_line(f"{n:5d}  {reason}")
