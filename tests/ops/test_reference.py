"""The kernel tables (fcn/ops/reference.py and the backend-specific tables): which one a backend gets, and the
operations every table shares."""

from __future__ import annotations

import numpy as np
import pytest


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
