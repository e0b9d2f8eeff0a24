"""The kernel tables (fcn/ops/reference.py and the backend-specific tables): which one a backend gets, and the
operations every table shares."""

from __future__ import annotations

import numpy as np
import pytest

import fcn


def test_kernel_tables_by_backend_and_their_repr(backend):
    from fcn.ops import CupyOps, NumpyOps, Ops

    ops = backend.ops
    expected = NumpyOps if backend.is_numpy else CupyOps if backend.is_cupy else Ops
    assert type(ops) is expected
    assert repr(ops) == f"{expected.__name__}({backend!r})"
    assert ops.name == {NumpyOps: "numpy", CupyOps: "cupy", Ops: "xp"}[expected]


def test_update_all_refuses_lists_of_different_lengths(backend):
    ops = backend.ops
    w = [backend.asarray(np.ones(2)), backend.asarray(np.ones(3))]
    with pytest.raises(ValueError):
        ops.update_all("sgd", w, [backend.asarray(np.ones(2))], [(), ()], {"learning_rate": 0.1})


def test_sum_of_squares_keeps_dtype_and_device(backend):
    ops = backend.ops
    a = backend.asarray(np.asarray([[1.0, 2.0], [3.0, -1.0]], dtype=np.float32))
    total = ops.sum_of_squares([a])
    assert float(total) == 15.0 and total.dtype == backend.xp.float32
    empty = ops.sum_of_squares([])
    assert float(empty) == 0.0
    if backend.device is not None:
        assert empty.device == backend.device


def test_affine_backward_sgd_returns_dx_by_default(backend, rng):
    """Like ``affine_backward``, the folded step gives ``dx`` unless told not to (a first layer says so)."""
    x, w, dout = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal((6, 4))
    dx, db = backend.ops.affine_backward_sgd(
        backend.asarray(dout), backend.asarray(x), backend.asarray(w.copy()), learning_rate=0.1
    )
    assert dx is not None
    np.testing.assert_allclose(fcn.to_host(dx), dout @ w.T, rtol=1e-12)  # from the weights before the step
    np.testing.assert_allclose(fcn.to_host(db), dout.sum(axis=0), rtol=1e-12)


def normalize(x, axis, eps):
    """``(x - mean) / sqrt(var + eps)`` along ``axis``, and the ``std``: NumPy float64."""
    mean, var = x.mean(axis=axis, keepdims=True), x.var(axis=axis, keepdims=True)
    std = np.sqrt(var + eps)
    return (x - mean) / std, std


@pytest.mark.parametrize("kernel", ["batchnorm_train", "batchnorm_eval", "layernorm"])
def test_normalization_kernels_scale_by_gamma_and_shift_by_beta(backend, rng, kernel):
    """``out = gamma * xhat + beta``, ``xhat`` and ``std`` in the cache; gamma and beta are neither 1 nor 0, so
    that a kernel that divides by gamma or subtracts beta cannot pass."""
    to_dev = backend.asarray
    x = rng.standard_normal((8, 5)) * 3 + 2
    gamma, beta, eps = rng.uniform(1.5, 3.0, 5), rng.uniform(0.5, 2.0, 5), 1e-5
    if kernel == "batchnorm_eval":  # given (running) statistics, not the batch's
        mean, var = rng.standard_normal(5), rng.uniform(0.5, 2.0, 5)
        std = np.sqrt(var + eps)
        xhat = (x - mean) / std
        out, (got_xhat, got_std) = backend.ops.batchnorm_eval(
            to_dev(x), to_dev(gamma), to_dev(beta), to_dev(mean), to_dev(var), eps
        )
    else:
        axis = 0 if kernel == "batchnorm_train" else 1
        xhat, std = normalize(x, axis, eps)
        out, (got_xhat, got_std), *stats = getattr(backend.ops, kernel)(to_dev(x), to_dev(gamma), to_dev(beta), eps)
        if kernel == "batchnorm_train":
            np.testing.assert_allclose([fcn.to_host(s) for s in stats], [x.mean(axis=0), x.var(axis=0)], rtol=1e-12)
    np.testing.assert_allclose(fcn.to_host(out), gamma * xhat + beta, rtol=1e-12)
    np.testing.assert_allclose(fcn.to_host(got_xhat), xhat, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fcn.to_host(got_std).reshape(std.shape), std, rtol=1e-12)


def test_take_batch_gathers_the_rows_of_samples_and_labels_into_reused_buffers(backend):
    ops = backend.ops
    images = np.arange(48.0).reshape(6, 2, 2, 2)
    labels = np.asarray([5, 4, 3, 2, 1, 0])
    x, y = backend.asarray(images), backend.asarray(labels)
    idx = backend.asarray(np.asarray([4, 0, 2], dtype=np.int64))
    for out in (None, (backend.xp.empty((3, 2, 2, 2), dtype=x.dtype), backend.xp.empty(3, dtype=y.dtype))):
        x_batch, y_batch = ops.take_batch(x, y, idx, out=out)
        np.testing.assert_array_equal(fcn.to_host(x_batch), images[[4, 0, 2]])
        np.testing.assert_array_equal(fcn.to_host(y_batch), labels[[4, 0, 2]])
        if out is not None and backend.is_numpy:  # NumPy's table gathers into the buffers it is given
            assert x_batch is out[0] and y_batch is out[1]
