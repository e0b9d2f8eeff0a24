"""``fcn train``: options generated from the settings' one definition, then model + settings -> Solver.

The model options are :class:`fcn.factory.ModelConfig`'s fields, the training options
:class:`fcn.training.config.TrainConfig`'s (flag ``--field-name``, help text from the field's metadata), plus the
optimiser hyperparameters that go into ``optim_config``. Their defaults are the library's, except where the
chapter's run differs (:data:`fcn.factory.CHAPTER_DEFAULTS`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import numpy

from ..atomic import write_text_atomic
from ..backend import get_backend
from ..data import get_CIFAR10_data
from ..factory import CHAPTER_DEFAULTS, HYPERPARAMETERS, ModelConfig, model_fields
from ..optim import RULES
from ..serialization import save_model
from ..solver import Solver
from ..sysinfo import machine_info
from ..training.augment import parse_augment
from ..training.config import TrainConfig, setting_fields
from ..training.history import TrainingDiverged
from . import common, rundir
from .common import (
    EXIT_INTERRUPTED,
    add_data_arguments,
    flags,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)

__all__ = [
    "DESCRIPTION",
    "add_train_arguments",
    "add_option",
    "option_help",
    "model_config",
    "train_config",
    "train_command",
]

DESCRIPTION = f"""\
Train a network on CIFAR-10; write its history (history.json), curves.png, weights.png, a checkpoint to
resume from and the model file that fcn evaluate and fcn predict read.

With no options this is the chapter's run: ShallowLayerNet with 100 hidden units, {CHAPTER_DEFAULTS["num_iters"]}
iterations of SGD at batch {CHAPTER_DEFAULTS["batch_size"]}, learning rate {CHAPTER_DEFAULTS["learning_rate"]:g}
decayed by {CHAPTER_DEFAULTS["lr_decay"]} per epoch, reg {CHAPTER_DEFAULTS["reg"]}, {CHAPTER_DEFAULTS["dtype"]}.
"""

#: Settings that are no option of their own: the rule's hyperparameters have theirs (HYPERPARAMETERS), the
#: output is --quiet, the checkpoint is <out>/checkpoint.npz.
NOT_OPTIONS = ("optim_config", "verbose", "progress", "checkpoint")

#: Help text where the library's speaks of what the command line does otherwise.
HELP = {
    "update_rule": "how the gradients update the weights",
    "num_epochs": "training epochs instead of --num-iters",
    "num_iters": f"training steps (default: {CHAPTER_DEFAULTS['num_iters']}, unless --epochs is given)",
    "seed": "seed of the initial weights, the batch order and the augmentations",
    "normalization": "normalization between each hidden affine layer and its ReLU (--model fc)",
    "dropout_keep_ratio": "probability of keeping a hidden unit in training (1: no dropout; --model fc)",
    "num_train_samples": "training samples (a fixed random subset) scored for the train-accuracy history",
    "cuda_graph": "replay the step as a CUDA graph (default: as $FCN_CUDA_GRAPH says; off without it)",
    "patience": "stop after this many evaluations without a better validation accuracy (default: train to the end)",
    "clip_grad_norm": "rescale the gradients to at most this global L2 norm (default: no clipping)",
}

#: Settings that may be 0 (every other number must be positive).
ZERO_ALLOWED = ("seed", "warmup_epochs", "reg")


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


def _augment(text: str) -> str | None:
    try:
        return ",".join(parse_augment(text)) or None
    except ValueError as exc:  # argparse names the option already: "argument --augment: unknown augmentation ..."
        raise argparse.ArgumentTypeError(str(exc).removeprefix("augment: ")) from None


#: Parsers where the field's type alone says too little (sizes, named scales, ranges, the library's own parser).
PARSERS = {"hidden_dims": _dims, "weight_scale": _weight_scale, "dropout_keep_ratio": _keep_ratio, "augment": _augment}


#: Names in help texts that are options here (written as their flags: lr_decay -> --lr-decay).
_OPTION_NAMES = {f.name for f in (*model_fields(), *setting_fields())} | {"num_train", "num_val", "num_test"}


def option_help(name: str, text: str) -> str:
    """The help of setting ``name``'s option: :data:`HELP`, else ``text`` (the field's), names as flags."""

    def as_flag(match: re.Match[str]) -> str:
        name = match[1]
        return f"--{name.replace('_', '-')}" if name in _OPTION_NAMES else name

    return re.sub(r"\b([a-z]+(?:_[a-z]+)+)\b", as_flag, HELP.get(name, text))


def _kind(f: dataclasses.Field) -> dict[str, Any]:
    """argparse's ``type`` / ``choices`` / ``action`` for a field: from :data:`PARSERS`, its choices or its type."""
    if f.name in PARSERS:
        return {"type": PARSERS[f.name]}
    choices = f.metadata.get("choices")
    if choices:
        return {"choices": ["none" if c is None else c for c in choices]}
    kind = str(f.type).split("|")[0].strip()
    zero = f.name in ZERO_ALLOWED
    if kind == "bool":
        return {"action": argparse.BooleanOptionalAction}
    if kind == "int":
        return {"type": nonnegative_int if zero else positive_int}
    if kind == "float":
        return {"type": nonnegative_float if zero else positive_float}
    return {}


