"""Each emulated kernel against the NumPy reference: the checks shared by the test files and the sanitizer driver.

Every ``check_*`` function launches kernels of an :class:`~tests.emulation.build.EmulatedModule` on random
inputs and raises ``AssertionError`` where the result differs from what NumPy (or fcn's reference kernel table)
computes. Arrays live in :class:`Memory`: with guard bands (canary bytes around every array, checked after each
launch, so an out-of-bounds write fails and a near out-of-bounds read stays inside memory the test owns), or
without (exact heap allocations, for AddressSanitizer to watch).
"""

from __future__ import annotations

from types import SimpleNamespace

import array_api_compat.numpy as xp_numpy
import numpy as np

from fcn.ops import NumpyOps, Ops
from fcn.ops import cuda as fc

from .build import EmulatedModule, arg

CANARY = 0xA5
BLOCK = fc.BLOCK


class Memory:
    """Arrays for kernels: each inside a buffer with ``guard`` canary bytes on both sides (0: exact allocations)."""

    def __init__(self, guard: int = 4096):
        self.guard = guard
        self._buffers: list[np.ndarray] = []

    def empty(self, shape, dtype, offset: int = 0) -> np.ndarray:
        """An uninitialised (canary-filled) array; ``offset`` bytes past a 16-byte boundary."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if self.guard == 0 and offset == 0:
            return np.empty(shape, dtype)
        buf = np.full(nbytes + 2 * self.guard + offset + 16, CANARY, dtype=np.uint8)
        start = self.guard + offset + (-(buf.ctypes.data + self.guard) % 16)
        self._buffers.append(buf)
        return buf[start : start + nbytes].view(dtype).reshape(shape)

    def put(self, host, offset: int = 0) -> np.ndarray:
        host = np.asarray(host)
        out = self.empty(host.shape, host.dtype, offset)
        out[...] = host
        return out

    def check(self) -> None:
        """No kernel wrote into a guard band."""
        for buf in self._buffers:
            if self.guard and not (np.all(buf[: self.guard] == CANARY) and np.all(buf[-self.guard :] == CANARY)):
                raise AssertionError("a kernel wrote outside its arrays (a guard band changed)")


NULL = np.uint64(0)
REFERENCE = Ops(SimpleNamespace(xp=xp_numpy, device=None))  # the update rules' arithmetic, operation by operation
NUMPY = NumpyOps(SimpleNamespace(xp=np, device=None))


def run(module: EmulatedModule, mem: Memory, name: str, grid, block, *args) -> None:
    module.launch(name, grid, block, [arg(a) for a in args])
    mem.check()


def same(got, want, what: str) -> None:
    """Bit-identical (NaN equal to NaN)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, f"{what}: {got.dtype}{got.shape} vs {want.dtype}"
    assert np.array_equal(got, want, equal_nan=True), f"{what}: not bit-identical; max |diff| " + str(
        np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0)
    )


# -- gather ----------------------------------------------------------------------------------------------------


