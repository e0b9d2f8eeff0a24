"""The update rules (fcn/optim.py) against NumPy reference steps written out independently, on every backend."""

import numpy as np
import pytest

import fcn
from fcn.optim import get_update_rule


def reference_step(rule, w, dw, state, t, lr):
    """Textbook formulas in NumPy float64; ``state`` holds the rule's arrays from the previous step."""
    if rule == "sgd":
        return w - lr * dw, {}
    if rule == "sgd_momentum":
        v = 0.9 * state.get("v", np.zeros_like(w)) - lr * dw
        return w + v, {"v": v}
    if rule == "rmsprop":
        c = 0.99 * state.get("c", np.zeros_like(w)) + 0.01 * dw**2
        return w - lr * dw / (np.sqrt(c) + 1e-8), {"c": c}
    m = 0.9 * state.get("m", np.zeros_like(w)) + 0.1 * dw
    v = 0.999 * state.get("v", np.zeros_like(w)) + 0.001 * dw**2
    m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
    return w - lr * m_hat / (np.sqrt(v_hat) + 1e-8), {"m": m, "v": v}


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_rule_matches_reference(backend, rng, rule):
    w = rng.standard_normal((4, 5))
    grads = [rng.standard_normal((4, 5)) for _ in range(3)]
    w_dev, config = backend.asarray(w), {"learning_rate": 1e-2}
    ref, state = w.copy(), {}
    update = get_update_rule(rule)
    for t, dw in enumerate(grads, start=1):
        w_dev, config = update(w_dev, backend.asarray(dw), config)
        ref, state = reference_step(rule, ref, dw, state, t, 1e-2)
        np.testing.assert_allclose(fcn.to_host(w_dev), ref, rtol=1e-12, atol=1e-14)
    assert fcn.namespace_of(w_dev).name == backend.name
    for key in ("velocity", "cache", "m", "v"):
        if key in config:  # optimiser state lives on the weights' device
            assert fcn.namespace_of(config[key]).name == backend.name


def test_unknown_rule_lists_the_choices():
    with pytest.raises(ValueError, match="unknown update rule 'sgdd'.*adam"):
        get_update_rule("sgdd")


def test_adamw_decays_the_weights_before_the_adam_step():
    w = np.full((2, 3), 2.0)
    next_w, config = fcn.adamw(w, np.zeros((2, 3)), {"learning_rate": 0.1, "weight_decay": 0.5})
    # zero gradient: the Adam step is zero, only the decoupled decay w *= 1 - lr * wd acts
    np.testing.assert_allclose(next_w, np.full((2, 3), 2.0 * (1 - 0.1 * 0.5)), rtol=1e-12)
    assert config["t"] == 1


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam", "adamw"])
def test_update_rules_refuse_a_gradient_from_another_backend(rule):
    strict = pytest.importorskip("array_api_strict")
    fn = fcn.optim.UPDATE_RULES[rule]
    on_dev = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    with pytest.raises(fcn.BackendError):
        fn(np.ones(2), on_dev, None)
    with pytest.raises(fcn.BackendError):
        fn(strict.asarray([1.0, 2.0], device=strict.Device("device1")), np.ones(2), None)


def test_update_rule_errors_in_full():
    with pytest.raises(
        ValueError, match=r"^unknown update rule 'sgdd'; choose one of sgd, sgd_momentum, rmsprop, adam, adamw$"
    ):
        fcn.optim.get_update_rule("sgdd")
    with pytest.raises(
        ValueError,
        match=r"^unknown optim_config key\(s\) 'lr', 'mu' for update rule 'sgd_momentum'; "
        r"valid keys: learning_rate, momentum$",
    ):
        fcn.optim.sgd_momentum(np.zeros(2), np.zeros(2), {"lr": 0.1, "mu": 0.9})


@pytest.mark.parametrize(
    ("rule", "key"),
    [("sgd_momentum", "momentum"), ("rmsprop", "decay_rate"), ("adam", "beta1"), ("adam", "beta2"), ("adamw", "beta2")],
)
def test_rates_may_be_zero_but_not_one(rule, key):
    """0 forgets the past at each step (momentum 0 is plain SGD); 1 never forgets the start, and Adam's bias
    correction 1 - beta**t would divide by zero."""
    fn = fcn.optim.UPDATE_RULES[rule]
    with pytest.raises(ValueError, match=rf"^{key} must be in \[0, 1\), got 1$"):
        fn(np.ones(2), np.ones(2), {key: 1.0})
    w, config = fn(np.ones(2), np.full(2, 0.5), {key: 0.0})
    assert config[key] == 0.0 and np.all(np.isfinite(w)) and np.all(w < 1.0)
