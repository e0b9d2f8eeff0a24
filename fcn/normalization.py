"""Dropout, batch normalization and layer normalization: forward/backward pairs written once against ``xp``.

The functions keep CS231n's names and contracts (``out, cache = <layer>_forward(...)``,
``<layer>_backward(dout, cache)``), so the course's notebooks run unchanged, and they run on every backend:
the namespace is inferred from the arguments (:func:`fcn.backend.namespace_of`).

Dropout masks are drawn on the host from a seeded :class:`numpy.random.Generator` and moved to the device
as booleans (one byte per entry). On NumPy the host *is* the device, so this costs nothing extra; on every
other backend it makes one seed give the same masks, hence the same run, as on NumPy, which is what lets the
tests compare backends bit for bit. Measured on the CIFAR-10 shapes of a 3072-1024-512-256-10 net at batch
256 (2-core CPU, NumPy 2.4.6): drawing its three masks takes 0.85 ms per step, about 2% of the 45 ms the whole
training step takes there.
(On a GPU the draw and the copy would weigh more against a faster step; not measured yet.)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy

from .backend import namespace_of
from .validation import check_same_float_dtype

__all__ = [
    "dropout_forward",
    "dropout_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "layernorm_forward",
    "layernorm_backward",
]

_MODES = ("train", "test")


# -- argument checks -------------------------------------------------------------------------------------


def _mode(param: dict[str, Any], name: str, default: str | None = None) -> str:
    mode = param.get("mode", default)
    if mode is None:
        raise ValueError(f"{name}['mode'] is required: 'train' or 'test'")
    if mode not in _MODES:
        raise ValueError(f"{name}['mode'] must be 'train' or 'test', got {mode!r}")
    return mode


def _real(param: dict[str, Any], name: str, key: str, default: float) -> float:
    value = param.get(key, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name}[{key!r}] must be a finite real number, got {value!r}")
    return float(value)


def keep_probability(value: Any, name: str = "dropout_param['p']") -> float:
    """``value`` as a keep probability in ``(0, 1]``, else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{name} is the probability of keeping a unit and must be in (0, 1], got {value!r}")
    return float(value)


def _check_2d(x: Any, where: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{where}: x must have shape (N, D), got {tuple(x.shape)}")


def _check_vector(v: Any, name: str, d: int, where: str) -> None:
    if tuple(v.shape) != (d,):
        raise ValueError(f"{where}: {name} must have shape (D,) = ({d},) to match x, got {tuple(v.shape)}")


# -- dropout ---------------------------------------------------------------------------------------------


def dropout_forward(x: Any, dropout_param: dict[str, Any]) -> tuple[Any, tuple]:
    """Inverted dropout: in training, keep each unit with probability ``p`` and scale the kept ones by ``1/p``.

    Shapes: ``x`` any, ``out`` like ``x``.

    ``dropout_param``:
        - ``p``: probability of *keeping* a unit, in ``(0, 1]`` (the newer CS231n convention; PyTorch's
          ``p`` is the drop probability ``1 - p``).
        - ``mode``: ``"train"`` (drop) or ``"test"`` (identity: the scaling in training keeps the
          expectation, so nothing needs rescaling at test time).
        - ``seed`` (optional): the mask is then a function of the seed alone (the same on every call and on
          every backend): for gradient checks.
        - ``rng`` (optional): a :class:`numpy.random.Generator` to draw from instead; a training loop passes
          one so that successive masks differ while the whole run repeats from its seed.

    The mask is drawn on the host: a unit is kept where its float32 uniform, ``rng.random(x.shape,
    dtype=numpy.float32)`` (with ``rng = numpy.random.default_rng(seed)`` when no ``rng`` is given), is below ``p``.

    Returns ``(out, cache)`` with ``cache = (dropout_param, mask)``; ``mask`` is the scaled mask (``0`` or
    ``1/p``, like ``x``, on its device), ``None`` in test mode or when ``p == 1``.
    """
    keep = keep_probability(dropout_param.get("p"))
    mode = _mode(dropout_param, "dropout_param")
    if mode == "test" or keep == 1.0:
        return x, (dropout_param, None)
    be = namespace_of(x)
    xp = be.xp
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"dropout_forward: x must be a real floating array, got dtype {x.dtype}")
    rng = dropout_param.get("rng")
    if rng is None:
        rng = numpy.random.default_rng(dropout_param.get("seed"))
    elif not isinstance(rng, numpy.random.Generator):
        raise TypeError(f"dropout_param['rng'] must be a numpy.random.Generator, got {type(rng).__name__}")
    # float32 uniforms: half the cost of float64 ones, and 2**-24 resolution is plenty for a probability
    keep_host = rng.random(tuple(x.shape), dtype=numpy.float32) < keep
    out, mask = be.ops.dropout(x, keep_host, keep)
    return out, (dropout_param, mask)


