"""The fused CUDA kernels (fcn.ops.FusedCupyOps) against the plain kernel table, on a GPU.

Every kernel is compared with :class:`fcn.ops.CupyOps` (the reference kernels, run by CuPy) on the same
device arrays: float64 to a relative error below 1e-10, float32 within float32 rounding. Then whole training
runs: N fused steps against N plain steps for every update rule, no host wait between two logging points,
and CUDA-graph replay against eager steps. All marked ``gpu``: skipped, with the reason, without CuPy and a
CUDA device.
"""

from __future__ import annotations

import numpy as np
import pytest

import fcn
from fcn.training.cuda_graph import GraphedStep

pytestmark = pytest.mark.gpu

DTYPES = ["float64", "float32"]
RULES = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-3, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "adamw": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 1e-2},
}


@pytest.fixture(scope="module")
def cp():
    if not fcn.has_cupy():
        pytest.skip("CuPy is not installed (pip install 'fcn-cifar[cuda12]' on a GPU machine)")
    if not fcn.has_gpu():
        pytest.skip("CuPy is installed but no CUDA GPU is visible")
    import cupy

    return cupy


@pytest.fixture(scope="module")
def ops(cp):
    """(fused, plain) kernel tables on the same device."""
    from fcn.ops import CupyOps, FusedCupyOps

    backend = fcn.get_backend("cupy", fused=False)
    return FusedCupyOps(backend, tf32=False), CupyOps(backend)


def rel(a, b) -> float:
    """Largest elementwise relative error, on the host (scale: the larger magnitude, at least 1e-30)."""
    a, b = fcn.to_host(a).astype(np.float64), fcn.to_host(b).astype(np.float64)
    assert a.shape == b.shape
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-30)))


def close(a, b, dtype: str, f32: float = 2e-5) -> None:
    a_h, b_h = fcn.to_host(a).astype(np.float64), fcn.to_host(b).astype(np.float64)
    if dtype == "float64":
        assert rel(a, b) < 1e-10
    else:
        np.testing.assert_allclose(a_h, b_h, rtol=f32, atol=f32 * max(1.0, float(np.max(np.abs(b_h), initial=0))))


# -- single kernels ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(50, 3, 32, 32), (40, 3), (33, 5), (20,)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint8"])
def test_take_rows_matches_take(cp, ops, rng, shape, dtype):
    fused, plain = ops
    x = cp.asarray((rng.standard_normal(shape) * 50).astype(dtype))
    idx = cp.asarray(rng.integers(0, shape[0], size=17))
    out = fused.take_rows(x, idx)
    assert rel(out.astype(cp.float64), plain.take_rows(x, idx).astype(cp.float64)) == 0.0
    for table in (fused, plain):  # both fill a given buffer (the Solver reuses one per batch size)
        buf = cp.empty_like(out)
        assert table.take_rows(x, idx, out=buf) is buf
        assert bool(cp.all(buf == out))


def test_take_rows_rejects_a_wrong_out_buffer(cp, ops):
    fused, _ = ops
    x = cp.zeros((10, 4), dtype=cp.float32)
    with pytest.raises(ValueError, match="out must be"):
        fused.take_rows(x, cp.arange(3), out=cp.empty((3, 5), dtype=cp.float32))


@pytest.mark.parametrize("label_dtype", ["int64", "int32"])
def test_take_batch_gathers_images_and_labels_in_one_pass(cp, ops, rng, label_dtype):
    fused, plain = ops
    x = cp.asarray(rng.standard_normal((64, 3, 8, 8)).astype(np.float32))
    y = cp.asarray(rng.integers(0, 10, size=64).astype(label_dtype))
    idx = cp.asarray(rng.permutation(64)[:20])
    xb, yb = fused.take_batch(x, y, idx)
    assert bool(cp.all(xb == plain.take_rows(x, idx))) and bool(cp.all(yb == plain.take_rows(y, idx)))
    assert yb.dtype == y.dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_take_batch_flip_and_crop_match_a_numpy_reference(cp, ops, rng, dtype):
    fused, _ = ops
    n, c, h, w, pad, b = 30, 3, 32, 32, 4, 16
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = rng.integers(0, 10, size=n)
    idx = rng.integers(0, n, size=b)
    flip = rng.integers(0, 2, size=b).astype(bool)
    offset = rng.integers(0, 2 * pad + 1, size=(b, 2))  # crop corner in the padded image
    xb, yb = fused.take_batch(
        cp.asarray(x), cp.asarray(y), cp.asarray(idx), flip=cp.asarray(flip), shift=cp.asarray(offset - pad)
    )
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # zero padding, then crop, then flip
    expect = np.stack(
        [
            (lambda img: img[..., ::-1] if f else img)(padded[s, :, oy : oy + h, ox : ox + w])
            for s, f, (oy, ox) in zip(idx, flip, offset, strict=True)
        ]
    )
    np.testing.assert_array_equal(fcn.to_host(xb), expect)
    np.testing.assert_array_equal(fcn.to_host(yb), y[idx])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(500, 100), (7, 10), (3, 1030)])
