"""Command-line pieces shared by ``fcn train`` and ``fcn sweep`` (kept apart so neither imports the other)."""

from __future__ import annotations

import argparse

__all__ = ["add_data_arguments"]


def add_data_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The CIFAR-10 location and split options shared by ``fcn train`` and ``fcn sweep``; returns the group."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir", default=None, help="folder with cifar-10-batches-py (default: $FCN_DATA_DIR, else the user cache)"
    )
    data.add_argument("--no-download", action="store_true", help="fail instead of downloading CIFAR-10")
    data.add_argument("--num-train", type=int, default=49000)
    data.add_argument("--num-val", type=int, default=1000)
    data.add_argument("--num-test", type=int, default=1000)
    return data

