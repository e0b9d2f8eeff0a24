"""Command-line pieces shared by ``fcn train`` and ``fcn sweep`` (kept apart so neither imports the other)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "add_data_arguments",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
]


def _number(kind: Callable[[str], Any], check: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse ``type`` that parses with ``kind`` and accepts only values passing ``check``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
nonnegative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def add_data_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The CIFAR-10 location and split options shared by ``fcn train`` and ``fcn sweep``; returns the group."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir", default=None, help="folder with cifar-10-batches-py (default: $FCN_DATA_DIR, else the user cache)"
    )
    data.add_argument("--no-download", action="store_true", help="fail instead of downloading CIFAR-10")
    data.add_argument("--num-train", type=positive_int, default=49000)
    data.add_argument("--num-val", type=nonnegative_int, default=1000, help="0: no validation set")
    data.add_argument("--num-test", type=nonnegative_int, default=1000)
    return data
