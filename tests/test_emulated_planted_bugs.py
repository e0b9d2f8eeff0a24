"""The emulated comparisons can fail: planted kernel bugs, text patches of a copy of fused.cu
(``tests/emulation/planted.py``), must each make the check that covers it fail, while the same check passes
with the bug switched off and on the real source.

Skipped, with the reason, where g++ is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from fcn.ops import cuda

try:  # tests/ on sys.path (pytest's default "prepend" import mode, no tests/__init__.py)
    from emulation import checks, emulated, planted, require_gxx
except ImportError:
    from .emulation import checks, emulated, planted, require_gxx

# planted bug -> the check that must catch it
CATCHES = {
    "counter_not_reset": lambda m, mem, rng: checks.check_softmax(m, mem, rng, "float32", "int32", 10, n=20),
    "label_guard_removed": lambda m, mem, rng: checks.check_softmax(
        m, mem, rng, "float64", "int64", 10, n=20, bad_labels=True, launches=1
    ),
    "flip_off_by_one": lambda m, mem, rng: checks.check_gather_augment(m, mem, rng, "float32", with_shift=False),
}


@pytest.fixture(scope="module")
def bugged():
    """One build with every planted bug, each off until a test switches it on."""
    require_gxx()
    module = emulated(planted.planted_source(cuda.kernel_source(), sanitized=False))
    yield module
    module.plant(-1)


def test_every_planted_bug_has_its_check():
    assert list(CATCHES) == list(planted.BUGS)


@pytest.mark.parametrize("bug", list(CATCHES))
def test_the_check_passes_on_the_real_kernels_and_with_the_bug_off(bugged, bug):
    for module in (emulated(), bugged):
        CATCHES[bug](module, checks.Memory(), np.random.default_rng(3))


@pytest.mark.parametrize("number, bug", list(enumerate(CATCHES)))
def test_the_check_fails_with_the_bug_on(bugged, number, bug):
    bugged.plant(number)
    try:
        with pytest.raises(AssertionError):
            CATCHES[bug](bugged, checks.Memory(), np.random.default_rng(3))
    finally:
        bugged.plant(-1)
