"""``fcn sweep``: its command-line options and the command itself (a thin layer over :func:`run_sweep`)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from ..cli_common import add_data_arguments
from .results import SweepResult, describe
from .run import run_sweep
from .space import DEFAULT_SPACE, PARAMETERS, SweepError, load_space, parse_spec


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``fcn sweep`` options (the same names and defaults as ``fcn train`` where they overlap)."""
    space = parser.add_argument_group(
        "search space",
        "SPEC is a value (0.95), a list to choose from (100,200,400), a range lo..hi (log scale for lr,\n"
        "reg, weight scale and hidden size), or prefixed: grid:a,b  choice:a,b  log:lo..hi  uniform:lo..hi.\n"
        "The base space is --space, else lr 3e-4..1e-2, reg 1e-3..1, hidden 100,200,400; each option\n"
        "replaces one parameter's spec (--reg 0.6 fixes reg). Parameters not in the space keep fcn train's\n"
        "defaults (lr-decay 0.95, batch-size 500, ...).",
    )
    space.add_argument("--space", default=None, help="JSON or TOML file mapping parameters to specs")
    space.add_argument("--learning-rate", "--lr", dest="learning_rate", metavar="SPEC", default=None)
    space.add_argument("--reg", metavar="SPEC", default=None, help="L2 regularisation strength")
    space.add_argument("--hidden-dims", metavar="SPEC", default=None, help="hidden sizes; 512x256 is one 2-layer net")
    space.add_argument("--lr-decay", metavar="SPEC", default=None, help="learning-rate factor per epoch")
    space.add_argument("--batch-size", metavar="SPEC", default=None)
    space.add_argument("--weight-scale", metavar="SPEC", default=None, help="(default: 1e-3 shallow, 1e-2 fc)")
    space.add_argument("--update-rule", metavar="SPEC", default=None, help="sgd, sgd_momentum, rmsprop or adam")

    model = parser.add_argument_group("trials")
    model.add_argument("--model", choices=["shallow", "fc"], default="shallow")
    model.add_argument("--backend", default="numpy", help="numpy, or cupy (one trial per GPU)")
    model.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    model.add_argument("--seed", type=int, default=0, help="seed of every trial's weights and batch order")
    length = model.add_mutually_exclusive_group()
    length.add_argument("--num-iters", type=int, default=None, help="training steps per trial (default 2000)")
    length.add_argument("--epochs", type=int, default=None, help="training epochs per trial instead of --num-iters")

    search = parser.add_argument_group("search (Ray Tune)")
    search.add_argument(
        "--num-samples", type=int, default=16, help="random draws (trials = this x the product of the grid sizes)"
    )
    search.add_argument("--search-seed", type=int, default=0, help="seed of the random sampling")
    search.add_argument("--scheduler", choices=["asha", "fifo"], default="asha", help="asha stops bad trials early")
    search.add_argument("--grace-period", type=float, default=2.0, help="ASHA: epochs before a trial can be stopped")
    search.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA: keep the best 1/rf at each rung")
    search.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    search.add_argument("--cpus-per-trial", type=float, default=1.0)
    search.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS; none: local)")
    search.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")

    data = add_data_arguments(parser)
    data.add_argument(
        "--trial-num-train",
        type=int,
        default=None,
        help="train trials on this many images (the best is retrained on all)",
    )

    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None, help="output folder (default: runs/sweep-<UTC time>)")
    out.add_argument("--no-retrain", action="store_true", help="skip retraining the best configuration")
    out.add_argument("--quiet", action="store_true", help="no progress output")


def sweep_command(args: argparse.Namespace) -> SweepResult:
    """Run ``fcn sweep`` from parsed arguments; prints the best trials and where the results are."""
    for name in ("num_iters", "epochs", "num_samples"):  # before anything is started or read
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"fcn sweep: --{name.replace('_', '-')} must be a positive integer, got {value}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        # The file (or the default space) is the base; each option replaces one parameter's spec, so
        # "--lr-decay 0.9..0.99" adds decay to the default search instead of replacing it.
        space = load_space(args.space) if args.space is not None else dict(DEFAULT_SPACE)
        space.update({k: parse_spec(k, getattr(args, k)) for k in PARAMETERS if getattr(args, k, None) is not None})
        same = (
            "data_dir",
            "num_train",
            "num_val",
            "num_test",
            "num_samples",
            "model",
            "epochs",
            "trial_num_train",
            "backend",
            "dtype",
            "seed",
            "search_seed",
            "scheduler",
            "grace_period",
            "reduction_factor",
            "max_concurrent",
            "cpus_per_trial",
            "address",
            "num_cpus",
        )  # run_sweep's names for the options
        result = run_sweep(
            space,
            **{k: getattr(args, k) for k in same},
            num_iters=args.num_iters if args.num_iters is not None or args.epochs is not None else 2000,
            download=not args.no_download,
            out=args.out or f"runs/sweep-{stamp}",
            retrain=not args.no_retrain,
            verbose=not args.quiet,
            command=" ".join(["fcn", *getattr(args, "argv", ["sweep"])]),
        )
    except SweepError as exc:
        # Same convention as fcn train: a one-line message and exit status 1, no traceback.
        raise SystemExit(f"fcn sweep: {exc}") from None
    except KeyboardInterrupt:  # while loading or retraining (Tune itself handles Ctrl-C during the trials)
        print("\nfcn sweep: interrupted", file=sys.stderr)
        raise SystemExit(130) from None

    counts = ", ".join(f"{n} {s}" for s, n in result.counts().items())
    print(f"{len(result.trials)} trials ({counts}) in {result.wall_seconds:.1f} s")
    for row in result.trials[:5]:
        print(f"  {row['best_val_acc']:.4f}  {row['status']:<11} {row['iterations']:>5} it  {describe(row['config'])}")
    if result.best:
        print(f"best: val acc {result.best['best_val_acc']:.4f} with {describe(result.best['config'])}")
    if result.retrained:
        r = result.retrained
        print(f"retrained on the full training split: val acc {r['val_acc']:.4f}, test acc {r['test_acc']:.4f}")
    print(
        f"outputs in {result.out}/ (trials.csv, trials.json, summary.json, sweep.png"
        f"{', best_checkpoint.npz' if result.retrained else ''})"
    )
    if result.interrupted:
        print("fcn sweep: interrupted; the table lists the trials that finished (none retrained)", file=sys.stderr)
        raise SystemExit(130)
    return result
