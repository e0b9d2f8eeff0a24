"""``fcn`` command line: ``fcn train`` trains a network on CIFAR-10 and writes history, plots and a checkpoint.

``fcn evaluate`` and ``fcn predict`` use the trained model (see :mod:`fcn.inference`); ``fcn sweep`` searches
hyperparameters (see :mod:`fcn.sweep`).

With no options, ``fcn train`` reproduces the chapter's run: ShallowLayerNet with 100 hidden units,
2000 iterations of SGD at batch 500, learning rate 1e-3 decayed by 0.95 per epoch, reg 0.6.

Errors: every subcommand prints one line, ``fcn <command>: error: <what is wrong>``, and exits with
1 when the command could not be carried out (backend, data, checkpoint, diverged training, file system),
2 when the command line or its input is wrong (an option's value, sizes that do not fit the data, an
output folder that holds another run), 130 when interrupted. ``--debug`` (or ``FCN_DEBUG=1``) adds the
traceback. Anything else is a bug in fcn: it is reported with its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from .cli_common import add_data_arguments, nonnegative_float, nonnegative_int, positive_float, positive_int
from .optim import UPDATE_RULES
from .sysinfo import machine_info
from .training.schedules import SCHEDULES

__all__ = ["main", "build_parser", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED"]

#: Exit codes: the command could not be carried out / the command line or its input is wrong / Ctrl-C.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (``fcn train: error: ...``), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _timestamp() -> str:
    """The UTC time in default folder names (one-second resolution: folders are made unique separately)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _dims(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 100 or 1024,512, got {text!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive integers, got {text!r}")
    return dims


def _weight_scale(text: str) -> float | str:
    if text.strip().lower() in ("he", "xavier"):
        return text.strip().lower()
    try:
        return nonnegative_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, 'he' or 'xavier', got {text!r}") from None


def _keep_ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"the keep probability must be in (0, 1], got {text!r}")
    return value


def _augment(text: str) -> str:
    from .training.augment import parse_augment

    try:
        return ",".join(parse_augment(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fcn",
        description=__doc__.split("\n")[0],
        epilog="exit codes: 0 success, 1 the command failed, 2 bad command line or input, 130 interrupted",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or FCN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a network on CIFAR-10",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    model = t.add_argument_group("model")
    model.add_argument(
        "--model",
        choices=["shallow", "fc"],
        default="shallow",
        help="shallow: ShallowLayerNet (one hidden layer); fc: FullyConnectedNet",
    )
    model.add_argument("--hidden-dims", type=_dims, default=[100], help="hidden sizes, e.g. 100 or 1024,512")
    model.add_argument(
        "--weight-scale",
        type=_weight_scale,
        default=None,
        help="std of the initial weights, or he / xavier (per layer from its size) (default: 1e-3 shallow, 1e-2 fc)",
    )
    model.add_argument(
        "--normalization",
        choices=["none", "batchnorm", "layernorm"],
        default="none",
        help="normalization between each hidden affine layer and its ReLU (--model fc)",
    )
    model.add_argument(
        "--dropout-keep",
        type=_keep_ratio,
        default=1.0,
        help="probability of keeping a hidden unit in training (1: no dropout; --model fc)",
    )
    model.add_argument("--reg", type=nonnegative_float, default=0.6, help="L2 regularisation strength")
    model.add_argument("--backend", default="numpy", help="numpy, cupy or array_api_strict")
    model.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    model.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed for the initial weights and the batch order"
    )

    opt = t.add_argument_group("optimisation")
    opt.add_argument("--update-rule", choices=list(UPDATE_RULES), default="sgd")
    opt.add_argument("--learning-rate", "--lr", type=positive_float, default=1e-3)
    opt.add_argument(
        "--weight-decay",
        type=nonnegative_float,
        default=None,
        help="AdamW's decoupled weight decay (--update-rule adamw; 1e-2)",
    )
    opt.add_argument(
        "--lr-schedule",
        choices=list(SCHEDULES),
        default="step",
        help="step: multiply by --lr-decay after every epoch; cosine / linear: decay to 0 at the last step",
    )
    opt.add_argument(
        "--lr-decay", type=positive_float, default=0.95, help="learning-rate factor applied after every epoch"
    )
    opt.add_argument(
        "--warmup-epochs", type=nonnegative_float, default=0.0, help="linear learning-rate warmup first (epochs)"
    )
    opt.add_argument(
        "--augment", type=_augment, default="", help="flip, crop or flip,crop: random flips / 4-pixel crops"
    )
    opt.add_argument(
        "--patience", type=positive_int, default=None, help="stop after this many epochs without a better val accuracy"
    )
    opt.add_argument(
        "--clip-grad-norm", type=positive_float, default=None, help="clip the gradients' global L2 norm to this"
    )
    opt.add_argument("--batch-size", type=positive_int, default=500)
    length = opt.add_mutually_exclusive_group()
    length.add_argument("--num-iters", type=positive_int, default=None, help="training steps (default 2000)")
    length.add_argument("--epochs", type=positive_int, default=None, help="training epochs instead of --num-iters")

    add_data_arguments(t)

    out = t.add_argument_group("output")
    out.add_argument(
        "--out",
        default=None,
        help="output folder; refused if it holds files, unless --resume or --overwrite "
        "(default: a new folder runs/<model>-<UTC time>, suffixed -2, -3, ... when taken)",
    )
    again = out.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.npz if present")
    again.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (fcn's own files there; others stay)"
    )
    out.add_argument("--print-every", type=positive_int, default=100)
    out.add_argument("--quiet", action="store_true", help="no progress bar and no log lines")

    from . import sweep as _sweep  # argument definitions live with the sweep; Ray itself is imported only to run

    sw = sub.add_parser(
        "sweep",
        help="hyperparameter search on CIFAR-10 (Ray Tune with ASHA; pip install 'fcn-cifar[sweep]')",
        description=_sweep.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _sweep.add_sweep_arguments(sw)

    from . import inference as _inference  # light: Pillow and the data are imported only to run

    ev = sub.add_parser(
        "evaluate",
        help="test accuracy, per-class accuracy and confusion matrix of a trained model",
        description=_inference.EVALUATE_DESCRIPTION,
    )
    _inference.add_evaluate_arguments(ev)
    pr = sub.add_parser(
        "predict", help="classify image files with a trained model", description=_inference.PREDICT_DESCRIPTION
    )
    _inference.add_predict_arguments(pr)

    info = sub.add_parser(
        "info",
        help="print the environment (versions, BLAS, GPU, working backends) to paste into bug reports",
        description="Versions of fcn, Python, NumPy and its BLAS, the array libraries, CUDA and the GPU, and "
        "which backends work here: paste the output into bug reports.",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``fcn train``; returns the summary that is also written to ``history.json``.

    Everything that can be checked before training is checked first (options, backend, output folder), and
    a run that fails leaves nothing behind: a folder it created is removed again (an interrupted run keeps
    its folder, with a checkpoint to resume from).
    """
    from .backend import get_backend
    from .rundir import new_run_dir, prepare_out_dir

    if args.model == "shallow" and len(args.hidden_dims) != 1:
        raise ValueError("--model shallow takes one hidden size; use --model fc for several")
    if args.model == "shallow" and (args.normalization != "none" or args.dropout_keep < 1.0):
        raise ValueError("--normalization and --dropout-keep need --model fc")
    if args.weight_decay is not None and args.update_rule != "adamw":
        raise ValueError("--weight-decay is AdamW's decoupled decay: use --update-rule adamw (or --reg for L2)")
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out: the folder of the run to continue")
    get_backend(args.backend)  # an unknown or unusable backend fails before any folder is created

    if args.out is None:
        run = new_run_dir("runs", f"{args.model}-{_timestamp()}")
    else:
        run = prepare_out_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    import numpy

    try:
        # NumPy's overflow warnings would bury fcn's own message: the Solver checks for NaN/inf and says so
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return _train(args, run.path)
    except (Exception, KeyboardInterrupt):
        # only what this run created; an interrupt during training saves a checkpoint and exits with SystemExit
        run.discard()
        raise


def _train(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from . import Solver
    from .data import get_CIFAR10_data
    from .factory import build_model
    from .plotting import plot_stats, plot_weights
    from .rundir import TRAIN_OUTPUTS
    from .serialization import save_model

    num_iters = args.num_iters if args.num_iters is not None or args.epochs is not None else 2000
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))

    t0 = time.perf_counter()
    data = get_CIFAR10_data(
        args.num_train,
        args.num_val,
        args.num_test,
        root=args.data_dir,
        dtype=args.dtype,
        backend=args.backend,
        download=not args.no_download,
    )
    load_s = time.perf_counter() - t0
    say(
        f"data: {', '.join(f'{k} {tuple(v.shape)}' for k, v in data.items() if k.startswith(('X_', 'y_')))} "
        f"({load_s:.1f} s)"
    )

    common = dict(reg=args.reg, backend=args.backend, dtype=args.dtype, seed=args.seed)
    if args.model == "fc":
        common.update(
            dropout_keep_ratio=args.dropout_keep,
            normalization=None if args.normalization == "none" else args.normalization,
        )
    net = build_model(args.model, args.hidden_dims, weight_scale=args.weight_scale, **common)
    say(f"model: {net!r}")

    optim_config = {"learning_rate": args.learning_rate}
    if args.weight_decay is not None:
        optim_config["weight_decay"] = args.weight_decay
    checkpoint = out / "checkpoint.npz"
    solver = Solver(
        net,
        data,
        update_rule=args.update_rule,
        optim_config=optim_config,
        lr_decay=args.lr_decay,
        lr_schedule=args.lr_schedule,
        warmup_epochs=args.warmup_epochs,
        augment=args.augment or None,
        patience=args.patience,
        clip_grad_norm=args.clip_grad_norm,
        batch_size=args.batch_size,
        num_iters=num_iters,
        num_epochs=args.epochs or 10,
        print_every=args.print_every,
        verbose=not args.quiet,
        progress=not args.quiet,
        checkpoint=checkpoint,
        seed=args.seed,
    )
    if args.resume and checkpoint.exists():
        solver.load_checkpoint(checkpoint)
        say(f"resumed from {checkpoint} at iteration {solver.iteration}")
    if args.overwrite:  # the new run is ready to start: only now remove the run it replaces
        for name in TRAIN_OUTPUTS:
            (out / name).unlink(missing_ok=True)

    t1 = time.perf_counter()
    try:
        solver.train()
    except KeyboardInterrupt:
        _save_interrupted(solver, args, out, checkpoint)
    stats = solver.stats()
    train_s = time.perf_counter() - t1

    # None, not NaN, where there is nothing to measure: history.json stays strict JSON
    val_acc = solver.check_accuracy(data["X_val"], data["y_val"]) if args.num_val else None
    test_acc = solver.check_accuracy(data["X_test"], data["y_test"]) if args.num_test else None
    solver.save_checkpoint(checkpoint)  # the last parameters to continue from, and the best ones the model now has
    # The model alone, with the preprocessing its inputs need: what fcn evaluate / fcn predict / fcn.load_model read
    model_file = save_model(
        net, out / "model.npz", mean_image=data["mean_image"], class_names=[str(c) for c in data["class_names"]]
    )
    plot_stats(stats, out / "curves.png", title=repr(net))
    plot_weights(net.params["W1"], path=out / "weights.png")

    summary = {
        "command": " ".join(["fcn", *args.argv]),
        "config": {k: v for k, v in vars(args).items() if k != "argv"},
        "model": repr(net),
        "data_dir": str(args.data_dir or os.environ.get("FCN_DATA_DIR") or "default cache"),
        "iterations": solver.iteration,
        "best_val_acc": stats["best_val_acc"],
        "val_acc": val_acc,
        "test_acc": test_acc,
        "load_seconds": round(load_s, 2),
        "train_seconds": round(train_s, 2),
        "machine": machine_info(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **stats,
    }
    (out / "history.json").write_text(json.dumps(summary, indent=1))
    if val_acc is None:
        print("final validation accuracy: n/a (no validation set: the last parameters were kept)")
    else:
        print(f"final validation accuracy: {val_acc:.4f} (best {stats['best_val_acc']:.4f})")
    print("test accuracy: n/a (no test set)" if test_acc is None else f"test accuracy: {test_acc:.4f}")
    print(
        f"training time: {train_s:.1f} s; outputs in {out}/ (history.json, curves.png, weights.png, checkpoint.npz, "
        "model.npz)"
    )
    print(f"use the model: fcn evaluate {model_file}  |  fcn predict {model_file} IMAGE...")
    return summary


def _save_interrupted(solver: Any, args: argparse.Namespace, out: Path, checkpoint: Path) -> NoReturn:
    """Ctrl-C during training: save the state if it is whole, say how to continue, exit with 130."""
    resume = "--resume" if args.out is not None else f"--out {out} --resume"
    if solver.consistent:  # the usual case: the interrupt was held back until the step or epoch end was complete
        solver.save_checkpoint(checkpoint)
        (out / "history.json").write_text(json.dumps(solver.stats(), indent=1))
        print(
            f"\ninterrupted at iteration {solver.iteration}: state saved to {checkpoint}; "
            f"continue with the same command plus {resume}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    if not checkpoint.exists():
        print("\ninterrupted in the middle of the first epoch: nothing to resume", file=sys.stderr)
        raise KeyboardInterrupt  # train_command removes the folder this run created
    print(
        f"\ninterrupted in the middle of a step; {checkpoint}, written at the last epoch end, is intact: "
        f"continue with the same command plus {resume}",
        file=sys.stderr,
    )
    raise SystemExit(EXIT_INTERRUPTED) from None


def info_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``fcn info``: print versions, BLAS, GPU and which backends work (for bug reports)."""
    from .sysinfo import collect_env, format_env

    env = collect_env()
    print(json.dumps(env, indent=1) if args.json else format_env(env))
    return env


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "train":
        train_command(args)
    elif args.command == "sweep":
        from .sweep import sweep_command

        sweep_command(args)
    elif args.command == "info":
        info_command(args)
    elif args.command == "evaluate":
        from .inference import evaluate_command

        evaluate_command(args)
    elif args.command == "predict":
        from .inference import predict_command

        predict_command(args)


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after any subcommand too (``fcn train ... --debug``), whoever defined the subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if not any("--debug" in a.option_strings for a in sub._actions):
                    sub.add_argument(
                        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
                    )


def _exit_code(exc: BaseException) -> int | None:
    """The exit code for an error fcn reports in one line; ``None`` for an unexpected error (a bug).

    fcn's own error types (BackendError, DatasetError, CheckpointError, ModelFileError, TrainingDiverged, the
    sweep's, ...) mean the command could not be carried out: 1, as do file-system errors. Plain ``ValueError``
    and ``TypeError`` come from fcn's argument and input checks: 2, like an output folder holding another run.
    """
    from .rundir import RunExistsError

    if isinstance(exc, RunExistsError):
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


def main(argv: list[str] | None = None) -> int:
    """The ``fcn`` command. Returns the exit code (see the module docstring); errors are one line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    _add_debug_flag(parser)
    args = parser.parse_args(argv)
    args.argv = argv
    debug = getattr(args, "debug", False) or os.environ.get("FCN_DEBUG", "").strip() not in ("", "0")
    prog = f"fcn {args.command}"
    try:
        _dispatch(args)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
