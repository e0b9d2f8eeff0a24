"""Dropout, batch normalization and layer normalization (fcn/normalization.py) on every backend:
numeric gradients, CS231n's sanity checks, agreement with PyTorch (where installed), and clear
errors for bad parameters."""

import numpy as np
import pytest

import fcn
from fcn import (
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    eval_numerical_gradient_array,
    layernorm_backward,
    layernorm_forward,
    rel_error,
)


def _bn_inputs(rng, to_dev, n=6, d=5):
    x = rng.standard_normal((n, d)) * 4 + 3
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    return to_dev(x), to_dev(gamma), to_dev(beta), to_dev(rng.standard_normal((n, d)))


# -- numeric gradients (float64, every backend) ----------------------------------------------------------


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_alt])
def test_batchnorm_train_gradients_match_numeric(to_dev, rng, backward):
    x, gamma, beta, dout = _bn_inputs(rng, to_dev)
    fwd = lambda x, g, b: batchnorm_forward(x, g, b, {"mode": "train"})[0]
    dx_num = eval_numerical_gradient_array(lambda v: fwd(v, gamma, beta), x, dout)
    dg_num = eval_numerical_gradient_array(lambda v: fwd(x, v, beta), gamma, dout)
    db_num = eval_numerical_gradient_array(lambda v: fwd(x, gamma, v), beta, dout)
    dx, dgamma, dbeta = backward(dout, batchnorm_forward(x, gamma, beta, {"mode": "train"})[1])
    assert rel_error(dx_num, dx) < 1e-7
    assert rel_error(dg_num, dgamma) < 1e-7
    assert rel_error(db_num, dbeta) < 1e-7


@pytest.mark.parametrize("backward", [batchnorm_backward, batchnorm_backward_alt])
def test_batchnorm_test_mode_gradients_match_numeric(to_dev, rng, backward):
    x, gamma, beta, dout = _bn_inputs(rng, to_dev)
    param = {"mode": "test", "running_mean": to_dev(rng.standard_normal(5)), "running_var": to_dev(rng.random(5) + 0.5)}
    fwd = lambda x, g, b: batchnorm_forward(x, g, b, dict(param))[0]
    dx_num = eval_numerical_gradient_array(lambda v: fwd(v, gamma, beta), x, dout)
    dg_num = eval_numerical_gradient_array(lambda v: fwd(x, v, beta), gamma, dout)
    db_num = eval_numerical_gradient_array(lambda v: fwd(x, gamma, v), beta, dout)
    dx, dgamma, dbeta = backward(dout, batchnorm_forward(x, gamma, beta, dict(param))[1])
    assert rel_error(dx_num, dx) < 1e-7
    assert rel_error(dg_num, dgamma) < 1e-7
    assert rel_error(db_num, dbeta) < 1e-7


def test_batchnorm_backward_alt_equals_graph_version(to_dev, rng):
    x, gamma, beta, dout = _bn_inputs(rng, to_dev, n=50, d=7)
    cache = batchnorm_forward(x, gamma, beta, {"mode": "train"})[1]
    for a, b in zip(batchnorm_backward(dout, cache), batchnorm_backward_alt(dout, cache), strict=True):
        assert rel_error(a, b) < 1e-10


def test_layernorm_gradients_match_numeric(to_dev, rng):
    x, gamma, beta, dout = _bn_inputs(rng, to_dev, n=4, d=6)
    fwd = lambda x, g, b: layernorm_forward(x, g, b, {})[0]
    dx_num = eval_numerical_gradient_array(lambda v: fwd(v, gamma, beta), x, dout)
    dg_num = eval_numerical_gradient_array(lambda v: fwd(x, v, beta), gamma, dout)
    db_num = eval_numerical_gradient_array(lambda v: fwd(x, gamma, v), beta, dout)
    dx, dgamma, dbeta = layernorm_backward(dout, layernorm_forward(x, gamma, beta, {})[1])
    assert rel_error(dx_num, dx) < 1e-7
    assert rel_error(dg_num, dgamma) < 1e-7
    assert rel_error(db_num, dbeta) < 1e-7


