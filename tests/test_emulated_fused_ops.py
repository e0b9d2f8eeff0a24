"""FusedCupyOps' own launch code (grids, scratch buffers, tensor lists, dtype dispatch, fallbacks) on the CPU
emulation of its CUDA kernels, through a stand-in ``cupy`` module (``tests/emulation/fake_cupy.py``), against
NumpyOps and the reference table on the same data.

The stand-in checks every argument's size against the kernel's parameter list, and refuses ``None`` arguments
(CuPy 13 turns them into garbage pointers). Its array namespace for the inherited paths is
``array_api_compat.numpy`` on the same host memory. Skipped, with the reason, where g++ is missing.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import array_api_compat.numpy as xp_numpy
import numpy as np
import pytest

from fcn.ops import FusedCupyOps, NumpyOps
from fcn.ops import cuda as fc
from fcn.optim import RULES

try:  # tests/ on sys.path (pytest's default "prepend" import mode, no tests/__init__.py)
    from emulation import checks, emulated, require_gxx
    from emulation.fake_cupy import ArgumentMismatch, make_module
except ImportError:
    from .emulation import checks, emulated, require_gxx
    from .emulation.fake_cupy import ArgumentMismatch, make_module

DTYPES = ["float32", "float64"]
NUMPY = NumpyOps(SimpleNamespace(xp=np, device=None))


@pytest.fixture
def cp(monkeypatch):
    """The stand-in cupy, in sys.modules for this test only; fcn's compiled-module cache emptied around it."""
    require_gxx()
    emulated()  # compile before the test (cached for the session)
    module = make_module()
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setattr(fc, "_modules", {})
    monkeypatch.setattr(fc, "_functions", {})
    return module


@pytest.fixture
def fused(cp):
    backend = SimpleNamespace(xp=xp_numpy, device=None, is_numpy=False, is_cupy=True, fused=True)
    return FusedCupyOps(backend, tf32=False)


def host(a):
    return np.array(a).view(np.ndarray)


def launched(cp) -> list[str]:
    return [launch.name for launch in cp.stand.launches]


@pytest.mark.parametrize(
    "shape, dtype, offset, word",
    [((50, 3, 8, 8), "float32", 0, 16), ((40, 3), "float64", 0, 8), ((33, 5), "int64", 0, 8),
     ((20,), "uint8", 0, 1), ((30, 6), "float32", 4, 4), ((25, 7), "int16", 2, 2)],
)  # fmt: skip
def test_take_rows_picks_the_word_and_wraps(cp, fused, rng, shape, dtype, offset, word):
    src = (rng.standard_normal(shape) * 50).astype(dtype)
    x = cp.stand.memory.put(src, offset=offset).view(cp.ndarray)
    idx = rng.integers(-shape[0], 2 * shape[0], 37)
    out = fused.take_rows(x, cp.asarray(idx))
    assert launched(cp) == [fc.gather_rows_kernel(word)]
    checks.same(host(out), np.take(src, idx, axis=0, mode="wrap"), "take_rows")
    buf = cp.empty(out.shape, dtype)
    assert fused.take_rows(x, cp.asarray(idx.astype(np.int32)), out=buf) is buf
    checks.same(host(buf), host(out), "take_rows into a buffer")


