"""Command-line pieces shared by ``fcn train`` and ``fcn sweep`` (kept apart so neither imports the other)."""

from __future__ import annotations

import argparse

__all__ = ["add_data_arguments", "check_lengths"]


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


def check_lengths(prog: str, args: argparse.Namespace, names: tuple[str, ...] = ("num_iters", "epochs")) -> None:
    """Exit with one line naming the option when a training length is given but not a positive integer."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise SystemExit(f"{prog}: --{name.replace('_', '-')} must be a positive integer, got {value}")
