"""Update rules against NumPy reference steps written out independently, on every backend."""

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
