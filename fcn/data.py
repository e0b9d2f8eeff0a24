"""CIFAR-10: find it, fetch it once, load it, split it, and preprocess it onto a backend.

The dataset is the "python version" from https://www.cs.toronto.edu/~kriz/cifar.html: a folder
``cifar-10-batches-py/`` holding ``data_batch_1`` .. ``data_batch_5`` (10 000 training images each),
``test_batch`` (10 000 test images) and ``batches.meta`` (the class names). Each file is a pickled dict
with ``data`` (uint8, shape (N, 3072): 1024 red, 1024 green, then 1024 blue values, rows in order) and
``labels`` (N ints in 0..9).

Where the files are looked for, first match wins:

1. the ``root`` argument (the ``cifar-10-batches-py`` folder itself, or the folder containing it);
2. the ``FCN_DATA_DIR`` environment variable (same two forms);
3. a per-user cache folder, ``$XDG_CACHE_HOME/fcn`` or ``~/.cache/fcn`` (see :func:`default_data_dir`).

When the folder is absent, :func:`get_CIFAR10_data` downloads the archive (170 MB) into that location,
checks its MD5, and installs it atomically, so an interrupted download never leaves a half-written
dataset behind. Without network access, put the files there yourself or point ``FCN_DATA_DIR`` at them.

Security note: the batches are pickles, because that is the format the dataset is published in. This
module only ever unpickles the dataset's own files (the names above, inside the data folder), and does
so with an unpickler that refuses every global except the few NumPy array constructors the files need.
Never use it, or ``pickle``, to read model files or anything else a user hands you.

Typical use: ``data = get_CIFAR10_data()`` holds, with the default sizes, ``X_train`` (49000, 3, 32, 32),
``y_train`` (49000,), ..., ``class_names`` (10,), ...
"""

from __future__ import annotations

import hashlib
import http.client
import operator
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy

from fcn.backend import get_backend, to_backend
from fcn.validation import InputFileError, regular_file

__all__ = [
    "BATCHES_DIRNAME",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DATA_DIR_ENV",
    "META_FILE",
    "TEST_BATCH",
    "TRAIN_BATCHES",
    "DatasetError",
    "default_data_dir",
    "download_cifar10",
    "find_cifar10",
    "locate_cifar10",
    "get_CIFAR10_data",
    "load_CIFAR10",
    "load_CIFAR10_batch",
    "load_class_names",
]

#: Where the official "python version" archive lives, and its published MD5.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

#: Environment variable naming the data folder (overrides the per-user cache folder).
DATA_DIR_ENV = "FCN_DATA_DIR"
#: How messages name the data folder's argument: ``root=...``, or ``--data-dir`` while the ``fcn`` command runs.
DATA_DIR_OPTION: ContextVar[str] = ContextVar("DATA_DIR_OPTION", default="root=...")

#: Layout of the extracted archive.
BATCHES_DIRNAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
_REQUIRED_FILES = (*TRAIN_BATCHES, TEST_BATCH, META_FILE)

_IMAGE_SHAPE = (3, 32, 32)
_ROW_SIZE = 3 * 32 * 32
_NUM_CLASSES = 10
_CHUNK = 1 << 20  # download read size: large enough to be fast, small enough for a smooth progress bar


class DatasetError(RuntimeError):
    """The dataset is missing, could not be downloaded, or its files are damaged.

    The message names the file (or URL) and says what to do about it.
    """


