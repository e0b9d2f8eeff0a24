"""The kernel tables: every numeric kernel of fcn once against ``xp`` (:class:`Ops`), and faster versions per backend.

:func:`get_ops` is the one place a table is chosen for a backend (``backend.ops`` caches its answer):

- NumPy: :class:`NumpyOps` (``out=`` and in-place forms, no Array-API wrappers; where SciPy is installed,
  unless ``fused=False`` or ``FCN_BLAS=0``, SciPy's BLAS with elementwise work folded into the products);
- CuPy: :class:`CupyOps`, or :class:`FusedCupyOps` (hand-written CUDA kernels) where the fused kernels are
  requested (``fused=True`` or ``$FCN_FUSED_KERNELS``);
- any other Array-API namespace: the reference :class:`Ops`.

Nothing in this package imports the rest of fcn: a table is given a backend (anything with ``xp``, ``device``,
``is_numpy``, ``is_cupy`` and ``fused``) and works on its arrays.
"""

from __future__ import annotations

from typing import Any

from .cuda import fused_requested
from .cupy_ops import CupyOps, FusedCupyOps
from .numpy_ops import NumpyOps
from .reference import Ops

__all__ = ["Ops", "NumpyOps", "CupyOps", "FusedCupyOps", "get_ops", "fused_requested"]


def get_ops(backend: Any) -> Ops:
    """The kernel table for ``backend`` (use ``backend.ops``, which caches it)."""
    if backend.is_numpy:
        return NumpyOps(backend, blas=backend.fused)  # None: $FCN_BLAS decides (on unless 0)
    if backend.is_cupy:
        # the fused CUDA kernels are opt-in until verified on a GPU: get_backend("cupy", fused=True) or
        # FCN_FUSED_KERNELS=1
        return FusedCupyOps(backend) if fused_requested(backend.fused) else CupyOps(backend)
    return Ops(backend)
