"""The ``fcn`` command: ``fcn train``, ``fcn sweep``, ``fcn evaluate``, ``fcn predict``, ``fcn info``.

The package holds the parser and the dispatch (here), the options shared by several subcommands
(:mod:`fcn.cli.common`), the run folders (:mod:`fcn.cli.rundir`) and one module per subcommand family:
:mod:`fcn.cli.train`, :mod:`fcn.cli.sweep`, :mod:`fcn.cli.evaluate`.

Errors: every subcommand prints one line, ``fcn <command>: error: <what is wrong>``, and exits with
1 when the command could not be carried out (backend, data, checkpoint, diverged training, file system),
2 when the command line or its input is wrong (an option's value, sizes that do not fit the data, an
output folder that holds another run), 130 when interrupted, 141 (as for a tool killed by SIGPIPE, quietly)
when the output's reader went away (``fcn info | head -1``). ``--debug`` (or ``FCN_DEBUG=1``) adds the
traceback. Anything else is a bug in fcn: it is reported with its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, NoReturn

from .. import __version__
from ..data import DATA_DIR_OPTION
from ..inference import ImageFileError
from ..ops.switches import env_switch
from ..sysinfo import collect_env, format_env
from . import evaluate, export, sweep, train
from .common import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, DefaultsFormatter
from .rundir import RunExistsError

__all__ = ["main", "build_parser", "info_command", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (``fcn train: error: ...``), not the whole usage text.

    ``commands``: the subcommands' parsers by name, so that an unknown option is reported by the subcommand it
    was given to (``fcn train: error: unrecognized arguments: --lrr``).
    """

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _subcommand(parent: _Parser, sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand's parser, with ``--debug`` after the subcommand too (``fcn train ... --debug``)."""
    parser = sub.add_parser(name, help=help, description=description, formatter_class=DefaultsFormatter)
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    parent.commands[name] = parser
    return parser


def build_parser() -> _Parser:
    """The ``fcn`` parser with every subcommand."""
    parser = _Parser(
        prog="fcn",
        description="Fully connected networks on CIFAR-10, with NumPy (CPU) or CuPy (GPU).",
        epilog="exit codes: 0 success, 1 the command failed, 2 bad command line or input, 130 interrupted, "
        "141 output pipe closed",
    )
    parser.add_argument("--version", action="version", version=f"fcn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or FCN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = {}
    train.add_train_arguments(_subcommand(parser, sub, "train", "train a network on CIFAR-10", train.DESCRIPTION))
    sweep.add_sweep_arguments(
        _subcommand(
            parser, sub, "sweep", "hyperparameter search on CIFAR-10 (Ray Tune: the sweep extra)",
            sweep.DESCRIPTION,
        )
    )  # fmt: skip
    evaluate.add_evaluate_arguments(
        _subcommand(
            parser, sub, "evaluate", "test accuracy, per-class accuracy and confusion matrix of a trained model",
            evaluate.EVALUATE_DESCRIPTION,
        )
    )  # fmt: skip
    evaluate.add_predict_arguments(
        _subcommand(parser, sub, "predict", "classify image files with a trained model", evaluate.PREDICT_DESCRIPTION)
    )
    export.add_export_arguments(
        _subcommand(parser, sub, "export", "write a trained model as an ONNX file", export.DESCRIPTION)
    )
    info = _subcommand(
        parser, sub, "info", "print the environment (versions, BLAS, GPU, working backends) to paste into bug reports",
        "Versions of fcn, Python, NumPy and its BLAS, the array libraries, CUDA and the GPU, and which backends "
        "work here: paste the output into bug reports.",
    )  # fmt: skip
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def info_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``fcn info``: print versions, BLAS, GPU and which backends work (for bug reports)."""
    env = collect_env()
    print(json.dumps(env, indent=1) if args.json else format_env(env))
    return env


#: What runs each subcommand.
COMMANDS = {
    "train": train.train_command,
    "sweep": sweep.sweep_command,
    "evaluate": evaluate.evaluate_command,
    "predict": evaluate.predict_command,
    "export": export.export_command,
    "info": info_command,
}


def _exit_code(exc: BaseException) -> int | None:
    """The exit code for an error fcn reports in one line; ``None`` for an unexpected error (a bug).

    fcn's own error types (BackendError, DatasetError, CheckpointError, ModelFileError, TrainingDiverged, the
    sweep's, ...) mean the command could not be carried out: 1, as do file-system errors. Plain ``ValueError``
    and ``TypeError`` come from fcn's argument and input checks: 2, like an output folder holding another run and
    an image file ``fcn predict`` cannot read.
    """
    if isinstance(exc, (RunExistsError, ImageFileError)):  # an image to classify is the command's input
        return EXIT_USAGE
    if type(exc).__module__.split(".")[0] == "fcn":
        return EXIT_FAILURE
    if isinstance(exc, (OSError, MemoryError, ImportError)):
        return EXIT_FAILURE  # files and folders (permissions, full disk), memory, a missing optional package
    if isinstance(exc, (ValueError, TypeError)):
        return EXIT_USAGE
    return None


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _debug_requested(args: argparse.Namespace) -> bool:
    """``--debug``, else ``$FCN_DEBUG`` by the rule of every ``FCN_*`` switch (:func:`fcn.ops.switches.env_switch`).

    A value the rule does not know still asks for tracebacks instead of failing: this is read to report errors.
    """
    try:
        return env_switch("FCN_DEBUG", False, True if getattr(args, "debug", False) else None)
    except ValueError:
        return True


def _drop_stdout() -> None:
    """The reader of stdout has gone (``fcn info | head -1``): send what is still buffered nowhere, quietly.

    Python would otherwise report the failed final flush at exit ("Exception ignored ... BrokenPipeError").
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file (replaced in-process): nothing is flushed at exit then
        pass


def main(argv: list[str] | None = None) -> int:
    """The ``fcn`` command. Returns the exit code (see the module docstring); errors are one line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv
    debug = _debug_requested(args)
    prog = f"fcn {args.command}"
    option = DATA_DIR_OPTION.set("--data-dir")  # messages about the data folder name the option, not root=
    try:
        COMMANDS[args.command](args)
        sys.stdout.flush()  # a pipe closed early fails here, not in the interpreter's exit
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = _exit_code(exc)
        if code is None:
            traceback.print_exc()
            print(
                f"{prog}: error: {type(exc).__name__}: {_one_line(exc)} (unexpected: please report it with the "
                "traceback above and the output of fcn info)",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return code
    finally:
        DATA_DIR_OPTION.reset(option)
    return 0
