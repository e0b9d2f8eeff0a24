"""Numeric gradients by centred differences, and the relative error used to compare gradients.

These work on arrays of any backend. They perturb ``x`` in place one entry at a time (so a closure over
a model's parameter sees the change) and read one value back per entry: slow by design, meant for small
arrays in tests and teaching, never in training.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from array_api_compat import is_array_api_obj

from .backend import BackendError, namespace_of, to_host
from .validation import check_float

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error"]


def _indices(shape: tuple[int, ...]):
    return itertools.product(*(range(d) for d in shape))


def _check_point(x: Any, h: Any) -> tuple[Any, float]:
    """The namespace of ``x`` and the step ``h``, after checking both.

    ``x`` is perturbed in place by ``h``, so it must be a floating-point array: an integer array would
    store ``x + 1e-5`` as ``x`` and the differences would be garbage.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x must be an array (it is perturbed in place), got {type(x).__name__}")
    xp = namespace_of(x).xp
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(
            f"x must be a floating-point array (it is perturbed in place by h), got dtype {x.dtype}; "
            "pass x.astype(float) or an array of the model's dtype"
        )
    return xp, check_float("h", h, positive=True)


def eval_numerical_gradient(f: Callable[[Any], Any], x: Any, verbose: bool = True, h: float = 1e-5) -> Any:
    """Gradient of a scalar function ``f`` at ``x``: ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for each entry.

    Shapes: ``x`` any, a real floating array; the result is shaped like ``x`` on the same backend. ``x`` is
    restored afterwards. ``h`` is a positive step.
    """
    xp, h = _check_point(x, h)
    grad = xp.zeros_like(x)
    for ix in _indices(tuple(x.shape)):
        old = float(x[ix])  # a copy: on CuPy x[ix] is a view that the next line would change
        x[ix] = old + h
        f_plus = float(f(x))
        x[ix] = old - h
        f_minus = float(f(x))
        x[ix] = old
        grad[ix] = (f_plus - f_minus) / (2 * h)
        if verbose:
            print(ix, float(grad[ix]))
    return grad


def eval_numerical_gradient_array(f: Callable[[Any], Any], x: Any, df: Any, h: float = 1e-5) -> Any:
    """Numeric gradient of ``sum(f(x) * df)`` for an array-valued ``f``: backprop of upstream gradient ``df``.

    Shapes: ``x`` any (a real floating array), ``df`` like ``f(x)``; the result is shaped like ``x``. ``x`` is
    restored afterwards. ``h`` is a positive step.
    """
    _check_point(x, h)
    xp = namespace_of(x, df).xp
    h = float(h)
    grad = xp.zeros_like(x)
    for ix in _indices(tuple(x.shape)):
        old = float(x[ix])
        x[ix] = old + h
        plus = xp.asarray(f(x), copy=True)  # copy: f may hand back a buffer it reuses
        x[ix] = old - h
        minus = xp.asarray(f(x), copy=True)
        x[ix] = old
        grad[ix] = xp.sum((plus - minus) * df) / (2 * h)
    return grad


def rel_error(x: Any, y: Any) -> float:
    """Largest elementwise relative error ``|x - y| / max(1e-8, |x| + |y|)``, as a Python float.

    ``x`` and ``y`` may come from different backends (e.g. CuPy gradients against a NumPy oracle); then
    both are copied to the host first.
    """
    try:
        if not (is_array_api_obj(x) and is_array_api_obj(y)):
            raise BackendError("plain numbers or lists")
        xp = namespace_of(x, y).xp
    except BackendError:
        x, y = to_host(x), to_host(y)
        xp = namespace_of(x, y).xp
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(f"rel_error: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    diff = xp.abs(x - y)
    return float(xp.max(diff / xp.maximum(xp.abs(x) + xp.abs(y), 1e-8)))