# -- Locating the data --------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """The folder used when no ``root`` is given: ``$FCN_DATA_DIR``, else the per-user cache folder.

    The cache folder is ``$XDG_CACHE_HOME/fcn`` when that variable holds an absolute path (the XDG rule),
    otherwise ``~/.cache/fcn``. The folder is not created here; a download creates it.
    """
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fcn"


def locate_cifar10(root: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    """``(batches_dir, install_dir)``: where the batch files are (or would be) and where a download goes.

    Nothing is downloaded (:func:`download_cifar10` does that) and the files are not checked
    (:func:`find_cifar10` does); :class:`DatasetError` when the location exists but is not a folder.

    ``root`` may be the ``cifar-10-batches-py`` folder itself or its parent; both spellings are common
    in course material, so both are accepted.
    """
    base = default_data_dir() if root is None else Path(root).expanduser()
    if base.exists() and not base.is_dir():  # a download into it could only fail, after a 170 MB transfer
        given = f"{DATA_DIR_ENV}={base}" if root is None and os.environ.get(DATA_DIR_ENV, "").strip() else str(base)
        raise DatasetError(f"the CIFAR-10 data folder {given} is not a folder; point it at a folder (or at none)")
    if base.name == BATCHES_DIRNAME or (base / TRAIN_BATCHES[0]).is_file():
        return base, base.parent
    return base / BATCHES_DIRNAME, base


def _missing_files(batches_dir: Path) -> list[str]:
    return [name for name in _REQUIRED_FILES if not (batches_dir / name).is_file()]


def _manual_instructions(install_dir: Path, url: str) -> str:
    return (
        f"Download {url} yourself and extract it so that {install_dir / BATCHES_DIRNAME / TRAIN_BATCHES[0]} "
        f"exists, or point {DATA_DIR_OPTION.get()} (or {DATA_DIR_ENV}) at a folder that contains {BATCHES_DIRNAME}/."
    )


def _require_complete(batches_dir: Path, install_dir: Path) -> Path:
    if not batches_dir.is_dir():
        raise DatasetError(
            f"CIFAR-10 not found: {batches_dir} does not exist. " + _manual_instructions(install_dir, CIFAR10_URL)
        )
    missing = _missing_files(batches_dir)
    if missing:
        raise DatasetError(
            f"CIFAR-10 folder {batches_dir} is incomplete: missing {', '.join(missing)}. Delete the folder to "
            "download it again, or copy the missing files in. " + _manual_instructions(install_dir, CIFAR10_URL)
        )
    return batches_dir


def find_cifar10(root: str | os.PathLike[str] | None = None, *, download: bool = False) -> Path:
    """The ``cifar-10-batches-py`` folder for ``root`` (see the module docstring), checked to be complete.

    When it is absent and ``download`` is true, it is downloaded first (:func:`download_cifar10`). Raises
    :class:`DatasetError` naming the folder and the missing files when it is absent or incomplete.
    """
    batches_dir, install_dir = locate_cifar10(root)
    if not batches_dir.exists() and download:
        # Module globals read at call time (not default arguments) so tests can point them at a local file.
        download_cifar10(install_dir, url=CIFAR10_URL, md5=CIFAR10_MD5)
    return _require_complete(batches_dir, install_dir)


# -- Reading batch files ------------------------------------------------------------------------------------------

# The only globals a CIFAR-10 batch needs: NumPy's array reconstruction (under its NumPy 1 and NumPy 2 module
# names) and, for files re-pickled by Python 3 with protocol 2, ``_codecs.encode`` which rebuilds bytes.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that can build NumPy arrays and plain containers, and nothing else.

    A pickle can run arbitrary code through the globals it names; a tampered cache folder should give an
    error, not code execution.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: not part of a CIFAR-10 batch")


def _unpickle(path: Path) -> dict[Any, Any]:
    """The dict stored in one of the dataset's own files (never call this on user-supplied files)."""
    try:
        with open(regular_file(path, "CIFAR-10 file"), "rb") as f:  # a FIFO would block: regular files only
            # encoding="bytes": the files were written by Python 2, whose str keys come back as bytes.
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except InputFileError as exc:
        raise DatasetError(f"CIFAR-10 file {path} is missing" if exc.missing else str(exc)) from None
    except OSError as exc:
        raise DatasetError(f"cannot read CIFAR-10 file {path}: {exc}") from exc
    except Exception as exc:  # a damaged pickle can raise almost anything (EOFError, KeyError, struct.error, ...)
        raise DatasetError(
            f"CIFAR-10 file {path} is truncated or corrupt ({type(exc).__name__}: {exc}); delete it and "
            "download the dataset again"
        ) from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"CIFAR-10 file {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def _get(d: dict[Any, Any], key: str, path: Path) -> Any:
    """``d[key]`` whether the file was written with bytes keys (Python 2) or str keys (Python 3)."""
    for k in (key.encode("ascii"), key):
        if k in d:
            return d[k]
    raise DatasetError(f"CIFAR-10 file {path} has no {key!r} entry (keys: {sorted(map(repr, d))})")


