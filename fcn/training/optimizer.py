"""The optimiser of a training run: an update rule, its hyperparameters, and its state arrays.

A built-in rule (:data:`fcn.optim.RULES`) updates all parameters in one call of the backend's kernel table
(``ops.update_all``: one launch on a fused backend), with one shared set of hyperparameters (:attr:`config`)
and per-parameter state arrays (:attr:`state`, zeros on the first step). A user's callable
``(w, dw, config) -> (w, config)`` gets its own copy of the configuration per parameter (:attr:`configs`), as
in the chapter; its arrays are saved as state and everything else (numbers, strings) as hyperparameters.

The optimiser saves and restores its own part of a checkpoint (:meth:`state_dict`, :meth:`prepare_load`,
:meth:`load`): everything is checked before anything is assigned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy

from ..backend import Backend, to_backend
from ..optim import RULES, UPDATE_RULES, RuleSpec, UpdateRule, get_update_rule
from ..validation import check_float, check_int

__all__ = ["Optimizer", "OptimizerStateError", "is_state_array", "json_number"]


class OptimizerStateError(ValueError):
    """Saved optimiser state that does not fit the parameters or the update rule (the message says how)."""


def is_state_array(value: Any) -> bool:
    """Whether an optimiser config entry is state (an array of any backend) rather than a hyperparameter."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, numpy.generic)