@pytest.mark.parametrize("p", [0.3, 0.7, 1.0])
def test_dropout_gradient_matches_numeric(to_dev, rng, p):
    x, dout = to_dev(rng.standard_normal((10, 10)) + 10), to_dev(rng.standard_normal((10, 10)))
    param = {"mode": "train", "p": p, "seed": 123}
    dx_num = eval_numerical_gradient_array(lambda v: dropout_forward(v, param)[0], x, dout)
    dx = dropout_backward(dout, dropout_forward(x, param)[1])
    assert rel_error(dx_num, dx) < 1e-7


# -- CS231n's sanity checks ------------------------------------------------------------------------------


def test_batchnorm_train_output_is_standardised_then_scaled(to_dev, rng):
    n, d = 200, 3
    x = rng.standard_normal((n, 50)) @ rng.standard_normal((50, d)) * 4 + np.array([11.0, 12.0, 13.0])
    out, _ = batchnorm_forward(to_dev(x), to_dev(np.ones(d)), to_dev(np.zeros(d)), {"mode": "train"})
    out = fcn.to_host(out)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-5)  # eps = 1e-5 keeps it just below 1
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])
    out, _ = batchnorm_forward(to_dev(x), to_dev(gamma), to_dev(beta), {"mode": "train"})
    out = fcn.to_host(out)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=0), gamma, rtol=1e-5)


def test_batchnorm_running_statistics_converge_and_serve_test_mode(to_dev, rng):
    d = 3
    mean, scale = np.array([5.0, -2.0, 0.5]), np.array([3.0, 0.5, 1.0])
    gamma, beta = to_dev(np.ones(d)), to_dev(np.zeros(d))
    param = {"mode": "train"}
    for _ in range(100):
        batchnorm_forward(to_dev(rng.standard_normal((200, d)) * scale + mean), gamma, beta, param)
    assert np.all(np.abs(fcn.to_host(param["running_mean"]) - mean) < 0.1 * scale)
    np.testing.assert_allclose(fcn.to_host(param["running_var"]), scale**2, rtol=0.1)
    param["mode"] = "test"
    out, _ = batchnorm_forward(to_dev(rng.standard_normal((2000, d)) * scale + mean), gamma, beta, param)
    out = fcn.to_host(out)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=0.1)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=0.1)


@pytest.mark.parametrize("momentum", [0.8, 0.0, 1.0])
def test_batchnorm_running_update_follows_momentum(to_dev, rng, momentum):
    """Both ends of [0, 1] are allowed: 0 keeps only the last batch's statistics, 1 freezes the averages."""
    x = rng.standard_normal((8, 4)) * 2 + 1
    rm, rv = rng.standard_normal(4), rng.random(4) + 1
    param = {"mode": "train", "momentum": momentum, "running_mean": to_dev(rm), "running_var": to_dev(rv)}
    batchnorm_forward(to_dev(x), to_dev(np.ones(4)), to_dev(np.zeros(4)), param)
    expected_mean = momentum * rm + (1 - momentum) * x.mean(axis=0)
    expected_var = momentum * rv + (1 - momentum) * x.var(axis=0)
    np.testing.assert_allclose(fcn.to_host(param["running_mean"]), expected_mean, rtol=1e-12)
    np.testing.assert_allclose(fcn.to_host(param["running_var"]), expected_var, rtol=1e-12)


def test_batchnorm_test_mode_uses_running_statistics_and_leaves_them(to_dev, rng):
    x = rng.standard_normal((5, 4))
    rm, rv = rng.standard_normal(4), rng.random(4) + 0.5
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    param = {"mode": "test", "eps": 1e-3, "running_mean": to_dev(rm), "running_var": to_dev(rv)}
    out, _ = batchnorm_forward(to_dev(x), to_dev(gamma), to_dev(beta), param)
    np.testing.assert_allclose(fcn.to_host(out), (x - rm) / np.sqrt(rv + 1e-3) * gamma + beta, rtol=1e-12)
    np.testing.assert_array_equal(fcn.to_host(param["running_mean"]), rm)


