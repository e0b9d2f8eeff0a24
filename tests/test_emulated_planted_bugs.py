"""The emulated comparisons can fail: planted kernel bugs, each a text patch of a copy of fused.cu, must each
make the check that covers it fail, while the same check passes on the real source.

Skipped, with the reason, where g++ is missing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fcn.ops import cuda
from tests.emulation import build, checks, emulated, planted, require_gxx

# planted bug -> the check that must catch it
CATCHES = {
    "counter_not_reset": lambda m, mem, rng: checks.check_softmax(m, mem, rng, "float32", "int32", 10, n=20),
    "label_guard_removed": lambda m, mem, rng: checks.check_softmax(
        m, mem, rng, "float64", "int64", 10, n=20, bad_labels=True, launches=1
    ),
    "flip_off_by_one": lambda m, mem, rng: checks.check_gather_augment(m, mem, rng, "float32", with_shift=False),
}


@pytest.fixture(scope="module")
def sources():
    """Each planted source, compiled before the first test (two at a time: the machine's cores)."""
    require_gxx()
    source = cuda.kernel_source()
    patched = {bug: planted.with_bug(source, bug) for bug in CATCHES}
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: build.build(s, cuda.COMPILE_OPTIONS, "quick"), patched.values()))
    return patched


def test_every_planted_bug_is_a_real_change(sources):
    assert set(CATCHES) == set(planted.BUGS)
    assert all(s != cuda.kernel_source() for s in sources.values())


@pytest.mark.parametrize("bug", list(CATCHES))
def test_the_check_passes_on_the_real_kernels(bug):
    require_gxx()
    CATCHES[bug](emulated(), checks.Memory(), np.random.default_rng(3))


@pytest.mark.parametrize("bug", list(CATCHES))
def test_the_check_fails_on_the_planted_bug(sources, bug):
    module = emulated(sources[bug], "quick")
    with pytest.raises(AssertionError):
        CATCHES[bug](module, checks.Memory(), np.random.default_rng(3))
