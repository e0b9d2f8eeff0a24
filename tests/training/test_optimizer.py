"""Update rules as the Solver applies them (fcn/training/optimizer.py): all parameters at once, equal to the
chapter's per-parameter functions, their documented defaults, AdamW, the user's own rules and their learning rate."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from helpers import (
    RecordingSoftmax,
    heavy_ball,
    host_copy,
    id_data,
    image_data,
    quiet,
    recipe_net,
    recipe_solver,
    separable,
    small_net_solver,
)

import fcn
from fcn import Solver
from fcn.training.optimizer import Optimizer, OptimizerStateError


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam", "adamw"])
def test_builtin_rules_in_the_solver_equal_the_chapters_functions(backend, rule):
    """The Solver applies a built-in rule to all parameters at once; the same training must come out as with the
    chapter's per-parameter function (passed as the user's own callable), decay and all."""
    fn = fcn.optim.UPDATE_RULES[rule]
    config = {"learning_rate": 2e-2}
    fused = small_net_solver(backend, separable(80, 6), update_rule=rule, optim_config=config, num_epochs=2)
    per_param = small_net_solver(
        backend, separable(80, 6), update_rule=lambda w, dw, c: fn(w, dw, c), optim_config=config, num_epochs=2
    )
    fused.train()
    per_param.train()
    np.testing.assert_allclose(fused.loss_history, per_param.loss_history, rtol=1e-12)
    assert fused.learning_rate == pytest.approx(per_param.learning_rate, rel=1e-15)
    for name, value in per_param.model.params.items():
        np.testing.assert_allclose(fcn.to_host(fused.model.params[name]), fcn.to_host(value), rtol=1e-11, atol=1e-13)


def test_builtin_rules_use_their_documented_defaults():
    """Leaving out a hyperparameter means its documented default, not zero or anything else."""
    data = separable(80, 6)
    for rule, defaults in [
        ("sgd_momentum", {"learning_rate": 1e-2, "momentum": 0.9}),
        ("rmsprop", {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}),
        ("adam", {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}),
    ]:
        implicit = small_net_solver("numpy", data, update_rule=rule, optim_config={}, num_iters=5)
        explicit = small_net_solver("numpy", data, update_rule=rule, optim_config=defaults, num_iters=5)
        implicit.train()
        explicit.train()
        np.testing.assert_array_equal(implicit.loss_history, explicit.loss_history, err_msg=rule)
        assert implicit.learning_rate == defaults["learning_rate"] * 0.9**0  # no epoch end within 5 steps


def test_adamw_first_step_by_hand():
    """One full-batch step: decoupled decay ``w *= 1 - lr * wd``, then Adam's bias-corrected step."""
    data = image_data()
    net = recipe_net(dropout_keep_ratio=1.0, normalization=None)
    solver = recipe_solver(net, data, augment=None, clip_grad_norm=None, warmup_epochs=0, lr_schedule="step",
                         batch_size=len(data["X_train"]))  # fmt: skip
    before = host_copy(net.params)
    _, grads = net.loss(data["X_train"], data["y_train"])  # the batch is all of it (in another order)
    solver.step()
    lr, wd = 1e-2, 1e-2
    for name, w in before.items():
        g = fcn.to_host(grads[name])
        m, v = 0.1 * g, 0.001 * g**2
        expected = w * (1 - lr * wd) - lr * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
        np.testing.assert_allclose(fcn.to_host(net.params[name]), expected, rtol=1e-9, atol=1e-12, err_msg=name)


def test_adamw_without_weight_decay_is_adam_and_with_it_differs():
    data = separable(80, 6)
    adam = small_net_solver("numpy", data, update_rule="adam")
    adamw0 = small_net_solver(
        "numpy", data, update_rule="adamw", optim_config={"learning_rate": 1e-2, "weight_decay": 0}
    )
    adamw = small_net_solver(
        "numpy", data, update_rule="adamw", optim_config={"learning_rate": 1e-2, "weight_decay": 0.5}
    )
    for s in (adam, adamw0, adamw):
        s.train()
    np.testing.assert_array_equal(adamw0.loss_history, adam.loss_history)
    assert adamw.loss_history[1:] != adam.loss_history[1:]


def test_a_users_rule_without_momentum_state_differs_from_one_with_it():
    data = separable(80, 6)
    with_mu = small_net_solver("numpy", data, update_rule=heavy_ball, optim_config={"mu": 0.8})
    without = small_net_solver("numpy", data, update_rule=heavy_ball, optim_config={"mu": 0.0})
    with_mu.train()
    without.train()
    assert with_mu.loss_history[2:] != without.loss_history[2:]


def test_learning_rate_of_a_rule_without_one_is_nan():
    def rule(w, dw, config=None):
        return w - 1e-3 * dw, {} if config is None else config

    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(update_rule=rule, optim_config={}))
    assert np.isnan(solver.learning_rate)


def test_a_users_rule_without_learning_rate_survives_the_epoch_end():
    def rule(w, dw, config=None):
        return w - 1e-3 * dw, {} if config is None else config

    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(update_rule=rule, optim_config={}, batch_size=10))
    solver.train()  # no learning rate to schedule: the rule's config is left as the user gave it
    assert math.isnan(solver.learning_rate)
    assert all("learning_rate" not in config for config in solver.optim_configs.values())


def test_a_builtin_rule_keeps_one_shared_config_and_a_users_rule_one_per_parameter():
    builtin = small_net_solver("numpy", separable(80, 6), num_iters=1)
    assert builtin.optim_configs == {} and builtin.optim_config["learning_rate"] == 1e-2
    users = small_net_solver("numpy", separable(80, 6), update_rule=heavy_ball, optim_config={"mu": 0.3})
    assert users.optim_configs == {name: {"mu": 0.3} for name in users.model.params}


@pytest.mark.parametrize(
    ("rate", "reason"),
    [
        (-0.05, "learning_rate must be >= 0, got -0.05"),
        ("0.05", "learning_rate must be a number, got '0.05' (str)"),
        (float("nan"), "learning_rate must be a finite number, got nan"),
    ],
)
def test_a_saved_learning_rate_that_is_not_a_rate_is_refused_naming_it(rate, reason):
    """A checkpoint's rate is the schedule's (0 is fine, at the end of a cosine run); anything else that is not a
    rate is refused before anything is loaded, in words that name the hyperparameter."""
    optimizer = Optimizer("sgd_momentum", {"learning_rate": 0.05}, fcn.get_backend("numpy"))
    meta = {"update_rule": "sgd_momentum", "iteration": 0, "optim_config": {"learning_rate": rate, "momentum": 0.9}}
    with pytest.raises(OptimizerStateError, match=rf"^corrupt optim_config \({re.escape(reason)}\)$"):
        optimizer.prepare_load(meta, {}, {"W1": np.zeros((3, 2))}, loose=False)
    meta["optim_config"]["learning_rate"] = 0
    assert optimizer.prepare_load(meta, {}, {"W1": np.zeros((3, 2))}, loose=False)[0]["learning_rate"] == 0.0
