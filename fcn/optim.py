"""First-order update rules, written once against the array namespace of the weights.

Each rule is ``(w, dw, config) -> (next_w, config)`` (the chapter's form). ``config`` holds the
hyperparameters (Python numbers) and the rule's state (arrays on the weights' device, created on first use).
Updates happen in place, through the backend's kernel table (:mod:`fcn.ops`): the training loop owns the
parameter arrays, and nothing else holds on to them between steps.

Hyperparameters and state are told apart by type, not by a list of names: arrays are state, everything
else (numbers, strings) is a hyperparameter. So a rule written by a user, with state of its own, is
checkpointed and resumed like a built-in one.

The formulas are the standard ones (as in CS231n's ``optim.py``):
- ``sgd``: ``w -= lr * dw``
- ``sgd_momentum``: ``v = mu * v - lr * dw; w += v``
- ``rmsprop``: ``c = rho * c + (1 - rho) * dw**2; w -= lr * dw / (sqrt(c) + eps)``
- ``adam``: bias-corrected first and second moments (Kingma & Ba, 2015).
- ``adamw``: Adam with decoupled weight decay (Loshchilov & Hutter, 2019).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backend import namespace_of
from .validation import check_float, check_int

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam", "adamw", "UPDATE_RULES", "RuleSpec", "get_update_rule"]

Config = dict[str, Any]


@dataclass(frozen=True)
class RuleSpec:
    """A built-in update rule: its name, its kernel, its hyperparameters' defaults, its state arrays.

    ``kernel`` names the update method of the kernel table (:class:`fcn.ops.Ops`: ``sgd``, ``sgd_momentum``,
    ``rmsprop``, ``adam``), which takes the state arrays in the order of ``state``, then the hyperparameters as
    keywords; the fused CUDA version of that kernel has the same name (:mod:`fcn.ops.cuda`). The training loop
    applies a built-in rule to all parameters at once through ``ops.update_all`` (one launch on a fused
    backend), with one shared set of hyperparameters and per-parameter state arrays.
    """

    name: str
    kernel: str
    defaults: dict[str, Any] = field(default_factory=dict)
    #: names of the state arrays kept per parameter (zeros at the start), in the kernel's argument order
    state: tuple[str, ...] = ()

    def hyperparameters(self, config: Config | None) -> Config:
        """``config`` completed with the defaults; unknown keys are an error naming the valid ones."""
        config = dict(config or {})
        unknown = sorted(set(config) - set(self.defaults) - set(self.state))
        if unknown:
            raise ValueError(
                f"unknown optim_config key(s) {', '.join(map(repr, unknown))} for update rule {self.name!r}; "
                f"valid keys: {', '.join(self.defaults)}"
            )
        merged = {**self.defaults, **config}
        for key, value in merged.items():
            if key in _CHECKS:
                merged[key] = _CHECKS[key](key, value)
        return merged


def _rate(name: str, value: Any) -> float:
    """A factor in [0, 1): momentum, decay rates, Adam's betas."""
    value = check_float(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value:g}")
    return value


#: How each built-in hyperparameter is checked (a negative learning rate would climb the loss, and so on).
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "learning_rate": lambda n, v: check_float(n, v, positive=True),
    "momentum": _rate,
    "decay_rate": _rate,
    "beta1": _rate,
    "beta2": _rate,
    "epsilon": lambda n, v: check_float(n, v, positive=True),
    "weight_decay": lambda n, v: check_float(n, v, nonnegative=True),
    "t": lambda n, v: check_int(n, v, minimum=0),
}

_ADAM = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 0}

#: The built-in rules by name (the Solver looks ``update_rule="..."`` up here).
RULES: dict[str, RuleSpec] = {
    "sgd": RuleSpec("sgd", "sgd", {"learning_rate": 1e-2}),
    "sgd_momentum": RuleSpec("sgd_momentum", "sgd_momentum", {"learning_rate": 1e-2, "momentum": 0.9}, ("velocity",)),
    "rmsprop": RuleSpec("rmsprop", "rmsprop", {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}, ("cache",)),
    "adam": RuleSpec("adam", "adam", dict(_ADAM), ("m", "v")),
    "adamw": RuleSpec("adamw", "adam", {**_ADAM, "weight_decay": 1e-2}, ("m", "v")),
}


def _apply(spec: RuleSpec, w: Any, dw: Any, config: Config | None) -> tuple[Any, Config]:
    """The chapter's functional form of a built-in rule: state arrays live in ``config`` under their names."""
    config = spec.hyperparameters(config)
    ops = namespace_of(w, dw).ops
    for name in spec.state:
        if name not in config:
            config[name] = ops.xp.zeros_like(w)
    hyper = {k: v for k, v in config.items() if k in spec.defaults}
    if "t" in hyper:
        config["t"] = hyper["t"] = int(hyper["t"]) + 1
    getattr(ops, spec.kernel)(w, dw, *(config[name] for name in spec.state), **hyper)
    return w, config


def sgd(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """Vanilla stochastic gradient descent. Config: ``learning_rate`` (1e-2)."""
    return _apply(RULES["sgd"], w, dw, config)


def sgd_momentum(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """SGD with momentum. Config: ``learning_rate`` (1e-2), ``momentum`` (0.9); state ``velocity``."""
    return _apply(RULES["sgd_momentum"], w, dw, config)


def rmsprop(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """RMSProp. Config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8); state ``cache``."""
    return _apply(RULES["rmsprop"], w, dw, config)


def adam(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """Adam. Config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon`` (1e-8);
    state ``m``, ``v`` (arrays) and ``t`` (step count, a Python int: no device read needed)."""
    return _apply(RULES["adam"], w, dw, config)


def adamw(w: Any, dw: Any, config: Config | None = None) -> tuple[Any, Config]:
    """AdamW: Adam with decoupled weight decay ``w -= learning_rate * weight_decay * w`` (Loshchilov & Hutter).

    Config: as :func:`adam` plus ``weight_decay`` (1e-2)."""
    return _apply(RULES["adamw"], w, dw, config)


UpdateRule = Callable[[Any, Any, Config | None], tuple[Any, Config]]

UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
    "adamw": adamw,
}


def get_update_rule(rule: str | UpdateRule) -> UpdateRule:
    """Look an update rule up by name (or pass a callable ``(w, dw, config) -> (w, config)`` through)."""
    if callable(rule):
        return rule
    try:
        return UPDATE_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown update rule {rule!r}; choose one of {', '.join(UPDATE_RULES)}") from None
