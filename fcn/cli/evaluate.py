"""``fcn evaluate`` and ``fcn predict``: their options and commands (the work is :mod:`fcn.inference`'s)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..data import DATA_DIR_ENV
from ..inference import evaluate, predict_files, printable
from ..serialization import load_model
from .common import positive_int

__all__ = [
    "EVALUATE_DESCRIPTION",
    "PREDICT_DESCRIPTION",
    "add_evaluate_arguments",
    "add_predict_arguments",
    "evaluate_command",
    "predict_command",
]

EVALUATE_DESCRIPTION = """\
Evaluate a trained model on the CIFAR-10 test batch: prints the test accuracy and the accuracy of each class,
and writes the confusion matrix as a PNG (its path is printed). MODEL is a model file written by fcn train
(model.npz in its output folder) or by fcn.save_model.

The test images are read from --data-dir; without it, from the data folder the run recorded (history.json
next to MODEL), else from $FCN_DATA_DIR, else from the user cache.
"""

PREDICT_DESCRIPTION = """\
Classify image files with a trained model: prints the most likely classes of each image with their
probabilities. Images (PNG, JPEG, ...) of any size are converted to RGB and resized to 32x32 (the whole
picture; crop to the object first for best results), then prepared like the training data (the model's mean
image subtracted).
"""


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fcn evaluate``."""
    parser.add_argument("model", metavar="MODEL", help="model file (model.npz from fcn train, or fcn.save_model)")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir",
        default=None,
        help="folder with cifar-10-batches-py (default: the run's, as its history.json records; else "
        "$FCN_DATA_DIR, else the user cache)",
    )
    data.add_argument("--no-download", action="store_true", help="fail instead of downloading CIFAR-10")
    data.add_argument(
        "--num-test", type=positive_int, default=None, help="evaluate on the first N test images (default: all)"
    )
    parser.add_argument("--backend", default="numpy", help="numpy, cupy, torch or array_api_strict")
    parser.add_argument(
        "--out",
        default=None,
        help="the confusion matrix PNG: a file (.png is added to a name without it) or a folder, which gets "
        "<model>-confusion.png (default: <model>-confusion.png next to MODEL)",
    )


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fcn predict``."""
    parser.add_argument("model", metavar="MODEL", help="model file (model.npz from fcn train, or fcn.save_model)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--top", type=positive_int, default=3, help="how many classes to show per image")
    parser.add_argument("--backend", default="numpy", help="numpy, cupy, torch or array_api_strict")


def evaluate_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``fcn evaluate``; returns :func:`fcn.inference.evaluate`'s result plus ``figure`` (the PNG's path)."""
    from ..plotting import plot_confusion_matrix  # matplotlib is slow to import: only when a figure is drawn

    model_path = Path(args.model)
    out = _figure_path(args.out, model_path)
    net = load_model(model_path, backend=args.backend)
    data_dir, source = _data_dir(args.data_dir, model_path)
    result = evaluate(net, data_dir, num_test=args.num_test, download=not args.no_download)
    print(f"model: {net!r} from {model_path}")
    print(f"test images: {result['data_file']} ({source})")
    if net.mean_image is None:
        print("note: the model carries no mean image, so the test images are used without mean subtraction")
    print(f"test accuracy: {result['accuracy']:.4f} ({result['correct']} of {result['num_images']} images)")
    print("per-class accuracy:")
    names = [printable(n) for n in result["class_names"]]  # from the model file: escaped for the terminal
    width = max(len(n) for n in names)
    totals = result["confusion"].sum(axis=1)
    for name, acc, total in zip(names, result["per_class_accuracy"], totals, strict=True):
        shown = "  n/a" if total == 0 else f"{acc:.3f}"
        print(f"  {name:<{width}}  {shown}  ({total} images)")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(result["confusion"], result["class_names"], out)
    print(f"confusion matrix: {out}")
    return {**result, "figure": str(out)}


def _figure_path(out: str | None, model_path: Path) -> Path:
    """Where ``--out`` puts the confusion matrix: a folder (one that exists, or written with a trailing ``/``)
    gets ``<model>-confusion.png``; a file name is used as given, with ``.png`` added unless it ends so."""
    name = f"{model_path.stem}-confusion.png"
    if not out:
        return model_path.with_name(name)
    path = Path(out).expanduser()
    if path.is_dir() or out.endswith(("/", os.sep)):
        return path / name
    return path if path.suffix.lower() == ".png" else path.with_name(f"{path.name}.png")


def _data_dir(given: str | None, model_path: Path) -> tuple[Path | None, str]:
    """The data folder to evaluate on (``None``: $FCN_DATA_DIR or the cache) and where that choice came from.

    ``--data-dir`` must exist: a typo is reported, not downloaded into. Without it, the folder the model's run
    trained on (``data_dir`` in the history.json next to the model) when that folder is still there.
    """
    if given is not None:
        path = Path(given).expanduser()
        if not path.exists():
            raise ValueError(f"--data-dir {given} not found")
        return path, "--data-dir"
    history = model_path.parent / "history.json"
    recorded = _recorded_data_dir(history)
    if recorded is not None:
        return recorded, f"the data folder of the run, from {history}"
    return None, f"${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV, "").strip() else "the user cache"


def _recorded_data_dir(history: Path) -> Path | None:
    """The existing folder ``history`` names as its run's data (``data_dir``), else ``None``.

    A missing or unreadable file, or one that is not fcn train's, is not an error: evaluate looks elsewhere.
    """
    if not history.is_file():
        return None
    try:
        recorded = json.loads(history.read_text(encoding="utf-8")).get("data_dir")
    except (OSError, ValueError, RecursionError, AttributeError):  # unreadable, not JSON, nested too deep, no dict
        return None
    if not isinstance(recorded, str) or not recorded.strip():
        return None
    path = Path(recorded).expanduser()
    return path if path.is_dir() else None


def predict_command(args: argparse.Namespace) -> list[list[tuple[str, float]]]:
    """Run ``fcn predict``; returns :func:`fcn.inference.predict_files`' result."""
    net = load_model(args.model, backend=args.backend)
    results = predict_files(net, args.images, top=args.top)
    for path, ranked in zip(args.images, results, strict=True):
        print(f"{printable(path)}: " + ", ".join(f"{printable(name)} {p:.3f}" for name, p in ranked))
    return results