def add_option(group: Any, f: dataclasses.Field, default: Any) -> None:
    """Add setting ``f``'s option to ``group``: its flags, ``default``, help text and parser."""
    default = "none" if default is None and f.metadata.get("choices") else default
    group.add_argument(
        *flags(f.name), dest=f.name, default=default, help=option_help(f.name, f.metadata["help"]), **_kind(f)
    )


def rules_taking(name: str) -> list[str]:
    """The built-in update rules with hyperparameter ``name``."""
    return [rule for rule, spec in RULES.items() if name in spec.defaults]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fcn train``: the model's, training's, the data's and the output's."""
    model, library_model = parser.add_argument_group("model"), ModelConfig()
    for f in model_fields():
        add_option(model, f, CHAPTER_DEFAULTS.get(f.name, getattr(library_model, f.name)))
    training = parser.add_argument_group("training")
    for name, text in HYPERPARAMETERS.items():
        rules = rules_taking(name)
        library = RULES[rules[0]].defaults[name]
        only = "" if rules == list(RULES) else f" (--update-rule {' / '.join(rules)} only; default: {library:g})"
        default = CHAPTER_DEFAULTS.get(name)
        kind = positive_float if name == "learning_rate" else nonnegative_float
        training.add_argument(*flags(name), dest=name, type=kind, default=default, help=text + only)
    length = training.add_mutually_exclusive_group()
    for f in setting_fields():
        if f.name in ("num_iters", "num_epochs"):  # either; neither: CHAPTER_DEFAULTS["num_iters"]
            add_option(length, f, None)
        elif f.name not in NOT_OPTIONS:
            add_option(training, f, CHAPTER_DEFAULTS.get(f.name, f.default))

    add_data_arguments(parser)
    out = parser.add_argument_group("output")
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
    out.add_argument("--quiet", action="store_true", help="no progress bar and no log lines")


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The network ``args`` describe; a shallow net with fc-only options is a ``ValueError``."""
    values = {f.name: getattr(args, f.name) for f in model_fields()}
    values["normalization"] = None if values["normalization"] == "none" else values["normalization"]
    config = ModelConfig(**values)
    if config.model == "shallow" and len(config.hidden_dims) != 1:
        raise ValueError("--model shallow takes one hidden size; use --model fc for several")
    if config.model == "shallow" and (config.normalization is not None or config.dropout_keep_ratio < 1.0):
        raise ValueError("--normalization and --dropout-keep need --model fc")
    return config


