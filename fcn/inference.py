"""Using a trained model: evaluation on the CIFAR-10 test set, predictions for image files.

Both start from a model file written by ``fcn train`` (``model.npz``) or :func:`fcn.save_model`. New images are
prepared the way the training images were: converted to RGB, resized to 32x32 (the whole picture, aspect ratio
not kept), laid out as ``(3, 32, 32)`` like CIFAR-10's rows, converted to the model's dtype, and the model's
``mean_image`` (the training split's per-pixel mean) subtracted::

    from fcn.inference import evaluate, predict_files

    net = fcn.load_model("runs/shallow/model.npz")
    predict_files(net, ["cat.png"])                       # [[("cat", 0.61), ("dog", 0.22), ("deer", 0.05)]]
    result = evaluate(net, "/path/to/cifar-10-batches-py")
    result["accuracy"], result["per_class_accuracy"], result["confusion"]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy

from .backend import to_host
from .validation import InputFileError, regular_file

__all__ = [
    "IMAGE_SHAPE",
    "IMAGE_FORMATS",
    "ImageFileError",
    "load_image",
    "printable",
    "predict_files",
    "confusion_matrix",
    "evaluate",
]

#: The layout a CIFAR-10 model takes: channels (R, G, B), height, width.
IMAGE_SHAPE = (3, 32, 32)


class ImageFileError(ValueError):
    """An image file is missing or cannot be read as a picture. The message names the file."""


# -- preparing inputs ---------------------------------------------------------------------------------------------


#: The formats :func:`load_image` opens (Pillow's names): raster formats only. Pillow also reads PostScript and
#: EPS, by running Ghostscript on them; a file named ``cat.png`` holding PostScript must not run anything.
#: (The multi-picture JPEGs many phones write open as JPEG.)
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

# Pillow's modes holding more than 8 bits per sample, and the value that shows as white in an image viewer:
# 16-bit integers (PNG, TIFF) up to 65535, 32-bit integers read from 16-bit files too, floats (TIFF) up to 1.0.
_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def _as_rgb(img: Any) -> Any:
    """``img`` as 8-bit RGB, as an image viewer shows it: upright (EXIF orientation applied), wide samples scaled
    to 8 bits (Pillow's own conversion clips a 16-bit PNG to white and a float TIFF to black), alpha dropped."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    white = _WIDE_MODES.get(img.mode)
    if white is not None:
        values = numpy.nan_to_num(numpy.asarray(img, dtype=numpy.float64), nan=0.0, posinf=white, neginf=0.0)
        img = Image.fromarray(numpy.clip(numpy.rint(values * (255.0 / white)), 0, 255).astype(numpy.uint8), "L")
    return img.convert("RGB")


def load_image(path: str | os.PathLike[str]) -> numpy.ndarray:
    """Read an image file (one of :data:`IMAGE_FORMATS`: PNG, JPEG, BMP, GIF, TIFF, WebP, PPM) as CIFAR-10 stores
    images.

    Returns uint8 of shape ``(3, 32, 32)``: the picture as an image viewer shows it (turned upright by its EXIF
    orientation; grey, palette, RGBA, 16-bit and floating-point images converted to 8-bit RGB, alpha dropped) and
    resized to 32x32 with a Lanczos filter, which averages over the pixels it shrinks. Raises
    :class:`ImageFileError` naming the file when it is missing, not a regular file, not an image in one of those
    formats, too large to decode safely (Pillow's decompression-bomb limit), or damaged.
    """
    from PIL import Image, UnidentifiedImageError  # imported here: only reading images needs Pillow

    try:
        path = regular_file(path, "image")  # a FIFO would block forever
    except InputFileError as exc:
        raise ImageFileError(str(exc)) from None
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            img.load()  # decode now, inside the try: a truncated file fails here, not later
            rgb = _as_rgb(img)
    except UnidentifiedImageError:
        raise ImageFileError(f"{path} is not an image file fcn reads ({', '.join(IMAGE_FORMATS)})") from None
    except Image.DecompressionBombError as exc:  # the header declares more pixels than is safe to decode
        raise ImageFileError(f"image {path} is too large to read ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged data; SyntaxError: a broken header
        raise ImageFileError(f"image {path} is truncated or corrupt ({exc})") from exc
    height, width = IMAGE_SHAPE[1:]
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
    # (H, W, C) as Pillow gives it -> (C, H, W), the order of CIFAR-10's rows (1024 red, 1024 green, 1024 blue)
    return numpy.ascontiguousarray(numpy.asarray(rgb, dtype=numpy.uint8).transpose(2, 0, 1))


def _check_cifar_model(net: Any, what: str) -> None:
    expected = int(numpy.prod(IMAGE_SHAPE))
    if getattr(net, "input_dim", expected) != expected:
        raise ValueError(f"{what} needs a model that takes 3x32x32 images ({expected} features), not {net.input_dim}")


def printable(text: Any) -> str:
    """``text`` safe to print on a terminal: characters that are not printable (escape sequences, newlines, a
    lone surrogate) are shown escaped as in a Python string (``\\x1b``, ``\\n``), so text from a file cannot
    move the cursor, recolour the terminal or forge output lines."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in str(text))


def _class_names(net: Any, num_classes: int) -> list[str]:
    names = getattr(net, "class_names", None)
    return [str(n) for n in names] if names is not None else [f"class {i}" for i in range(num_classes)]


def predict_files(net: Any, paths: Sequence[str | os.PathLike[str]], top: int = 3) -> list[list[tuple[str, float]]]:
    """The ``top`` most likely classes of each image file: ``[[(class name, probability), ...], ...]``.

    Each image is read with :func:`load_image` and prepared by the model (:meth:`FullyConnectedNet.prepare
    <fcn.FullyConnectedNet.prepare>`: its ``mean_image`` and dtype, as its training data was). Class
    names come from the model's ``class_names`` (``"class 3"`` where it has none). All files are read before
    the model runs, so an unreadable one fails fast with :class:`ImageFileError` naming it.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    _check_cifar_model(net, "predicting image files")
    images = numpy.stack([load_image(p) for p in paths]) if paths else numpy.zeros((0, *IMAGE_SHAPE), numpy.uint8)
    proba = numpy.asarray(to_host(net.predict_proba(images)), dtype=numpy.float64)
    names = _class_names(net, proba.shape[1])
    order = numpy.argsort(-proba, axis=1, kind="stable")[:, :top]
    return [[(names[j], float(p[j])) for j in row] for p, row in zip(proba, order, strict=True)]


# -- evaluation on the test set ----------------------------------------------------------------------------------


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> numpy.ndarray:
    """Counts ``(C, C)``: row ``i``, column ``j`` = images of class ``i`` predicted as ``j`` (host int64)."""
    t = numpy.asarray(to_host(y_true), dtype=numpy.int64).ravel()
    p = numpy.asarray(to_host(y_pred), dtype=numpy.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true labels but {p.size} predictions")
    for name, labels in (("true labels", t), ("predictions", p)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return numpy.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _test_batch(root: str | os.PathLike[str] | None, download: bool) -> Path:
    from . import data

    return data.find_cifar10(root, download=download) / data.TEST_BATCH


def evaluate(
    net: Any,
    root: str | os.PathLike[str] | None = None,
    *,
    num_test: int | None = None,
    download: bool = True,
    batch_size: int = 10_000,
) -> dict[str, Any]:
    """Accuracy of ``net`` on the CIFAR-10 test batch (the first ``num_test`` images; ``None``: all 10,000).

    The data folder is found as by :func:`fcn.get_CIFAR10_data` (``root``, ``FCN_DATA_DIR``, the cache
    folder) and downloaded when absent and ``download`` is true. The uint8 images go to ``net.predict`` as
    they are: the model prepares them as its training data was (its ``mean_image`` and dtype). Returns a dict
    with ``accuracy``, ``correct``, ``num_images``, ``per_class_accuracy`` (one entry per class, NaN for a
    class with no test image), ``class_names``, ``confusion`` (host int64 ``(C, C)``, see
    :func:`confusion_matrix`) and ``data_file``.
    """
    from .data import DatasetError, load_CIFAR10_batch

    _check_cifar_model(net, "evaluating on CIFAR-10")
    path = _test_batch(root, download)
    X_u8, y = load_CIFAR10_batch(path)
    if not len(y):  # an accuracy of no images is 0 / 0
        raise DatasetError(f"CIFAR-10 file {path} holds no test images; delete it and download the dataset again")
    if num_test is not None:
        if num_test < 1 or num_test > len(y):
            raise ValueError(f"num_test must be in 1..{len(y)} (the images in {path}), got {num_test}")
        X_u8, y = X_u8[:num_test], y[:num_test]
    pred = numpy.asarray(
        to_host(net.predict(X_u8, batch_size=batch_size)), dtype=numpy.int64
    )  # raw: the model prepares it
    num_classes = int(getattr(net, "num_classes", 10))
    confusion = confusion_matrix(y, pred, num_classes)
    totals = confusion.sum(axis=1)
    diag = numpy.diag(confusion)
    per_class = [float(diag[i] / totals[i]) if totals[i] else float("nan") for i in range(num_classes)]
    correct = int(diag.sum())
    return {
        "accuracy": correct / len(y),
        "correct": correct,
        "num_images": int(len(y)),
        "per_class_accuracy": per_class,
        "class_names": _class_names(net, num_classes),
        "confusion": confusion,
        "data_file": str(path),
    }
