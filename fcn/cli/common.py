"""Command-line pieces shared by ``fcn train`` and ``fcn sweep``: number parsers, flag names, data options."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "EXIT_BROKEN_PIPE",
    "add_data_arguments",
    "flags",
    "timestamp",
    "DefaultsFormatter",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
]

#: Exit codes: the command could not be carried out / the command line or its input is wrong / Ctrl-C.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: The reader of the output went away (``fcn info | head -1``): what a shell reports for a tool killed by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13


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

#: Short or historical names of options, next to the ``--field-name`` of the setting they set.
ALIASES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("--lr",),
    "num_epochs": ("--epochs",),
    "dropout_keep_ratio": ("--dropout-keep",),
}


def flags(name: str) -> list[str]:
    """The options of setting ``name``: ``--name-with-dashes``, then its aliases (``learning_rate``: ``--lr``)."""
    return [f"--{name.replace('_', '-')}", *ALIASES.get(name, ())]


def timestamp() -> str:
    """The UTC time in default folder names (one-second resolution: folders are made unique separately)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help lines end with the option's default, once: not where there is none (``None``, off, empty), nor
    where the help text already says it. Descriptions keep their paragraphs."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(super(DefaultsFormatter, self)._fill_text(p, width, indent) for p in text.split("\n\n"))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        nothing = (
            default is None or default is False or (isinstance(default, str) and default in ("", argparse.SUPPRESS))
        )
        if nothing or "default" in text or not action.option_strings:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".lstrip()


def add_data_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The CIFAR-10 location and split options shared by ``fcn train`` and ``fcn sweep``; returns the group."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir", default=None, help="folder with cifar-10-batches-py (default: $FCN_DATA_DIR, else the user cache)"
    )
    data.add_argument("--no-download", action="store_true", help="fail instead of downloading CIFAR-10")
    data.add_argument("--num-train", type=positive_int, default=49000, help="training images")
    data.add_argument("--num-val", type=nonnegative_int, default=1000, help="validation images (0: none)")
    data.add_argument("--num-test", type=nonnegative_int, default=1000, help="test images (0: none)")
    return data
