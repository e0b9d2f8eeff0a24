"""Public helpers refuse arguments they cannot honour, naming the argument, instead of answering garbage."""

from __future__ import annotations

import numpy as np
import pytest

import fcn


def test_numerical_gradient_of_an_integer_array_is_refused():
    # sum(x**2) has gradient 2x = [2, 4, 6]; an integer x cannot hold x + 1e-5, so the answer would be garbage
    x = np.array([1, 2, 3])
    with pytest.raises(TypeError, match="x must be a floating-point array.*int64"):
        fcn.eval_numerical_gradient(lambda a: np.sum(a**2), x, verbose=False)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        fcn.eval_numerical_gradient_array(lambda a: a * 2, x, np.ones(3))
    np.testing.assert_array_equal(x, [1, 2, 3])


def test_numerical_gradient_of_a_float_array_is_right(to_dev):
    x = to_dev(np.array([1.0, 2.0, 3.0]))
    xp = fcn.namespace_of(x).xp
    grad = fcn.eval_numerical_gradient(lambda a: xp.sum(a**2), x, verbose=False)
    np.testing.assert_allclose(fcn.to_host(grad), [2.0, 4.0, 6.0], rtol=1e-8)


@pytest.mark.parametrize("h", [0.0, -1e-5, float("nan"), "1e-5"])
def test_numerical_gradient_step_must_be_a_positive_number(h):
    with pytest.raises((TypeError, ValueError), match="h must be"):
        fcn.eval_numerical_gradient(lambda a: np.sum(a), np.ones(2), verbose=False, h=h)