def dropout_backward(dout: Any, cache: tuple) -> Any:
    """Backward pass of :func:`dropout_forward`: ``dx = dout * mask`` in training, ``dout`` in test mode.

    Shapes: ``dout`` like ``x``; ``dx`` like ``x``.
    """
    _, mask = cache
    if mask is None:
        return dout
    return namespace_of(dout, mask).ops.dropout_backward(dout, mask)


# -- batch normalization ---------------------------------------------------------------------------------


def _running_averages(bn_param: dict[str, Any], x: Any, d: int, where: str) -> dict[str, Any]:
    """``bn_param``'s running mean and variance ``(D,)``, checked against ``x``; zeros where absent."""
    be = namespace_of(x)
    running = {}
    for key in ("running_mean", "running_var"):
        value = bn_param.get(key)
        if value is None:
            value = be.xp.zeros((d,), dtype=x.dtype, device=be.device)
        else:
            namespace_of(x, value)
            _check_vector(value, f"bn_param[{key!r}]", d, where)
        running[key] = value
    return running


def batchnorm_forward(x: Any, gamma: Any, beta: Any, bn_param: dict[str, Any]) -> tuple[Any, tuple]:
    """Batch normalization (Ioffe & Szegedy, 2015): normalise each feature over the batch, then scale and shift.

    Shapes: ``x (N, D)``, ``gamma (D,)``, ``beta (D,)``, ``out (N, D)``.

    In ``"train"`` mode each feature is normalised with the batch mean and (biased) variance, and running
    averages are updated in ``bn_param``::

        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var  = momentum * running_var  + (1 - momentum) * sample_var

    In ``"test"`` mode the running averages are used instead.

    ``bn_param``:
        - ``mode``: ``"train"`` or ``"test"`` (required).
        - ``eps``: added to the variance (default ``1e-5``).
        - ``momentum``: of the running averages (default ``0.9``; PyTorch's ``momentum`` is ``1 - this``,
          and PyTorch keeps the unbiased variance).
        - ``running_mean``, ``running_var``: ``(D,)`` arrays on x's device; created as zeros when absent
          (as in CS231n), and replaced by the updated arrays in training.

    Returns ``(out, cache)``; the cache serves both :func:`batchnorm_backward` and
    :func:`batchnorm_backward_alt`.
    """
    be = namespace_of(x, gamma, beta)
    xp = be.xp
    where = "batchnorm_forward"
    check_same_float_dtype(xp, where, x=x, gamma=gamma, beta=beta)
    _check_2d(x, where)
    d = x.shape[1]
    _check_vector(gamma, "gamma", d, where)
    _check_vector(beta, "beta", d, where)
    mode = _mode(bn_param, "bn_param")
    eps = _real(bn_param, "bn_param", "eps", 1e-5)
    momentum = _real(bn_param, "bn_param", "momentum", 0.9)
    if eps <= 0:
        raise ValueError(f"bn_param['eps'] must be > 0, got {eps!r}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"bn_param['momentum'] must be in [0, 1], got {momentum!r}")
    running = _running_averages(bn_param, x, d, where)
    ops = be.ops
    if mode == "train":
        out, (xhat, std), mu, var = ops.batchnorm_train(x, gamma, beta, eps)
        # new arrays, as in CS231n: the caller's running averages are not changed behind its back
        bn_param["running_mean"] = momentum * running["running_mean"] + (1.0 - momentum) * mu
        bn_param["running_var"] = momentum * running["running_var"] + (1.0 - momentum) * var
    else:
        out, (xhat, std) = ops.batchnorm_eval(x, gamma, beta, running["running_mean"], running["running_var"], eps)
        bn_param.setdefault("running_mean", running["running_mean"])
        bn_param.setdefault("running_var", running["running_var"])
    # the backward passes rebuild x - mean as xhat * std: one (N, D) array kept instead of two
    return out, (xhat, gamma, std, mode == "train")


def batchnorm_backward(dout: Any, cache: tuple) -> tuple[Any, Any, Any]:
    """Backward pass of :func:`batchnorm_forward`, step by step through its computational graph.

    The graph (train mode): ``mu = mean(x)``, ``xc = x - mu``, ``var = mean(xc**2)``,
    ``std = sqrt(var + eps)``, ``xhat = xc / std``, ``out = gamma * xhat + beta``. In test mode the
    statistics are constants, so ``dx = dout * gamma / std``.

    Shapes: ``dout (N, D)`` -> ``dx (N, D)``, ``dgamma (D,)``, ``dbeta (D,)``.
    """
    xhat, gamma, std, train = cache
    xp = namespace_of(dout, xhat).xp
    dgamma = xp.sum(dout * xhat, axis=0)  # out = gamma * xhat + beta
    dbeta = xp.sum(dout, axis=0)
    dxhat = dout * gamma
    if not train:
        return dxhat / std, dgamma, dbeta
    n = dout.shape[0]
    xc = xhat * std
    dxc = dxhat / std  # through xhat = xc / std, with std held fixed ...
    dstd = -xp.sum(dxhat * xc, axis=0) / (std * std)  # ... and through std
    dvar = dstd / (2.0 * std)  # std = sqrt(var + eps)
    dxc += (2.0 / n) * xc * dvar  # var = mean(xc**2)
    dmu = -xp.sum(dxc, axis=0)  # xc = x - mu
    dx = dxc
    dx += dmu / n  # mu = mean(x)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout: Any, cache: tuple) -> tuple[Any, Any, Any]:
    """Backward pass of :func:`batchnorm_forward` in closed form (same cache, same results, fewer passes).

    With ``g = dout * gamma``: ``dx = (g - mean(g) - xhat * mean(g * xhat)) / std`` (means over the batch).

    Shapes: ``dout (N, D)`` -> ``dx (N, D)``, ``dgamma (D,)``, ``dbeta (D,)``.
    """
    xhat, gamma, std, train = cache
    return namespace_of(dout, xhat).ops.norm_backward(dout, xhat, gamma, std, 0 if train else None)


# -- layer normalization ---------------------------------------------------------------------------------


def layernorm_forward(x: Any, gamma: Any, beta: Any, ln_param: dict[str, Any]) -> tuple[Any, tuple]:
    """Layer normalization (Ba et al., 2016): normalise each sample over its features, then scale and shift.

    Shapes: ``x (N, D)``, ``gamma (D,)``, ``beta (D,)``, ``out (N, D)``.

    The statistics are per sample, so training and test behave the same and nothing is kept between
    calls. ``ln_param``: ``eps`` (default ``1e-5``); a ``mode`` entry, if present, is ignored.
    """
    be = namespace_of(x, gamma, beta)
    xp = be.xp
    where = "layernorm_forward"
    check_same_float_dtype(xp, where, x=x, gamma=gamma, beta=beta)
    _check_2d(x, where)
    d = x.shape[1]
    _check_vector(gamma, "gamma", d, where)
    _check_vector(beta, "beta", d, where)
    eps = _real(ln_param, "ln_param", "eps", 1e-5)
    if eps <= 0:
        raise ValueError(f"ln_param['eps'] must be > 0, got {eps!r}")
    out, (xhat, std) = be.ops.layernorm(x, gamma, beta, eps)
    return out, (xhat, gamma, std)


def layernorm_backward(dout: Any, cache: tuple) -> tuple[Any, Any, Any]:
    """Backward pass of :func:`layernorm_forward`.

    With ``g = dout * gamma``: ``dx = (g - mean(g) - xhat * mean(g * xhat)) / std``, means over the
    features of each sample.

    Shapes: ``dout (N, D)`` -> ``dx (N, D)``, ``dgamma (D,)``, ``dbeta (D,)``.
    """
    xhat, gamma, std = cache
    return namespace_of(dout, xhat).ops.norm_backward(dout, xhat, gamma, std, 1)
