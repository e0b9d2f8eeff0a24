"""Input checks shared by layers, models and the training loop.

On a GPU, bad input does not fail by itself: an out-of-range label silently selects garbage, NaN
propagates quietly. So fcn checks inputs at its public entry points. Checks that read values (label
range, finiteness) need one device -> host sync each; the training loop validates its whole dataset once
up front and then runs under :func:`trusted_inputs`, which turns those value checks off for the batches
it draws (the same idea as scikit-learn's ``config_context(assume_finite=True)``). Cheap checks on
shapes and dtypes always run: they read metadata only, never array values.
"""

from __future__ import annotations

import numbers
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

__all__ = [
    "trusted_inputs",
    "value_checks_enabled",
    "check_features",
    "check_labels",
    "check_same_float_dtype",
    "check_int",
    "check_float",
    "check_fits_dtype",
    "all_finite",
    "InputFileError",
    "regular_file",
]

_VALUE_CHECKS: ContextVar[bool] = ContextVar("fcn_value_checks", default=True)


@contextmanager
def trusted_inputs() -> Iterator[None]:
    """Skip value checks (label range, NaN/inf) inside the block: for loops over already-validated data."""
    token = _VALUE_CHECKS.set(False)
    try:
        yield
    finally:
        _VALUE_CHECKS.reset(token)


def value_checks_enabled() -> bool:
    """Whether checks that read array values (and so sync a GPU) are on."""
    return _VALUE_CHECKS.get()


def _is_floating(xp: Any, dtype: Any) -> bool:
    return xp.isdtype(dtype, "real floating")


def check_same_float_dtype(xp: Any, where: str, **arrays: Any) -> None:
    """Raise ``TypeError`` unless every array has one and the same real floating dtype.

    Mixed float32/float64 inputs would be promoted silently (slow, and not what the caller asked for).
    """
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    bad = [f"{n}: {d}" for n, d in dtypes.items() if not _is_floating(xp, d)]
    if bad:
        raise TypeError(f"{where}: expected real floating arrays, got {', '.join(bad)}")
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"{where}: arrays must share one dtype, got {listing}; cast them first")


def check_features(xp: Any, X: Any, num_features: int | None = None, where: str = "X") -> None:
    """Check a batch of inputs: at least 2-D, ``num_features`` values per sample, real numbers, finite.

    Shape: ``X`` is ``(N, d_1, ..., d_k)`` with ``d_1 * ... * d_k == num_features`` when given.
    """
    if X.ndim < 2:
        raise ValueError(f"{where} must have shape (N, d_1, ..., d_k), got shape {tuple(X.shape)}")
    if num_features is not None:
        per_sample = 1
        for d in X.shape[1:]:
            per_sample *= d
        if per_sample != num_features:
            raise ValueError(
                f"{where} has {per_sample} features per sample (shape {tuple(X.shape)}), "
                f"but the model expects {num_features}"
            )
    if not xp.isdtype(X.dtype, ("real floating", "integral")):
        raise TypeError(f"{where} must hold real numbers, got dtype {X.dtype}")
    if value_checks_enabled() and _is_floating(xp, X.dtype) and not all_finite(xp, X):
        raise ValueError(f"{where} contains NaN or infinite values")


def all_finite(xp: Any, X: Any) -> bool:
    """Whether every entry of ``X`` is finite.

    First one reduction with no temporary (the sum is finite when every entry is, unless it overflows);
    only when that sum is not finite does the exact elementwise test decide. scikit-learn's
    ``assert_all_finite`` uses the same shortcut.
    """
    if bool(xp.isfinite(xp.sum(X))):
        return True
    return bool(xp.all(xp.isfinite(X)))


def check_fits_dtype(xp: Any, X: Any, dtype: Any, where: str = "X") -> None:
    """Raise ``ValueError`` when casting floating ``X`` to the narrower ``dtype`` would turn values into inf.

    float64 data beyond float32's range (about 3.4e38) becomes infinite in a float32 model; that would later
    surface as a "diverged" loss. Checked only with value checks on (two reductions, no temporary).
    """
    if not value_checks_enabled() or X.dtype == dtype:
        return
    if not (_is_floating(xp, X.dtype) and _is_floating(xp, dtype)):
        return
    limit = float(xp.finfo(dtype).max)
    if float(xp.finfo(X.dtype).max) <= limit or 0 in tuple(X.shape):
        return
    biggest = max(float(xp.max(X)), -float(xp.min(X)))
    if biggest > limit:
        name = getattr(dtype, "__name__", None) or str(dtype).rsplit(".", 1)[-1]
        raise ValueError(
            f"{where} holds values up to {biggest:.3g} in magnitude, beyond the range of {name} (largest "
            f"{limit:.3g}), the model's dtype: they would become infinite. Scale the data, or use a float64 model"
        )


def check_labels(xp: Any, y: Any, num_samples: int, num_classes: int, where: str = "y") -> None:
    """Check class labels: integer dtype, shape ``(num_samples,)``, every value in ``[0, num_classes)``."""
    if not xp.isdtype(y.dtype, "integral"):
        raise TypeError(f"{where} must hold integer class labels, got dtype {y.dtype}")
    if tuple(y.shape) != (num_samples,):
        raise ValueError(f"{where} must have shape ({num_samples},) to match the inputs, got {tuple(y.shape)}")
    if value_checks_enabled() and num_samples > 0:
        lo, hi = int(xp.min(y)), int(xp.max(y))
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{where} has labels outside [0, {num_classes}): min {lo}, max {hi}. "
                "(On a GPU such labels would not raise; fcn checks them.)"
            )


# -- scalar arguments ---------------------------------------------------------------------------------------------
# Constructors, the Solver and the command line check their numeric arguments with these, so a wrong value is
# refused with the argument's name instead of being coerced silently (int(2.7) == 2) or failing deep in NumPy.


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an ``int``: a Python or NumPy integer (not a bool, float or string), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def check_float(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False) -> float:
    """``value`` as a finite ``float`` (a real number, not a bool or string), ``> 0`` or ``>= 0`` when asked."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value:g}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value:g}")
    return value


# -- input files --------------------------------------------------------------------------------------------------
# Every reader of a file a user names (model files, checkpoints, images) checks it here first: opening a FIFO for
# reading waits for a writer forever, and a device (/dev/zero) never ends, so only regular files are opened.


class InputFileError(ValueError):
    """A file given as input does not exist, is a folder, or is not a regular file. The message names it.

    ``path`` is the file; ``missing`` is True when it does not exist. Readers re-raise it as their own error type.
    """

    def __init__(self, message: str, path: Path, *, missing: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.missing = missing


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`, checked (one ``os.stat``) to name a regular file before it is opened.

    ``what`` names the kind of file in the messages (``"image"``: "image cat.png does not exist"). Raises
    :class:`InputFileError` when the file does not exist, cannot be looked at, is a folder, or is anything but a
    regular file (a FIFO, a socket, a device), without opening it.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputFileError(f"{what} {path} does not exist", path, missing=True) from None
    except OSError as exc:  # permissions on a folder above it, a name too long, a loop of links
        raise InputFileError(f"cannot read {what} {path}: {exc.strerror or exc}", path) from None
    if stat.S_ISDIR(mode):
        raise InputFileError(f"{path} is a folder, not a readable {what}", path)
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise InputFileError(f"{path} is {kind}, not a regular file: not a readable {what}", path)
    return path
