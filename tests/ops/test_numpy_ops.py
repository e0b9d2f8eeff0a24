"""The kernel table: every backend's table agrees with the chapter's functions and with NumPy float64."""

import tracemalloc

import numpy as np
import pytest

import fcn
from fcn.ops import NumpyOps, Ops
from fcn.optim import RULES


def host(a):
    return fcn.to_host(a)


@pytest.fixture
def ops(backend):
    return backend.ops


def test_backend_gives_its_table(backend):
    assert isinstance(backend.ops, Ops)
    assert backend.ops is backend.ops  # made once per backend
    assert isinstance(fcn.get_backend("numpy").ops, NumpyOps)


def test_dense_kernels_match_chapter_functions(ops, to_dev, rng):
    x, w, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))
    out, cache = fcn.affine_forward(to_dev(x), to_dev(w), to_dev(b))
    np.testing.assert_allclose(host(ops.affine_forward(to_dev(x), to_dev(w), to_dev(b))), host(out), rtol=1e-13)
    np.testing.assert_allclose(host(out), x @ w + b, rtol=1e-13)
    dx, dw, db = fcn.affine_backward(to_dev(dout), cache)
    dx2, dw2, db2 = ops.affine_backward(to_dev(dout), to_dev(x), to_dev(w))
    for got, want, ref in ((dx2, dx, dout @ w.T), (dw2, dw, x.T @ dout), (db2, db, dout.sum(0))):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-13)
        np.testing.assert_allclose(host(got), ref, rtol=1e-13)
    assert ops.affine_backward(to_dev(dout), to_dev(x), to_dev(w), need_dx=False)[0] is None


def test_relu_kernels_match_chapter_functions(ops, to_dev, rng):
    h, b, dout = rng.standard_normal((6, 4)), rng.standard_normal(4), rng.standard_normal((6, 4))
    ref = np.maximum(h + b, 0)
    # bias_relu and relu_backward may overwrite their first argument: hand them copies
    np.testing.assert_array_equal(host(ops.bias_relu(to_dev(h.copy()), to_dev(b))), ref)
    np.testing.assert_array_equal(host(ops.relu(to_dev(h))), host(fcn.relu_forward(to_dev(h))[0]))
    # the mask may come from the ReLU's output as well as its input
    expected = host(fcn.relu_backward(to_dev(dout), to_dev(h + b)))
    np.testing.assert_array_equal(expected, dout * (h + b > 0))
    np.testing.assert_array_equal(host(ops.relu_backward(to_dev(dout.copy()), to_dev(ref))), expected)


def test_chapter_relu_backward_leaves_the_callers_gradient_alone(to_dev, rng):
    dout = to_dev(rng.standard_normal((3, 4)))
    before = host(dout).copy()
    fcn.relu_backward(dout, to_dev(-np.ones((3, 4))))
    np.testing.assert_array_equal(host(dout), before)


