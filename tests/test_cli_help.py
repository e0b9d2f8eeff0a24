"""What ``fcn`` says about itself: ``--help`` of every subcommand, ``--version``, typos, and a closed pipe.

Help reads as plain text (no reST markup from docstrings), every option has a help line, and an option's default
is shown once: exactly once where it has one, never as an empty ``(default: )``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

import fcn
from fcn.cli import build_parser

try:
    from helpers import REPO, fcn_cli, one_error_line
except ImportError:  # pragma: no cover - tests imported as a package
    from .helpers import REPO, fcn_cli, one_error_line

COMMANDS = ["", "train", "sweep", "evaluate", "predict", "info"]

#: reST roles and literals (``fcn``, :mod:`fcn.cli`), which --help would show as typed.
MARKUP = re.compile(r"`|:(mod|class|func|meth|data|attr|ref|doc):")


def help_entries(text: str) -> dict[str, str]:
    """``--help`` output -> ``{first flag of an option: its help text, lines joined}``."""
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if re.match(r"  -", line):  # an option's first line: its flags, then (if they are short) its help
            flags, _, rest = line.strip().partition("  ")
            current = entries.setdefault(flags.split()[0].rstrip(","), [])
            current.append(rest.strip())
        elif current is not None and line.startswith("    "):  # its help continued, indented under the first
            current.append(line.strip())
        else:
            current = None
    return {flag: " ".join(part for part in parts if part) for flag, parts in entries.items()}


def options(command: str) -> list[argparse.Action]:
    """The options ``fcn COMMAND`` accepts (``-h`` aside), as its parser defines them."""
    parser = build_parser()
    parser = parser.commands[command] if command else parser
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS and a.dest != "help"]


def has_default(action: argparse.Action) -> bool:
    """Whether the option has a default worth showing (not off, nothing or none)."""
    return (
        action.default is not None
        and action.default is not False
        and action.default not in ("", "none", argparse.SUPPRESS)
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c or "fcn")
def test_help_is_plain_text_with_every_option_explained_and_its_default_once(tmp_path, command):
    result = fcn_cli(*([command] if command else []), "--help", cwd=tmp_path, env={"COLUMNS": "100"})
    assert result.returncode == 0 and result.stderr == ""
    assert not MARKUP.search(result.stdout), MARKUP.search(result.stdout)
    entries = help_entries(result.stdout)
    for action in options(command):
        text = entries.get(action.option_strings[0])
        assert text, f"{action.option_strings[0]} has no help line"
        defaults = len(re.findall(r"\bdefault\b", text))
        assert defaults == 1 if has_default(action) else defaults <= 1, f"{action.option_strings[0]}: {text}"
        assert not re.search(r"default: *[);]", text), f"{action.option_strings[0]}: {text}"


def test_version(tmp_path):
    result = fcn_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == f"fcn {fcn.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", fcn.__version__)


@pytest.mark.parametrize(
    ("args", "unknown"),
    [
        (["train", "--lrr", "1"], "--lrr 1"),
        (["sweep", "--lrr", "1"], "--lrr 1"),
        (["evaluate", "m.npz", "--outt", "x.png"], "--outt"),
        (["info", "--jsn"], "--jsn"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else "",
)
def test_a_typo_is_reported_by_the_subcommand_it_was_given_to(tmp_path, args, unknown):
    result = fcn_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result, args[0])
    assert f"unrecognized arguments: {unknown}" in line and line.endswith(f"(see fcn {args[0]} --help)")


def test_a_bad_augmentation_is_named_once(tmp_path):
    result = fcn_cli("train", "--augment", "flop", cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result)
    assert line.startswith("fcn train: error: argument --augment: unknown augmentation 'flop'; choose from flip, crop")
    assert line.count("augment") == 2  # the option, and "augmentation": not "--augment: augment: ..."


@pytest.mark.parametrize("args", [["info"], ["info", "--json"], ["train", "--help"]], ids=" ".join)
def test_a_closed_pipe_ends_quietly(args):
    """``fcn info | head -c1``: the reader has gone; like cat, fcn stops with 141 (128 + SIGPIPE), no traceback."""
    command = [sys.executable, "-m", "fcn.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True) as process:
        process.stdout.close()  # before fcn has written anything
        stderr = process.stderr.read()
    assert stderr == ""
    assert process.returncode in ((0,) if args[-1] == "--help" else (141,))
