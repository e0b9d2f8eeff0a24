"""Behaviour of the building blocks: input validation, ``rel_error``, sandwich layers, backend moves.

Only public functions are used (``fcn.*``, ``fcn.backend``, ``fcn.validation``), and every expected value
comes from a formula written here, never from the code under test. Each test was seen to fail with the
corresponding mistake injected (see docs/contributing-mutation.md).
"""

from __future__ import annotations

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, affine_relu_backward, affine_relu_forward, rel_error, softmax_loss
from fcn.backend import resolve_dtype, to_backend, to_host
from fcn.validation import check_features, check_labels, trusted_inputs, value_checks_enabled

XP = fcn.get_backend().xp  # NumPy through array-api-compat

# -- validation: one-sample batches are checked like larger ones ----------------------------------------------


def test_nan_in_a_one_sample_batch_is_refused(backend):
    net = FullyConnectedNet(4, [3], 2, seed=0, backend=backend)
    X = np.asarray([[0.0, np.nan, 1.0, 2.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.loss(X)
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.loss(X, np.asarray([0]))


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinity_in_a_one_sample_batch_is_refused(bad):
    net = FullyConnectedNet(4, [3], 2, seed=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.loss(np.asarray([[0.0, 1.0, bad, 2.0]]))


@pytest.mark.parametrize("label", [2, -1, 7])
def test_a_one_sample_label_out_of_range_is_refused(backend, label):
    net = FullyConnectedNet(4, [3], 2, seed=0, backend=backend)
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        net.loss(np.ones((1, 4)), np.asarray([label]))
    scores = backend.asarray(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        softmax_loss(scores, backend.asarray(np.asarray([label])))


@pytest.mark.parametrize("label", [0, 1])
def test_one_sample_labels_at_both_ends_of_the_range_are_accepted(label):
    net = FullyConnectedNet(4, [3], 2, seed=0)
    loss, _ = net.loss(np.ones((1, 4)), np.asarray([label]))
    assert np.isfinite(float(loss))


def test_label_range_is_checked_at_both_ends_in_larger_batches():
    scores = np.zeros((4, 3))
    with pytest.raises(ValueError, match="min -1, max 2"):
        softmax_loss(scores, np.asarray([0, 2, -1, 1]))
    with pytest.raises(ValueError, match="min 0, max 3"):
        softmax_loss(scores, np.asarray([0, 3, 1, 1]))
    loss, _ = softmax_loss(scores, np.asarray([0, 2, 2, 1]))
    assert float(loss) == pytest.approx(np.log(3))


def test_an_empty_batch_has_no_labels_to_check():
    check_labels(fcn.get_backend().xp, np.zeros(0, dtype=np.int64), 0, 3)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_finite_data_whose_sum_overflows_is_accepted(backend):
    """float32 values near the top of the range: finite each, but their sum overflows to inf."""
    big = np.full((3, 4), 3.0e38, dtype=np.float32)
    assert np.isinf(big.sum(dtype=np.float32))  # the premise
    X = backend.asarray(big)
    check_features(backend.xp, X, 4)  # no error
    net = FullyConnectedNet(4, [3], 2, seed=0, backend=backend, dtype="float32")
    data = {"X_train": big, "y_train": np.asarray([0, 1, 0]), "X_val": big, "y_val": np.asarray([1, 1, 0])}
    fcn.Solver(net, data, verbose=False, progress=False, batch_size=3)  # validated without error


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_nan_hidden_among_overflowing_values_is_still_found(backend):
    big = np.full((3, 4), 3.0e38, dtype=np.float32)
    big[2, 3] = np.nan
    with pytest.raises(ValueError, match="^X contains NaN"):
        check_features(backend.xp, backend.asarray(big), 4)
    big[2, 3] = np.inf
    with pytest.raises(ValueError, match="^X contains NaN"):
        check_features(backend.xp, backend.asarray(big), 4)


def test_integer_features_need_no_finiteness_check():
    check_features(XP, np.asarray([[1, 2], [3, 4]]), 2)


def test_check_features_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"^X must have shape \(N, d_1, ..., d_k\), got shape \(4,\)"):
        check_features(XP, np.zeros(4))
    with pytest.raises(ValueError, match="6 features per sample .* model expects 5"):
        check_features(XP, np.zeros((2, 2, 3)), 5)
    check_features(XP, np.zeros((2, 2, 3)), 6)
    with pytest.raises(TypeError, match="real numbers"):
        check_features(XP, np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="X_val contains NaN"):
        check_features(XP, np.full((2, 2), np.nan), where="X_val")


def test_check_labels_errors_name_the_problem():
    with pytest.raises(TypeError, match="integer class labels"):
        check_labels(XP, np.zeros(3), 3, 2)
    with pytest.raises(ValueError, match=r"shape \(4,\) to match the inputs, got \(3,\)"):
        check_labels(XP, np.zeros(3, dtype=np.int64), 4, 2)


def test_trusted_inputs_turns_value_checks_off_and_back_on():
    assert value_checks_enabled()
    X = np.asarray([[np.nan, 1.0]])
    with trusted_inputs():
        assert not value_checks_enabled()
        check_features(XP, X)  # skipped inside
        check_labels(XP, np.asarray([5]), 1, 2)
    assert value_checks_enabled()
    with pytest.raises(ValueError):
        check_features(XP, X)
    with pytest.raises(RuntimeError), trusted_inputs():
        raise RuntimeError("leaving the block by an exception re-enables the checks too")
    assert value_checks_enabled()


def test_shape_checks_stay_on_for_trusted_inputs():
    with trusted_inputs(), pytest.raises(ValueError, match="features per sample"):
        check_features(XP, np.zeros((2, 3)), 4)


# -- rel_error ------------------------------------------------------------------------------------------------


def test_rel_error_known_values():
    # |x - y| / (|x| + |y|), largest entry
    assert rel_error(np.asarray([1.0]), np.asarray([3.0])) == pytest.approx(0.5)
    assert rel_error(np.asarray([[1.0, 2.0], [1.0, 3.0]]), np.asarray([[1.0, 2.0], [3.0, 1.0]])) == pytest.approx(0.5)
    assert rel_error(np.asarray([1.0, -1.0]), np.asarray([1.0, 1.0])) == pytest.approx(1.0)
    assert rel_error(np.asarray([10.0, 100.0]), np.asarray([11.0, 100.0])) == pytest.approx(1 / 21)
    assert isinstance(rel_error(np.ones(2), np.ones(2)), float)


def test_rel_error_is_symmetric(rng):
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    assert rel_error(a, b) == rel_error(b, a)
    expected = np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-8))
    assert rel_error(a, b) == pytest.approx(expected, rel=1e-12)


def test_rel_error_of_equal_arrays_and_of_zeros_is_zero():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.full(3, 7.5), np.full(3, 7.5)) == 0.0


def test_rel_error_near_zero_divides_by_the_floor():
    # |x| + |y| below 1e-8: the denominator is 1e-8, not the tiny sum
    assert rel_error(np.asarray([0.0]), np.asarray([1e-10])) == pytest.approx(1e-2)
    assert rel_error(np.asarray([1e-9]), np.asarray([-1e-9])) == pytest.approx(0.2)


def test_rel_error_on_plain_numbers_and_lists():
    assert rel_error(1.0, 3.0) == pytest.approx(0.5)
    assert rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert rel_error([1.0, 2.0], np.asarray([1.0, 6.0])) == pytest.approx(0.5)


def test_rel_error_on_each_backend(backend):
    x, y = np.asarray([[1.0, 2.0], [3.0, 4.0]]), np.asarray([[1.0, 2.0], [1.0, 4.0]])
    assert rel_error(backend.asarray(x), backend.asarray(y)) == pytest.approx(0.5)
    # device arrays against a NumPy oracle: copied to the host, same answer, either way round
    assert rel_error(backend.asarray(x), y) == pytest.approx(0.5)
    assert rel_error(x, backend.asarray(y)) == pytest.approx(0.5)


def test_rel_error_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"shapes differ: \(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


# -- sandwich layers ------------------------------------------------------------------------------------------


def test_affine_relu_forward_uses_w_and_b_in_their_places(to_dev, rng):
    """Non-square shapes and a bias that matters: w (5, 3), b (3,), x (4, 5)."""
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    out, _ = affine_relu_forward(to_dev(x), to_dev(w), to_dev(b))
    np.testing.assert_allclose(to_host(out), np.maximum(x @ w + b, 0), rtol=1e-12, atol=1e-15)


def test_affine_relu_backward_against_the_formula(to_dev, rng):
    x, w, b = rng.standard_normal((2, 3, 2)), rng.standard_normal((6, 4)), rng.standard_normal(4)
    dout = rng.standard_normal((2, 4))
    _, cache = affine_relu_forward(to_dev(x), to_dev(w), to_dev(b))
    dx, dw, db = affine_relu_backward(to_dev(dout), cache)
    x2 = x.reshape(2, 6)
    da = dout * (x2 @ w + b > 0)
    np.testing.assert_allclose(to_host(dx), (da @ w.T).reshape(x.shape), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_host(dw), x2.T @ da, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_host(db), da.sum(axis=0), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("need_dx", [True, False])
def test_affine_relu_backward_need_dx(to_dev, rng, need_dx):
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 2)), rng.standard_normal(2)
    _, cache = affine_relu_forward(to_dev(x), to_dev(w), to_dev(b))
    dx, dw, db = affine_relu_backward(to_dev(np.ones((3, 2))), cache, need_dx=need_dx)
    assert (dx is None) is (not need_dx)
    if need_dx:
        assert tuple(dx.shape) == (3, 5)
    assert tuple(dw.shape) == (5, 2) and tuple(db.shape) == (2,)