def test_bias_relu_matches_reference(cp, ops, rng, dtype, shape):
    fused, plain = ops
    h = cp.asarray(rng.standard_normal(shape).astype(dtype))
    b = cp.asarray(rng.standard_normal(shape[1]).astype(dtype))
    expect = plain.bias_relu(h.copy(), b)
    got = fused.bias_relu(h, b)
    assert got is h  # in place
    assert rel(got, expect) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_matches_reference(cp, ops, rng, dtype):
    fused, plain = ops
    dout = cp.asarray(rng.standard_normal((500, 100)).astype(dtype))
    y = cp.maximum(cp.asarray(rng.standard_normal((500, 100)).astype(dtype)), 0)
    expect = plain.relu_backward(dout.copy(), y)
    assert rel(fused.relu_backward(dout, y), expect) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_dtype", ["int64", "int32"])
@pytest.mark.parametrize("n, c", [(500, 10), (1, 10), (9000, 10), (64, 100)])
def test_softmax_cross_entropy_matches_reference(cp, ops, rng, dtype, label_dtype, n, c):
    fused, plain = ops
    scores = cp.asarray((rng.standard_normal((n, c)) * 5).astype(dtype))
    y = cp.asarray(rng.integers(0, c, size=n).astype(label_dtype))
    loss, dscores = fused.softmax_cross_entropy(scores, y)
    loss_ref, dscores_ref = plain.softmax_cross_entropy(scores, y)
    assert loss.shape == () and loss.dtype == scores.dtype
    close(loss, loss_ref, dtype)
    close(dscores, dscores_ref, dtype, f32=1e-5)
    again, _ = fused.softmax_cross_entropy(scores, y)
    assert float(again) == float(loss)  # the device reduction is deterministic


