"""``fcn sweep``: its command-line options and the command itself (a thin layer over :func:`fcn.sweep.run_sweep`).

The search-space options are generated from the sweep's parameters (:data:`fcn.sweep.PARAMETERS`: every
searchable setting of the model and of training), one ``--name SPEC`` option each.
"""

from __future__ import annotations

import argparse
import sys

from ..factory import CHAPTER_DEFAULTS, ModelConfig, model_fields
from ..sweep import (
    DEFAULT_SPACE,
    PARAMETERS,
    SweepError,
    SweepInputError,
    SweepResult,
    check_sweep_arguments,
    load_space,
    parse_spec,
    run_sweep,
)
from ..sweep.results import describe
from . import common, rundir
from .common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    add_data_arguments,
    flags,
    nonnegative_int,
    positive_float,
    positive_int,
)
from .train import add_option, option_help

__all__ = ["DESCRIPTION", "add_sweep_arguments", "sweep_command"]

_NUM_ITERS = CHAPTER_DEFAULTS["num_iters"]

#: Options handed to run_sweep under their own names.
_PASSED_ON = (
    "data_dir", "num_train", "num_val", "num_test", "num_samples", "model", "epochs", "trial_num_train", "backend",
    "dtype", "seed", "search_seed", "scheduler", "grace_period", "reduction_factor", "max_concurrent",
    "cpus_per_trial", "address", "num_cpus",
)  # fmt: skip

DESCRIPTION = """Hyperparameter search on CIFAR-10 with Ray Tune (pip install "fcn-cifar[sweep]").

Ray starts in this process on this machine's cores (one trial per CPU), or joins a cluster with --address.
The data is read once and shared with every trial. Each trial trains one configuration drawn from the
search space and reports its validation accuracy every epoch, so ASHA stops trials behind their peers; a
diverging trial is recorded, not fatal. The output folder gets trials.csv and trials.json (one row per
trial), summary.json, sweep.png, and the best configuration retrained on the full training split, written
as fcn train writes a run (model.npz for fcn evaluate and fcn predict, history.json, best_checkpoint.npz).
Ctrl-C stops the sweep: the table lists what finished.
"""

SPACE_HELP = """SPEC is a value (0.95), a list to choose from (100,200,400), a range lo..hi (log scale for the learning
rate, reg, weight scale, weight decay, gradient clipping and hidden size), or prefixed: grid:a,b  choice:a,b
log:lo..hi  uniform:lo..hi. Hidden sizes 512x256 are one 2-layer net; augmentations flip+crop are one choice.
The base space is --space, else lr 3e-4..1e-2, reg 1e-3..1, hidden 100,200,400; each option replaces one
parameter's spec (--reg 0.6 fixes reg). Parameters not in the space keep fcn train's defaults."""


