"""Deliberately broken versions of fused.cu, made by text patches, to prove that the checks can fail.

- :data:`BUGS`: patches of a copy of the whole source, each of which one comparison in :mod:`.checks` must
  catch. All of them go into one build, each behind ``cuda_emu::planted(k)``, which is true only while the test
  has switched bug ``k`` on (:meth:`~.build.EmulatedModule.plant`): one compilation instead of one per bug.
- :func:`with_broken_copies`: the source plus renamed, broken copies of kernels (the originals untouched): one
  reads past the end of its input (AddressSanitizer must report it), one lost a barrier (ThreadSanitizer must
  report the race), one calls ``__syncthreads`` in divergent code and one leaves the kernel early in one thread
  while the others wait at a barrier (the emulator must abort naming the line).

Every patch checks that its text is found, so a change to fused.cu cannot quietly turn a planted bug into none.
"""

from __future__ import annotations

import re

#: name -> (text in fused.cu, its replacement while the bug is on); the number of a bug is its place here
BUGS = {
    "counter_not_reset": ("        *counter = 0u;\n", "        if (!cuda_emu::planted(0)) *counter = 0u;\n"),
    "label_guard_removed": (
        "const bool valid = label >= 0 && label < c;",
        "const bool valid = cuda_emu::planted(1) || (label >= 0 && label < c);",
    ),
    "flip_off_by_one": ("(f ? width - 1 - j : j)", "(f ? width - 1 - j + (int)cuda_emu::planted(2) : j)"),
}


def patch(source: str, old: str, new: str) -> str:
    """``source`` with ``old`` replaced by ``new``, exactly once."""
    if source.count(old) != 1:
        raise ValueError(f"the planted patch expects {old!r} exactly once in the source")
    return source.replace(old, new)


def with_bugs(source: str) -> str:
    """``source`` with every bug of :data:`BUGS` patched in, each behind its switch."""
    for old, new in BUGS.values():
        source = patch(source, old, new)
    return source


def planted_source(source: str, sanitized: bool) -> str:
    """What the planted tests compile: for a sanitizer, the kernels as they are and the broken copies; for the
    emulator's own checks, the switchable bugs too."""
    return with_broken_copies(source if sanitized else with_bugs(source))


def function_text(source: str, head: str) -> str:
    """The whole definition that starts with the regex ``head`` (through its matching closing brace)."""
    match = re.search(head, source)
    if match is None:
        raise ValueError(f"no definition matching {head!r} in the source")
    depth, start = 0, source.index("{", match.end())
    for end in range(start, len(source)):
        depth += {"{": 1, "}": -1}.get(source[end], 0)
        if depth == 0:
            return source[match.start() : end + 1]
    raise ValueError(f"unbalanced braces after {head!r}")


def _block_sum_copy(source: str, name: str, old: str, new: str) -> str:
    return patch(function_text(source, r"__device__ double block_sum\(").replace("block_sum(", f"{name}(", 1), old, new)


def _sum_squares_copy(source: str, name: str, block_sum: str = "block_sum", first: str = "") -> str:
    """A copy of the sum-of-squares kernel, under ``name``, whose block sum is ``block_sum``; ``first``: a line
    of code put before its first statement."""
    body = function_text(source, r"template <typename T>\s*__device__ void sum_squares\(")
    body = patch(body.replace("sum_squares(", f"{name}_body(", 1), "block_sum(acc)", f"{block_sum}(acc)")
    body = patch(body, "    i64 begin, end;\n", f"{first}\n    i64 begin, end;\n")
    wrapper = (
        f'extern "C" __global__ void {name}(const __grid_constant__ TensorList list, double* partials, i64 slot0,\n'
        f"    i64 count, unsigned int* counter, int finalize, double* out) {{\n"
        f"    {name}_body<double>(list, partials, slot0, count, counter, finalize, out);\n}}\n"
    )
    return body + "\n" + wrapper


BARRIER = "    if (lane == 0) warp_sums[warp] = value;\n    __syncthreads();\n"


def with_broken_copies(source: str) -> str:
    """``source`` and, appended, the broken kernels ``fcn_planted_{overread_f32_i32,race,divergent,deadlock}``."""
    softmax = function_text(source, r"template <typename T, typename L>\s*__device__ void softmax_xent\(")
    softmax = patch(
        softmax.replace("softmax_xent(", "softmax_overread(", 1), "j < c; j += 32) m =", "j <= c; j += 32) m ="
    )
    parts = [
        source,
        "// -- planted bugs (tests only) --",
        softmax,
        'extern "C" __global__ void fcn_planted_overread_f32_i32(const float* scores, const int* y, i64 n, int c,\n'
        "    float* dscores, float* loss, double* partials, unsigned int* counter) {\n"
        "    softmax_overread<float, int>(scores, y, n, c, dscores, loss, partials, counter);\n}\n",
        _block_sum_copy(source, "block_sum_race", BARRIER, "    if (lane == 0) warp_sums[warp] = value;\n"),
        _sum_squares_copy(source, "fcn_planted_race", "block_sum_race"),
        _block_sum_copy(
            source, "block_sum_divergent", BARRIER, BARRIER.replace("    __sync", "    if (warp == 0) __sync")
        ),
        _sum_squares_copy(source, "fcn_planted_divergent", "block_sum_divergent"),
        _sum_squares_copy(source, "fcn_planted_deadlock", first="    if (threadIdx.x == 0) return;"),
    ]
    return "\n".join(parts)