# -- backend: dtypes and devices ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["float32", "float64", "int64", "int32"])
def test_to_backend_with_dtype_names_from_host(backend, name):
    d = to_backend(np.asarray([[1.0, 2.0], [3.0, 4.0]]), backend, dtype=name)
    assert d.dtype == getattr(backend.xp, name)
    np.testing.assert_array_equal(to_host(d), np.asarray([[1, 2], [3, 4]], dtype=name))


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32")])
def test_to_backend_casts_arrays_already_on_the_backend(backend, dtype):
    here = backend.asarray(np.asarray([1.5, 2.5]))
    assert here.dtype == backend.xp.float64
    d = to_backend(here, backend, dtype=dtype)
    assert d.dtype == backend.xp.float32
    np.testing.assert_array_equal(to_host(d), np.asarray([1.5, 2.5], dtype=np.float32))


def test_to_backend_without_dtype_keeps_the_dtype(backend):
    for host in (np.asarray([1, 2], dtype=np.int32), np.asarray([1.0], dtype=np.float32)):
        d = to_backend(host, backend)
        assert d.dtype == getattr(backend.xp, host.dtype.name)
        assert to_host(to_backend(d, backend)).dtype == host.dtype


def test_to_backend_places_host_data_on_the_backends_device():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    d = to_backend(np.ones(2), fcn.get_backend("array_api_strict", dev))
    assert d.device == dev
    d32 = to_backend(np.ones(2), fcn.get_backend("array_api_strict", dev), dtype="float32")
    assert d32.device == dev and d32.dtype == strict.float32


