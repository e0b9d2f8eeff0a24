"""``fcn info``: the environment report users paste into bug reports."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fcn import sysinfo

REPO = Path(__file__).resolve().parents[1]


def run_info(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "fcn.cli", "info", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_info_prints_versions_and_working_backends():
    result = run_info()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"numpy: {importlib.metadata.version('numpy')}" in lines
    assert f"array-api-compat: {importlib.metadata.version('array-api-compat')}" in lines
    assert any(line.startswith("python: ") and sys.version.split()[0] in line for line in lines)
    assert any(line.startswith("fcn: ") and str(REPO / "fcn") in line for line in lines)
    assert "backends:" in lines and "  numpy: ok" in lines
    assert "blas:" in lines and any(line.startswith("  name: ") for line in lines)
    assert "cuda:" in lines
    assert any(line.startswith("fused_cuda_kernels: ") for line in lines)


def test_info_json():
    result = run_info("--json")
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)
    assert env["numpy"] == np.__version__
    assert env["backends"]["numpy"] == "ok"
    assert set(env["backends"]) == {"numpy", "cupy", "array_api_strict", "torch"}


def test_a_backend_that_is_not_installed_is_reported_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" now raises ImportError
    assert sysinfo._try_backend("torch") == "not installed"


def _broken_module(tmp_path, monkeypatch, name, error="OSError('libgomp.so.1: cannot open shared object file')"):
    """Make ``import name`` find a module that raises ``error``, as one whose library is missing does."""
    (tmp_path / f"{name}.py").write_text(f"raise {error}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_a_backend_that_does_not_load_is_reported_with_its_error(tmp_path, monkeypatch):
    _broken_module(tmp_path, monkeypatch, "torch")
    assert "libgomp.so.1" in sysinfo._try_backend("torch")


def test_a_broken_threadpoolctl_is_reported_unusable_next_to_numpys_build_info(tmp_path, monkeypatch):
    _broken_module(tmp_path, monkeypatch, "threadpoolctl")
    blas = sysinfo._blas()
    assert blas["threadpoolctl"] == "unusable (OSError: libgomp.so.1: cannot open shared object file)"
    assert blas["source"] == "numpy.show_config" and blas["name"]


def test_info_with_a_broken_threadpoolctl_still_prints_the_report(tmp_path):
    (tmp_path / "threadpoolctl.py").write_text("raise AttributeError('module has no attribute _core')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "fcn.cli", "info"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "  threadpoolctl: unusable (AttributeError: module has no attribute _core)" in result.stdout.splitlines()


def test_blas_without_threadpoolctl_comes_from_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    blas = sysinfo._blas()
    assert blas["source"] == "numpy.show_config"
    expected = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    assert blas["name"] == expected


def test_blas_with_threadpoolctl():
    pytest.importorskip("threadpoolctl")
    blas = sysinfo._blas()
    assert blas["source"] == "threadpoolctl" and isinstance(blas["threads"], int) and blas["threads"] >= 1


def _nvrtc_or_skip():
    pytest.importorskip("fcn.ops.cuda", reason="fcn.ops.cuda does not import")
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f'NVRTC is not available ({exc}); pip install -e ".[nvrtc]"')


def test_fused_kernels_are_compiled_for_the_report():
    _nvrtc_or_skip()
    assert sysinfo._fused().startswith("compile")


def test_fused_kernels_that_do_not_compile_are_reported(monkeypatch):
    _nvrtc_or_skip()
    import fcn.ops.cuda

    monkeypatch.setattr(fcn.ops.cuda, "kernel_source", lambda: "this is not CUDA")
    monkeypatch.setattr(sysinfo, "has_gpu", lambda: False)
    report = sysinfo._fused()
    assert report.startswith("do not compile") and "error" in report


AVX512_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl\n"
AVX2_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_cpu_vector_level_reads_the_flags():
    assert sysinfo.cpu_vector_level(AVX512_CPU) == "AVX-512"
    assert sysinfo.cpu_vector_level(AVX2_CPU) == "AVX2"
    assert sysinfo.cpu_vector_level("flags\t: fpu sse2 avx\n") == "AVX"
    assert sysinfo.cpu_vector_level("flags\t: fpu avx512f\n") == "SSE"  # AVX-512 without AVX2 is not a real CPU
    assert sysinfo.cpu_vector_level("no flags line") is None


@pytest.mark.parametrize(
    "coretype, cpuinfo, expected",
    [
        ("Haswell", AVX512_CPU, "forces OpenBLAS's AVX2 kernels on a CPU with AVX-512"),
        ("SANDYBRIDGE", AVX2_CPU, "forces OpenBLAS's AVX kernels on a CPU with AVX2"),
        ("SkylakeX", AVX2_CPU, "asks for AVX-512 kernels, which this CPU (AVX2) cannot run"),
        ("Frobnicator", AVX2_CPU, "not a core type this check knows"),
        ("Haswell", AVX2_CPU, None),  # the CPU's own level: nothing to say
        ("Zen", AVX2_CPU, None),
        (None, AVX512_CPU, None),
    ],
)
def test_openblas_coretype_warning(coretype, cpuinfo, expected):
    environ = {} if coretype is None else {"OPENBLAS_CORETYPE": coretype}
    warning = sysinfo.openblas_coretype_warning(environ, cpuinfo)
    assert warning is None if expected is None else expected in warning


def test_info_shows_the_coretype_warning(monkeypatch):
    """``fcn info`` puts the warning under blas (the variable itself is left alone: tests never change it)."""
    monkeypatch.setattr(sysinfo, "openblas_coretype_warning", lambda: "OPENBLAS_CORETYPE=X forces old kernels")
    env = sysinfo.collect_env()
    assert env["blas"]["warning"] == "OPENBLAS_CORETYPE=X forces old kernels"
    assert "  warning: OPENBLAS_CORETYPE=X forces old kernels" in sysinfo.format_env(env).splitlines()
    assert env["cpu_vector_level"] == sysinfo.cpu_vector_level()


@pytest.mark.parametrize(
    "env, scipy_here, expected",
    [
        (None, True, "SciPy's BLAS path (scipy "),
        ("1", True, "SciPy's BLAS path (scipy "),
        (" off ", True, "NumPy alone (FCN_BLAS=off)"),
        ("0", False, "NumPy alone (FCN_BLAS=0)"),
        (None, False, 'NumPy alone (SciPy is not installed; pip install "fcn-cifar[fast]" for the BLAS path)'),
        ("2", True, "unknown (FCN_BLAS='2': expected 1/true/yes/on or 0/false/no/off)"),
    ],
)
def test_info_says_which_path_numpy_kernels_take(monkeypatch, env, scipy_here, expected):
    """``fcn info`` names the NumPy table's default path and why: the variable, or SciPy missing."""
    from fcn.ops import numpy_ops

    if env is None:
        monkeypatch.delenv("FCN_BLAS", raising=False)
    else:
        monkeypatch.setenv("FCN_BLAS", env)
    if scipy_here and numpy_ops.scipy_blas is None:
        pytest.skip("SciPy is not installed")
    if not scipy_here:
        monkeypatch.setattr(numpy_ops, "scipy_blas", None)
    report = sysinfo._numpy_kernels()
    assert report.startswith(expected) if expected.endswith("scipy ") else report == expected
    assert sysinfo.collect_env()["numpy_kernels"] == report