def test_batchnorm_test_mode_without_running_statistics_starts_them_at_zero(to_dev, rng):
    """As in CS231n: absent running averages are zeros, and test mode stores them for the next call."""
    x, gamma, beta = rng.standard_normal((5, 4)), rng.standard_normal(4), rng.standard_normal(4)
    param = {"mode": "test", "eps": 1e-2}
    out, _ = batchnorm_forward(to_dev(x), to_dev(gamma), to_dev(beta), param)
    np.testing.assert_allclose(fcn.to_host(out), x / np.sqrt(1e-2) * gamma + beta, rtol=1e-12)
    assert sorted(param) == ["eps", "mode", "running_mean", "running_var"]
    for key in ("running_mean", "running_var"):
        np.testing.assert_array_equal(fcn.to_host(param[key]), np.zeros(4))


def test_layernorm_standardises_each_sample(to_dev, rng):
    x = rng.standard_normal((4, 60)) * np.array([[1.0], [5.0], [0.1], [20.0]]) + np.array([[0.0], [3.0], [-7], [100]])
    out, _ = layernorm_forward(to_dev(x), to_dev(np.ones(60)), to_dev(np.zeros(60)), {"mode": "train"})
    out = fcn.to_host(out)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-3)


def test_dropout_test_mode_is_identity(to_dev, rng):
    x = to_dev(rng.standard_normal((20, 30)))
    out, cache = dropout_forward(x, {"p": 0.3, "mode": "test"})
    assert rel_error(out, x) == 0.0
    dout = to_dev(rng.standard_normal((20, 30)))
    assert rel_error(dropout_backward(dout, cache), dout) == 0.0


@pytest.mark.parametrize("p", [0.25, 0.4, 0.7, 0.99])
def test_dropout_train_mode_keeps_the_expectation(to_dev, rng, p):
    x = rng.standard_normal((500, 500)) + 10
    out, _ = dropout_forward(to_dev(x), {"p": p, "mode": "train", "seed": 7})
    out = fcn.to_host(out)
    kept = out != 0
    assert abs(kept.mean() - p) < 0.01  # 250 000 draws: the standard error is below 0.001
    np.testing.assert_allclose(out[kept], x[kept] / p, rtol=1e-12)
    assert abs(out.mean() - x.mean()) < 0.02 * x.mean()


def test_dropout_keep_one_is_identity_in_training(to_dev, rng):
    x = to_dev(rng.standard_normal((4, 5)))
    out, cache = dropout_forward(x, {"p": 1.0, "mode": "train"})
    assert rel_error(out, x) == 0.0 and cache[1] is None


def test_dropout_seed_gives_the_same_mask_on_every_backend(backend, to_dev, rng):
    x = rng.standard_normal((64, 33))
    param = {"p": 0.6, "mode": "train", "seed": 42}
    ref, _ = dropout_forward(x, param)
    out, _ = dropout_forward(to_dev(x), param)
    again, _ = dropout_forward(to_dev(x), param)
    assert fcn.namespace_of(out).name == backend.name
    np.testing.assert_array_equal(fcn.to_host(out), ref)
    np.testing.assert_array_equal(fcn.to_host(again), ref)


def test_dropout_seed_gives_the_documented_mask(to_dev):
    """A unit is kept where its float32 uniform from default_rng(seed) is below p: the same mask on every backend."""
    out, _ = dropout_forward(to_dev(np.ones((3, 8))), {"p": 0.5, "mode": "train", "seed": 0})
    kept = np.random.default_rng(0).random((3, 8), dtype=np.float32) < 0.5
    np.testing.assert_array_equal(fcn.to_host(out), 2.0 * kept)


def test_dropout_rng_gives_fresh_masks_and_repeats_from_its_seed(to_dev):
    x = to_dev(np.ones((32, 32)))
    draw = lambda gen: [fcn.to_host(dropout_forward(x, {"p": 0.5, "mode": "train", "rng": gen})[0]) for _ in range(2)]
    first, second = draw(np.random.default_rng(3))
    assert not np.array_equal(first, second)
    again = draw(np.random.default_rng(3))
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)