def test_resolve_dtype_accepts_names_numpy_dtypes_and_the_namespaces_own(backend):
    xp = backend.xp
    assert resolve_dtype(xp, "float32") == xp.float32
    assert resolve_dtype(xp, np.float64) == xp.float64
    assert resolve_dtype(xp, np.dtype("int64")) == xp.int64
    assert resolve_dtype(xp, xp.float32) == xp.float32


@pytest.mark.parametrize("bad", ["float128x", "not_a_dtype"])
def test_resolve_dtype_names_the_bad_dtype_and_the_namespace(bad):
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(ValueError, match=f"dtype '{bad}' is not available in array_api_strict"):
        resolve_dtype(strict, bad)
    with pytest.raises(ValueError, match=f"dtype '{bad}' is not available"):
        fcn.to_backend(np.ones(2), "numpy", dtype=bad)


def test_a_model_refuses_a_dtype_its_namespace_lacks_or_that_is_not_floating():
    with pytest.raises(ValueError, match="not available"):
        FullyConnectedNet(4, [3], 2, dtype="float99")
    with pytest.raises(TypeError, match="real floating"):
        FullyConnectedNet(4, [3], 2, dtype="int64")


def test_device_mismatch_is_an_error_naming_both_sides():
    strict = pytest.importorskip("array_api_strict")
    dev1 = fcn.get_backend("array_api_strict", strict.Device("device1"))
    on_default = strict.asarray([1.0, 2.0])
    with pytest.raises(fcn.BackendError, match="expected data on device .*device1.*got a array_api_strict array"):
        to_backend(on_default, dev1)
    with pytest.raises(fcn.BackendError, match="expected data on device"):
        to_backend(on_default, dev1, dtype="float32")
    # the same device is accepted as is, and a backend with no device takes any device of its namespace
    here = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    assert to_backend(here, dev1) is here
    assert to_backend(here, fcn.get_backend("array_api_strict")) is here


def test_an_array_of_another_library_is_an_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(fcn.BackendError, match="expected data on the numpy backend"):
        to_backend(torch.ones(2), "numpy")