def test_softmax_cross_entropy_matches_formula(ops, to_dev, rng):
    scores, y = rng.standard_normal((7, 10)) * 3, rng.integers(10, size=7)
    p = np.exp(scores - scores.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ref_loss = -np.log(p[np.arange(7), y]).mean()
    ref_d = p.copy()
    ref_d[np.arange(7), y] -= 1
    ref_d /= 7
    loss, d = ops.softmax_cross_entropy(to_dev(scores), to_dev(y))
    assert abs(float(loss) - ref_loss) < 1e-13
    np.testing.assert_allclose(host(d), ref_d, rtol=1e-12, atol=1e-15)
    chapter_loss, chapter_d = fcn.softmax_loss(to_dev(scores), to_dev(y))
    assert abs(float(loss) - float(chapter_loss)) < 1e-14


def test_sum_of_squares_and_take_rows(ops, to_dev, rng):
    arrays = [rng.standard_normal((5, 3)), rng.standard_normal(4)]
    total = ops.sum_of_squares([to_dev(a) for a in arrays])
    assert abs(float(total) - sum((a**2).sum() for a in arrays)) < 1e-12
    assert float(ops.sum_of_squares([])) == 0.0
    x, idx = rng.standard_normal((9, 2, 3)), np.asarray([4, 0, 8, 4])
    np.testing.assert_array_equal(host(ops.take_rows(to_dev(x), to_dev(idx))), x[idx])


def test_numpy_take_rows_reuses_the_buffer(rng):
    ops = fcn.get_backend("numpy").ops
    x, idx = rng.standard_normal((9, 3)), np.asarray([2, 7, 1])
    out = np.empty((3, 3))
    assert ops.take_rows(x, idx, out=out) is out
    np.testing.assert_array_equal(out, x[idx])


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_numpy_table_equals_reference_table(rule, rng):
    """The NumPy overrides do the reference's arithmetic (float64, to rounding)."""
    backend = fcn.get_backend("numpy")
    fast, ref = NumpyOps(backend), Ops(backend)
    hyper = {
        "sgd": {"learning_rate": 0.1},
        "sgd_momentum": {"learning_rate": 0.1, "momentum": 0.9},
        "rmsprop": {"learning_rate": 0.1, "decay_rate": 0.99, "epsilon": 1e-8},
        "adam": {"learning_rate": 0.1, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.1},
    }[rule]
    params = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    copies = [p.copy() for p in params]
    state_names = RULES[rule].state
    states = [tuple(np.zeros_like(p) for _ in state_names) for p in params]
    ref_states = [tuple(np.zeros_like(p) for _ in state_names) for p in params]
    for t in range(1, 4):
        grads = [rng.standard_normal(p.shape) for p in params]
        step = {**hyper, "t": t} if rule == "adam" else hyper
        fast.update_all(rule, params, grads, states, step)
        ref.update_all(rule, copies, grads, ref_states, step)
    for got, want in zip(params, copies, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_adamw_decays_the_weights_apart_from_the_gradient(backend):
    """AdamW: with a zero gradient, only the decoupled decay moves the weights (Adam's step is 0)."""
    w = backend.asarray(np.full(3, 2.0))
    w, config = fcn.optim.adamw(w, backend.asarray(np.zeros(3)), {"learning_rate": 0.1, "weight_decay": 0.5})
    np.testing.assert_allclose(host(w), 2.0 * (1 - 0.1 * 0.5), rtol=1e-15)
    assert config["t"] == 1


def test_unknown_optim_config_key_is_named():
    with pytest.raises(ValueError, match="unknown optim_config key.*'lr'.*learning_rate"):
        fcn.optim.sgd(np.zeros(2), np.zeros(2), {"lr": 0.1})


# -- NumPy's tables against the reference, kernel by kernel --------------------------------------------------

#: NumPy's tables: NumPy alone, and with SciPy's BLAS (the fast path; skipped where SciPy is missing).
NUMPY_TABLES = [
    pytest.param(False, id="numpy"),
    pytest.param(
        True, id="numpy+blas", marks=pytest.mark.skipif(fcn.ops.numpy_ops.scipy_blas is None, reason="no SciPy")
    ),
]


@pytest.fixture(params=NUMPY_TABLES)
def numpy_table(request):
    backend = fcn.get_backend("numpy")
    table = NumpyOps(backend, blas=request.param)
    assert bool(table.blas) == request.param
    return table, Ops(backend)


@pytest.mark.parametrize("value, on", [(None, True), ("1", True), ("0", False)])
@pytest.mark.skipif(fcn.ops.numpy_ops.scipy_blas is None, reason="no SciPy")
def test_blas_path_follows_the_environment_unless_told(monkeypatch, value, on):
    """Where SciPy is installed the BLAS path is on unless ``$FCN_BLAS`` turns it off (the words it takes:
    ``tests/ops/test_switches.py``); ``blas=`` overrides the variable."""
    backend = fcn.get_backend("numpy")
    if value is None:
        monkeypatch.delenv(fcn.ops.numpy_ops.ENV_BLAS, raising=False)
    else:
        monkeypatch.setenv(fcn.ops.numpy_ops.ENV_BLAS, value)
    assert bool(NumpyOps(backend).blas) == on
    assert NumpyOps(backend, blas=False).blas == {}
    assert bool(NumpyOps(backend, blas=True).blas)
    monkeypatch.setenv(fcn.ops.numpy_ops.ENV_BLAS, "2")
    with pytest.raises(ValueError, match="^FCN_BLAS="):
        NumpyOps(backend)


def close(got, want, rtol=1e-12):
    """Elementwise relative agreement, with an absolute floor scaled by the largest value (sums of mixed sign)."""
    want = np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max(initial=1e-300)))


