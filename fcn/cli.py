"""``fcn`` command line: ``fcn train`` trains a network on CIFAR-10 and writes history, plots and a checkpoint.

``fcn evaluate`` and ``fcn predict`` use the trained model (see :mod:`fcn.inference`); ``fcn sweep`` searches
hyperparameters (see :mod:`fcn.sweep`).

With no options, ``fcn train`` reproduces the chapter's run: ShallowLayerNet with 100 hidden units,
2000 iterations of SGD at batch 500, learning rate 1e-3 decayed by 0.95 per epoch, reg 0.6.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .cli_common import add_data_arguments
from .sysinfo import machine_info

__all__ = ["main", "build_parser"]


def _dims(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 100 or 1024,512, got {text!r}") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive integers, got {text!r}")
    return dims


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcn", description=__doc__.split("\n")[0])
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
        "--weight-scale", type=float, default=None, help="std of the initial weights (default: 1e-3 shallow, 1e-2 fc)"
    )
    model.add_argument("--reg", type=float, default=0.6, help="L2 regularisation strength")
    model.add_argument("--backend", default="numpy", help="numpy, cupy or array_api_strict")
    model.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    model.add_argument("--seed", type=int, default=0, help="seed for the initial weights and the batch order")

    opt = t.add_argument_group("optimisation")
    opt.add_argument("--update-rule", choices=["sgd", "sgd_momentum", "rmsprop", "adam"], default="sgd")
    opt.add_argument("--learning-rate", "--lr", type=float, default=1e-3)
    opt.add_argument("--lr-decay", type=float, default=0.95, help="learning-rate factor applied after every epoch")
    opt.add_argument("--batch-size", type=int, default=500)
    length = opt.add_mutually_exclusive_group()
    length.add_argument("--num-iters", type=int, default=None, help="training steps (default 2000)")
    length.add_argument("--epochs", type=int, default=None, help="training epochs instead of --num-iters")

    add_data_arguments(t)

    out = t.add_argument_group("output")
    out.add_argument("--out", default=None, help="output folder (default: runs/<model>-<UTC time>)")
    out.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.npz if present")
    out.add_argument("--print-every", type=int, default=100)
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
    return parser


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``fcn train``; returns the summary that is also written to ``history.json``."""
    from . import Solver
    from .data import get_CIFAR10_data
    from .factory import build_model
    from .plotting import plot_stats, plot_weights
    from .serialization import save_model

    num_iters = args.num_iters if args.num_iters is not None or args.epochs is not None else 2000
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out or f"runs/{args.model}-{stamp}")
    out.mkdir(parents=True, exist_ok=True)
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

    if args.model == "shallow" and len(args.hidden_dims) != 1:
        raise SystemExit("fcn train: --model shallow takes one hidden size; use --model fc for several")
    common = dict(reg=args.reg, backend=args.backend, dtype=args.dtype, seed=args.seed)
    net = build_model(args.model, args.hidden_dims, weight_scale=args.weight_scale, **common)
    say(f"model: {net!r}")

    checkpoint = out / "checkpoint.npz"
    solver = Solver(
        net,
        data,
        update_rule=args.update_rule,
        optim_config={"learning_rate": args.learning_rate},
        lr_decay=args.lr_decay,
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

    t1 = time.perf_counter()
    try:
        solver.train()
    except KeyboardInterrupt:
        solver.save_checkpoint(checkpoint)
        print(
            f"\ninterrupted at iteration {solver.iteration}: state saved to {checkpoint}; "
            f"continue with the same command plus --resume",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    finally:  # whatever happens, keep what was learned so far
        (out / "history.json").write_text(json.dumps(solver.stats(), indent=1))
    stats = solver.stats()
    train_s = time.perf_counter() - t1

    val_acc = solver.check_accuracy(data["X_val"], data["y_val"])
    test_acc = solver.check_accuracy(data["X_test"], data["y_test"])
    solver.save_checkpoint(checkpoint)  # the restored best parameters
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
    print(f"final validation accuracy: {val_acc:.4f} (best {stats['best_val_acc']:.4f})")
    print(f"test accuracy: {test_acc:.4f}")
    print(
        f"training time: {train_s:.1f} s; outputs in {out}/ (history.json, curves.png, weights.png, checkpoint.npz, "
        "model.npz)"
    )
    print(f"use the model: fcn evaluate {model_file}  |  fcn predict {model_file} IMAGE...")
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command == "train":
        train_command(args)
    elif args.command == "sweep":
        from .sweep import sweep_command

        sweep_command(args)
    elif args.command == "evaluate":
        from .inference import evaluate_command

        evaluate_command(args)
    elif args.command == "predict":
        from .inference import predict_command

        predict_command(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