def test_model_parameters_follow_the_model_dtype_and_device(backend):
    net = FullyConnectedNet(4, [3], 2, seed=0, backend=backend, dtype="float32")
    net.params["W1"] = np.ones((4, 3))  # host float64 assigned: stored on the backend, as float32
    assert net.params["W1"].dtype == backend.xp.float32
    assert fcn.namespace_of(net.params["W1"]).name == backend.name
    np.testing.assert_array_equal(to_host(net.params["W1"]), np.ones((4, 3), dtype=np.float32))


def test_get_backend_keeps_or_replaces_the_device():
    strict = pytest.importorskip("array_api_strict")
    base = fcn.get_backend("array_api_strict")
    assert fcn.get_backend(base) is base
    moved = fcn.get_backend(base, strict.Device("device1"))
    assert moved.device == strict.Device("device1") and moved.xp is base.xp
    assert fcn.get_backend(strict, strict.Device("device1")).device == strict.Device("device1")


def test_get_backend_names_and_modules():
    assert fcn.get_backend(" Cpu ").is_numpy
    assert fcn.get_backend("np").name == "numpy"
    assert fcn.get_backend("array-api-strict").name == "array_api_strict"
    import types

    with pytest.raises(fcn.BackendError, match="not an Array API namespace"):
        fcn.get_backend(types.ModuleType("plain_module"))
    with pytest.raises(fcn.BackendError, match="not int"):
        fcn.get_backend(3)


def test_namespace_of_ignores_none_and_python_scalars(backend):
    a = backend.asarray(np.ones(2))
    assert fcn.namespace_of(None, a, 1.0, 2).name == backend.name
    with pytest.raises(fcn.BackendError, match="at least one array"):
        fcn.namespace_of(None, 3)


def test_to_host_returns_numpy_for_every_backend(backend):
    host = np.asarray([[1.0, 2.0]])
    back = to_host(backend.asarray(host))
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, host)
    assert type(to_host([1, 2])) is np.ndarray and type(to_host(3.0)) is np.ndarray


# -- numeric gradients -----------------------------------------------------------------------------------------


def test_eval_numerical_gradient_prints_each_entry_by_default(capsys):
    x = np.asarray([[1.0, 2.0], [3.0, -1.0]])
    grad = fcn.eval_numerical_gradient(lambda a: float(np.sum(a**2)), x)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-7)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    index, value = lines[3].rsplit(" ", 1)
    assert index == "(1, 1)" and float(value) == pytest.approx(-2.0, rel=1e-7)
    fcn.eval_numerical_gradient(lambda a: float(np.sum(a**2)), x, verbose=False)
    assert capsys.readouterr().out == ""


def test_eval_numerical_gradient_array_copes_with_a_function_that_reuses_its_output_buffer():
    buffer = np.empty(3)

    def f(a):  # returns the same array every call, overwritten: the check must copy what it reads
        np.multiply(a, a, out=buffer)
        return buffer

    x, df = np.asarray([1.0, -2.0, 0.5]), np.asarray([1.0, 1.0, 2.0])
    grad = fcn.eval_numerical_gradient_array(f, x, df)
    np.testing.assert_allclose(grad, 2 * x * df, rtol=1e-7)
    np.testing.assert_array_equal(x, [1.0, -2.0, 0.5])  # restored


def test_eval_numerical_gradient_array_of_a_function_returning_its_input():
    """f(x) = x hands back x itself, which the check perturbs and restores: what it read must be a copy."""
    x, df = np.asarray([[1.0, -2.0], [0.5, 3.0]]), np.asarray([[1.0, 2.0], [-1.0, 0.25]])
    np.testing.assert_allclose(fcn.eval_numerical_gradient_array(lambda a: a, x, df), df, rtol=1e-7)


def test_eval_numerical_gradient_array_refuses_mixed_backends():
    strict = pytest.importorskip("array_api_strict")
    on_device = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    with pytest.raises(fcn.BackendError):
        fcn.eval_numerical_gradient_array(lambda a: a, np.asarray([1.0, 2.0]), on_device)
    with pytest.raises(fcn.BackendError):
        fcn.eval_numerical_gradient_array(lambda a: a, on_device, np.asarray([1.0, 2.0]))


# -- layers refuse gradients from another backend ------------------------------------------------------------------