def dense_case(rng, dtype, n=37, d=53, m=41):  # 80k multiply-adds: above NumpyOps' small-product cutoff
    x, w, b = rng.standard_normal((n, d)), rng.standard_normal((d, m)), rng.standard_normal(m)
    return [a.astype(dtype) for a in (x, w, b, rng.standard_normal((n, m)))]


#: the order of the routines in a table's ``blas`` entries
BLAS_ROUTINES = ("gemm", "axpy", "scal", "dot")


def count_blas_calls(table):
    """Wrap ``table``'s BLAS routines with counters, so a test sees which ran: ``{"gemm": n, "axpy": n, ...}``."""
    calls = dict.fromkeys(BLAS_ROUTINES, 0)

    def counted(name, routine):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return routine(*args, **kwargs)

        return wrapper

    table.blas = {
        dtype: tuple(counted(name, r) for name, r in zip(BLAS_ROUTINES, routines, strict=True))
        for dtype, routines in table.blas.items()
    }
    return calls


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_dense_forward_kernels_equal_reference(numpy_table, rng, dtype, rtol):
    fast, ref = numpy_table
    x, w, b, _ = dense_case(rng, dtype)
    for kernel in ("affine_forward", "affine_relu_forward"):
        got = getattr(fast, kernel)(x, w, b)
        assert got.dtype == x.dtype and got.shape == (x.shape[0], w.shape[1])
        close(got, getattr(ref, kernel)(x, w, b), rtol)
    assert (fast.affine_relu_forward(x, w, b) >= 0).all()


@pytest.mark.parametrize("reg", [0.0, 0.6])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_affine_backward_equals_reference(numpy_table, rng, dtype, rtol, reg):
    """``dw = x.T @ dout + reg * w`` (the L2 term folded into the product on the fast path), ``dx``, ``db``."""
    fast, ref = numpy_table
    x, w, _, dout = dense_case(rng, dtype)
    w_before = w.copy()
    got, want = fast.affine_backward(dout, x, w, reg=reg), ref.affine_backward(dout, x, w, reg=reg)
    for g, r in zip(got, want, strict=True):
        assert g.dtype == r.dtype and g.shape == r.shape
        close(g, r, rtol)
    close(got[1], x.astype("float64").T @ dout + reg * w.astype("float64"), max(rtol, 1e-12))
    np.testing.assert_array_equal(w, w_before)  # the weights are read, never written
    assert fast.affine_backward(dout, x, w, need_dx=False, reg=reg)[0] is None


def update_case(layout):
    """Weights ``(7, 3)`` and their velocity laid out as BLAS cannot take them in place (same seed: same values)."""
    w, v = np.random.default_rng(5).standard_normal((2, 7, 3))
    if layout == "F-ordered":
        return np.asfortranarray(w), np.asfortranarray(v)
    if layout == "strided view":  # every other column of a wider array
        wide = np.zeros((2, 7, 6))
        wide[:, :, ::2] = w, v
        return wide[0, :, ::2], wide[1, :, ::2]
    return w.astype("float32"), v.astype("float32")  # the gradient stays float64


