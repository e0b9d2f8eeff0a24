"""Numeric gradients and ``rel_error`` (fcn/gradient_check.py): known values, buffers reused by the function,
mixed backends, and arguments they cannot honour."""

from __future__ import annotations

import numpy as np
import pytest

import fcn
from fcn import rel_error

# -- numeric gradients ----------------------------------------------------------------------------------------------


def test_numerical_gradient_of_a_float_array_is_right(to_dev):
    x = to_dev(np.array([1.0, 2.0, 3.0]))
    xp = fcn.namespace_of(x).xp
    grad = fcn.eval_numerical_gradient(lambda a: xp.sum(a**2), x, verbose=False)
    np.testing.assert_allclose(fcn.to_host(grad), [2.0, 4.0, 6.0], rtol=1e-8)


def test_eval_numerical_gradient_prints_each_entry_by_default(capsys):
    x = np.asarray([[1.0, 2.0], [3.0, -1.0]])
    grad = fcn.eval_numerical_gradient(lambda a: float(np.sum(a**2)), x)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-7)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    index, value = lines[3].rsplit(" ", 1)
    assert index == "(1, 1)" and float(value) == pytest.approx(-2.0, rel=1e-7)
    fcn.eval_numerical_gradient(lambda a: float(np.sum(a**2)), x, verbose=False)
    assert capsys.readouterr().out == ""


def test_eval_numerical_gradient_array_copes_with_a_function_that_reuses_its_output_buffer():
    buffer = np.empty(3)

    def f(a):  # returns the same array every call, overwritten: the check must copy what it reads
        np.multiply(a, a, out=buffer)
        return buffer

    x, df = np.asarray([1.0, -2.0, 0.5]), np.asarray([1.0, 1.0, 2.0])
    grad = fcn.eval_numerical_gradient_array(f, x, df)
    np.testing.assert_allclose(grad, 2 * x * df, rtol=1e-7)
    np.testing.assert_array_equal(x, [1.0, -2.0, 0.5])  # restored


def test_eval_numerical_gradient_array_of_a_function_returning_its_input():
    """f(x) = x hands back x itself, which the check perturbs and restores: what it read must be a copy."""
    x, df = np.asarray([[1.0, -2.0], [0.5, 3.0]]), np.asarray([[1.0, 2.0], [-1.0, 0.25]])
    np.testing.assert_allclose(fcn.eval_numerical_gradient_array(lambda a: a, x, df), df, rtol=1e-7)


def test_eval_numerical_gradient_array_refuses_mixed_backends():
    strict = pytest.importorskip("array_api_strict")
    on_device = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    with pytest.raises(fcn.BackendError):
        fcn.eval_numerical_gradient_array(lambda a: a, np.asarray([1.0, 2.0]), on_device)
    with pytest.raises(fcn.BackendError):
        fcn.eval_numerical_gradient_array(lambda a: a, on_device, np.asarray([1.0, 2.0]))


def test_numerical_gradient_of_an_integer_array_is_refused():
    # sum(x**2) has gradient 2x = [2, 4, 6]; an integer x cannot hold x + 1e-5, so the answer would be garbage
    x = np.array([1, 2, 3])
    with pytest.raises(
        TypeError,
        match=r"^x must be a floating-point array \(it is perturbed in place by h\), got dtype int64; "
        r"pass x\.astype\(float\) or an array of the model's dtype$",
    ):
        fcn.eval_numerical_gradient(lambda a: np.sum(a**2), x, verbose=False)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        fcn.eval_numerical_gradient_array(lambda a: a * 2, x, np.ones(3))
    np.testing.assert_array_equal(x, [1, 2, 3])


@pytest.mark.parametrize(
    ("x", "kind"),
    [([1.0, 2.0], "list"), (memoryview(bytearray(16)).cast("d"), "memoryview")],
    ids=["list", "shape-without-dtype"],
)
def test_numerical_gradient_of_something_not_an_array_is_refused_by_its_type(x, kind):
    """A list cannot be perturbed in place; a memoryview has a shape but no dtype: neither is an array."""
    for check in (
        lambda: fcn.eval_numerical_gradient(lambda a: 0.0, x, verbose=False),
        lambda: fcn.eval_numerical_gradient_array(lambda a: a, x, np.ones(2)),
    ):
        with pytest.raises(TypeError, match=rf"^x must be an array \(it is perturbed in place\), got {kind}$"):
            check()


@pytest.mark.parametrize("h", [0.0, -1e-5, float("nan"), "1e-5"])
def test_numerical_gradient_step_must_be_a_positive_number(h):
    with pytest.raises((TypeError, ValueError), match="h must be"):
        fcn.eval_numerical_gradient(lambda a: np.sum(a), np.ones(2), verbose=False, h=h)


# -- rel_error ------------------------------------------------------------------------------------------------------


def test_rel_error_known_values():
    # |x - y| / (|x| + |y|), largest entry
    assert rel_error(np.asarray([1.0]), np.asarray([3.0])) == pytest.approx(0.5)
    assert rel_error(np.asarray([[1.0, 2.0], [1.0, 3.0]]), np.asarray([[1.0, 2.0], [3.0, 1.0]])) == pytest.approx(0.5)
    assert rel_error(np.asarray([1.0, -1.0]), np.asarray([1.0, 1.0])) == pytest.approx(1.0)
    assert rel_error(np.asarray([10.0, 100.0]), np.asarray([11.0, 100.0])) == pytest.approx(1 / 21)
    assert isinstance(rel_error(np.ones(2), np.ones(2)), float)


def test_rel_error_is_symmetric(rng):
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    assert rel_error(a, b) == rel_error(b, a)
    expected = np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-8))
    assert rel_error(a, b) == pytest.approx(expected, rel=1e-12)


def test_rel_error_of_equal_arrays_and_of_zeros_is_zero():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.full(3, 7.5), np.full(3, 7.5)) == 0.0


def test_rel_error_near_zero_divides_by_the_floor():
    # |x| + |y| below 1e-8: the denominator is 1e-8, not the tiny sum
    assert rel_error(np.asarray([0.0]), np.asarray([1e-10])) == pytest.approx(1e-2)
    assert rel_error(np.asarray([1e-9]), np.asarray([-1e-9])) == pytest.approx(0.2)


def test_rel_error_on_plain_numbers_and_lists():
    assert rel_error(1.0, 3.0) == pytest.approx(0.5)
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0, 2.0], np.asarray([1.0, 6.0])) == pytest.approx(0.5)


def test_rel_error_on_each_backend(backend):
    x, y = np.asarray([[1.0, 2.0], [3.0, 4.0]]), np.asarray([[1.0, 2.0], [1.0, 4.0]])
    assert rel_error(backend.asarray(x), backend.asarray(y)) == pytest.approx(0.5)
    # device arrays against a NumPy oracle: copied to the host, same answer, either way round
    assert rel_error(backend.asarray(x), y) == pytest.approx(0.5)
    assert rel_error(x, backend.asarray(y)) == pytest.approx(0.5)


def test_rel_error_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"shapes differ: \(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))