def test_softmax_cross_entropy_is_stable_and_flags_bad_labels(cp, ops):
    fused, _ = ops
    scores = cp.asarray([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    loss, dscores = fused.softmax_cross_entropy(scores, cp.asarray([0, 2]))
    assert np.isfinite(float(loss)) and bool(cp.all(cp.isfinite(dscores)))
    bad, _ = fused.softmax_cross_entropy(scores, cp.asarray([0, 3]))
    assert np.isnan(float(bad))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count", [1, 3, 40])  # 40 > MT_MAX: several launches, one result
def test_sum_of_squares_matches_reference(cp, ops, rng, dtype, count):
    fused, plain = ops
    shapes = [(3072, 100), (100,), (0,), (100, 10), (17, 3)]
    arrays = [cp.asarray(rng.standard_normal(shapes[i % len(shapes)]).astype(dtype)) for i in range(count)]
    got = fused.sum_of_squares(arrays)
    assert got.shape == () and got.dtype == arrays[0].dtype
    close(got, plain.sum_of_squares(arrays), dtype, f32=1e-5)


def test_sum_of_squares_of_empty_arrays_is_zero(cp, ops):
    fused, _ = ops
    assert float(fused.sum_of_squares([cp.zeros((0,), dtype=cp.float32)])) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("count", [4, 37])
def test_update_all_matches_reference(cp, ops, rng, dtype, rule, count):
    from fcn.optim import RULES as SPECS

    fused, plain = ops
    spec = SPECS[rule]
    shapes = [(3072, 100), (100,), (100, 10), (10,), (0,)]
    host = [rng.standard_normal(shapes[i % len(shapes)]).astype(dtype) for i in range(count)]
    grads = [cp.asarray(rng.standard_normal(a.shape).astype(dtype)) for a in host]
    runs = {}
    for name, table in (("fused", fused), ("plain", plain)):
        params = [cp.asarray(a) for a in host]
        states = [tuple(cp.zeros_like(p) for _ in spec.state) for p in params]
        for t in range(1, 4):
            hyper = dict(RULES[rule]) | ({"t": t} if spec.kernel == "adam" else {})
            table.update_all(spec.kernel, params, grads, states, hyper)
        runs[name] = (params, states)
    for got, expect in zip(runs["fused"][0], runs["plain"][0], strict=True):
        close(got, expect, dtype)
    for got, expect in zip(runs["fused"][1], runs["plain"][1], strict=True):
        for got_state, expect_state in zip(got, expect, strict=True):
            close(got_state, expect_state, dtype)


# -- training --------------------------------------------------------------------------------------------------


def _data(rng, n=600, d=3 * 8 * 8, c=10):
    X = rng.standard_normal((n, 3, 8, 8))
    y = rng.integers(0, c, size=n)
    return {"X_train": X[:500], "y_train": y[:500], "X_val": X[500:], "y_val": y[500:]}


def _solver(fused: bool, rule: str, dtype: str, data, *, graph: bool = False, steps_per_log: int = 1000):
    backend = fcn.get_backend("cupy", fused=fused)
    model = fcn.FullyConnectedNet(3 * 8 * 8, [64, 32], reg=0.1, weight_scale=5e-2, backend=backend, dtype=dtype, seed=3)
    solver = fcn.Solver(
        model,
        data,
        update_rule=rule,
        optim_config=dict(RULES[rule]),
        lr_decay=0.9,
        batch_size=50,
        num_epochs=2,
        print_every=steps_per_log,
        verbose=False,
        progress=False,
        seed=5,
        cuda_graph=graph,
    )
    return model, solver


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", list(RULES))
def test_fused_training_steps_match_plain_steps(cp, rng, dtype, rule):
    data = _data(rng)
    runs = {}
    for fused in (True, False):
        model, solver = _solver(fused, rule, dtype, data)
        for _ in range(25):  # crosses an epoch end (10 steps per epoch) with learning-rate decay
            solver.step()
        solver.read_losses()
        runs[fused] = (model, solver)
    (m_f, s_f), (m_p, s_p) = runs[True], runs[False]
    assert type(m_f.backend.ops).__name__ == "FusedCupyOps" and type(m_p.backend.ops).__name__ == "CupyOps"
    for name in m_p.params:
        close(m_f.params[name], m_p.params[name], dtype, f32=2e-4)
    close(np.asarray(s_f.loss_history), np.asarray(s_p.loss_history), dtype, f32=2e-5)


def test_steps_between_logging_points_never_wait_for_the_gpu(cp, rng):
    from fcn.ops.cuda import host_waits

    data = _data(rng)
    _, solver = _solver(True, "adam", "float32", data)
    for _ in range(3):  # warm up: compile kernels, create optimiser state and cached buffers
        solver.step()
    solver.read_losses()
    report, _ = host_waits(lambda: [solver.step() for _ in range(5)], timeout_s=10.0)
    assert not report.waited, report
    # the probe itself: reading a device value does wait
    report, _ = host_waits(lambda: float(cp.ones(()).sum()), timeout_s=2.0)
    assert report.waited


@pytest.mark.parametrize("rule", ["sgd", "adamw"])
def test_cuda_graph_replay_equals_eager_steps(cp, rng, rule):
    data = _data(rng)
    runs = {}
    for graph in (True, False):
        model, solver = _solver(True, rule, "float64", data, graph=graph)
        for _ in range(25):  # an epoch end: learning-rate decay reaches the graph through its device array
            solver.step()
        solver.read_losses()
        runs[graph] = (model, solver)
    (m_g, s_g), (m_e, s_e) = runs[True], runs[False]
    assert isinstance(s_g.run_step, GraphedStep) and s_g.run_step.captured is not None
    for name in m_e.params:
        assert rel(m_g.params[name], m_e.params[name]) < 1e-12
    assert rel(np.asarray(s_g.loss_history), np.asarray(s_e.loss_history)) < 1e-12
    assert s_g.optim_config.get("t") == s_e.optim_config.get("t")


def test_captured_step_is_a_handful_of_launches(cp, rng):
    from fcn.ops.cuda import graph_node_counts

    data = _data(rng)
    _, solver = _solver(True, "adam", "float32", data, graph=True)
    solver.step()
    counts = graph_node_counts(solver.run_step.captured.graph)
    assert 5 <= counts["total"] <= 60, counts