def load_CIFAR10_batch(path: str | os.PathLike[str]) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Read one batch file: ``(X, y)`` with X uint8 of shape (N, 3, 32, 32) and y int64 of shape (N,).

    The file must be one of the dataset's own pickles (see the module's security note). Missing,
    truncated or corrupt files, wrong shapes or dtypes, labels outside 0..9, and a label count that differs
    from the image count all raise :class:`DatasetError` naming the file.
    """
    path = Path(path)
    d = _unpickle(path)
    data = _get(d, "data", path)
    labels = _get(d, "labels", path)
    if not isinstance(data, numpy.ndarray) or data.dtype != numpy.uint8:
        kind = f"{data.dtype} array" if isinstance(data, numpy.ndarray) else type(data).__name__
        raise DatasetError(f"CIFAR-10 file {path}: 'data' is a {kind}, expected a uint8 array")
    if data.ndim != 2 or data.shape[1] != _ROW_SIZE:
        raise DatasetError(f"CIFAR-10 file {path}: 'data' has shape {data.shape}, expected (N, {_ROW_SIZE})")
    try:
        y = numpy.asarray(labels, dtype=numpy.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DatasetError(f"CIFAR-10 file {path}: 'labels' are not integers ({exc})") from exc
    if y.ndim != 1 or y.shape[0] != data.shape[0]:
        raise DatasetError(
            f"CIFAR-10 file {path}: {data.shape[0]} images but labels of shape {y.shape} (expected ({data.shape[0]},))"
        )
    if y.size and (y.min() < 0 or y.max() >= _NUM_CLASSES):
        raise DatasetError(
            f"CIFAR-10 file {path}: labels range over {y.min()}..{y.max()}, expected 0..{_NUM_CLASSES - 1}"
        )
    # Rows are R, G, B planes of 32x32 in C order, so this reshape is a view straight into (N, C, H, W).
    return data.reshape((data.shape[0], *_IMAGE_SHAPE)), y


def _iter_train_batches(batches_dir: Path) -> Iterator[tuple[numpy.ndarray, numpy.ndarray]]:
    for name in TRAIN_BATCHES:
        yield load_CIFAR10_batch(batches_dir / name)


def load_CIFAR10(
    root: str | os.PathLike[str] | None = None,
) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Load the whole dataset: ``(Xtr, Ytr, Xte, Yte)``, images uint8 (N, 3, 32, 32), labels int64 (N,).

    Images stay uint8 (150 MB for the training set; as float64 it would be 1.2 GB) until you preprocess
    them. ``root`` is located as in :func:`find_cifar10` (``None``: ``FCN_DATA_DIR`` or the cache folder);
    nothing is downloaded.
    """
    batches_dir = find_cifar10(root)
    xs, ys = zip(*_iter_train_batches(batches_dir), strict=True)
    Xtr = numpy.concatenate(xs)
    Ytr = numpy.concatenate(ys)
    del xs  # drop the per-batch arrays before reading the test batch, to keep the peak low
    Xte, Yte = load_CIFAR10_batch(batches_dir / TEST_BATCH)
    return Xtr, Ytr, numpy.ascontiguousarray(Xte), Yte