@pytest.mark.parametrize("which", ["dout", "cache"])
def test_backward_passes_refuse_mixed_backends(which):
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    rng = np.random.default_rng(0)
    x, w, b, dout = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), np.zeros(2), rng.standard_normal((3, 2))

    def on(a, side):
        return strict.asarray(a, device=dev) if side == which else a

    _, cache = fcn.affine_forward(on(x, "cache"), on(w, "cache"), on(b, "cache"))
    with pytest.raises(fcn.BackendError):
        fcn.affine_backward(on(dout, "dout"), cache)
    _, relu_cache = fcn.relu_forward(on(rng.standard_normal((3, 2)), "cache"))
    with pytest.raises(fcn.BackendError):
        fcn.relu_backward(on(dout, "dout"), relu_cache)
    _, sandwich_cache = affine_relu_forward(on(x, "cache"), on(w, "cache"), on(b, "cache"))
    with pytest.raises(fcn.BackendError):
        affine_relu_backward(on(dout, "dout"), sandwich_cache)


@pytest.mark.parametrize("odd", ["w", "b"])
def test_affine_forward_refuses_a_weight_or_bias_from_another_backend(odd):
    strict = pytest.importorskip("array_api_strict")
    args = {"x": np.ones((2, 3)), "w": np.ones((3, 4)), "b": np.ones(4)}
    args[odd] = strict.asarray(args[odd], device=strict.Device("device1"))
    with pytest.raises(fcn.BackendError):
        fcn.affine_forward(args["x"], args["w"], args["b"])


@pytest.mark.parametrize("odd", ["x", "w", "b"])
def test_affine_forward_names_the_argument_with_the_odd_dtype(to_dev, odd):
    args = {"x": np.ones((2, 3)), "w": np.ones((3, 4)), "b": np.ones(4)}
    args[odd] = args[odd].astype(np.float32)
    with pytest.raises(TypeError, match=rf"affine_forward: arrays must share one dtype.*{odd}: .*float32"):
        fcn.affine_forward(to_dev(args["x"]), to_dev(args["w"]), to_dev(args["b"]))


def test_softmax_loss_refuses_mixed_backends():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    scores, y = np.zeros((3, 2)), np.asarray([0, 1, 1])
    with pytest.raises(fcn.BackendError):
        softmax_loss(strict.asarray(scores, device=dev), y)
    with pytest.raises(fcn.BackendError):
        softmax_loss(scores, strict.asarray(y, device=dev))


def test_softmax_loss_errors_name_the_function():
    with pytest.raises(ValueError, match=r"^softmax_loss: scores must have shape \(N, C\), got \(3,\)"):
        softmax_loss(np.zeros(3), np.asarray([0, 1, 1]))
    with pytest.raises(ValueError, match=r"^softmax_loss: y has labels outside \[0, 2\)"):
        softmax_loss(np.zeros((3, 2)), np.asarray([0, 1, 2]))


def test_layers_refuse_integer_arrays_and_list_every_dtype():
    ints = {"x": np.ones((2, 3), dtype=np.int64), "w": np.ones((3, 4), dtype=np.int64), "b": np.ones(4, dtype=np.int64)}
    with pytest.raises(
        TypeError, match=r"^affine_forward: expected real floating arrays, got x: int64, w: int64, b: int64$"
    ):
        fcn.affine_forward(ints["x"], ints["w"], ints["b"])
    with pytest.raises(TypeError, match=r"^affine_forward: expected real floating arrays, got w: int64$"):
        fcn.affine_forward(np.ones((2, 3)), ints["w"], np.ones(4))
    msg = r"^affine_forward: arrays must share one dtype, got x: float32, w: float64, b: float64; cast them first$"
    with pytest.raises(TypeError, match=msg):
        fcn.affine_forward(np.ones((2, 3), dtype=np.float32), np.ones((3, 4)), np.ones(4))


# -- backend: names, modules, descriptions ---------------------------------------------------------------------------


def test_backend_repr_and_names():
    strict = pytest.importorskip("array_api_strict")
    assert repr(fcn.get_backend()) == "Backend(numpy)"
    dev1 = fcn.get_backend("array_api_strict", strict.Device("device1"))
    assert repr(dev1) == "Backend(array_api_strict, device=array_api_strict.Device('device1'))"
    assert dev1.name == "array_api_strict" and not dev1.is_numpy and not dev1.is_cupy
    assert fcn.get_backend().is_numpy and not fcn.get_backend().is_cupy


def test_another_array_api_library_by_name_and_by_module():
    torch = pytest.importorskip("torch")
    for spec in ("torch", torch):
        be = fcn.get_backend(spec)
        assert be.name == "torch" and repr(be) == "Backend(torch)"
        assert not be.is_numpy and not be.is_cupy
    # a device given by name is normalised to the library's own device object
    assert fcn.get_backend(torch, "cpu").device == torch.device("cpu")


