"""The fused kernels and CUDA graphs are opt-in: how they are chosen, and what happens where they cannot run.

These run without a GPU: choosing a kernel table only imports CuPy (it touches no device).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import fcn
from fcn.backend import Backend, BackendError
from fcn.ops import CupyOps, NumpyOps


def _cupy_namespace():
    try:
        importlib.import_module("cupy")
    except Exception as exc:  # not installed, or a broken CUDA install
        pytest.skip(f"CuPy does not import ({exc}); pip install -e '.[nvrtc]'")
    return importlib.import_module("array_api_compat.cupy")


def test_fused_needs_a_backend_with_fused_kernels():
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(BackendError, match="fused=True needs the CuPy or NumPy backend"):
        fcn.get_backend(strict, fused=True)
    assert fcn.get_backend("numpy", fused=False).fused is False
    assert isinstance(fcn.get_backend("numpy", fused=False).ops, NumpyOps)


@pytest.mark.parametrize(
    "fused, env, blas",
    [(None, None, True), (None, "1", True), (None, "0", False), (True, "0", True), (False, None, False)],
)
def test_kernel_table_of_numpy_follows_the_opt_in(monkeypatch, fused, env, blas):
    """On NumPy ``fused`` chooses SciPy's BLAS path (elementwise work folded into the products), by default on
    where SciPy is installed (``FCN_BLAS=0``: off)."""
    if blas and not fcn.ops.numpy_ops.scipy_blas:
        pytest.skip("SciPy is not installed")
    if env is None:
        monkeypatch.delenv("FCN_BLAS", raising=False)
    else:
        monkeypatch.setenv("FCN_BLAS", env)
    backend = Backend(np, None, fused=fused)
    assert isinstance(backend.ops, NumpyOps) and bool(backend.ops.blas) is blas
    assert backend.ops.fuses_sgd  # plain SGD is folded on either path


def test_fused_flag_is_kept_and_does_not_change_equality():
    be = Backend(np, None, fused=False)
    assert fcn.get_backend(be).fused is False
    assert fcn.get_backend(be, device="cpu").fused is False  # a device override keeps the choice
    assert Backend(np, None, fused=True) == Backend(np, None)


@pytest.mark.parametrize(
    "fused, env, expect",
    [(None, None, "CupyOps"), (None, "1", "FusedCupyOps"), (True, None, "FusedCupyOps"), (False, "1", "CupyOps")],
)
def test_kernel_table_of_cupy_follows_the_opt_in(monkeypatch, fused, env, expect):
    xp = _cupy_namespace()
    if env is None:
        monkeypatch.delenv("FCN_FUSED_KERNELS", raising=False)
    else:
        monkeypatch.setenv("FCN_FUSED_KERNELS", env)
    monkeypatch.delenv("FCN_TF32", raising=False)
    ops = Backend(xp, None, fused=fused).ops
    assert type(ops).__name__ == expect
    assert isinstance(ops, CupyOps)  # the fused table is a CupyOps: everything it does not fuse is inherited


def test_cuda_graph_request_on_numpy_warns_and_trains_eagerly(rng):
    model = fcn.FullyConnectedNet(12, [8], backend="numpy", seed=0)
    data = {
        "X_train": rng.standard_normal((40, 12)),
        "y_train": rng.integers(0, 10, 40),
        "X_val": rng.standard_normal((10, 12)),
        "y_val": rng.integers(0, 10, 10),
    }
    with pytest.warns(UserWarning, match="CUDA graphs requested but not used: .*CuPy backend"):
        solver = fcn.Solver(model, data, batch_size=10, num_iters=3, verbose=False, progress=False, cuda_graph=True)
    assert solver.run_step is solver.train_step
    solver.train()
    assert len(solver.loss_history) == 3


def test_cuda_graph_env_variable_is_read(monkeypatch, rng):
    from fcn.training.cuda_graph import cuda_graph_requested

    monkeypatch.setenv("FCN_CUDA_GRAPH", "1")
    assert cuda_graph_requested() and not cuda_graph_requested(False)
    monkeypatch.setenv("FCN_CUDA_GRAPH", "0")
    assert not cuda_graph_requested() and cuda_graph_requested(True)