def test_fast_path_takes_what_blas_cannot(numpy_table, rng):
    """Non-contiguous, mixed-dtype and empty operands give the reference's results (the NumPy path)."""
    fast, ref = numpy_table
    calls = count_blas_calls(fast)
    x, w, b, dout = dense_case(rng, "float64")
    xt = np.asfortranarray(x)  # F-ordered: not C-contiguous
    close(fast.affine_forward(xt, w, b), ref.affine_forward(xt, w, b))
    close(fast.affine_backward(dout, xt, w, reg=0.3)[1], ref.affine_backward(dout, xt, w, reg=0.3)[1])
    close(fast.affine_forward(x, w, b.astype("float32")), ref.affine_forward(x, w, b.astype("float32")))
    assert fast.affine_forward(x[:0], w, b).shape == (0, w.shape[1])
    # a float64 upstream gradient of a float32 layer: the reference's float64 results, not a float32 product
    x32, w32, g64 = x.astype("float32"), w.astype("float32"), dout
    results = (table.affine_backward(g64, x32, w32, reg=0.3) for table in (fast, ref))
    for got, want in zip(*results, strict=True):
        assert got.dtype == want.dtype == np.float64
        close(got, want)
    w_fast, w_ref = w32.copy(), w32.copy()
    dx, _ = fast.affine_backward_sgd(g64, x32, w_fast, learning_rate=0.1, reg=0.3)
    want_dx, dw, _ = ref.affine_backward(g64, x32, w_ref, reg=0.3)
    ref.sgd(w_ref, dw, learning_rate=0.1)
    assert dx.dtype == want_dx.dtype == np.float64 and w_fast.dtype == np.float32
    close(dx, want_dx)
    close(w_fast, w_ref, 1e-6)
    # the folded SGD step on F-ordered weights: BLAS would write into a copy, so the step is taken in NumPy
    wf, w_ref = np.asfortranarray(w), w.copy()
    _, dw, _ = ref.affine_backward(dout, x, w_ref, reg=0.3)
    ref.sgd(w_ref, dw, learning_rate=0.1)
    fast.affine_backward_sgd(dout, x, wf, learning_rate=0.1, reg=0.3)
    close(wf, w_ref)
    # the update kernels write into the weights and the velocity, whatever their layout
    for layout in ("F-ordered", "strided view", "float64 gradient on float32"):
        (w, v), (w_ref, v_ref), dw = update_case(layout), update_case(layout), rng.standard_normal((7, 3))
        fast.sgd(w, dw, learning_rate=0.1)
        ref.sgd(w_ref, dw, learning_rate=0.1)
        fast.sgd_momentum(w, dw, v, learning_rate=0.1, momentum=0.9)
        ref.sgd_momentum(w_ref, dw, v_ref, learning_rate=0.1, momentum=0.9)
        close(v, v_ref, 1e-6)
        close(w, w_ref, 1e-6)
    assert sum(calls.values()) == 0, calls  # all of it on the NumPy path


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-6)])
def test_relu_and_softmax_kernels_equal_reference(numpy_table, rng, dtype, rtol):
    fast, ref = numpy_table
    h, b, dout = (rng.standard_normal(s).astype(dtype) for s in ((9, 6), (6,), (9, 6)))
    y = ref.bias_relu(h.copy(), b)
    np.testing.assert_array_equal(fast.bias_relu(h.copy(), b), y)
    for _ in range(2):  # the second call reuses the mask buffer
        np.testing.assert_array_equal(fast.relu_backward(dout.copy(), y), ref.relu_backward(dout.copy(), y))
    scores, labels = (rng.standard_normal((9, 4)) * 5).astype(dtype), rng.integers(4, size=9)
    scores[0] += 1e4  # a large row: no overflow (the row maximum is subtracted first)
    for given in (scores, np.asfortranarray(scores)):  # the kernel works on a transposed copy of either layout
        kept = given.copy()
        (loss, d), (ref_loss, ref_d) = (t.softmax_cross_entropy(a, labels) for t, a in ((fast, given), (ref, scores)))
        np.testing.assert_array_equal(given, kept)
        assert (loss.dtype, d.dtype, d.shape, d.flags.c_contiguous) == (scores.dtype, scores.dtype, scores.shape, True)
        close(loss, ref_loss, rtol)
        close(d, ref_d, rtol)


