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

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error"]


def _indices(shape: tuple[int, ...]):
    return itertools.product(*(range(d) for d in shape))


def eval_numerical_gradient(f: Callable[[Any], Any], x: Any, verbose: bool = True, h: float = 1e-5) -> Any:
    """Gradient of a scalar function ``f`` at ``x``: ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for each entry.

    Shapes: ``x`` any; the result is shaped like ``x`` on the same backend. ``x`` is restored afterwards.
    """
    xp = namespace_of(x).xp
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

    Shapes: ``x`` any, ``df`` like ``f(x)``; the result is shaped like ``x``. ``x`` is restored afterwards.
    """
    xp = namespace_of(x, df).xp
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
