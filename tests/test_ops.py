"""The kernel table: every backend's table agrees with the chapter's functions and with NumPy float64."""

import numpy as np
import pytest

import fcn
from fcn.ops import NumpyOps, Ops
from fcn.optim import RULES


def host(a):
    return fcn.to_host(a)


@pytest.fixture
def ops(backend):
    return backend.ops


def test_backend_gives_its_table(backend):
    assert isinstance(backend.ops, Ops)
    assert backend.ops is backend.ops  # made once per backend
    assert isinstance(fcn.get_backend("numpy").ops, NumpyOps)


def test_dense_kernels_match_chapter_functions(ops, to_dev, rng):
    x, w, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))
    out, cache = fcn.affine_forward(to_dev(x), to_dev(w), to_dev(b))
    np.testing.assert_allclose(host(ops.affine_forward(to_dev(x), to_dev(w), to_dev(b))), host(out), rtol=1e-13)
    np.testing.assert_allclose(host(out), x @ w + b, rtol=1e-13)
    dx, dw, db = fcn.affine_backward(to_dev(dout), cache)
    dx2, dw2, db2 = ops.affine_backward(to_dev(dout), to_dev(x), to_dev(w))
    for got, want, ref in ((dx2, dx, dout @ w.T), (dw2, dw, x.T @ dout), (db2, db, dout.sum(0))):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-13)
        np.testing.assert_allclose(host(got), ref, rtol=1e-13)
    assert ops.affine_backward(to_dev(dout), to_dev(x), to_dev(w), need_dx=False)[0] is None


def test_relu_kernels_match_chapter_functions(ops, to_dev, rng):
    h, b, dout = rng.standard_normal((6, 4)), rng.standard_normal(4), rng.standard_normal((6, 4))
    ref = np.maximum(h + b, 0)
    # bias_relu and relu_backward may overwrite their first argument: hand them copies
    np.testing.assert_array_equal(host(ops.bias_relu(to_dev(h.copy()), to_dev(b))), ref)
    np.testing.assert_array_equal(host(ops.relu(to_dev(h))), host(fcn.relu_forward(to_dev(h))[0]))
    # the mask may come from the ReLU's output as well as its input
    expected = host(fcn.relu_backward(to_dev(dout), to_dev(h + b)))
    np.testing.assert_array_equal(expected, dout * (h + b > 0))
    np.testing.assert_array_equal(host(ops.relu_backward(to_dev(dout.copy()), to_dev(ref))), expected)


def test_chapter_relu_backward_leaves_the_callers_gradient_alone(to_dev, rng):
    dout = to_dev(rng.standard_normal((3, 4)))
    before = host(dout).copy()
    fcn.relu_backward(dout, to_dev(-np.ones((3, 4))))
    np.testing.assert_array_equal(host(dout), before)


def test_softmax_cross_entropy_matches_formula(ops, to_dev, rng):
    scores, y = rng.standard_normal((7, 10)) * 3, rng.integers(10, size=7)
    p = np.exp(scores - scores.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ref_loss = -np.log(p[np.arange(7), y]).mean()
    ref_d = p.copy()
    ref_d[np.arange(7), y] -= 1
    ref_d /= 7
    loss, d = ops.softmax_cross_entropy(to_dev(scores), to_dev(y))
    assert abs(float(loss) - ref_loss) < 1e-13
    np.testing.assert_allclose(host(d), ref_d, rtol=1e-12, atol=1e-15)
    chapter_loss, chapter_d = fcn.softmax_loss(to_dev(scores), to_dev(y))
    assert abs(float(loss) - float(chapter_loss)) < 1e-14


def test_sum_of_squares_and_take_rows(ops, to_dev, rng):
    arrays = [rng.standard_normal((5, 3)), rng.standard_normal(4)]
    total = ops.sum_of_squares([to_dev(a) for a in arrays])
    assert abs(float(total) - sum((a**2).sum() for a in arrays)) < 1e-12
    assert float(ops.sum_of_squares([])) == 0.0
    x, idx = rng.standard_normal((9, 2, 3)), np.asarray([4, 0, 8, 4])
    np.testing.assert_array_equal(host(ops.take_rows(to_dev(x), to_dev(idx))), x[idx])


def test_numpy_take_rows_reuses_the_buffer(rng):
    ops = fcn.get_backend("numpy").ops
    x, idx = rng.standard_normal((9, 3)), np.asarray([2, 7, 1])
    out = np.empty((3, 3))
    assert ops.take_rows(x, idx, out=out) is out
    np.testing.assert_array_equal(out, x[idx])


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_numpy_table_equals_reference_table(rule, rng):
    """The NumPy overrides do the reference's arithmetic (float64, to rounding)."""
    backend = fcn.get_backend("numpy")
    fast, ref = NumpyOps(backend), Ops(backend)
    hyper = {
        "sgd": {"learning_rate": 0.1},
        "sgd_momentum": {"learning_rate": 0.1, "momentum": 0.9},
        "rmsprop": {"learning_rate": 0.1, "decay_rate": 0.99, "epsilon": 1e-8},
        "adam": {"learning_rate": 0.1, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.1},
    }[rule]
    params = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    copies = [p.copy() for p in params]
    state_names = RULES[rule].state
    states = [tuple(np.zeros_like(p) for _ in state_names) for p in params]
    ref_states = [tuple(np.zeros_like(p) for _ in state_names) for p in params]
    for t in range(1, 4):
        grads = [rng.standard_normal(p.shape) for p in params]
        step = {**hyper, "t": t} if rule == "adam" else hyper
        fast.update_all(rule, params, grads, states, step)
        ref.update_all(rule, copies, grads, ref_states, step)
    for got, want in zip(params, copies, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_adamw_decays_the_weights_apart_from_the_gradient(backend):
    """AdamW: with a zero gradient, only the decoupled decay moves the weights (Adam's step is 0)."""
    w = backend.asarray(np.full(3, 2.0))
    w, config = fcn.optim.adamw(w, backend.asarray(np.zeros(3)), {"learning_rate": 0.1, "weight_decay": 0.5})
    np.testing.assert_allclose(host(w), 2.0 * (1 - 0.1 * 0.5), rtol=1e-15)
    assert config["t"] == 1


def test_unknown_optim_config_key_is_named():
    with pytest.raises(ValueError, match="unknown optim_config key.*'lr'.*learning_rate"):
        fcn.optim.sgd(np.zeros(2), np.zeros(2), {"lr": 0.1})
