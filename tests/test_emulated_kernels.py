"""fcn's CUDA kernels, compiled by g++ as host code and run on the CPU emulation, against the NumPy reference.

What the emulation checks and what it does not: docs/gpu.md. Skipped, with the reason, where g++ is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from fcn.ops import cuda as fc

try:  # tests/ on sys.path (pytest's default "prepend" import mode, no tests/__init__.py)
    from emulation import checks, emulated, require_gxx
except ImportError:
    from .emulation import checks, emulated, require_gxx

DTYPES = ["float32", "float64"]


@pytest.fixture(scope="module")
def module():
    require_gxx()
    return emulated()


@pytest.fixture
def mem():
    return checks.Memory()


@pytest.fixture(autouse=True)
def natural_order(module):
    module.set_block_order("natural")
    yield
    module.set_block_order("natural")


def test_every_launched_kernel_is_emulated_but_the_host_spin(module):
    assert set(module.params) == set(fc.KERNEL_NAMES) - {fc.HOLD_STREAM_KERNEL}


@pytest.mark.parametrize("word", fc.GATHER_WORDS)
def test_gather_rows_every_word_size(module, mem, rng, word):
    checks.check_gather_rows(module, mem, rng, word, lab_bytes=8 if word % 2 else 4)


def test_gather_rows_without_labels(module, mem, rng):
    checks.check_gather_rows(module, mem, rng, 4, lab_bytes=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flip, shift", [(True, True), (True, False), (False, True), (False, False)])
def test_gather_augment_is_pad_crop_flip(module, mem, rng, dtype, flip, shift):
    checks.check_gather_augment(module, mem, rng, dtype, with_flip=flip, with_shift=shift)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_relu_and_relu_backward_bit_identical(module, mem, rng, dtype):
    checks.check_bias_relu(module, mem, rng, dtype)
    checks.check_relu_backward(module, mem, rng, dtype)


@pytest.mark.parametrize(
    "dtype, label_dtype, c",
    [("float32", "int32", 1), ("float64", "int64", 1), ("float32", "int64", 10), ("float64", "int32", 10),
     ("float32", "int32", 32), ("float64", "int64", 33), ("float32", "int64", 100), ("float64", "int32", 100)],
)  # fmt: skip
def test_softmax_cross_entropy(module, mem, rng, dtype, label_dtype, c):
    checks.check_softmax(module, mem, rng, dtype, label_dtype, c)


@pytest.mark.parametrize("dtype, label_dtype", [("float32", "int64"), ("float64", "int32")])
def test_softmax_out_of_range_labels_give_nan_and_read_nothing_outside(module, mem, rng, dtype, label_dtype):
    checks.check_softmax(module, mem, rng, dtype, label_dtype, 10, bad_labels=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_of_squares_over_several_launches(module, mem, rng, dtype):
    checks.check_sum_squares(module, mem, rng, dtype)
    checks.check_sum_squares(module, mem, rng, dtype, groups=((0, 6),))  # one launch, repeated: counter reset


@pytest.mark.parametrize("rule", list(checks.RULE_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_update_rules_bit_identical_over_steps(module, mem, rng, rule, dtype):
    checks.check_update(module, mem, rng, rule, dtype)


def test_a_full_tensor_list(module, mem, rng):
    sizes = [(i * 997) % (fc.CHUNK + 5) + 1 for i in range(fc.MT_MAX)]
    checks.check_update(module, mem, rng, "adam", "float32", steps=1, sizes=sizes)


def test_adam_advance(module, mem):
    checks.check_adam_advance(module, mem)


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_block_order_does_not_change_a_bit(module, rng, order):
    results = []
    for o in ("natural", order):
        module.set_block_order(o, seed=7)
        gen = np.random.default_rng(5)
        mem = checks.Memory()
        loss = checks.check_softmax(module, mem, gen, "float32", "int32", 10, n=70, blocks=4, launches=1)
        total = checks.check_sum_squares(module, mem, gen, "float64")
        results.append((np.float32(loss).tobytes(), total.tobytes()))
    assert results[0] == results[1]


def test_launch_checks_argument_sizes_and_configuration(module, mem):
    x = mem.put(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="is 8 bytes, got 4"):
        module.launch("fcn_relu_backward_f32", (1,), (32,), [checks.arg(x), checks.arg(x), checks.arg(np.int32(4))])
    with pytest.raises(RuntimeError, match="CUDA error 9"):
        checks.run(module, mem, "fcn_relu_backward_f32", (1,), (2048,), x, x, np.int64(4))


PROBE = """
extern "C" __global__ void probe_shuffles(int* out) {
    const int lane = threadIdx.x & 31;
    int* row = out + 5 * threadIdx.x;
    row[0] = __shfl_down_sync(0xffffffffu, lane, 5);
    row[1] = __shfl_up_sync(0xffffffffu, lane, 3);
    row[2] = __shfl_xor_sync(0xffffffffu, lane, 9);
    row[3] = __shfl_sync(0xffffffffu, lane, lane + 7);
    row[4] = (int)(2.0 * __shfl_down_sync(0xffffffffu, threadIdx.x + 0.25, 1));
}
"""


def test_warp_shuffles_follow_cuda():
    require_gxx()
    probe = emulated(PROBE)
    mem = checks.Memory()
    out = mem.empty((64, 5), np.int32)
    checks.run(probe, mem, "probe_shuffles", (1,), (64,), out)
    lane = np.arange(64) % 32
    np.testing.assert_array_equal(out[:, 0], np.where(lane + 5 < 32, lane + 5, lane))  # out of range: own value
    np.testing.assert_array_equal(out[:, 1], np.where(lane >= 3, lane - 3, lane))
    np.testing.assert_array_equal(out[:, 2], lane ^ 9)
    np.testing.assert_array_equal(out[:, 3], (lane + 7) % 32)  # __shfl_sync wraps
    tid = np.arange(64)
    np.testing.assert_array_equal(out[:, 4], 2 * np.where(lane < 31, tid + 1, tid))  # a double travels whole