@pytest.mark.parametrize("marker", ["__array_namespace_info__", "__array_api_version__"])
def test_a_module_with_either_array_api_marker_is_a_namespace(marker):
    import types

    module = types.ModuleType("my_array_library")
    setattr(module, marker, "2024.12")
    be = fcn.get_backend(module, "dev0")
    assert be.xp is module and be.device == "dev0" and be.name == "my_array_library"


def test_namespace_modules_map_to_their_backends():
    import array_api_compat.numpy as compat_numpy

    strict = pytest.importorskip("array_api_strict")
    assert fcn.get_backend(np).is_numpy and fcn.get_backend(compat_numpy).is_numpy
    assert fcn.get_backend(strict).xp is strict


@pytest.mark.parametrize("name", ["cupy", "cp", "gpu", "cuda", " CUDA "])
def test_every_cupy_alias_needs_a_gpu(monkeypatch, name):
    from fcn import backend as be

    monkeypatch.setattr(be, "has_cupy", lambda: True)
    monkeypatch.setattr(be, "has_gpu", lambda: False)
    with pytest.raises(fcn.BackendError, match="no CUDA GPU is visible"):
        fcn.get_backend(name)
    monkeypatch.setattr(be, "has_cupy", lambda: False)
    with pytest.raises(fcn.BackendError, match=r"CuPy is not installed.*cuda12.*cuda13"):
        fcn.get_backend(name)


def test_synchronize_is_a_no_op_on_the_cpu(backend):
    if backend.is_cupy:
        pytest.skip("the GPU case synchronizes for real")
    assert backend.synchronize() is None


def test_mixed_library_and_device_errors_describe_each_array():
    strict = pytest.importorskip("array_api_strict")
    on_dev1 = strict.asarray([1.0, 2.0], device=strict.Device("device1"))
    with pytest.raises(
        fcn.BackendError,
        match=r"^arrays from different libraries were mixed: array_api_strict array on "
        r"array_api_strict.Device\('device1'\), numpy array on 'cpu'\. Move them to one backend first",
    ):
        fcn.namespace_of(np.zeros(2), on_dev1)
    with pytest.raises(
        fcn.BackendError,
        match=r"^arrays on different devices were mixed: array_api_strict.Device\('CPU_DEVICE'\), "
        r"array_api_strict.Device\('device1'\)$",
    ):
        fcn.namespace_of(strict.asarray([1.0]), on_dev1)
    with pytest.raises(
        fcn.BackendError,
        match=r"^expected data on the numpy backend or in host memory, got a array_api_strict array on "
        r"array_api_strict.Device\('device1'\)$",
    ):
        to_backend(on_dev1, "numpy")


def test_python_scalars_and_bools_do_not_decide_the_namespace():
    assert fcn.namespace_of(np.zeros(2), True, 3, 2.5).is_numpy


def test_to_host_of_a_tensor_that_requires_grad():
    torch = pytest.importorskip("torch")
    t = torch.ones(2, requires_grad=True)
    np.testing.assert_array_equal(to_host(t), [1.0, 1.0])


def test_dtype_name_of_every_namespaces_dtypes():
    from fcn.backend import dtype_name

    assert dtype_name(np.float32) == "float32"
    assert dtype_name(np.dtype("float64")) == "float64"
    assert dtype_name(fcn.get_backend().xp.float32) == "float32"
    strict = pytest.importorskip("array_api_strict")
    assert dtype_name(strict.float32) == "float32" and dtype_name(strict.int64) == "int64"
    torch = pytest.importorskip("torch")
    assert dtype_name(torch.float64) == "float64"


def test_check_labels_messages_in_full():
    with pytest.raises(
        ValueError,
        match=r"^y has labels outside \[0, 3\): min 0, max 3\. \(On a GPU such labels would not raise; "
        r"fcn checks them\.\)$",
    ):
        check_labels(XP, np.asarray([0, 3]), 2, 3)
    with pytest.raises(TypeError, match=r"^y must hold integer class labels, got dtype float64$"):
        check_labels(XP, np.zeros(2), 2, 3)
    with pytest.raises(ValueError, match=r"^y must have shape \(3,\) to match the inputs, got \(2,\)$"):
        check_labels(XP, np.zeros(2, dtype=np.int64), 3, 3)
    with pytest.raises(TypeError, match=r"^X must hold real numbers, got dtype bool$"):
        check_features(XP, np.zeros((2, 2), dtype=bool))