def check_gather_rows(module, mem, rng, word: int, *, rows=23, n_src=9, row_bytes=48, grid_y=4, lab_bytes=8):
    """Every word size, indices that wrap (negative, past the end), labels in the same pass, grid.y < rows."""
    units = row_bytes // word
    src = mem.put(rng.integers(0, 256, (n_src, row_bytes), dtype=np.uint8))
    idx = mem.put(rng.integers(-3 * n_src, 3 * n_src, rows).astype(np.int64))
    dst = mem.empty((rows, row_bytes), np.uint8)
    labels = mem.put(rng.integers(0, 256, (n_src, lab_bytes), dtype=np.uint8)) if lab_bytes else None
    lab_out = mem.empty((rows, lab_bytes), np.uint8) if lab_bytes else None
    grid = (max(1, -(-units // BLOCK) // 2), grid_y)  # half the blocks in x: the column loop strides too
    run(module, mem, f"fcn_gather_rows_b{word}", grid, (BLOCK,), src, np.int64(n_src), np.int64(units), idx,
        np.int64(rows), dst, NULL if labels is None else labels, NULL if lab_out is None else lab_out,
        np.int32(lab_bytes))  # fmt: skip
    same(dst, np.take(src, idx, axis=0, mode="wrap"), f"gather b{word}")
    if lab_bytes:
        same(lab_out, np.take(labels, idx, axis=0, mode="wrap"), f"gather b{word} labels")


def pad_crop_flip(x, idx, flip, shift, pad: int):
    """NumPy: pad each image with zeros, crop at ``shift + pad``, then mirror left-right where ``flip``."""
    n, c, h, w = x.shape
    rows = np.take(x, idx, axis=0, mode="wrap")
    padded = np.pad(rows, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty_like(rows)
    for r in range(len(idx)):
        dy, dx = shift[r] if shift is not None else (0, 0)
        crop = padded[r, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
        out[r] = crop[:, :, ::-1] if flip is not None and flip[r] else crop
    return out


def check_gather_augment(module, mem, rng, dtype, *, with_flip=True, with_shift=True, rows=11, grid_y=3):
    """Flip and crop against :func:`pad_crop_flip`; ``flip``/``shift`` may be null; labels come along."""
    n, c, h, w, pad = 7, 3, 6, 5, 2
    x = mem.put(rng.standard_normal((n, c, h, w)).astype(dtype))
    idx = mem.put(rng.integers(-n, 2 * n, rows).astype(np.int64))
    flip = mem.put(rng.integers(0, 2, rows).astype(np.uint8)) if with_flip else None
    shift = mem.put(rng.integers(-pad, pad + 1, (rows, 2)).astype(np.int32)) if with_shift else None
    y = mem.put(rng.integers(0, 10, n).astype(np.int32))
    out, y_out = mem.empty((rows, c, h, w), dtype), mem.empty((rows,), np.int32)
    grid = (1, grid_y)  # one block of 256 threads per row of 90 elements: the thread guard matters
    run(module, mem, fc.gather_augment_kernel(np.dtype(dtype).name), grid, (BLOCK,), x, np.int64(n), np.int32(c),
        np.int32(h), np.int32(w), idx, np.int64(rows), out, NULL if flip is None else flip,
        NULL if shift is None else shift, y, y_out, np.int32(4))  # fmt: skip
    same(out, pad_crop_flip(x, idx, flip, shift, pad), f"gather_augment {dtype}")
    same(y_out, np.take(y, idx, mode="wrap"), "gather_augment labels")


# -- elementwise -------------------------------------------------------------------------------------------------


def check_bias_relu(module, mem, rng, dtype, *, rows=37, cols=70, grid=(1, 5)):
    h0 = rng.standard_normal((rows, cols)).astype(dtype)
    h0[0, :3] = np.nan
    b = mem.put(rng.standard_normal(cols).astype(dtype))
    h = mem.put(h0)
    run(module, mem, fc.bias_relu_kernel(np.dtype(dtype).name), grid, (64,), h, b, np.int64(rows), np.int64(cols))
    same(h, NUMPY.bias_relu(h0.copy(), np.asarray(b)), f"bias_relu {dtype}")


def check_relu_backward(module, mem, rng, dtype, *, n=3001, grid=(3,)):
    d0 = rng.standard_normal(n).astype(dtype)
    y0 = np.maximum(rng.standard_normal(n), 0).astype(dtype)
    d0[:5] = np.nan  # y <= 0 there too for some: NaN * 0 stays NaN
    d, y = mem.put(d0), mem.put(y0)
    run(module, mem, fc.relu_backward_kernel(np.dtype(dtype).name), grid, (BLOCK,), d, y, np.int64(n))
    same(d, NUMPY.relu_backward(d0.copy(), y0), f"relu_backward {dtype}")


# -- softmax cross-entropy ---------------------------------------------------------------------------------------


def softmax_reference(scores, y):
    """Loss and gradient from NumpyOps where every label is valid; NaN loss and no one-hot term otherwise."""
    n, c = scores.shape
    valid = (y >= 0) & (y < c)
    if valid.all():
        loss, d = NUMPY.softmax_cross_entropy(scores, y)
        return float(loss), d
    shifted = scores - scores.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    rows = np.flatnonzero(valid)
    p[rows, y[rows]] -= 1
    return float("nan"), p / n


def check_softmax(
    module, mem, rng, dtype, label_dtype, c, *, n=45, blocks=2, bad_labels=False, launches=2, kernel=None
):
    """More rows than warps (``blocks`` x 8 warps); ``launches`` in a row share one counter (it must reset)."""
    kernel = kernel or fc.softmax_xent_kernel(np.dtype(dtype).name, np.dtype(label_dtype).name)
    tol = 1e-5 if dtype == "float32" else 1e-12
    partials, counter = mem.empty((blocks,), np.float64), mem.put(np.zeros(1, np.uint32))
    for _ in range(launches):
        scores = mem.put((rng.standard_normal((n, c)) * 3).astype(dtype))
        y_host = rng.integers(0, c, n)
        if bad_labels:
            y_host[[0, n // 2, n - 1]] = [c, -1, c + 5]
        y = mem.put(y_host.astype(label_dtype))
        dscores, loss = mem.empty((n, c), dtype), mem.empty((), dtype)
        run(module, mem, kernel, (blocks,), (BLOCK,), scores, y, np.int64(n), np.int32(c), dscores, loss, partials,
            counter)  # fmt: skip
        want_loss, want_d = softmax_reference(np.asarray(scores), y_host)
        np.testing.assert_allclose(dscores, want_d, rtol=tol, atol=tol / n, err_msg=f"dscores {dtype} c={c}")
        if bad_labels:
            assert np.isnan(loss), f"loss {float(loss)} with out-of-range labels"
        else:
            np.testing.assert_allclose(float(loss), want_loss, rtol=tol, err_msg=f"loss {dtype} c={c}")
        assert counter[0] == 0, "the block counter was not reset for the next launch"
    return float(loss)


# -- multi-tensor launches ---------------------------------------------------------------------------------------


SIZES = (fc.CHUNK * 2 + 3, 1, 0, 5000, fc.CHUNK, 777)


def handles(arrays):
    """What :func:`fcn.ops.cuda.tensor_list` reads of device arrays (``.data.ptr``, ``.size``), for NumPy arrays."""
    return [SimpleNamespace(data=SimpleNamespace(ptr=a.ctypes.data), size=a.size) for a in arrays]


def tensors(mem, rng, dtype, sizes=SIZES):
    return [mem.put(rng.standard_normal(s).astype(dtype)) for s in sizes]


def check_sum_squares(module, mem, rng, dtype, *, groups=((0, 3), (3, 6)), kernel=None):
    """Several launches (as for more than MT_MAX tensors): partial slots, then one launch that finalizes."""
    kernel = kernel or fc.sum_squares_kernel(np.dtype(dtype).name)
    xs = tensors(mem, rng, dtype)
    lists = [fc.tensor_list([handles(xs[a:b])]) for a, b in groups]
    total = sum(blocks for _, blocks in lists)
    partials, counter, out = mem.empty((total,), np.float64), mem.put(np.zeros(1, np.uint32)), mem.empty((), dtype)
    slot = 0
    for k, (tl, blocks) in enumerate(lists):
        fin = np.int32(k == len(lists) - 1)
        run(module, mem, kernel, (blocks,), (BLOCK,), tl, partials, np.int64(slot), np.int64(total), counter, fin, out)
        slot += blocks
    want = sum(float(np.dot(x.astype(np.float64), x.astype(np.float64))) for x in xs)
    np.testing.assert_allclose(float(out), want, rtol=1e-6 if dtype == "float32" else 1e-13)
    assert counter[0] == 0
    return out.copy()


RULE_CASES = {
    "sgd": ("sgd", {"learning_rate": 1e-2}),
    "sgd_momentum": ("sgd_momentum", {"learning_rate": 1e-2, "momentum": 0.9}),
    "rmsprop": ("rmsprop", {"learning_rate": 1e-3, "decay_rate": 0.99, "epsilon": 1e-8}),
    "adam": ("adam", {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}),
    "adamw": ("adam", {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 1e-2}),
}


def check_update(module, mem, rng, rule: str, dtype, *, steps=3, sizes=(3000, 1, fc.CHUNK + 1)):
    """``steps`` steps of one update rule, bit-identical to the reference table's arithmetic."""
    kernel, hyper = RULE_CASES[rule]
    n_state = {"sgd": 0, "sgd_momentum": 1, "rmsprop": 1, "adam": 2}[kernel]
    w = tensors(mem, rng, dtype, sizes)
    states = [[mem.put(np.zeros(s, dtype)) for s in sizes] for _ in range(n_state)]
    ref_w = [x.copy() for x in w]
    ref_states = [[x.copy() for x in group] for group in states]
    slots = fc.UPDATE_KERNEL_SCALARS[kernel]
    for t in range(1, steps + 1):
        g = tensors(mem, rng, dtype, sizes)
        step_hyper = {**hyper, "t": t} if kernel == "adam" else hyper
        for i in range(len(sizes)):
            getattr(REFERENCE, kernel)(ref_w[i], g[i].copy(), *(s[i] for s in ref_states), **step_hyper)
        values = [float(hyper.get(s, 0.0)) if s else 0.0 for s in slots]
        a, b, eps, wd = (values + [0.0] * 4)[:4]
        bias1, bias2 = (1 - a**t, 1 - b**t) if kernel == "adam" else (1.0, 1.0)
        tl, blocks = fc.tensor_list([handles(group) for group in (w, g, *states)])
        scalars = [np.float64(v) for v in (hyper["learning_rate"], a, b, eps, wd, bias1, bias2)]
        run(module, mem, fc.update_kernel(kernel, np.dtype(dtype).name), (blocks,), (BLOCK,), tl, *scalars, NULL)
    for i in range(len(sizes)):
        same(w[i], ref_w[i], f"{rule} {dtype} weights {i}")
        for s, ref in zip(states, ref_states, strict=True):
            same(s[i], ref[i], f"{rule} {dtype} state {i}")


def check_adam_advance(module, mem, *, t0=4.0, beta1=0.9, beta2=0.999):
    hyper = mem.put(np.array([1e-3, t0, 0.0, 0.0]))
    run(module, mem, fc.ADAM_ADVANCE_KERNEL, (2,), (32,), hyper, np.float64(beta1), np.float64(beta2))
    t = t0 + 1
    same(hyper, np.array([1e-3, t, 1 - beta1**t, 1 - beta2**t]), "adam_advance")