def train_config(args: argparse.Namespace, checkpoint: Path | None = None) -> TrainConfig:
    """The training settings ``args`` describe (an option left out takes the library's default)."""
    if args.patience is not None and args.num_val == 0:  # early stopping counts evaluations on the validation set
        raise ValueError("--patience needs a validation set, but --num-val is 0")
    for name, text in HYPERPARAMETERS.items():
        rules = rules_taking(name)
        if getattr(args, name) is not None and args.update_rule not in rules:
            raise ValueError(f"{flags(name)[0]} is {text}: use --update-rule {' or '.join(rules)} (or --reg for L2)")
    values = {f.name: getattr(args, f.name) for f in setting_fields() if f.name not in NOT_OPTIONS}
    if values["num_iters"] is None and values["num_epochs"] is None:
        values["num_iters"] = CHAPTER_DEFAULTS["num_iters"]
    return TrainConfig(
        **{k: v for k, v in values.items() if v is not None},
        optim_config={name: getattr(args, name) for name in HYPERPARAMETERS if getattr(args, name) is not None},
        verbose=not args.quiet,
        progress=not args.quiet,
        checkpoint=checkpoint,
    )


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``fcn train``; returns the summary that is also written to ``history.json``.

    Everything that can be checked before training is checked first (options, backend, output folder). A run
    that fails before writing anything leaves nothing behind (a folder it created is removed again); one that
    wrote something (a checkpoint to resume from, a history) keeps its folder, whatever stopped it.
    """
    model, config = model_config(args), train_config(args)
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out: the folder of the run to continue")
    # an unknown or unusable backend, or a bad FCN_* switch of its kernel table, fails before any folder is
    # created or any data is loaded
    _ = get_backend(model.backend).ops

    if args.out is None:
        run = rundir.new_run_dir("runs", f"{model.model}-{common.timestamp()}")
    else:
        run = rundir.prepare_out_dir(args.out, resume=args.resume, overwrite=args.overwrite)
    try:
        checkpoint = run.path / "checkpoint.npz"
        if args.resume and not checkpoint.is_file():
            raise ValueError(f"--resume: there is no {checkpoint} to continue from (leave out --resume to start anew)")
        # NumPy's overflow warnings would bury fcn's own message: the Solver checks for NaN/inf and says so
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # the bar only on a terminal: a redirected run's log gets plain lines, not a stream of \r frames
            config = config.replace(checkpoint=checkpoint, progress=None if config.progress else False)
            return _train(args, model, config, run.path)
    except (Exception, KeyboardInterrupt):
        run.discard()  # only folders this run created, and only while they are empty
        raise
    finally:
        run.release()  # the folder's lock: the next command for it may start


def _train(args: argparse.Namespace, model: ModelConfig, config: TrainConfig, out: Path) -> dict[str, Any]:
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    t0 = time.perf_counter()
    data = get_CIFAR10_data(
        args.num_train, args.num_val, args.num_test, root=args.data_dir, dtype=model.dtype, backend=model.backend,
        download=not args.no_download,
    )  # fmt: skip
    load_s = time.perf_counter() - t0
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in data.items() if k.startswith(("X_", "y_")))
    say(f"data: {shapes} ({load_s:.1f} s)")
    net = model.build(seed=config.seed)
    say(f"model: {net!r}")

    checkpoint = out / "checkpoint.npz"
    solver = Solver(net, data, config)
    if args.resume:
        solver.load_checkpoint(checkpoint)  # refuses a checkpoint of other settings, naming them
        say(f"resumed from {checkpoint} at iteration {solver.iteration}")

    t1 = time.perf_counter()
    try:
        solver.train()
    except KeyboardInterrupt:
        _save_interrupted(solver, args, out, checkpoint)
    except TrainingDiverged as exc:
        _save_diverged(solver, args, out, exc)
    times = {"load_seconds": round(load_s, 2), "train_seconds": round(time.perf_counter() - t1, 2)}
    return _finish(solver, data, args, out, times)


def _finish(
    solver: Solver, data: dict[str, Any], args: argparse.Namespace, out: Path, times: dict[str, float]
) -> dict[str, Any]:
    """After training: score; write the checkpoint, then the model file, the plots and history.json; say where.

    The checkpoint comes first: whatever stops the rest, the run can be resumed (and finished) from it. The
    other files are staged and moved into place together, so the folder holds the previous result (that
    ``--overwrite`` replaces) or this one, never a mix.
    """
    from ..plotting import plot_stats, plot_weights  # matplotlib is slow to import: only once there is a figure

    net, checkpoint, stats = solver.model, out / "checkpoint.npz", solver.stats()
    # None, not NaN, where there is nothing to measure: history.json stays strict JSON
    val_acc = solver.check_accuracy(data["X_val"], data["y_val"]) if args.num_val else None
    test_acc = solver.check_accuracy(data["X_test"], data["y_test"]) if args.num_test else None
    solver.save_checkpoint(checkpoint)  # the last parameters to continue from, and the best ones the model now has
    summary = {**_record(solver, args), "val_acc": val_acc, "test_acc": test_acc, **times}
    outputs = rundir.Outputs(out)
    try:
        # the model alone, with the preprocessing its inputs need: what fcn evaluate / predict / load_model read
        class_names = [str(c) for c in data["class_names"]]
        save_model(net, outputs.path("model.npz"), mean_image=data["mean_image"], class_names=class_names)
        plot_stats(stats, outputs.path("curves.png"), title=repr(net))
        plot_weights(net.params["W1"], path=outputs.path("weights.png"))
        write_text_atomic(outputs.path("history.json"), json.dumps(summary, indent=1))
        outputs.commit()
    finally:
        outputs.discard()
    model_file = out / "model.npz"
    if val_acc is None:
        print("final validation accuracy: n/a (no validation set: the last parameters were kept)")
    else:
        print(f"final validation accuracy: {val_acc:.4f} (best {stats['best_val_acc']:.4f})")
    print("test accuracy: n/a (no test set)" if test_acc is None else f"test accuracy: {test_acc:.4f}")
    print(
        f"training time: {times['train_seconds']:.1f} s; outputs in {out}/ (history.json, curves.png, weights.png, "
        "checkpoint.npz, model.npz)"
    )
    print(f"use the model: fcn evaluate {model_file}  |  fcn predict {model_file} IMAGE...")
    print(_kept(stats, solver.iteration))
    return summary


def _kept(stats: dict[str, Any], iteration: int) -> str:
    """The last line of a run: which parameters the model file holds (the best epoch's, or the last ones)."""
    if stats["best_val_acc"] is None:
        return f"no validation set: parameters of the last iteration ({iteration}) kept"
    # one evaluation per epoch (the last may end a partial epoch): the first best is the snapshot kept
    epoch = stats["val_acc_history"].index(stats["best_val_acc"]) + 1
    return f"best val acc {stats['best_val_acc']:.3f} at epoch {epoch}, parameters of that epoch kept"


def _absolute(folder: str | None) -> str | None:
    return os.path.abspath(folder) if folder else None  # not resolve(): the path as the user sees it, links kept


def _record(solver: Solver, args: argparse.Namespace) -> dict[str, Any]:
    """What history.json says of every run: the command, its settings, the model, the machine, the histories."""
    return {
        "command": " ".join(["fcn", *args.argv]),
        "config": {k: v for k, v in vars(args).items() if k != "argv"},
        "settings": solver.config.to_json(),
        "model": repr(solver.model),
        # absolute: fcn evaluate reads it from wherever it is run
        "data_dir": _absolute(args.data_dir or os.environ.get("FCN_DATA_DIR")) or "default cache",
        "iterations": solver.iteration,
        "machine": machine_info(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **solver.stats(),
    }


def _save_diverged(solver: Solver, args: argparse.Namespace, out: Path, exc: TrainingDiverged) -> NoReturn:
    """Training diverged: keep its history and curves (no model file) so the user sees what happened.

    Not over the run that ``--overwrite`` would have replaced: that one stays as it was.
    """
    from ..plotting import plot_stats

    if args.overwrite:
        raise exc
    record = _record(solver, args)
    # NaN and infinity are no JSON: the losses that blew up are written as null
    record["loss_history"] = [v if math.isfinite(v) else None for v in record["loss_history"]]
    write_text_atomic(out / "history.json", json.dumps({**record, "diverged": str(exc)}, indent=1))
    plot_stats(solver.stats(), out / "curves.png", title=f"{solver.model!r} (diverged)")
    raise TrainingDiverged(f"{exc} (the history and curves are in {out}/)") from None


def _save_interrupted(solver: Solver, args: argparse.Namespace, out: Path, checkpoint: Path) -> NoReturn:
    """Ctrl-C during training: save the state if it is whole, say how to continue, exit with 130.

    The history so far is written too, except over the run that ``--overwrite`` replaces only once this one
    has finished (the checkpoint holds it anyway).
    """
    resume = "--resume" if args.out is not None else f"--out {out} --resume"
    if args.overwrite:
        resume = "--resume instead of --overwrite"
    if solver.consistent:  # the usual case: the interrupt was held back until the step or epoch end was complete
        solver.save_checkpoint(checkpoint)
        if not args.overwrite:
            write_text_atomic(out / "history.json", json.dumps(solver.stats(), indent=1))
        print(
            f"\ninterrupted at iteration {solver.iteration}: state saved to {checkpoint}; "
            f"continue with the same command plus {resume}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    if not checkpoint.exists():
        print("\ninterrupted in the middle of the first epoch: nothing to resume", file=sys.stderr)
        raise KeyboardInterrupt  # train_command removes the folder this run created, now empty
    print(
        f"\ninterrupted in the middle of a step; {checkpoint}, written at the last epoch end, is intact: "
        f"continue with the same command plus {resume}",
        file=sys.stderr,
    )
    raise SystemExit(EXIT_INTERRUPTED) from None
