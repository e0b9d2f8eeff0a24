"""The layers (fcn/layers.py), on every backend: the chapter's known values, numeric gradients, NumPy-oracle equality,
and what they refuse (mixed backends, mixed or integer dtypes), with the messages."""

import math

import numpy as np
import pytest

import fcn
from fcn import (
    affine_backward,
    affine_forward,
    affine_relu_backward,
    affine_relu_forward,
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
    relu_backward,
    relu_forward,
    softmax_loss,
)
from fcn.backend import to_host


def test_affine_forward_known_values(to_dev):
    num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
    input_size = num_inputs * np.prod(input_shape)
    weight_size = output_dim * np.prod(input_shape)
    x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
    w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
    b = np.linspace(-0.3, 0.1, num=output_dim)
    out, _ = affine_forward(to_dev(x), to_dev(w), to_dev(b))
    correct_out = np.array([[1.49834967, 1.70660132, 1.91485297], [3.25553199, 3.5141327, 3.77273342]])
    assert rel_error(out, correct_out) < 1e-9  # the chapter's bound; the reference has 8 decimals


def test_relu_forward_known_values(to_dev):
    x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)
    out, _ = relu_forward(to_dev(x))
    correct_out = np.array(
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.04545455, 0.13636364], [0.22727273, 0.31818182, 0.40909091, 0.5]]
    )
    assert rel_error(out, correct_out) < 1e-7


def test_affine_backward_matches_numeric(to_dev, rng):
    x, w, b = (
        to_dev(rng.standard_normal((10, 2, 3))),
        to_dev(rng.standard_normal((6, 5))),
        to_dev(rng.standard_normal(5)),
    )
    dout = to_dev(rng.standard_normal((10, 5)))
    dx_num = eval_numerical_gradient_array(lambda x: affine_forward(x, w, b)[0], x, dout)
    dw_num = eval_numerical_gradient_array(lambda w: affine_forward(x, w, b)[0], w, dout)
    db_num = eval_numerical_gradient_array(lambda b: affine_forward(x, w, b)[0], b, dout)
    dx, dw, db = affine_backward(dout, affine_forward(x, w, b)[1])
    assert tuple(dx.shape) == (10, 2, 3)
    assert rel_error(dx_num, dx) < 1e-7
    assert rel_error(dw_num, dw) < 1e-7
    assert rel_error(db_num, db) < 1e-7


def test_affine_backward_can_skip_dx(to_dev, rng):
    x, w, b = to_dev(rng.standard_normal((4, 3))), to_dev(rng.standard_normal((3, 2))), to_dev(np.zeros(2))
    dx, dw, db = affine_backward(to_dev(np.ones((4, 2))), affine_forward(x, w, b)[1], need_dx=False)
    assert dx is None and tuple(dw.shape) == (3, 2) and tuple(db.shape) == (2,)


def test_relu_backward_matches_numeric(to_dev, rng):
    x = to_dev(rng.standard_normal((10, 10)))
    dout = to_dev(rng.standard_normal((10, 10)))
    dx_num = eval_numerical_gradient_array(lambda x: relu_forward(x)[0], x, dout)
    dx = relu_backward(dout, relu_forward(x)[1])
    assert rel_error(dx_num, dx) < 1e-7


def test_softmax_loss_at_random_scores_is_log_c(to_dev, rng):
    num_classes, num_inputs = 10, 50
    x = to_dev(0.001 * rng.standard_normal((num_inputs, num_classes)))
    y = to_dev(rng.integers(num_classes, size=num_inputs))
    loss, dx = softmax_loss(x, y)
    assert abs(float(loss) - math.log(num_classes)) < 5e-3
    dx_num = eval_numerical_gradient(lambda x: softmax_loss(x, y)[0], x, verbose=False)
    assert rel_error(dx_num, dx) < 1e-7


def test_softmax_loss_against_float64_formula(to_dev, rng):
    scores, y = rng.standard_normal((7, 4)) * 3, rng.integers(4, size=7)
    p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    expected = -np.log(p[np.arange(7), y]).mean()
    grad = p.copy()
    grad[np.arange(7), y] -= 1
    loss, dx = softmax_loss(to_dev(scores), to_dev(y))
    assert abs(float(loss) - expected) < 1e-12
    assert rel_error(dx, grad / 7) < 1e-12