def test_cupy_messages_say_what_to_do(monkeypatch):
    from fcn import backend as be

    monkeypatch.setattr(be, "has_cupy", lambda: True)
    monkeypatch.setattr(be, "has_gpu", lambda: False)
    with pytest.raises(
        fcn.BackendError,
        # the middle names what the probe found on this machine (no driver, no device, ...)
        match=r"^CuPy is installed but no CUDA GPU is visible\b.*Check the NVIDIA driver and CUDA_VISIBLE_DEVICES, "
        r"or use backend=\"numpy\"\.$",
    ):
        fcn.get_backend("cupy")


def test_namespace_of_messages_in_full():
    with pytest.raises(fcn.BackendError, match=r"^namespace_of\(\) needs at least one array$"):
        fcn.namespace_of(None)
    with pytest.raises(
        fcn.BackendError,
        match=r"^arrays from different libraries were mixed: numpy array on 'cpu', str\. "
        r"Move them to one backend first \(fcn\.to_host / Backend\.asarray\)\.$",
    ):
        fcn.namespace_of(np.zeros(2), "abc")


def test_to_host_falls_back_when_numpy_cannot_read_the_array_directly(monkeypatch):
    """A namespace whose arrays NumPy cannot take over by DLPack is read through its own host device."""
    strict = pytest.importorskip("array_api_strict")
    a = strict.asarray([[1.0, 2.0], [3.0, 4.0]], device=strict.Device("device1"))

    def refuse(x):
        raise BufferError("not readable here")

    monkeypatch.setattr(np, "from_dlpack", refuse)
    back = to_host(a)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, [[1.0, 2.0], [3.0, 4.0]])


def test_backend_asarray_passes_the_dtype_on(backend):
    d = backend.asarray(np.asarray([1.0, 2.0]), dtype="float32")
    assert d.dtype == backend.xp.float32
    d2 = backend.asarray(np.asarray([1, 2]), dtype=np.float64)
    assert d2.dtype == backend.xp.float64


# -- layers as objects ------------------------------------------------------------------------------------------------


def test_affine_then_relu_layers_equal_the_fused_layer(backend, rng):
    """AffineReLU is documented as Affine followed by ReLU: the same loss and gradients, any identity in between."""
    from fcn.modules import Affine, Layer, ReLU

    class Unfused(FullyConnectedNet):
        def build_layers(self):
            dims = [self.input_dim, *self.hidden_dims, self.num_classes]
            layers = []
            for i in range(1, self.num_layers):
                layers += [Affine(i, dims[i - 1], dims[i], self.weight_scale), Layer(), ReLU()]
            return [*layers, Affine(self.num_layers, dims[-2], dims[-1], self.weight_scale)]

    X, y = rng.standard_normal((6, 5)), rng.integers(3, size=6)
    fused = FullyConnectedNet(5, [7, 4], 3, reg=0.2, weight_scale=0.5, seed=1, backend=backend)
    unfused = Unfused(5, [7, 4], 3, reg=0.2, weight_scale=0.5, seed=1, backend=backend)
    assert sorted(unfused.params) == sorted(fused.params)
    loss_f, grads_f = fused.loss(X, y)
    loss_u, grads_u = unfused.loss(X, y)
    assert float(loss_u) == pytest.approx(float(loss_f), rel=1e-12)
    for name in grads_f:
        np.testing.assert_allclose(to_host(grads_u[name]), to_host(grads_f[name]), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(to_host(unfused.loss(X)), to_host(fused.loss(X)), rtol=1e-12)


def test_layer_names_and_repr():
    from fcn.modules import Affine, AffineReLU, Layer, ReLU

    layer = AffineReLU(2, 4, 3, 0.1)
    assert layer.params == ("W2", "b2") and layer.decay == ("W2",) and layer.buffers == ()
    assert (
        repr(layer) == "AffineReLU(W2, b2)"
        and repr(ReLU()) == "ReLU()"
        and repr(Affine(1, 2, 2, 1.0)) == "Affine(W1, b1)"
    )
    assert Layer().params == () and Layer().init_params(np.random.default_rng(0)) == {} and Layer().init_buffers() == {}
    init = layer.init_params(np.random.default_rng(0))
    assert init["W2"].shape == (4, 3) and init["b2"].shape == (3,) and not init["b2"].any()
    np.testing.assert_allclose(init["W2"], 0.1 * np.random.default_rng(0).standard_normal((4, 3)))


def test_only_the_first_layer_skips_its_input_gradient():
    net = FullyConnectedNet(4, [3, 3], 2, seed=0)
    assert [layer.need_dx for layer in net.layers] == [False, True, True]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("torch", r"^PyTorch is not installed \(fcn never needs it; it is one more namespace\)$"),
        (
            "array_api_strict",
            r'^array_api_strict is not installed: pip install "fcn-cifar\[test\]" or pip install array-api-strict$',
        ),
    ],
    ids=["second-library", "reference-library"],  # ids without "torch": mutation runs deselect those
)
def test_an_optional_namespace_that_is_missing_is_named(monkeypatch, name, message):
    import importlib

    from fcn import backend as be

    real = importlib.import_module

    def without(module, *args):
        if module == name:
            raise ImportError(f"No module named {module!r}")
        return real(module, *args)

    monkeypatch.setattr(be.importlib, "import_module", without)
    with pytest.raises(fcn.BackendError, match=message):
        fcn.get_backend(name)