def json_number(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (anything else as it is): for JSON."""
    return value.item() if isinstance(value, numpy.generic) else value


class Optimizer:
    """``rule`` (a name of :data:`fcn.optim.RULES` or a callable) with the hyperparameters ``optim_config``.

    Unknown keys of a built-in rule's ``optim_config`` are an error naming the valid ones.
    """

    def __init__(self, rule: str | UpdateRule, optim_config: Mapping[str, Any] | None, backend: Backend):
        self.rule = get_update_rule(rule)
        builtin = {fn: name for name, fn in UPDATE_RULES.items()}.get(self.rule)
        #: the rule's name as saved in checkpoints ("" for an anonymous callable)
        self.name: str = builtin or str(getattr(rule, "__name__", ""))
        #: the built-in rule's spec (applied to all parameters at once), or None for a user's callable
        self.spec: RuleSpec | None = RULES[builtin] if builtin else None
        self.initial_config = (
            self.spec.hyperparameters(dict(optim_config or {})) if self.spec else dict(optim_config or {})
        )
        self.backend = backend
        self.reset([])

    def reset(self, param_names: list[str]) -> None:
        """Fresh state: the initial hyperparameters, no state arrays yet."""
        self.config: dict[str, Any] = dict(self.initial_config)
        self.state: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = (
            {} if self.spec else {name: dict(self.initial_config) for name in param_names}
        )

    @property
    def base_learning_rate(self) -> float | None:
        """The learning rate a schedule scales (``None``: the rule has none)."""
        return self.initial_config.get("learning_rate")

    @property
    def learning_rate(self) -> float:
        """The current learning rate (of the first parameter's config, for a user's rule)."""
        config = self.config if self.spec else next(iter(self.configs.values()), {})
        return float(config.get("learning_rate", float("nan")))

    def set_learning_rate(self, lr: float) -> None:
        for config in [self.config] if self.spec else self.configs.values():
            config["learning_rate"] = lr

    @property
    def plain_sgd_rate(self) -> float | None:
        """The learning rate when the rule is the built-in plain SGD (a step a model may fold into its
        backward pass, :meth:`fcn.models.FullyConnectedNet.loss_and_sgd`), else ``None``."""
        return float(self.config["learning_rate"]) if self.spec is not None and self.spec.kernel == "sgd" else None

    def step(self, params: dict[str, Any], grads: Mapping[str, Any]) -> None:
        """Apply the rule to every parameter, in place (a user's rule may hand back a new array)."""
        if self.spec is None:  # a user's rule: (w, dw, config) -> (w, config), per parameter
            for name, w in params.items():
                next_w, self.configs[name] = self.rule(w, grads[name], self.configs[name])
                if next_w is not w:
                    dict.__setitem__(params, name, next_w)  # the rule's own array: trusted, no checks
            return
        spec, names, xp = self.spec, list(params), self.backend.xp
        if len(self.state) != len(names):
            for name in names:
                self.state.setdefault(name, {k: xp.zeros_like(params[name]) for k in spec.state})
        if "t" in self.config:
            self.config["t"] = int(self.config["t"]) + 1
        self.backend.ops.update_all(
            spec.kernel,
            [params[n] for n in names],
            [grads[n] for n in names],
            [tuple(self.state[n][k] for k in spec.state) for n in names],
            self.config,
        )

    # -- checkpoints ----------------------------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, dict[str, dict[str, Any]]]:
        """``(arrays per parameter, the shared config or None, JSON hyperparameters per parameter)``."""
        if self.spec is not None:
            return self.state, self.config, {}
        arrays: dict[str, dict[str, Any]] = {}
        hyper: dict[str, dict[str, Any]] = {}
        for name, config in self.configs.items():
            arrays[name] = {k: v for k, v in config.items() if is_state_array(v)}
            hyper[name] = {k: json_number(v) for k, v in config.items() if not is_state_array(v)}
        return arrays, None, hyper

    def settings(self) -> dict[str, Any]:
        """The rule's hyperparameters as given (JSON numbers and strings), compared on resume."""
        return {k: json_number(v) for k, v in self.initial_config.items() if not is_state_array(v)}

    def prepare_load(
        self,
        meta: Mapping[str, Any],
        saved_state: Mapping[str, Mapping[str, numpy.ndarray]],
        params: Mapping[str, Any],
        *,
        loose: bool,
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Check a checkpoint's optimiser part; return ``(config, state, configs)`` for :meth:`load`, or raise
        :class:`OptimizerStateError` saying what does not fit.

        ``loose`` (a run with other settings, ``strict=False``): this optimiser's hyperparameters apply (the
        schedule then sets the rate of the saved step); what the rule keeps for itself (its state arrays, Adam's
        step count, what a user's rule added to its config) continues only for the same rule.
        """
        unknown = sorted(set(saved_state) - set(params))
        if unknown:
            raise OptimizerStateError(f"optimiser state for unknown parameter {unknown[0]!r}")
        same_rule = meta.get("update_rule", self.name) == self.name
        if self.spec is not None and same_rule:
            self._check_state(saved_state, params, started=meta.get("iteration", 0) > 0)
        state: dict[str, dict[str, Any]] = {name: {} for name in params}
        for name, arrays in saved_state.items() if same_rule else ():
            for key, value in arrays.items():
                state[name][key] = to_backend(value, self.backend, dtype=params[name].dtype)
        if self.spec is None:
            hyper = (meta.get("optim_hyper") or {}) if same_rule else {}
            return dict(self.initial_config), {}, self._user_configs(hyper, state, loose)
        kept = {name: s for name, s in state.items() if s}
        if loose:
            config = dict(self.initial_config)
            saved_config = meta.get("optim_config") or {}
            if same_rule and "t" in saved_config:
                config["t"] = check_int("t", saved_config["t"], minimum=0)
            return config, kept, {}
        return self._saved_config(meta), kept, {}

    def _user_configs(
        self, hyper: Mapping[str, Mapping[str, Any]], state: dict[str, dict[str, Any]], loose: bool
    ) -> dict[str, dict[str, Any]]:
        """A user's rule's config per parameter: the saved one, or (``loose``) this optimiser's hyperparameters
        with what the rule added to its config itself."""
        if loose:
            return {
                name: {**self.initial_config, **{k: v for k, v in hyper.get(name, {}).items()
                                                 if k not in self.initial_config}, **arrays}
                for name, arrays in state.items()
            }  # fmt: skip
        missing = [name for name in state if name not in hyper]
        if missing:
            raise OptimizerStateError(f"no saved configuration of the update rule for parameter {missing[0]!r}")
        return {name: {**hyper[name], **arrays} for name, arrays in state.items()}

    def _saved_config(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """A built-in rule's saved hyperparameters, checked."""
        assert self.spec is not None
        saved = meta.get("optim_config")
        if saved is None:  # the first format kept one copy of the (shared) config per parameter
            saved = next(iter((meta.get("optim_hyper") or {}).values()), None)
        if saved is None:
            raise OptimizerStateError(f"no saved hyperparameters of update rule {self.name}")
        saved = dict(saved)
        # the saved rate is the schedule's (0 at the end of a cosine run): checked as a rate, not as a base rate
        rate = saved.pop("learning_rate", None)
        try:
            config = self.spec.hyperparameters(saved)
            if rate is not None:
                config["learning_rate"] = check_float("learning_rate", rate, nonnegative=True)
        except (TypeError, ValueError) as exc:
            raise OptimizerStateError(f"corrupt optim_config ({exc})") from None
        return config

    def _check_state(
        self, saved: Mapping[str, Mapping[str, numpy.ndarray]], params: Mapping[str, Any], *, started: bool
    ) -> None:
        """A built-in rule's saved state: its arrays for every parameter, each of the parameter's shape (or no
        state at all before the first step, when the rule has not made any yet)."""
        assert self.spec is not None
        expected = set(self.spec.state)
        if not expected or not (saved or started):
            return
        for name, param in params.items():
            arrays = saved.get(name, {})
            if set(arrays) != expected:
                raise OptimizerStateError(
                    f"optimiser state {sorted(arrays)} for parameter {name!r}, but {self.name} keeps {sorted(expected)}"
                )
            for key, value in arrays.items():
                if tuple(value.shape) != tuple(param.shape):
                    raise OptimizerStateError(
                        f"optimiser state {name}/{key} of shape {tuple(value.shape)}, "
                        f"but parameter {name} has shape {tuple(param.shape)}"
                    )

    def load(self, prepared: tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]) -> None:
        """Assign what :meth:`prepare_load` checked."""
        self.config, self.state, self.configs = prepared