@pytest.mark.parametrize("label_dtype", ["int32", "int64"])
@pytest.mark.parametrize("augment", ["none", "flip", "shift", "both"])
def test_take_batch_gathers_images_and_labels(cp, fused, rng, label_dtype, augment):
    n, b, pad = 12, 9, 3
    x_host = rng.standard_normal((n, 3, 6, 5)).astype("float32")
    y_host = rng.integers(0, 10, n).astype(label_dtype)
    idx = rng.integers(0, n, b)
    flip = rng.integers(0, 2, b).astype(bool) if augment in ("flip", "both") else None
    shift = rng.integers(-pad, pad + 1, (b, 2)).astype(np.int32) if augment in ("shift", "both") else None
    x_out, y_out = fused.take_batch(
        cp.asarray(x_host), cp.asarray(y_host), cp.asarray(idx),
        flip=None if flip is None else cp.asarray(flip), shift=None if shift is None else cp.asarray(shift),
    )  # fmt: skip
    checks.same(host(x_out), checks.pad_crop_flip(x_host, idx, flip, shift, pad), "images")
    checks.same(host(y_out), y_host[idx], "labels")
    assert len(cp.stand.launches) == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_in_place_and_fallbacks(cp, fused, rng, dtype):
    h, b = rng.standard_normal((19, 70)).astype(dtype), rng.standard_normal(70).astype(dtype)
    got = fused.bias_relu(cp.asarray(h), cp.asarray(b))
    checks.same(host(got), NUMPY.bias_relu(h.copy(), b), "bias_relu")
    d, y = rng.standard_normal((7, 33)).astype(dtype), np.maximum(rng.standard_normal((7, 33)), 0).astype(dtype)
    checks.same(host(fused.relu_backward(cp.asarray(d), cp.asarray(y))), NUMPY.relu_backward(d.copy(), y), "relu")
    assert launched(cp) == [fc.bias_relu_kernel(dtype), fc.relu_backward_kernel(dtype)]
    strided = cp.asarray(np.repeat(h, 2, axis=1))[:, ::2]  # not C-contiguous: CupyOps' path, no launch
    checks.same(host(fused.bias_relu(strided, cp.asarray(b))), NUMPY.bias_relu(h.copy(), b), "bias_relu fallback")
    assert len(cp.stand.launches) == 2


