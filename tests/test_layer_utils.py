"""The affine-ReLU sandwich layer (fcn/layer_utils.py): w and b in their places, gradients against the formula and
numerically, the input gradient on request."""

from __future__ import annotations

import numpy as np
import pytest

from fcn import affine_relu_backward, affine_relu_forward, eval_numerical_gradient_array, rel_error
from fcn.backend import to_host


def test_affine_relu_forward_uses_w_and_b_in_their_places(to_dev, rng):
    """Non-square shapes and a bias that matters: w (5, 3), b (3,), x (4, 5)."""
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    out, _ = affine_relu_forward(to_dev(x), to_dev(w), to_dev(b))
    np.testing.assert_allclose(to_host(out), np.maximum(x @ w + b, 0), rtol=1e-12, atol=1e-15)


def test_affine_relu_backward_against_the_formula(to_dev, rng):
    x, w, b = rng.standard_normal((2, 3, 2)), rng.standard_normal((6, 4)), rng.standard_normal(4)
    dout = rng.standard_normal((2, 4))
    _, cache = affine_relu_forward(to_dev(x), to_dev(w), to_dev(b))
    dx, dw, db = affine_relu_backward(to_dev(dout), cache)
    x2 = x.reshape(2, 6)
    da = dout * (x2 @ w + b > 0)
    np.testing.assert_allclose(to_host(dx), (da @ w.T).reshape(x.shape), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_host(dw), x2.T @ da, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_host(db), da.sum(axis=0), rtol=1e-12, atol=1e-15)


def test_affine_relu_sandwich_matches_numeric(to_dev, rng):
    x, w, b = (
        to_dev(rng.standard_normal((2, 3, 4))),
        to_dev(rng.standard_normal((12, 10))),
        to_dev(rng.standard_normal(10)),
    )
    dout = to_dev(rng.standard_normal((2, 10)))
    out, cache = affine_relu_forward(x, w, b)
    dx, dw, db = affine_relu_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda x: affine_relu_forward(x, w, b)[0], x, dout)
    dw_num = eval_numerical_gradient_array(lambda w: affine_relu_forward(x, w, b)[0], w, dout)
    db_num = eval_numerical_gradient_array(lambda b: affine_relu_forward(x, w, b)[0], b, dout)
    assert rel_error(dx_num, dx) < 1e-7
    assert rel_error(dw_num, dw) < 1e-7
    assert rel_error(db_num, db) < 1e-7


@pytest.mark.parametrize("need_dx", [True, False])
def test_affine_relu_backward_need_dx(to_dev, rng, need_dx):
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 2)), rng.standard_normal(2)
    _, cache = affine_relu_forward(to_dev(x), to_dev(w), to_dev(b))
    dx, dw, db = affine_relu_backward(to_dev(np.ones((3, 2))), cache, need_dx=need_dx)
    assert (dx is None) is (not need_dx)
    if need_dx:
        assert tuple(dx.shape) == (3, 5)
    assert tuple(dw.shape) == (5, 2) and tuple(db.shape) == (2,)