def _spec_help(name: str) -> str:
    """``fcn train``'s help of the option, its choices, and the value a space that leaves it out gives it."""
    param = PARAMETERS[name]
    text = option_help(name, param.help)
    if param.choices:
        text += f" (one of {', '.join('none' if c is None else str(c).replace(',', '+') for c in param.choices)})"
    if param.default is not None:
        default = param.default
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        text += f"; when not searched: {shown}"
    return text


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``fcn sweep`` options (the same names and defaults as ``fcn train`` where they overlap)."""
    space = parser.add_argument_group("search space", SPACE_HELP)
    space.add_argument("--space", default=None, help="JSON or TOML file mapping parameters to specs")
    for name in PARAMETERS:
        space.add_argument(*flags(name), dest=name, metavar="SPEC", default=None, help=_spec_help(name))

    trials = parser.add_argument_group("trials", "What every trial shares (cupy trials take one GPU each).")
    library_model = ModelConfig()
    for f in model_fields():
        if not f.metadata["search"]:  # the model options a sweep does not draw: the same as fcn train's
            add_option(trials, f, CHAPTER_DEFAULTS.get(f.name, getattr(library_model, f.name)))
    trials.add_argument(
        "--seed", type=int, default=CHAPTER_DEFAULTS["seed"], help="seed of every trial's weights and batch order"
    )
    length = trials.add_mutually_exclusive_group()
    length.add_argument(
        "--num-iters", type=int, default=None,
        help=f"training steps per trial (default: {CHAPTER_DEFAULTS['num_iters']}, unless --epochs is given)",
    )  # fmt: skip
    length.add_argument(
        *flags("num_epochs"), dest="epochs", type=int, default=None, help="training epochs per trial instead"
    )

    search = parser.add_argument_group("search (Ray Tune)")
    search.add_argument(
        "--num-samples", type=int, default=16, help="random draws (trials = this x the product of the grid sizes)"
    )
    search.add_argument("--search-seed", type=nonnegative_int, default=0, help="seed of the random sampling")
    search.add_argument("--scheduler", choices=["asha", "fifo"], default="asha", help="asha stops bad trials early")
    search.add_argument(
        "--grace-period", type=positive_float, default=2.0, help="ASHA: epochs before a trial can be stopped"
    )
    search.add_argument(
        "--reduction-factor",
        type=positive_float,
        default=3.0,
        help="ASHA: keep the best 1/rf at each rung (at least 2)",
    )
    search.add_argument("--max-concurrent", type=positive_int, default=None, help="at most this many trials at once")
    search.add_argument("--cpus-per-trial", type=positive_float, default=1.0, help="CPUs each trial reserves")
    search.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS; none: local)")
    search.add_argument("--num-cpus", type=positive_int, default=None, help="CPUs of the local Ray (default: all)")

    data = add_data_arguments(parser)
    data.add_argument(
        "--trial-num-train",
        type=positive_int,
        default=None,
        help="train trials on this many images (the best is retrained on all)",
    )

    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None, help="output folder (default: runs/sweep-<UTC time>)")
    out.add_argument("--no-retrain", action="store_true", help="skip retraining the best configuration")
    out.add_argument("--quiet", action="store_true", help="no progress output")


def sweep_command(args: argparse.Namespace) -> SweepResult:
    """Run ``fcn sweep`` from parsed arguments; prints the best trials and where the results are."""
    options = {k: getattr(args, k) for k in _PASSED_ON}
    options["num_iters"] = args.num_iters if args.num_iters is not None or args.epochs is not None else _NUM_ITERS
    out = args.out or f"runs/sweep-{common.timestamp()}"
    claim = None
    try:
        check_sweep_arguments(options)  # before anything is started, read or written
        # a folder of its own, locked: never another sweep's or run's results, never two writers at once
        claim = rundir.prepare_out_dir(out, advice="choose another folder: a sweep never writes over results")
        # The file (or the default space) is the base; each option replaces one parameter's spec, so
        # "--lr-decay 0.9..0.99" adds decay to the default search instead of replacing it.
        space = load_space(args.space) if args.space is not None else dict(DEFAULT_SPACE)
        space.update({k: parse_spec(k, getattr(args, k)) for k in PARAMETERS if getattr(args, k, None) is not None})
        result = run_sweep(
            space,
            **options,
            download=not args.no_download,
            out=out,
            retrain=not args.no_retrain,
            verbose=not args.quiet,
            command=" ".join(["fcn", *getattr(args, "argv", ["sweep"])]),
        )
    except SweepInputError as exc:  # bad usage or input: named by its option, exit status 2
        flag = f"--{exc.argument.replace('_', '-')} " if exc.argument else ""
        print(f"fcn sweep: error: {flag}{exc.problem}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except SweepError as exc:
        # Same convention as fcn train: a one-line message and exit status 1, no traceback.
        raise SystemExit(f"fcn sweep: {exc}") from None
    except KeyboardInterrupt:  # while loading or retraining (Tune itself handles Ctrl-C during the trials)
        print("\nfcn sweep: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        if claim is not None:
            claim.discard()  # the lock, and the folder too where the sweep wrote nothing there

    _report(result)
    if result.interrupted:
        print("fcn sweep: interrupted; the table lists the trials that finished (none retrained)", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)
    return result


def _report(result: SweepResult) -> None:
    """The sweep's outcome on stdout: trial counts, the five best, the retrained model, the files."""
    counts = ", ".join(f"{n} {s}" for s, n in result.counts().items())
    print(f"{len(result.trials)} trials ({counts}) in {result.wall_seconds:.1f} s")
    for row in result.trials[:5]:
        print(f"  {row['best_val_acc']:.4f}  {row['status']:<11} {row['iterations']:>5} it  {describe(row['config'])}")
    if result.best:
        print(f"best: val acc {result.best['best_val_acc']:.4f} with {describe(result.best['config'])}")
    if result.retrained:
        r = result.retrained
        print(f"retrained on the full training split: val acc {r['val_acc']:.4f}, test acc {r['test_acc']:.4f}")
    model_file = (result.retrained or {}).get("model_file")
    best_files = ", model.npz, history.json, best_checkpoint.npz" if model_file else ""
    print(f"outputs in {result.out}/ (trials.csv, trials.json, summary.json, sweep.png{best_files})")
    if model_file:
        print(f"use the model: fcn evaluate {model_file}  |  fcn predict {model_file} IMAGE...")
