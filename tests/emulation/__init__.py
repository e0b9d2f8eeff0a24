"""CPU emulation of fcn's CUDA kernels, for the test suite only: ``cuda_emu.h`` lets g++ compile
``fcn/ops/kernels/fused.cu`` as host code, :mod:`.build` compiles and loads it, :mod:`.checks` compares each
kernel with the NumPy reference, :mod:`.fake_cupy` runs :class:`fcn.ops.FusedCupyOps` on top of it.
"""

from __future__ import annotations

import functools

import pytest

from .build import EmulatedModule, gxx


def require_gxx() -> None:
    """Skip the calling test, with the reason, where g++ is missing."""
    if gxx() is None:
        pytest.skip("g++ is not installed: the CUDA kernels cannot be compiled for the CPU emulation")


@functools.cache
def emulated(
    source: str | None = None, variant: str = "plain", options: tuple[str, ...] | None = None
) -> EmulatedModule:
    """The emulated kernels of ``source`` (default: fcn's fused.cu) compiled with NVRTC's ``options`` (default:
    fcn's), built once per process."""
    from fcn.ops import cuda

    source = cuda.kernel_source() if source is None else source
    return EmulatedModule(source, cuda.COMPILE_OPTIONS if options is None else tuple(options), variant)