@pytest.mark.parametrize("which", ["dropout", "batchnorm", "layernorm"])
def test_float32_stays_float32(xp, to_dev, rng, which):
    x = to_dev(rng.standard_normal((6, 4)).astype(np.float32))
    g, b = to_dev(np.ones(4, np.float32)), to_dev(np.zeros(4, np.float32))
    dout = to_dev(rng.standard_normal((6, 4)).astype(np.float32))
    if which == "dropout":
        out, cache = dropout_forward(x, {"p": 0.5, "mode": "train", "seed": 0})
        grads = (dropout_backward(dout, cache),)
    elif which == "batchnorm":
        param = {"mode": "train"}
        out, cache = batchnorm_forward(x, g, b, param)
        grads = (*batchnorm_backward(dout, cache), *batchnorm_backward_alt(dout, cache), param["running_var"])
    else:
        out, cache = layernorm_forward(x, g, b, {})
        grads = layernorm_backward(dout, cache)
    assert out.dtype == xp.float32 and all(a.dtype == xp.float32 for a in grads)


# -- against PyTorch (optional) --------------------------------------------------------------------------


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (optional: used as a reference here)")


def _t(torch, a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def test_batchnorm_matches_torch(torch, to_dev, rng):
    n, d = 16, 7
    x, gamma, beta, dout = rng.standard_normal((n, d)) * 3 + 2, rng.standard_normal(d), rng.standard_normal(d), None
    dout = rng.standard_normal((n, d))
    rm, rv = rng.standard_normal(d), rng.random(d) + 0.5
    xt, gt, bt = _t(torch, x, True), _t(torch, gamma, True), _t(torch, beta, True)
    rmt, rvt = _t(torch, rm), _t(torch, rv)
    # PyTorch's momentum is the weight of the new batch: 1 - ours
    ot = torch.nn.functional.batch_norm(xt, rmt, rvt, gt, bt, training=True, momentum=0.1, eps=1e-5)
    ot.backward(_t(torch, dout))
    param = {"mode": "train", "momentum": 0.9, "eps": 1e-5, "running_mean": to_dev(rm), "running_var": to_dev(rv)}
    out, cache = batchnorm_forward(to_dev(x), to_dev(gamma), to_dev(beta), param)
    np.testing.assert_allclose(fcn.to_host(out), ot.detach().numpy(), rtol=0, atol=1e-10)
    for backward in (batchnorm_backward, batchnorm_backward_alt):
        dx, dgamma, dbeta = backward(to_dev(dout), cache)
        np.testing.assert_allclose(fcn.to_host(dx), xt.grad.numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(fcn.to_host(dgamma), gt.grad.numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(fcn.to_host(dbeta), bt.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(fcn.to_host(param["running_mean"]), rmt.numpy(), rtol=0, atol=1e-10)
    # running variances differ by convention: PyTorch keeps the unbiased one, CS231n (and fcn) the biased one
    torch_batch_var = (rvt.numpy() - 0.9 * rv) / 0.1 * (n - 1) / n
    np.testing.assert_allclose(fcn.to_host(param["running_var"]), 0.9 * rv + 0.1 * torch_batch_var, atol=1e-10)

    # test mode: the running statistics, no update
    xt2 = _t(torch, x, True)
    ot = torch.nn.functional.batch_norm(xt2, _t(torch, rm), _t(torch, rv), _t(torch, gamma), _t(torch, beta))
    ot.backward(_t(torch, dout))
    param = {"mode": "test", "running_mean": to_dev(rm), "running_var": to_dev(rv)}
    out, cache = batchnorm_forward(to_dev(x), to_dev(gamma), to_dev(beta), param)
    np.testing.assert_allclose(fcn.to_host(out), ot.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(fcn.to_host(batchnorm_backward(to_dev(dout), cache)[0]), xt2.grad.numpy(), atol=1e-10)


def test_layernorm_matches_torch(torch, to_dev, rng):
    n, d = 9, 11
    x, gamma, beta = rng.standard_normal((n, d)) * 3 + 2, rng.standard_normal(d), rng.standard_normal(d)
    dout = rng.standard_normal((n, d))
    xt, gt, bt = _t(torch, x, True), _t(torch, gamma, True), _t(torch, beta, True)
    ot = torch.nn.functional.layer_norm(xt, (d,), gt, bt, eps=1e-5)
    ot.backward(_t(torch, dout))
    out, cache = layernorm_forward(to_dev(x), to_dev(gamma), to_dev(beta), {"eps": 1e-5})
    dx, dgamma, dbeta = layernorm_backward(to_dev(dout), cache)
    np.testing.assert_allclose(fcn.to_host(out), ot.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(fcn.to_host(dx), xt.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(fcn.to_host(dgamma), gt.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(fcn.to_host(dbeta), bt.grad.numpy(), rtol=0, atol=1e-10)


def test_dropout_with_the_same_mask_matches_torch(torch, to_dev, rng):
    """PyTorch's dropout draws its own mask, so its kernel is fed ours: ``native_dropout_backward(g, mask, 1/p)``
    is what ``torch.nn.functional.dropout`` computes, forward (on x) and backward (on dout), for a given mask."""
    p = 0.7
    x, dout = rng.standard_normal((20, 30)), rng.standard_normal((20, 30))
    out, cache = dropout_forward(to_dev(x), {"p": p, "mode": "train", "seed": 5})
    dx = dropout_backward(to_dev(dout), cache)
    kept = torch.tensor(fcn.to_host(out) != 0)
    # F.dropout's drop probability is 1 - p; with its own mask, the kept entries are x / p
    masked = lambda g: torch.ops.aten.native_dropout_backward(_t(torch, g), kept, 1.0 / p).numpy()
    np.testing.assert_allclose(fcn.to_host(out), masked(x), rtol=0, atol=1e-10)
    np.testing.assert_allclose(fcn.to_host(dx), masked(dout), rtol=0, atol=1e-10)
    theirs = torch.nn.functional.dropout(_t(torch, x), p=1 - p, training=True).numpy()
    np.testing.assert_allclose(theirs[theirs != 0], x[theirs != 0] / p, rtol=1e-12)


# -- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0, 0.0, -0.5, 1.5, True, "0.5", None, float("nan")])
def test_dropout_keep_probability_outside_0_1_is_refused(to_dev, p):
    with pytest.raises(ValueError, match=r"dropout_param\['p'\].*\(0, 1\]"):
        dropout_forward(to_dev(np.ones((2, 3))), {"p": p, "mode": "train"})


@pytest.mark.parametrize("mode", ["eval", "TRAIN", None])
def test_unknown_mode_is_refused(to_dev, mode):
    x, g, b = to_dev(np.ones((2, 3))), to_dev(np.ones(3)), to_dev(np.zeros(3))
    with pytest.raises(ValueError, match=r"dropout_param\['mode'\]"):
        dropout_forward(x, {"p": 0.5, "mode": mode})
    with pytest.raises(ValueError, match=r"bn_param\['mode'\]"):
        batchnorm_forward(x, g, b, {"mode": mode})


def test_dropout_refuses_a_non_float_input_in_training(to_dev):
    with pytest.raises(TypeError, match="dropout_forward: x must be a real floating array, got dtype .*int64"):
        dropout_forward(to_dev(np.ones((2, 3), np.int64)), {"p": 0.5, "mode": "train"})


def test_dropout_rng_must_be_a_generator(to_dev):
    with pytest.raises(TypeError, match=r"dropout_param\['rng'\].*Generator"):
        dropout_forward(to_dev(np.ones((2, 3))), {"p": 0.5, "mode": "train", "rng": 3})


@pytest.mark.parametrize("forward", [batchnorm_forward, layernorm_forward])
def test_wrong_gamma_or_beta_shape_is_refused(to_dev, forward):
    """Each message starts with the function's name: in a whole network, it says which layer refused."""
    x, where = to_dev(np.ones((4, 3))), forward.__name__
    with pytest.raises(ValueError, match=rf"^{where}: gamma must have shape \(D,\) = \(3,\).*got \(4,\)"):
        forward(x, to_dev(np.ones(4)), to_dev(np.zeros(3)), {"mode": "train"})
    with pytest.raises(ValueError, match=rf"^{where}: beta must have shape \(D,\) = \(3,\).*got \(3, 1\)"):
        forward(x, to_dev(np.ones(3)), to_dev(np.zeros((3, 1))), {"mode": "train"})
    with pytest.raises(ValueError, match=rf"^{where}: x must have shape \(N, D\)"):
        forward(to_dev(np.ones((4, 3, 1))), to_dev(np.ones(3)), to_dev(np.zeros(3)), {"mode": "train"})
    with pytest.raises(TypeError, match=rf"^{where}: .*share one dtype"):
        forward(x, to_dev(np.ones(3, np.float32)), to_dev(np.zeros(3)), {"mode": "train"})


@pytest.mark.parametrize("forward", [batchnorm_forward, layernorm_forward])
@pytest.mark.parametrize("odd", [np.float32, np.int64])
def test_x_must_have_the_float_dtype_of_gamma_and_beta(to_dev, forward, odd):
    """A float32 batch with float64 parameters would be promoted silently: slow, and not what was asked for."""
    x, g, b = to_dev(np.ones((4, 3), odd)), to_dev(np.ones(3)), to_dev(np.zeros(3))
    with pytest.raises(TypeError, match=rf"^{forward.__name__}: .*x: "):
        forward(x, g, b, {"mode": "train"})


def _second_backend():
    """array-api-strict's device1: a second backend on the CPU, which refuses to mix with NumPy as CuPy does."""
    strict = pytest.importorskip("array_api_strict")
    return fcn.get_backend("array_api_strict", strict.Device("device1"))


def _forward_args(rng):
    x, gamma, beta = rng.standard_normal((6, 4)), rng.standard_normal(4), rng.standard_normal(4)
    return {"x": x, "gamma": gamma, "beta": beta, "running_mean": np.zeros(4), "running_var": np.ones(4)}


@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize(
    ("forward", "foreign"),
    [(batchnorm_forward, name) for name in ("x", "gamma", "beta", "running_mean", "running_var")]
    + [(layernorm_forward, name) for name in ("x", "gamma", "beta")],
)
def test_forward_refuses_arrays_from_two_backends(rng, forward, foreign, mode):
    args = _forward_args(rng)
    args[foreign] = _second_backend().asarray(args[foreign])
    param = {"mode": mode, "running_mean": args.pop("running_mean"), "running_var": args.pop("running_var")}
    with pytest.raises(fcn.BackendError, match="different libraries"):
        forward(args["x"], args["gamma"], args["beta"], param)


@pytest.mark.parametrize(
    ("forward", "backward", "param"),
    [
        (batchnorm_forward, batchnorm_backward, {"mode": "train"}),
        (batchnorm_forward, batchnorm_backward, {"mode": "test"}),
        (batchnorm_forward, batchnorm_backward_alt, {"mode": "train"}),
        (batchnorm_forward, batchnorm_backward_alt, {"mode": "test"}),
        (layernorm_forward, layernorm_backward, {}),
        (None, dropout_backward, {"mode": "train", "p": 0.5, "seed": 0}),
    ],
)
def test_backward_refuses_an_upstream_gradient_from_another_backend(rng, forward, backward, param):
    args = _forward_args(rng)
    if forward is None:
        _, cache = dropout_forward(args["x"], param)
    else:
        _, cache = forward(args["x"], args["gamma"], args["beta"], param)
    dout = _second_backend().asarray(rng.standard_normal((6, 4)))
    with pytest.raises(fcn.BackendError, match="different libraries"):
        backward(dout, cache)


def test_bad_batchnorm_parameters_are_refused(to_dev):
    x, g, b = to_dev(np.ones((4, 3))), to_dev(np.ones(3)), to_dev(np.zeros(3))
    with pytest.raises(ValueError, match=r"bn_param\['running_mean'\] must have shape"):
        batchnorm_forward(x, g, b, {"mode": "test", "running_mean": to_dev(np.zeros(2))})
    with pytest.raises(ValueError, match=r"bn_param\['eps'\] must be > 0"):
        batchnorm_forward(x, g, b, {"mode": "train", "eps": 0})
    with pytest.raises(ValueError, match=r"bn_param\['momentum'\] must be in \[0, 1\]"):
        batchnorm_forward(x, g, b, {"mode": "train", "momentum": 1.5})
    with pytest.raises(ValueError, match=r"ln_param\['eps'\] must be a finite real"):
        layernorm_forward(x, g, b, {"eps": "small"})
    with pytest.raises(ValueError, match=r"ln_param\['eps'\] must be > 0, got -0.1"):
        layernorm_forward(x, g, b, {"eps": -0.1})