def test_relu_shares_one_read_only_zero_vector_of_any_size(numpy_table, rng):
    """ReLU's zero operand is one read-only vector per dtype, grown to the largest array seen and viewed for
    smaller ones: any sequence of shapes, sizes and layouts gives the reference's results (a vector written to,
    or viewed past its end, would not)."""
    fast, ref = numpy_table
    for shape in [(3, 4), (50, 40), (2, 5), (7, 30, 2), (50, 40), ()]:
        for dtype in ("float64", "float32"):
            x = rng.standard_normal(shape).astype(dtype)
            for given in (x, x.T):
                kept = given.copy()
                np.testing.assert_array_equal(fast.relu(given), ref.relu(given))
                np.testing.assert_array_equal(given, kept)  # relu returns a new array
                h = given.copy()
                assert fast.bias_relu(h, 0.5) is h
                np.testing.assert_array_equal(h, ref.bias_relu(given.copy(), 0.5))
    assert fast.relu(np.zeros((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sgd_kernels_equal_reference(numpy_table, rng, dtype):
    fast, ref = numpy_table
    w, dw, v = (rng.standard_normal((7, 3)).astype(dtype) for _ in range(3))
    w2, v2 = w.copy(), v.copy()
    fast.sgd(w, dw, learning_rate=0.1)
    ref.sgd(w2, dw, learning_rate=0.1)
    close(w, w2, 1e-12 if dtype == "float64" else 1e-6)
    fast.sgd_momentum(w, dw, v, learning_rate=0.1, momentum=0.9)
    ref.sgd_momentum(w2, dw, v2, learning_rate=0.1, momentum=0.9)
    close(v, v2, 1e-12 if dtype == "float64" else 1e-6)
    close(w, w2, 1e-12 if dtype == "float64" else 1e-6)


#: each kernel of a step, run on operands of :func:`dense_case`, and the BLAS routine it makes its products with
STEP_KERNELS = {
    "affine_forward": ("gemm", lambda ops, x, w, b, dout: ops.affine_forward(x, w, b)),
    "affine_relu_forward": ("gemm", lambda ops, x, w, b, dout: ops.affine_relu_forward(x, w, b)),
    "affine_backward": ("gemm", lambda ops, x, w, b, dout: ops.affine_backward(dout, x, w)),
    "affine_backward with reg": ("gemm", lambda ops, x, w, b, dout: ops.affine_backward(dout, x, w, reg=0.5)),
    "affine_backward_sgd": ("gemm", lambda ops, x, w, b, dout: ops.affine_backward_sgd(dout, x, w, learning_rate=0.1)),
    "sgd": ("axpy", lambda ops, x, w, b, dout: ops.sgd(w, x.T @ dout, learning_rate=0.1)),
    "sgd_momentum": (
        "axpy",
        lambda ops, x, w, b, dout: ops.sgd_momentum(w, x.T @ dout, 0 * w, learning_rate=0.1, momentum=0.9),
    ),
    "sum_of_squares": ("dot", lambda ops, x, w, b, dout: ops.sum_of_squares([w, b])),
}


@pytest.mark.parametrize("kernel", STEP_KERNELS)
def test_blas_path_makes_every_product_of_a_step_in_blas(numpy_table, rng, kernel):
    """With BLAS on, the dense products, the updates and the L2 term's dot products all go through SciPy's BLAS,
    so that one thread pool serves the whole step (see :mod:`fcn.ops.numpy_ops`); matrix products below
    ``SMALL_PRODUCT`` multiply-adds stay in NumPy."""
    fast, _ = numpy_table
    calls = count_blas_calls(fast)
    routine, run = STEP_KERNELS[kernel]
    run(fast, *dense_case(rng, "float64"))
    assert (calls[routine] > 0) == bool(fast.blas), calls
    if routine == "gemm":
        calls["gemm"] = 0
        small = dense_case(rng, "float64", n=4, d=5, m=3)
        assert 4 * 5 * 3 < fcn.ops.numpy_ops.SMALL_PRODUCT
        run(fast, *small)
        assert calls["gemm"] == 0


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-6)])
def test_sum_of_squares_equals_reference_in_the_arrays_dtype(numpy_table, rng, dtype, rtol):
    fast, ref = numpy_table
    arrays = [rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    got, want = fast.sum_of_squares(arrays), ref.sum_of_squares(arrays)
    assert got.shape == () and got.dtype == want.dtype == dtype
    close(got, want, rtol)
    assert fast.sum_of_squares([]).dtype == ref.sum_of_squares([]).dtype


def traced_bytes(call):
    """``call()``'s result and the peak of the memory it allocated (NumPy reports its arrays to tracemalloc)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kernel", ["affine_relu_forward", "relu_backward", "softmax_cross_entropy", "take_rows"])
def test_numpy_kernels_allocate_no_temporaries(numpy_table, rng, kernel):
    """NumPy's table writes in place (``out=``) where the reference makes temporaries. Once the table's scratch
    exists (ReLU's zero vector, its backward pass's mask), each kernel allocates its result and nothing else of
    that size: a hidden layer's forward pass its output; ReLU's backward pass nothing (the product is written
    into the upstream gradient it may overwrite); the softmax cross-entropy its gradient and one working copy of
    the scores; a gather into a given buffer nothing (NumPy's default ``mode="raise"`` would buffer). The slack
    (1/16 of the result) leaves room for NumPy's fixed-size ufunc buffers and vectors of one row or column, not
    for another array of the result's size."""
    fast, ref = numpy_table
    x, w, b, dout = dense_case(rng, "float64", n=1024, d=64, m=512)
    if kernel == "affine_relu_forward":
        fast.affine_relu_forward(x, w, b)  # makes the zero vector
        out, peak = traced_bytes(lambda: fast.affine_relu_forward(x, w, b))
        expected, budget = ref.affine_relu_forward(x, w, b), out.nbytes
    elif kernel == "relu_backward":
        y = np.maximum(dout[::-1], 0)
        fast.relu_backward(dout.copy(), y)  # makes this thread's mask
        expected, grad = ref.relu_backward(dout.copy(), y), dout.copy()
        out, peak = traced_bytes(lambda: fast.relu_backward(grad, y))
        budget = 0
    elif kernel == "softmax_cross_entropy":
        labels = rng.integers(512, size=1024)
        (_, out), peak = traced_bytes(lambda: fast.softmax_cross_entropy(dout, labels))
        expected, budget = ref.softmax_cross_entropy(dout, labels)[1], 2 * dout.nbytes
    else:
        idx, buffer = rng.permutation(1024)[:512], np.empty((512, 512))
        out, peak = traced_bytes(lambda: fast.take_rows(dout, idx, out=buffer))
        expected, budget = dout[idx], 0
    close(out, expected)
    assert peak <= budget + out.nbytes // 16, (peak, out.nbytes)


@pytest.mark.parametrize("hidden_dims", [[40], [40, 30]])
def test_model_step_on_numpy_tables_equals_reference_table(numpy_table, rng, hidden_dims):
    """Loss and every gradient of a regularised net, and two SGD steps, on NumPy's table and on the reference;
    the fast path is deterministic (bit-identical on a rerun)."""
    fast, ref = numpy_table
    calls = count_blas_calls(fast)
    X, y = rng.standard_normal((60, 170)), rng.integers(5, size=60)

    def run(table):
        backend = fcn.Backend(np, None)
        backend.__dict__["ops"] = table  # this backend object's cached table (Backend.ops is a cached property)
        net = fcn.FullyConnectedNet(170, hidden_dims, 5, reg=0.7, weight_scale=0.1, backend=backend, seed=3)
        out, sgd = [], {"learning_rate": 0.1}
        for _ in range(2):
            loss, grads = net.loss_and_grads(X, y)
            out.append((float(loss), {k: g.copy() for k, g in grads.items()}))
            names = list(net.params)
            table.update_all("sgd", [net.params[k] for k in names], [grads[k] for k in names], [()] * len(names), sgd)
        return out, {k: v.copy() for k, v in net.params.items()}

    (steps, params), (ref_steps, ref_params) = run(fast), run(ref)
    for (loss, grads), (ref_loss, ref_grads) in zip(steps, ref_steps, strict=True):
        close(loss, ref_loss)
        assert grads.keys() == ref_grads.keys()
        for name in grads:
            close(grads[name], ref_grads[name])
    for name in params:
        close(params[name], ref_params[name])
    assert (calls["gemm"] > 0) == bool(fast.blas)  # the products big enough went through BLAS
    again, again_params = run(fast)
    for name in params:
        np.testing.assert_array_equal(again_params[name], params[name])


def test_numpy_table_works_without_scipy():
    """SciPy is optional: where it does not import, NumPy's table has no BLAS routines and still trains."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['scipy'] = None\n"  # makes `import scipy...` raise ImportError
        "import numpy as np, fcn\n"
        "ops = fcn.get_backend('numpy').ops\n"
        "assert ops.blas == {} and fcn.ops.numpy_ops.scipy_blas is None\n"
        "net = fcn.FullyConnectedNet(6, [4], 3, reg=0.5, seed=0)\n"
        "rng = np.random.default_rng(0)\n"
        "loss, grads = net.loss(rng.standard_normal((5, 6)), rng.integers(3, size=5))\n"
        "print(sorted(grads), np.isfinite(float(loss)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['W1', 'W2', 'b1', 'b2'] True"


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("reg", [0.0, 0.6])
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_affine_backward_sgd_equals_backward_then_sgd(numpy_table, rng, dtype, rtol, reg, need_dx):
    """The folded step: ``dx`` from the weights before the step, ``db``, and ``w -= lr * (x.T @ dout + reg * w)``
    in place, as the reference's backward pass followed by its SGD kernel."""
    fast, ref = numpy_table
    x, w, _, dout = dense_case(rng, dtype)
    w_ref = w.copy()
    want_dx, dw, want_db = ref.affine_backward(dout, x, w_ref, need_dx=need_dx, reg=reg)
    ref.sgd(w_ref, dw, learning_rate=0.05)
    w_fast = w.copy()
    dx, db = fast.affine_backward_sgd(dout, x, w_fast, learning_rate=0.05, need_dx=need_dx, reg=reg)
    close(w_fast, w_ref, rtol)
    assert not np.allclose(w_fast, w)  # the step was taken, in place
    close(db, want_db, rtol)
    if need_dx:
        close(dx, want_dx, rtol)
    else:
        assert dx is None
    assert fast.fuses_sgd and not ref.fuses_sgd  # NumPy folds on both paths


def solver_on_table(table, X, y, **kwargs):
    backend = fcn.Backend(np, None)
    backend.__dict__["ops"] = table  # this backend object's cached table (Backend.ops is a cached property)
    net = fcn.FullyConnectedNet(
        170,
        [40, 30],
        5,
        reg=0.7,
        weight_scale=0.1,
        backend=backend,
        seed=3,
        normalization="batchnorm",
        dropout_keep_ratio=0.8,
    )
    data = {"X_train": X, "y_train": y, "X_val": X[:10], "y_val": y[:10]}
    return fcn.Solver(
        net,
        data,
        batch_size=20,
        num_epochs=2,
        verbose=False,
        progress=False,
        seed=1,
        optim_config={"learning_rate": 0.1},
        **kwargs,
    )


def test_folded_sgd_training_equals_the_separate_update(numpy_table, rng):
    """Plain SGD folded into the backward pass (where the table folds it) trains as gradients-then-update does:
    the same losses and parameters to rounding (float64), and a rerun is bit-identical."""
    fast, ref = numpy_table
    X, y = rng.standard_normal((60, 170)), rng.integers(5, size=60)
    folded, separate = solver_on_table(fast, X, y), solver_on_table(ref, X, y)
    assert folded.train_step.folded_sgd_rate() is not None
    assert separate.train_step.folded_sgd_rate() is None
    folded.train()
    separate.train()
    close(folded.loss_history, separate.loss_history)
    names = sorted(separate.model.params)  # compared all at once: biases before batchnorm are ~1e-19 noise
    close(*(np.concatenate([s.model.params[n].ravel() for n in names]) for s in (folded, separate)))
    again = solver_on_table(fast, X, y)
    again.train()
    for name, value in folded.model.params.items():
        np.testing.assert_array_equal(again.model.params[name], value)


@pytest.mark.parametrize("kwargs", [{"clip_grad_norm": 1.0}, {"update_rule": "sgd_momentum"}])
def test_sgd_is_not_folded_when_it_needs_every_gradient_first(numpy_table, rng, kwargs):
    fast, _ = numpy_table
    X, y = rng.standard_normal((60, 170)), rng.integers(5, size=60)
    assert solver_on_table(fast, X, y, **kwargs).train_step.folded_sgd_rate() is None
