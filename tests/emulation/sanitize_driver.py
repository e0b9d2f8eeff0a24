"""Runs the kernel checks in a process of its own, for a sanitizer preloaded by the caller (LD_PRELOAD).

``python -m tests.emulation.sanitize_driver VARIANT WHAT``: VARIANT is a build of :data:`.build.FLAGS` (built
beforehand by the caller, so this finds it in the cache); WHAT is ``all`` (every kernel, small cases) or one
``each`` (every kernel at least once: for ThreadSanitizer, whose thread starts are slow) or one planted kernel
of :func:`.planted.with_broken_copies` (``overread``, ``race``, ``divergent``, ``deadlock``).
Arrays are exact heap allocations (no guard bands), so AddressSanitizer sees a read one element too far.
Prints ``driver: done`` at the end.
"""

from __future__ import annotations

import sys

import numpy as np

from fcn.ops import cuda

from . import checks, planted
from .build import EmulatedModule


def planted_module(variant: str) -> EmulatedModule:
    source = planted.planted_source(cuda.kernel_source(), sanitized=variant != "plain")
    return EmulatedModule(source, cuda.COMPILE_OPTIONS, variant)


def run_all(module: EmulatedModule, mem: checks.Memory, rng: np.random.Generator) -> None:
    """Every kernel once or twice, on small inputs (ThreadSanitizer runs them several times slower)."""
    for word in cuda.GATHER_WORDS:
        checks.check_gather_rows(module, mem, rng, word, rows=9, grid_y=3)
    for dtype in ("float32", "float64"):
        checks.check_gather_augment(module, mem, rng, dtype, rows=5, grid_y=2)
        checks.check_bias_relu(module, mem, rng, dtype, rows=9)
        checks.check_relu_backward(module, mem, rng, dtype, n=700, grid=(2,))
        checks.check_sum_squares(module, mem, rng, dtype)
        for rule in checks.RULE_CASES:
            checks.check_update(module, mem, rng, rule, dtype, steps=2)
    for dtype, label_dtype, c in (("float32", "int64", 1), ("float64", "int32", 33), ("float32", "int32", 100)):
        checks.check_softmax(module, mem, rng, dtype, label_dtype, c, n=20, blocks=2)
    checks.check_softmax(module, mem, rng, "float64", "int64", 10, n=20, blocks=1, bad_labels=True)
    checks.check_adam_advance(module, mem)


def run_each(module: EmulatedModule, mem: checks.Memory, rng: np.random.Generator) -> None:
    """Every kernel at least once, one dtype each (the threads synchronise the same way in both), in blocks of
    two warps: races between warps need no more, and ThreadSanitizer starts each thread slowly."""
    checks.BLOCK = 64
    for word in (16, 1):
        checks.check_gather_rows(module, mem, rng, word, rows=5, grid_y=2)
    checks.check_gather_augment(module, mem, rng, "float64", rows=3, grid_y=2)
    checks.check_bias_relu(module, mem, rng, "float32", rows=4, cols=40, grid=(1, 2))
    checks.check_relu_backward(module, mem, rng, "float64", n=300, grid=(1,))
    checks.check_sum_squares(module, mem, rng, "float32")
    for rule in ("sgd", "sgd_momentum", "rmsprop", "adamw"):
        checks.check_update(module, mem, rng, rule, "float64", steps=1, sizes=(300, cuda.CHUNK + 1))
    checks.check_softmax(module, mem, rng, "float32", "int64", 33, n=20, blocks=2, launches=2)
    checks.check_softmax(module, mem, rng, "float64", "int32", 10, n=12, blocks=1, launches=1, bad_labels=True)
    checks.check_adam_advance(module, mem)


def main(argv: list[str]) -> int:
    variant, what = argv
    module, mem, rng = planted_module(variant), checks.Memory(guard=0), np.random.default_rng(0)
    if what in ("all", "each"):
        (run_all if what == "all" else run_each)(module, mem, rng)
    elif what == "overread":
        name = "fcn_planted_overread_f32_i32"
        checks.check_softmax(module, mem, rng, "float32", "int32", 10, n=16, blocks=1, launches=1, kernel=name)
    else:
        checks.BLOCK = 64  # two warps are enough for every planted fault
        checks.check_sum_squares(module, mem, rng, "float64", kernel=f"fcn_planted_{what}")
    print("driver: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