@pytest.mark.parametrize("dtype, label_dtype, c", [("float32", "int64", 10), ("float64", "int32", 33)])
def test_softmax_cross_entropy_twice_on_one_scratch(cp, fused, rng, dtype, label_dtype, c):
    for n in (70, 9):  # 9 blocks, then 2: the counter must have been reset by the first launch
        scores = (rng.standard_normal((n, c)) * 4).astype(dtype)
        y = rng.integers(0, c, n).astype(label_dtype)
        loss, d = fused.softmax_cross_entropy(cp.asarray(scores), cp.asarray(y))
        want_loss, want_d = NUMPY.softmax_cross_entropy(scores, y)
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(float(loss), float(want_loss), rtol=tol)
        np.testing.assert_allclose(host(d), want_d, rtol=tol, atol=tol / n)
    assert launched(cp) == [fc.softmax_xent_kernel(dtype, label_dtype)] * 2
    loss, _ = fused.softmax_cross_entropy(cp.asarray(scores), cp.asarray(y.astype(np.int16)))  # no such kernel
    assert len(cp.stand.launches) == 2 and np.isclose(float(loss), float(want_loss), rtol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_of_squares_of_more_tensors_than_one_launch_holds(cp, fused, rng, dtype):
    sizes = [(i * 611) % 900 for i in range(fc.MT_MAX + 9)] + [fc.CHUNK + 3]
    arrays = [rng.standard_normal(s).astype(dtype) for s in sizes]
    got = fused.sum_of_squares([cp.asarray(a) for a in arrays])
    np.testing.assert_allclose(
        float(got), float(NUMPY.sum_of_squares(arrays)), rtol=1e-5 if dtype == "float32" else 1e-13
    )
    assert got.dtype == dtype and launched(cp) == [fc.sum_squares_kernel(dtype)] * 2
    assert float(fused.sum_of_squares([cp.asarray(np.zeros(0, dtype))])) == 0.0
    got = fused.sum_of_squares([cp.asarray(a) for a in arrays])  # again: the shared counter was reset
    np.testing.assert_allclose(
        float(got), float(NUMPY.sum_of_squares(arrays)), rtol=1e-5 if dtype == "float32" else 1e-13
    )


def _rule_run(fused, cp, rule, dtype, rng, steps=3, count=fc.MT_MAX + 3):
    spec = RULES[rule]
    sizes = [(i * 53) % 400 + 1 for i in range(count)] + [fc.CHUNK + 5]
    w = [rng.standard_normal(s).astype(dtype) for s in sizes]
    ref_w, ref_s = [a.copy() for a in w], [[np.zeros_like(a) for _ in spec.state] for a in w]
    dev_w = [cp.asarray(a) for a in w]
    dev_s = [[cp.asarray(np.zeros_like(a)) for _ in spec.state] for a in w]
    for t in range(1, steps + 1):
        grads = [rng.standard_normal(s).astype(dtype) for s in sizes]
        hyper = {k: v for k, v in spec.defaults.items()}
        if "t" in hyper:
            hyper["t"] = t
        checks.REFERENCE.update_all(spec.kernel, ref_w, grads, ref_s, hyper)
        fused.update_all(spec.kernel, dev_w, [cp.asarray(g) for g in grads], dev_s, hyper)
    return dev_w, dev_s, ref_w, ref_s


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_update_all_is_the_reference_bit_for_bit(cp, fused, rng, rule, dtype):
    dev_w, dev_s, ref_w, ref_s = _rule_run(fused, cp, rule, dtype, rng)
    for i in range(len(ref_w)):
        checks.same(host(dev_w[i]), ref_w[i], f"{rule} weights {i}")
        for a, b in zip(dev_s[i], ref_s[i], strict=True):
            checks.same(host(a), b, f"{rule} state {i}")
    assert launched(cp) == [fc.update_kernel(RULES[rule].kernel, dtype)] * 6  # 3 steps, 2 launches each


def test_update_all_reads_device_hyperparameters(cp, fused, rng):
    spec, t0 = RULES["adam"], 4
    w = rng.standard_normal(300).astype("float64")
    ref_w, ref_m, ref_v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    dev = [cp.asarray(w), cp.asarray(ref_m), cp.asarray(ref_v)]
    g = rng.standard_normal(300)
    d = spec.defaults
    fused.device_hyper = cp.asarray(np.array([d["learning_rate"], t0, 0.0, 0.0]))
    fused.update_all("adam", [dev[0]], [cp.asarray(g)], [dev[1:]], {**d, "t": 1})  # t=1 ignored: the device's
    checks.REFERENCE.adam(ref_w, g, ref_m, ref_v, **{**d, "t": t0 + 1})
    assert launched(cp) == [fc.ADAM_ADVANCE_KERNEL, fc.update_kernel("adam", "float64")]
    np.testing.assert_allclose(host(dev[0]), ref_w, rtol=1e-15)


def test_the_stand_in_refuses_none_and_wrong_sizes(cp):
    kernel = fc.get_kernel(fc.relu_backward_kernel("float32"))
    x = cp.asarray(np.ones(8, np.float32))
    with pytest.raises(TypeError, match="CuPy 13"):
        kernel((1,), (32,), (x, None, np.int64(8)))
    with pytest.raises(ArgumentMismatch, match="sizes"):
        kernel((1,), (32,), (x, x, np.int32(8)))
    with pytest.raises(TypeError, match="only size one"):
        kernel((1,), (32,), (x, np.ones(8, np.float32), np.int64(8)))


def test_none_is_a_null_pointer_in_cupy_14_mode(cp, monkeypatch):
    # what CuPy 14 does with None (the stand-in's default refuses it, as code that must run on CuPy 13 should)
    lenient = make_module(reject_none=False)
    assert lenient.stand.convert(None) == bytes(8)
    assert lenient.stand.convert(np.float32(1.5)) == np.float32(1.5).tobytes()
    assert lenient.stand.convert(7) == np.int64(7).tobytes() and lenient.stand.convert(2.0) == np.float64(2).tobytes()
    struct = fc.tensor_list([[cp.asarray(np.ones(3))]])[0]
    assert lenient.stand.convert(struct) == struct.tobytes() and len(struct.tobytes()) == 1552


def test_take_rows_falls_back_on_strided_rows(cp, fused, rng):
    src = rng.standard_normal((10, 8))
    x = cp.asarray(src)[:, ::2]  # not C-contiguous: cupy.take, no launch
    idx = np.array([3, -1, 9])  # in range: the inherited path takes with array_api_compat.numpy, which does not wrap
    checks.same(host(fused.take_rows(x, cp.asarray(idx))), np.take(src[:, ::2], idx, axis=0, mode="wrap"), "fallback")
    buf = cp.empty((3, 4), np.float64)
    assert fused.take_rows(x, cp.asarray(idx), out=buf) is buf
    checks.same(host(buf), np.take(src[:, ::2], idx, axis=0, mode="wrap"), "fallback into a buffer")
    assert cp.stand.launches == []