def load_class_names(root: str | os.PathLike[str] | None = None) -> list[str]:
    """The ten class names from ``batches.meta`` (``airplane``, ``automobile``, ..., ``truck``)."""
    batches_dir, _ = locate_cifar10(root)
    path = batches_dir / META_FILE
    names = _get(_unpickle(path), "label_names", path)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DatasetError(f"CIFAR-10 file {path}: 'label_names' is not a list of strings")
    out = [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    if len(out) != _NUM_CLASSES:
        raise DatasetError(f"CIFAR-10 file {path}: {len(out)} label names, expected {_NUM_CLASSES}")
    return out


# -- Downloading --------------------------------------------------------------------------------------------------


def _fetch(url: str, out: BinaryIO, progress: bool, timeout: float) -> str:
    """Stream ``url`` into ``out``; return the MD5 hex digest of what was received."""
    from tqdm import tqdm  # imported here: only a download needs it

    digest = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "fcn-cifar10-downloader"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=expected, unit="B", unit_scale=True, desc="CIFAR-10", disable=not progress) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received != expected:
        raise DatasetError(f"download from {url} was cut short: got {received} of {expected} bytes")
    return digest.hexdigest()


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing anything but plain files and folders inside ``dest``.

    The ``data`` filter (Python 3.12, backported to 3.8.17+/3.11.4+) does the same checks and more; the
    explicit ones keep older Pythons safe too.
    """
    extra: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    # Streaming mode ("r|gz") reads the archive once, front to back, checking each member before writing it.
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if member.name.startswith(("/", "\\")) or PurePosixPath(member.name).is_absolute() or ".." in parts:
                raise DatasetError(f"archive member {member.name!r} would be written outside the target folder")
            if not (member.isfile() or member.isdir()):
                raise DatasetError(f"archive member {member.name!r} is a link or special file; refusing it")
            tar.extract(member, dest, **extra)


def download_cifar10(
    dest_dir: str | os.PathLike[str],
    url: str = CIFAR10_URL,
    md5: str | None = CIFAR10_MD5,
    progress: bool = True,
    *,
    timeout: float = 60.0,
) -> Path:
    """Download and install CIFAR-10 as ``dest_dir/cifar-10-batches-py``; return that folder.

    The archive is streamed to a temporary file inside ``dest_dir`` (so the final move stays on one file
    system), its MD5 is checked against ``md5`` (``None`` skips the check), it is extracted into a temporary
    folder there, and the batches folder is renamed into place in one step. On any failure (no network,
    HTTP error, truncated transfer, checksum mismatch, corrupt archive) the temporary files are removed,
    nothing is left at the target, and :class:`DatasetError` says where to put the files by hand.
    An already complete target is returned without downloading. ``timeout`` bounds each network wait, in
    seconds. ``url`` may be any URL urllib understands, including ``file://``.
    """
    dest_dir = Path(dest_dir).expanduser()
    target = dest_dir / BATCHES_DIRNAME
    if target.is_dir():
        if not _missing_files(target):
            return target
        raise DatasetError(
            f"{target} exists but is incomplete (missing {', '.join(_missing_files(target))}); not overwriting "
            "it. Delete it and try again. " + _manual_instructions(dest_dir, url)
        )
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        # The archive and its extraction live in one temporary folder there, removed whatever happens.
        with tempfile.TemporaryDirectory(prefix=".cifar-10-download-", dir=dest_dir, ignore_cleanup_errors=True) as tmp:
            _download_archive(url, md5, Path(tmp) / "archive.tar.gz.part", progress, timeout)
            _install(Path(tmp) / "archive.tar.gz.part", Path(tmp) / "extracted", target, url)
    except DatasetError as exc:
        # Same error, now with the advice appended; chain to the original cause (if any), not to ourselves.
        raise DatasetError(f"{exc}. " + _manual_instructions(dest_dir, url)) from exc.__cause__
    except (OSError, http.client.HTTPException, tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
        # OSError covers urllib.error.URLError/HTTPError, refused connections, timeouts, a full disk, and
        # gzip.BadGzipFile; EOFError and zlib.error come from a truncated or damaged gzip stream.
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # it holds the open response; the chained traceback would otherwise keep the socket alive
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DatasetError(
            f"could not download CIFAR-10 from {url} ({type(exc).__name__}: {reason}). "
            + _manual_instructions(dest_dir, url)
        ) from exc
    return target


def _download_archive(url: str, md5: str | None, archive: Path, progress: bool, timeout: float) -> None:
    """Stream ``url`` into the file ``archive`` and check it against ``md5`` (``None``: no check)."""
    with open(archive, "wb") as out:
        got = _fetch(url, out, progress, timeout)
    if md5 is not None and got != md5.lower():
        raise DatasetError(f"checksum mismatch for {url}: MD5 is {got}, expected {md5.lower()}")


def _install(archive: Path, scratch: Path, target: Path, url: str) -> None:
    """Extract ``archive`` into the folder ``scratch`` and rename its batches folder to ``target`` in one step."""
    scratch.mkdir()
    _safe_extract(archive, scratch)
    extracted = scratch / BATCHES_DIRNAME
    missing = _missing_files(extracted) if extracted.is_dir() else list(_REQUIRED_FILES)
    if missing:
        raise DatasetError(f"archive from {url} lacks {BATCHES_DIRNAME}/{', '.join(missing)}")
    try:
        os.replace(extracted, target)
    except OSError:
        # Another process may have installed it between our check and now; theirs is as good as ours.
        if not target.is_dir() or _missing_files(target):
            raise


# -- Splits and preprocessing -------------------------------------------------------------------------------------


def _host_float_dtype(dtype: Any) -> numpy.dtype[Any]:
    """The NumPy dtype for ``dtype`` (a name, a NumPy dtype, or a namespace dtype such as ``xp.float32``)."""
    try:
        dt = numpy.dtype(dtype)
    except TypeError:
        # Array-API namespaces have their own dtype objects; their names match NumPy's.
        dt = numpy.dtype(str(dtype).rsplit(".", 1)[-1])
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dtype!r}")
    return dt


def _read_train_rows(batches_dir: Path, count: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The first ``count`` training images and labels, reading only as many batch files as needed.

    Images go straight into one preallocated uint8 buffer, so the peak is that buffer plus one batch.
    """
    X = numpy.empty((count, *_IMAGE_SHAPE), dtype=numpy.uint8)
    y = numpy.empty(count, dtype=numpy.int64)
    filled = 0
    available = 0
    for Xb, yb in _iter_train_batches(batches_dir):
        available += Xb.shape[0]
        take = min(count - filled, Xb.shape[0])
        if take > 0:
            X[filled : filled + take] = Xb[:take]
            y[filled : filled + take] = yb[:take]
            filled += take
        if filled == count:
            # Enough rows: skip the remaining files (a small request reads one batch, not five).
            return X, y
    raise ValueError(
        f"asked for {count} training + validation images but the training batches in {batches_dir} hold "
        f"only {available}"
    )