def test_softmax_loss_is_stable_for_huge_scores(to_dev, xp):
    scores = to_dev(np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]]))
    loss, dx = softmax_loss(scores, to_dev(np.array([1, 1])))
    assert math.isfinite(float(loss)) and abs(float(loss) - 5e3) < 1e-6
    assert bool(xp.all(xp.isfinite(dx)))


@pytest.mark.parametrize("fn", ["affine", "relu", "softmax"])
def test_layers_match_numpy_oracle(backend, to_dev, rng, fn):
    """Every backend computes what NumPy float64 computes (to rounding)."""
    x, w, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    dout, y = rng.standard_normal((6, 4)), rng.integers(4, size=6)
    if fn == "affine":
        ref = affine_backward(dout, affine_forward(x, w, b)[1])
        got = affine_backward(to_dev(dout), affine_forward(to_dev(x), to_dev(w), to_dev(b))[1])
    elif fn == "relu":
        ref = (relu_backward(dout, relu_forward(x @ w)[1]),)
        got = (relu_backward(to_dev(dout), relu_forward(to_dev(x @ w))[1]),)
    else:
        ref = softmax_loss(x @ w, y)
        got = softmax_loss(to_dev(x @ w), to_dev(y))
    for r, g in zip(ref, got, strict=False):
        assert fcn.namespace_of(g).name == backend.name
        np.testing.assert_allclose(fcn.to_host(g), r, rtol=1e-12, atol=1e-14)


def test_float32_stays_float32(xp, to_dev, rng):
    x = to_dev(rng.standard_normal((4, 3)).astype(np.float32))
    w = to_dev(rng.standard_normal((3, 2)).astype(np.float32))
    b = to_dev(np.zeros(2, np.float32))
    out, cache = affine_relu_forward(x, w, b)
    assert out.dtype == xp.float32
    loss, dscores = softmax_loss(out, to_dev(np.array([0, 1, 0, 1])))
    assert dscores.dtype == xp.float32 and loss.dtype == xp.float32
    assert all(g.dtype == xp.float32 for g in affine_relu_backward(dscores, cache))


# -- bad input -------------------------------------------------------------------------------------------


def test_affine_shape_mismatch_names_shapes(to_dev):
    with pytest.raises(ValueError, match=r"x \(2, 3\).*w \(4, 5\)"):
        affine_forward(to_dev(np.ones((2, 3))), to_dev(np.ones((4, 5))), to_dev(np.ones(5)))
    with pytest.raises(ValueError, match=r"b \(4,\)"):
        affine_forward(to_dev(np.ones((2, 3))), to_dev(np.ones((3, 5))), to_dev(np.ones(4)))


def test_affine_mixed_dtypes_are_refused(to_dev):
    with pytest.raises(TypeError, match="share one dtype.*x: .*float32.*w: .*float64"):
        affine_forward(to_dev(np.ones((2, 3), np.float32)), to_dev(np.ones((3, 5))), to_dev(np.ones(5)))


@pytest.mark.parametrize("bad", [[0, 10], [-1, 0]])
def test_softmax_labels_out_of_range(to_dev, bad):
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        softmax_loss(to_dev(np.zeros((2, 10))), to_dev(np.array(bad)))


def test_softmax_float_labels_are_refused(to_dev):
    with pytest.raises(TypeError, match="integer class labels"):
        softmax_loss(to_dev(np.zeros((2, 3))), to_dev(np.array([0.0, 1.0])))


def test_mixing_backends_in_a_layer_is_refused():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    w = strict.asarray(np.ones((3, 2)), device=dev)
    with pytest.raises(fcn.BackendError):
        affine_forward(np.ones((4, 3)), w, strict.asarray(np.zeros(2), device=dev))


# -- one dtype, one backend: what the layers refuse, and the messages -----------------------------------------------


