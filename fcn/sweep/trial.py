"""One trial: build the network a configuration describes, train it with :class:`fcn.Solver`, report per epoch."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy

from ..backend import to_backend
from ..models import FullyConnectedNet, ShallowLayerNet
from ..solver import Solver, TrainingDiverged
from .space import SweepError, parse_value


@dataclass
class TrialSettings:
    """What every trial shares: the model family, training length, numerics and data subset.

    ``num_iters`` steps per trial (or ``epochs`` if given); ``trial_num_train`` trains trials on the first
    that many training images (``None``: all), while the final retraining always uses all of them.
    ``num_classes`` ``None`` means the largest label seen plus one.
    """

    model: str = "shallow"
    num_iters: int | None = 2000
    epochs: int | None = None
    backend: str = "numpy"
    dtype: str = "float32"
    seed: int = 0
    trial_num_train: int | None = None
    num_classes: int | None = None
    print_every: int = 100


def _build_model(config: Mapping[str, Any], settings: TrialSettings, input_dim: int, num_classes: int) -> Any:
    hidden = parse_value("hidden_dims", config["hidden_dims"])
    common: dict[str, Any] = dict(
        reg=float(config["reg"]),
        weight_scale=float(config["weight_scale"]),
        backend=settings.backend,
        dtype=settings.dtype,
        seed=settings.seed,
    )
    if settings.model != "shallow":
        return FullyConnectedNet(input_dim, hidden, num_classes, **common)
    if len(hidden) != 1:
        raise SweepError(f"model 'shallow' takes one hidden size, got {hidden}")
    return ShallowLayerNet(input_dim, hidden[0], num_classes, **common)


def _metrics(solver: Solver, **extra: Any) -> dict[str, Any]:
    """What a trial reports after an epoch (``extra`` overrides, for the report of a diverged trial)."""
    nan = float("nan")
    return {
        "val_acc": solver.val_acc_history[-1] if solver.val_acc_history else nan,
        "best_val_acc": solver.best_val_acc,
        "train_acc": solver.train_acc_history[-1] if solver.train_acc_history else nan,
        "loss": solver.loss_history[-1] if solver.loss_history else nan,
        "epoch": solver.iteration / solver.iterations_per_epoch,
        "iteration": solver.iteration,
        "num_iters": solver.num_iters,
        "diverged": False,
        "error": "",
        **extra,
    }


def train_trial(
    config: Mapping[str, Any],
    data: Mapping[str, Any],
    settings: TrialSettings,
    *,
    report: Callable[[dict[str, Any]], None] | None = None,
    full_data: bool = False,
) -> tuple[dict[str, Any], Solver]:
    """Train one configuration with :class:`fcn.Solver`; return ``(outcome, solver)``.

    ``report(metrics)`` is called after every epoch with ``val_acc``, ``best_val_acc``, ``train_acc``,
    ``loss``, ``epoch`` (fractional), ``iteration`` and ``num_iters``. ``outcome`` holds ``status``
    (``completed`` or ``diverged``), ``best_val_acc`` (NaN when diverged), ``iterations``, ``epochs`` and
    ``train_seconds``. Divergence is caught, reported once with ``val_acc`` NaN and ``diverged`` true, and
    not raised. ``full_data`` ignores ``settings.trial_num_train`` (the final retraining).
    """
    X_train, y_train = data["X_train"], data["y_train"]
    if settings.trial_num_train and not full_data:
        # A view into the shared (read-only) arrays: no copy per trial.
        X_train, y_train = X_train[: settings.trial_num_train], y_train[: settings.trial_num_train]
    input_dim = int(numpy.prod(X_train.shape[1:]))
    num_classes = settings.num_classes or int(max(numpy.max(y_train), numpy.max(data["y_val"]))) + 1
    solver = Solver(
        _build_model(config, settings, input_dim, num_classes),
        {"X_train": X_train, "y_train": y_train, "X_val": data["X_val"], "y_val": data["y_val"]},
        update_rule=str(config["update_rule"]),
        optim_config={"learning_rate": float(config["learning_rate"])},
        lr_decay=float(config["lr_decay"]),
        batch_size=int(config["batch_size"]),
        num_iters=settings.num_iters if settings.epochs is None else None,
        num_epochs=settings.epochs or 10,
        print_every=settings.print_every,
        verbose=False,
        progress=False,
        seed=settings.seed,
        on_epoch_end=None if report is None else lambda s: report(_metrics(s)),
    )
    t0 = time.perf_counter()
    status, error = "completed", ""
    try:
        # Overflow on the way to NaN is how a too-high learning rate shows; TrainingDiverged reports it, so
        # NumPy's warnings would only repeat it (noisily, once per trial).
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            solver.train()
    except TrainingDiverged as exc:
        status, error = "diverged", str(exc)
        if report is not None:
            # The metric must be present in every report (Tune checks); NaN is ignored by ASHA's percentiles.
            report(_metrics(solver, val_acc=float("nan"), best_val_acc=float("nan"), diverged=True, error=error))
    outcome = {
        "status": status,
        "best_val_acc": solver.best_val_acc if status == "completed" else float("nan"),
        "iterations": solver.iteration,
        "epochs": round(solver.iteration / solver.iterations_per_epoch, 3),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "error": error,
    }
    return outcome, solver


def retrain_full(
    config: Mapping[str, Any], data: Mapping[str, Any], settings: TrialSettings
) -> tuple[dict[str, Any], bytes]:
    """Train ``config`` on the full training split; return its summary and the checkpoint file's bytes.

    Bytes rather than a path, so that the same function works as a Ray task on another node.
    """
    outcome, solver = train_trial(config, data, settings, full_data=True)
    if outcome["status"] != "completed":
        return {**outcome, "val_acc": float("nan"), "test_acc": float("nan")}, b""
    test_acc = float("nan")
    if "X_test" in data and len(data["X_test"]):
        test_acc = solver.check_accuracy(
            to_backend(data["X_test"], solver.backend), to_backend(data["y_test"], solver.backend)
        )
    summary = {
        **outcome,
        "val_acc": solver.check_accuracy(solver.X_val, solver.y_val),
        "test_acc": test_acc,
        "model": repr(solver.model),
        "stats": solver.stats(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        return summary, solver.save_checkpoint(Path(tmp) / "checkpoint.npz").read_bytes()