def _to_float(X: numpy.ndarray, dtype: numpy.dtype[Any], mean: numpy.ndarray | None) -> numpy.ndarray:
    """``X`` (uint8) as ``dtype``, minus ``mean`` (float64) when given, without a float64 copy of ``X``."""
    out = numpy.empty(X.shape, dtype=dtype)
    if mean is None:
        out[...] = X
    else:
        # Computed in float64 and rounded once into ``out``; NumPy's buffered casting works block by block,
        # so no full-size float64 temporary is ever allocated.
        numpy.subtract(X, mean, out=out, dtype=numpy.float64, casting="same_kind")
    return out


def _read_test_rows(batches_dir: Path, count: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The test batch's images and labels; ``ValueError`` when it holds fewer than ``count``."""
    X, y = load_CIFAR10_batch(batches_dir / TEST_BATCH)
    if count > X.shape[0]:
        raise ValueError(f"asked for {count} test images but {batches_dir / TEST_BATCH} holds only {X.shape[0]}")
    return X, y


def _place_splits(splits: dict[str, Any], dtype: numpy.dtype[Any], mean: numpy.ndarray | None, be: Any) -> dict:
    """``X_<split>`` (``dtype``, minus ``mean``) and ``y_<split>`` (int64) on ``be`` for each ``(X uint8, y)``."""
    data: dict[str, Any] = {}
    for split, (X_u8, y) in splits.items():
        # One split at a time: its host float copy is handed to the backend before the next is made, so a
        # device backend never holds more than one split in host memory at once.
        data[f"X_{split}"] = to_backend(_to_float(X_u8, dtype, mean), be)
        data[f"y_{split}"] = to_backend(numpy.ascontiguousarray(y, dtype=numpy.int64), be)
    return data


def _count(label: str, value: Any, minimum: int) -> int:
    """A count of images, as an ``int`` of at least ``minimum`` (a bool is refused: ``True`` is not a count)."""
    if isinstance(value, bool):  # operator.index(True) is 1: a flag passed where a count belongs
        raise TypeError(f"{label} must be an integer count, got {value!r}")
    n = operator.index(value)
    if n < minimum:  # no training image: no mean image
        raise ValueError(f"{label} must be {'at least 1' if minimum else '>= 0'}, got {n}")
    return n


def get_CIFAR10_data(
    num_training: int = 49000,
    num_validation: int = 1000,
    num_test: int = 1000,
    subtract_mean: bool = True,
    *,
    root: str | os.PathLike[str] | None = None,
    dtype: Any = "float32",
    backend: Any = "numpy",
    device: Any = None,
    download: bool = True,
) -> dict[str, Any]:
    """Load CIFAR-10 and return it split and preprocessed, ready for a classifier (CS231n's recipe).

    Returns a dict with

    - ``X_train``, ``X_val``, ``X_test``: images of shape (N, 3, 32, 32) in ``dtype``, on ``backend``;
    - ``y_train``, ``y_val``, ``y_test``: int64 labels of shape (N,), on ``backend``;
    - ``class_names``: a host NumPy array of the 10 class names (str), so ``class_names[y]`` works;
    - ``mean_image``: the per-pixel mean of the training split, a host NumPy array of shape (3, 32, 32)
      in ``dtype`` (computed whether or not it was subtracted; add it back to view a preprocessed image).

    Every value has a ``.shape``, so ``for k, v in data.items(): print(k, v.shape)`` works.

    The training split is the first ``num_training`` images of the training batches, validation the next
    ``num_validation`` (the tail, as in CS231n), and test the first ``num_test`` of ``test_batch``. The mean
    is accumulated in float64 over the training split only (so no information leaks from validation or
    test) and subtracted from all three splits when ``subtract_mean``. Each split is converted from uint8
    directly into ``dtype``: the float32 default needs about 0.8 GB for the full dataset.

    ``root``, ``FCN_DATA_DIR`` or the cache folder is searched as described in the module docstring; when
    the data folder is absent and ``download`` is true it is downloaded there (170 MB, MD5-checked).
    ``backend``/``device`` are as in :func:`fcn.backend.get_backend`; arrays are placed there once.

    Raises ``ValueError`` when more images are asked for than the files hold (the message gives the count),
    and :class:`DatasetError` when the data cannot be found, downloaded, or read.
    """
    n_train, n_val = _count("num_training", num_training, 1), _count("num_validation", num_validation, 0)
    n_test = _count("num_test", num_test, 0)
    host_dtype = _host_float_dtype(dtype)
    be = get_backend(backend, device)  # fail on a missing backend before reading 180 MB
    batches_dir = find_cifar10(root, download=download)
    X_rows, y_rows = _read_train_rows(batches_dir, n_train + n_val)
    X_te_all, y_te_all = _read_test_rows(batches_dir, n_test)
    class_names = numpy.array(load_class_names(batches_dir), dtype=str)

    X_tr_u8 = X_rows[:n_train]
    # uint8 in, float64 accumulator out: NumPy casts block by block, so this pass allocates only the result.
    mean = X_tr_u8.sum(axis=0, dtype=numpy.float64) / n_train
    sub = mean if subtract_mean else None

    splits = {
        "train": (X_tr_u8, y_rows[:n_train]),
        "val": (X_rows[n_train : n_train + n_val], y_rows[n_train : n_train + n_val]),
        "test": (X_te_all[:n_test], y_te_all[:n_test]),
    }
    data = _place_splits(splits, host_dtype, sub, be)
    data["class_names"] = class_names
    data["mean_image"] = mean.astype(host_dtype)
    return data