def test_the_numpy_module_gives_the_numpy_backend_with_its_device():
    by_name = fcn.get_backend("numpy")
    by_module = fcn.get_backend(np, "cpu")
    assert by_module.xp is by_name.xp and by_module.device == "cpu"
    assert fcn.get_backend(np).device is None


def test_the_cupy_module_needs_a_gpu_like_the_name(monkeypatch):
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    from fcn import backend as be

    monkeypatch.setattr(be, "has_gpu", lambda: False)
    with pytest.raises(fcn.BackendError, match="no CUDA GPU is visible"):
        fcn.get_backend(cupy)
    import array_api_compat.cupy as compat_cupy

    with pytest.raises(fcn.BackendError, match="no CUDA GPU is visible"):
        fcn.get_backend(compat_cupy)


@pytest.mark.parametrize("fused", [False, True])
def test_a_layer_without_need_dx_returns_no_input_gradient(backend, rng, fused):
    from fcn.modules import Affine, AffineReLU

    layer = (AffineReLU if fused else Affine)(1, 4, 3, 0.1)
    params = {k: backend.asarray(v) for k, v in layer.init_params(rng).items()}
    x, dout = backend.asarray(rng.standard_normal((2, 4))), backend.asarray(rng.standard_normal((2, 3)))
    ops = backend.ops
    _, cache = layer.forward(ops, x, params, {}, True)
    dx, grads = layer.backward(ops, dout, cache)
    assert tuple(dx.shape) == (2, 4) and sorted(grads) == ["W1", "b1"]
    layer.need_dx = False
    _, cache = layer.forward(ops, x, params, {}, True)
    dx, grads = layer.backward(ops, backend.asarray(rng.standard_normal((2, 3))), cache)
    assert dx is None and sorted(grads) == ["W1", "b1"]


# -- the kernel table and the update rules -------------------------------------------------------------------------


def test_softmax_loss_is_stable_per_row_when_rows_differ_in_scale(to_dev):
    """Each row is shifted by its own maximum: a row far below another's maximum must not underflow to log(0)."""
    scores = np.asarray([[1000.0, 0.0], [0.0, 1.0]])
    y = np.asarray([0, 1])
    loss, dscores = softmax_loss(to_dev(scores), to_dev(y))
    row1 = np.log(1 + np.exp(-1.0))  # -log softmax of the correct class
    expected = (np.log(1 + np.exp(-1000.0)) + row1) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    p1 = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(to_host(dscores)[1], (p1 - [0, 1]) / 2, rtol=1e-12)


def test_kernel_tables_by_backend_and_their_repr(backend):
    from fcn.ops import CupyOps, NumpyOps, Ops

    ops = backend.ops
    expected = NumpyOps if backend.is_numpy else CupyOps if backend.is_cupy else Ops
    assert type(ops) is expected
    assert repr(ops) == f"{expected.__name__}({backend!r})"
    assert ops.name == {NumpyOps: "numpy", CupyOps: "cupy", Ops: "xp"}[expected]


def test_update_all_refuses_lists_of_different_lengths(backend):
    ops = backend.ops
    w = [backend.asarray(np.ones(2)), backend.asarray(np.ones(3))]
    with pytest.raises(ValueError):
        ops.update_all("sgd", w, [backend.asarray(np.ones(2))], [(), ()], {"learning_rate": 0.1})


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


def test_sum_of_squares_keeps_dtype_and_device(backend):
    ops = backend.ops
    a = backend.asarray(np.asarray([[1.0, 2.0], [3.0, -1.0]], dtype=np.float32))
    total = ops.sum_of_squares([a])
    assert float(total) == 15.0 and total.dtype == backend.xp.float32
    empty = ops.sum_of_squares([])
    assert float(empty) == 0.0
    if backend.device is not None:
        assert empty.device == backend.device
