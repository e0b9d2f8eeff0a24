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
from ..factory import HYPERPARAMETERS, ModelConfig, model_fields
from ..optim import RULES
from ..serialization import save_model
from ..solver import Solver, TrainingDiverged
from ..training.config import TrainConfig, setting_fields

_MODEL_SETTINGS = {f.name for f in model_fields()}
_TRAIN_SETTINGS = {f.name for f in setting_fields()}


@dataclass
class TrialSettings:
    """What every trial shares. ``num_iters`` steps per trial, or ``epochs`` epochs when given; trials train on
    the first ``trial_num_train`` images (``None``: all; the final retraining uses all); ``num_classes``
    ``None`` means the largest label seen plus one."""

    model: str = "shallow"
    num_iters: int | None = 2000
    epochs: int | None = None
    backend: str = "numpy"
    dtype: str = "float32"
    seed: int = 0
    trial_num_train: int | None = None
    num_classes: int | None = None

    def model_config(self, config: Mapping[str, Any]) -> ModelConfig:
        """The network of a trial: this sweep's model, backend and dtype, the trial's sizes, scale, reg, ..."""
        values = {k: v for k, v in config.items() if k in _MODEL_SETTINGS}
        return ModelConfig(**values, model=self.model, backend=self.backend, dtype=self.dtype)

    def train_config(self, config: Mapping[str, Any]) -> TrainConfig:
        """The training settings of a trial: this sweep's length and seed, with the trial's values replaced in.

        The optimiser hyperparameters go into ``optim_config``, each only for a rule that takes it (a trial
        drawing ``sgd`` ignores a weight decay drawn for ``adamw``)."""
        base = TrainConfig(
            num_iters=self.num_iters if self.epochs is None else None, num_epochs=self.epochs or 0,
            verbose=False, progress=False, seed=self.seed,
        )  # fmt: skip
        values = {k: v for k, v in config.items() if k in _TRAIN_SETTINGS}
        rule = RULES.get(str(values.get("update_rule", base.update_rule)))
        optim = {k: config[k] for k in HYPERPARAMETERS if config.get(k) is not None and rule and k in rule.defaults}
        return base.replace(**values, optim_config=optim)


def _metrics(s: Solver, **extra: Any) -> dict[str, Any]:
    """What a trial reports after an epoch (``extra`` overrides, for the report of a diverged trial)."""
    nan = float("nan")
    return {
        "val_acc": s.val_acc_history[-1] if s.val_acc_history else nan,
        "train_acc": s.train_acc_history[-1] if s.train_acc_history else nan,
        "loss": s.loss_history[-1] if s.loss_history else nan,
        "best_val_acc": s.best_val_acc,
        "epoch": s.iteration / s.iterations_per_epoch,
        "iteration": s.iteration,
        "num_iters": s.num_iters,
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

    ``report(metrics)`` is called after every epoch (``val_acc``, ``best_val_acc``, ``train_acc``, ``loss``,
    ``epoch`` (fractional), ``iteration``, ``num_iters``). ``outcome``: ``status`` (``completed``,
    ``diverged``, or ``error`` when no step was taken), ``best_val_acc`` (NaN unless completed),
    ``iterations``, ``epochs``, ``train_seconds``, ``error``. Divergence is reported once (``val_acc`` NaN,
    ``diverged`` true), not raised. ``full_data`` ignores ``settings.trial_num_train`` (the retraining).
    """
    X, y = data["X_train"], data["y_train"]
    if settings.trial_num_train and not full_data:  # views into the shared read-only arrays: no copy per trial
        X, y = X[: settings.trial_num_train], y[: settings.trial_num_train]
    net = settings.model_config(config).build(
        input_dim=int(numpy.prod(X.shape[1:])),
        num_classes=settings.num_classes or int(max(numpy.max(y), numpy.max(data["y_val"]))) + 1,
        seed=settings.seed,
    )
    solver = Solver(
        net,
        {"X_train": X, "y_train": y, "X_val": data["X_val"], "y_val": data["y_val"]},
        settings.train_config(config),
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
        if report is not None:  # the metric must be in every report (Tune checks); ASHA ignores NaN
            report(_metrics(solver, val_acc=float("nan"), best_val_acc=float("nan"), diverged=True, error=error))
    if status == "completed" and solver.iteration == 0:
        status, error = "error", "no training step was taken"  # it learned nothing: never ranked
    return {
        "status": status,
        "best_val_acc": solver.best_val_acc if status == "completed" else float("nan"),
        "iterations": solver.iteration,
        "epochs": round(solver.iteration / solver.iterations_per_epoch, 3),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "error": error,
    }, solver


def retrain_full(
    config: Mapping[str, Any], data: Mapping[str, Any], settings: TrialSettings
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Train ``config`` on the full training split; return its summary and its files' bytes: ``"checkpoint"``
    (the Solver's checkpoint) and ``"model"`` (the model file :func:`fcn.serialization.save_model` writes, as
    ``fcn train`` does, with ``data``'s ``mean_image`` and ``class_names`` when it has them), or no files when
    it did not complete. Bytes, not paths, so that it works as a Ray task on another node.

    The summary: the outcome of :func:`train_trial`, ``val_acc``, ``test_acc`` (NaN without a test split),
    ``model`` (its repr), ``settings`` (the run's :class:`TrainConfig` as JSON) and ``stats`` (its history).
    """
    outcome, solver = train_trial(config, data, settings, full_data=True)
    if outcome["status"] != "completed":
        return {**outcome, "val_acc": float("nan"), "test_acc": float("nan")}, {}
    be, test_acc = solver.backend, float("nan")
    if len(data.get("X_test", ())):
        test_acc = solver.check_accuracy(to_backend(data["X_test"], be), to_backend(data["y_test"], be))
    val_acc = solver.check_accuracy(solver.X_val, solver.y_val)
    summary = {**outcome, "val_acc": val_acc, "test_acc": test_acc, "model": repr(solver.model)}
    summary.update(settings=solver.config.to_json(), stats=solver.stats())
    names = data.get("class_names")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = solver.save_checkpoint(Path(tmp) / "checkpoint.npz")
        model = save_model(
            solver.model, Path(tmp) / "model.npz", mean_image=data.get("mean_image"),
            class_names=None if names is None else [str(c) for c in names],
        )  # fmt: skip
        return summary, {"checkpoint": checkpoint.read_bytes(), "model": model.read_bytes()}
