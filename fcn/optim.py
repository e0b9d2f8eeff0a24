"""First-order update rules, written once against the array namespace of the weights.

Each rule is ``(w, dw, config) -> (next_w, config)``. ``config`` holds the hyperparameters (Python
numbers) and the rule's state (arrays on the weights' device, created on first use). Updates happen in
place: the training loop owns the parameter arrays, and nothing else holds on to them between steps.

The formulas are the standard ones (as in CS231n's ``optim.py``):
- ``sgd``: ``w -= lr * dw``
- ``sgd_momentum``: ``v = mu * v - lr * dw; w += v``
- ``rmsprop``: ``c = rho * c + (1 - rho) * dw**2; w -= lr * dw / (sqrt(c) + eps)``
- ``adam``: bias-corrected first and second moments (Kingma & Ba, 2015).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backend import namespace_of

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam", "UPDATE_RULES", "get_update_rule"]

Config = dict[str, Any]


def _defaults(config: Config | None, **defaults: Any) -> Config:
    config = {} if config is None else config
    for key, value in defaults.items():
        config.setdefault(key, value)
    return config


def sgd(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """Vanilla stochastic gradient descent. Config: ``learning_rate`` (1e-2)."""
    config = _defaults(config, learning_rate=1e-2)
    w -= config["learning_rate"] * dw
    return w, config


def sgd_momentum(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """SGD with momentum. Config: ``learning_rate`` (1e-2), ``momentum`` (0.9); state ``velocity``."""
    config = _defaults(config, learning_rate=1e-2, momentum=0.9)
    if "velocity" not in config:
        config["velocity"] = namespace_of(w).xp.zeros_like(w)
    v = config["velocity"]
    v *= config["momentum"]
    v -= config["learning_rate"] * dw
    w += v
    return w, config


def rmsprop(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """RMSProp. Config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8); state ``cache``."""
    config = _defaults(config, learning_rate=1e-2, decay_rate=0.99, epsilon=1e-8)
    xp = namespace_of(w, dw).xp
    if "cache" not in config:
        config["cache"] = xp.zeros_like(w)
    cache, rho = config["cache"], config["decay_rate"]
    cache *= rho
    cache += (1 - rho) * (dw * dw)
    w -= config["learning_rate"] * dw / (xp.sqrt(cache) + config["epsilon"])
    return w, config


def adam(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """Adam. Config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon`` (1e-8);
    state ``m``, ``v`` (arrays) and ``t`` (step count, a Python int: no device read needed)."""
    config = _defaults(config, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, t=0)
    xp = namespace_of(w, dw).xp
    if "m" not in config:
        config["m"], config["v"] = xp.zeros_like(w), xp.zeros_like(w)
    m, v, b1, b2 = config["m"], config["v"], config["beta1"], config["beta2"]
    config["t"] = t = int(config["t"]) + 1
    m *= b1
    m += (1 - b1) * dw
    v *= b2
    v += (1 - b2) * (dw * dw)
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    w -= config["learning_rate"] * m_hat / (xp.sqrt(v_hat) + config["epsilon"])
    return w, config


UpdateRule = Callable[[Any, Any, Config | None], tuple[Any, Config]]

UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
}

#: Config entries that are optimiser state (arrays), as opposed to hyperparameters.
STATE_KEYS = ("velocity", "cache", "m", "v")


def get_update_rule(rule: str | UpdateRule) -> UpdateRule:
    """Look an update rule up by name (or pass a callable through)."""
    if callable(rule):
        return rule
    try:
        return UPDATE_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown update rule {rule!r}; choose one of {', '.join(UPDATE_RULES)}") from None
