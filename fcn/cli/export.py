"""``fcn export``: a trained model as an ONNX file (the work is :func:`fcn.export.export_onnx`'s)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..export import INPUTS, export_onnx, require_onnx
from ..serialization import load_model

__all__ = ["DESCRIPTION", "add_export_arguments", "export_command"]

DESCRIPTION = """\
Write a trained model as an ONNX file, for ONNX Runtime and other runtimes (needs the onnx package: pip install
"fcn-cifar[onnx]"). The graph takes uint8 images as CIFAR-10 stores them, channels first (N, 3, 32, 32), and
applies the model's preprocessing (the mean image) itself; --input features makes it take preprocessed floats
(N, 3072) instead. Its outputs are "probabilities" (N, classes) and "label" (N,).
"""


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fcn export``."""
    parser.add_argument("model", metavar="MODEL", help="model file (model.npz from fcn train, or fcn.save_model)")
    parser.add_argument("out", metavar="OUT", help="the ONNX file to write, such as model.onnx")
    parser.add_argument(
        "--input",
        choices=INPUTS,
        default="images",
        help="what the graph takes: uint8 images with the preprocessing in the graph, or preprocessed features",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def export_command(args: argparse.Namespace) -> Path:
    """Run ``fcn export``; returns the path written."""
    require_onnx()  # first: a missing extra is the one thing said
    out = Path(args.out)
    if out.exists() and not args.overwrite and not out.is_dir():
        raise ValueError(f"{out} already exists; pass --overwrite to replace it, or choose another file")
    net = load_model(args.model)
    path = export_onnx(net, out, input=args.input, overwrite=args.overwrite)
    print(f"wrote {path}: {net!r}, input {args.input!r}, outputs 'probabilities' and 'label'")
    return path