def test_softmax_loss_is_stable_per_row_when_rows_differ_in_scale(to_dev):
    """Each row is shifted by its own maximum: a row far below another's maximum must not underflow to log(0)."""
    scores = np.asarray([[1000.0, 0.0], [0.0, 1.0]])
    y = np.asarray([0, 1])
    loss, dscores = softmax_loss(to_dev(scores), to_dev(y))
    row1 = np.log(1 + np.exp(-1.0))  # -log softmax of the correct class
    expected = (np.log(1 + np.exp(-1000.0)) + row1) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    p1 = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(to_host(dscores)[1], (p1 - [0, 1]) / 2, rtol=1e-12)


@pytest.mark.parametrize("which", ["dout", "cache"])
def test_backward_passes_refuse_mixed_backends(which):
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    rng = np.random.default_rng(0)
    x, w, b, dout = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), np.zeros(2), rng.standard_normal((3, 2))

    def on(a, side):
        return strict.asarray(a, device=dev) if side == which else a

    _, cache = fcn.affine_forward(on(x, "cache"), on(w, "cache"), on(b, "cache"))
    with pytest.raises(fcn.BackendError):
        fcn.affine_backward(on(dout, "dout"), cache)
    _, relu_cache = fcn.relu_forward(on(rng.standard_normal((3, 2)), "cache"))
    with pytest.raises(fcn.BackendError):
        fcn.relu_backward(on(dout, "dout"), relu_cache)
    _, sandwich_cache = affine_relu_forward(on(x, "cache"), on(w, "cache"), on(b, "cache"))
    with pytest.raises(fcn.BackendError):
        affine_relu_backward(on(dout, "dout"), sandwich_cache)


@pytest.mark.parametrize("odd", ["w", "b"])
def test_affine_forward_refuses_a_weight_or_bias_from_another_backend(odd):
    strict = pytest.importorskip("array_api_strict")
    args = {"x": np.ones((2, 3)), "w": np.ones((3, 4)), "b": np.ones(4)}
    args[odd] = strict.asarray(args[odd], device=strict.Device("device1"))
    with pytest.raises(fcn.BackendError):
        fcn.affine_forward(args["x"], args["w"], args["b"])


@pytest.mark.parametrize("odd", ["x", "w", "b"])
def test_affine_forward_names_the_argument_with_the_odd_dtype(to_dev, odd):
    args = {"x": np.ones((2, 3)), "w": np.ones((3, 4)), "b": np.ones(4)}
    args[odd] = args[odd].astype(np.float32)
    with pytest.raises(TypeError, match=rf"affine_forward: arrays must share one dtype.*{odd}: .*float32"):
        fcn.affine_forward(to_dev(args["x"]), to_dev(args["w"]), to_dev(args["b"]))


def test_softmax_loss_refuses_mixed_backends():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    scores, y = np.zeros((3, 2)), np.asarray([0, 1, 1])
    with pytest.raises(fcn.BackendError):
        softmax_loss(strict.asarray(scores, device=dev), y)
    with pytest.raises(fcn.BackendError):
        softmax_loss(scores, strict.asarray(y, device=dev))


def test_softmax_loss_errors_name_the_function():
    with pytest.raises(ValueError, match=r"^softmax_loss: scores must have shape \(N, C\), got \(3,\)"):
        softmax_loss(np.zeros(3), np.asarray([0, 1, 1]))
    with pytest.raises(ValueError, match=r"^softmax_loss: y has labels outside \[0, 2\)"):
        softmax_loss(np.zeros((3, 2)), np.asarray([0, 1, 2]))


def test_layers_refuse_integer_arrays_and_list_every_dtype():
    ints = {"x": np.ones((2, 3), dtype=np.int64), "w": np.ones((3, 4), dtype=np.int64), "b": np.ones(4, dtype=np.int64)}
    with pytest.raises(
        TypeError, match=r"^affine_forward: expected real floating arrays, got x: int64, w: int64, b: int64$"
    ):
        fcn.affine_forward(ints["x"], ints["w"], ints["b"])
    with pytest.raises(TypeError, match=r"^affine_forward: expected real floating arrays, got w: int64$"):
        fcn.affine_forward(np.ones((2, 3)), ints["w"], np.ones(4))
    msg = r"^affine_forward: arrays must share one dtype, got x: float32, w: float64, b: float64; cast them first$"
    with pytest.raises(TypeError, match=msg):
        fcn.affine_forward(np.ones((2, 3), dtype=np.float32), np.ones((3, 4)), np.ones(4))
