"""The record of a run: loss and accuracy histories, the best epoch's snapshot, early stopping, divergence.

:class:`History` is the part of :class:`fcn.Solver` that an epoch end changes. It reads the losses the steps
left on the device (one sync per logging point), fails loudly when training diverged, scores the training
subset and the validation set, keeps a copy of the best epoch's parameters and buffers, and counts epochs
without improvement. After training, :meth:`History.restore_best` puts the best arrays into the model and
keeps the last ones, which a checkpoint saves and a further call of ``train`` continues from.
"""

from __future__ import annotations

from typing import Any

import numpy
from tqdm import tqdm

from ..backend import dtype_name, to_backend, to_host
from ..protocols import TrainableModel
from ..validation import all_finite, check_features, check_fits_dtype, check_int, check_labels, trusted_inputs

__all__ = ["History", "TrainingDiverged", "device_data", "check_accuracy"]


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite (usually: the learning rate is too high)."""


def device_data(model: TrainableModel, X: Any, y: Any, x_name: str, y_name: str) -> tuple[Any, Any]:
    """Validate once (shape, dtype, labels, finiteness) and move to ``model``'s device once.

    Shapes: ``X (N, ...)`` with ``input_dim`` features per sample, ``y (N,)`` labels in ``[0, num_classes)``;
    ``X`` is cast to the parameters' dtype.
    """
    backend = model.backend
    xp = backend.xp
    dtype = next(iter(model.params.values())).dtype
    X, y = to_backend(X, backend), to_backend(y, backend)
    check_features(xp, X, model.input_dim, where=x_name)
    check_fits_dtype(xp, X, dtype, where=x_name)
    if X.dtype != dtype:
        X = xp.astype(X, dtype)
    num_classes = model.num_classes
    if num_classes is None:  # asked of the model on one sample, already in the parameters' dtype
        num_classes = model.loss(X[:1, ...]).shape[1]
    check_labels(xp, y, X.shape[0], num_classes, where=y_name)
    return X, y


def check_accuracy(model: TrainableModel, X: Any, y: Any, subset: Any = None, batch_size: int = 10_000) -> float:
    """Fraction of samples of ``X (N, ...)`` whose highest score is the label ``y (N,)``; NaN for none.

    ``subset``: device indices of the samples to score. Host data is moved to the model's device.
    """
    backend = model.backend
    xp = backend.xp
    batch_size = check_int("batch_size", batch_size, minimum=1)
    X, y = to_backend(X, backend), to_backend(y, backend)
    check_features(xp, X, model.input_dim)
    num_classes = model.num_classes
    check_labels(xp, y, X.shape[0], num_classes if num_classes is not None else 2**62)
    if subset is not None:
        X, y = xp.take(X, subset, axis=0), xp.take(y, subset, axis=0)
    n = X.shape[0]
    if n == 0:
        return float("nan")
    correct = 0
    with trusted_inputs():
        for i in range(0, n, batch_size):
            pred = xp.argmax(model.loss(X[i : min(i + batch_size, n), ...]), axis=1)
            correct = correct + xp.sum(xp.astype(pred == y[i : min(i + batch_size, n)], xp.int64))
    return int(correct) / n


class History:
    """Histories, the best snapshot and early stopping of :class:`fcn.Solver` (its epoch-end half)."""

    # provided by the Solver
    net: TrainableModel
    model: Any
    backend: Any
    train_step: Any
    patience: int | None
    verbose: bool
    num_val: int
    num_iters: int
    iterations_per_epoch: int
    iteration: int
    on_epoch_end: Any
    X_train: Any
    y_train: Any
    X_val: Any
    y_val: Any
    train_subset: Any

    sections: Any

    @property
    def learning_rate(self) -> float:
        raise NotImplementedError

    def check_accuracy(self, X: Any, y: Any, subset: Any = None, batch_size: int = 10_000) -> float:
        raise NotImplementedError

    def reset_history(self) -> None:
        self.loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        self.best_val_acc: float | None = 0.0 if self.num_val else None
        self.best_params: dict[str, Any] = {}
        self.best_buffers: dict[str, Any] = {}
        # after train() put the best parameters into the model, the arrays training ended with (to continue)
        self.last_params: dict[str, Any] | None = None
        self.last_buffers: dict[str, Any] = {}
        self.epochs_without_improvement = 0
        self.stopped_early = False

    # -- divergence -------------------------------------------------------------------------------------------

    def read_losses(self) -> None:
        """Read the pending losses back (one sync) and fail loudly if training diverged."""
        step = self.train_step
        if not step.pending_losses:
            return
        with self.sections.atomic():
            xp = self.backend.xp
            values = to_host(xp.stack([xp.asarray(v) for v in step.take_losses()])).astype(float)
            first = self.iteration - len(values)
            self.loss_history.extend(values.tolist())
        bad = numpy.flatnonzero(~numpy.isfinite(values))
        if bad.size:
            at = first + int(bad[0])
            if at == 0:
                # no update has happened yet: the step size cannot be the cause, whatever it is
                dtype = dtype_name(next(iter(self.model.params.values())).dtype)
                raise TrainingDiverged(
                    f"the loss is {values[bad[0]]} at the first iteration, before any update: the initial loss "
                    f"overflows the model's {dtype}. Check weight_scale, reg and the scale of the data"
                )
            raise TrainingDiverged(
                f"the loss became {values[bad[0]]} at iteration {at}, after {at} updates: training diverged; "
                f"lower the learning rate (now {self.learning_rate:g})"
            )

    def check_params_finite(self) -> None:
        """Fail when an update made parameters NaN or infinite (the loss of the step before can look fine)."""
        xp = self.backend.xp
        bad = [name for name, value in self.model.params.items() if not all_finite(xp, value)]
        if bad:
            raise TrainingDiverged(
                f"the parameters {', '.join(bad)} became NaN or infinite by iteration {self.iteration}: the updates "
                f"overflowed; lower the learning rate (now {self.learning_rate:g})"
            )

    # -- the epoch end ----------------------------------------------------------------------------------------

    def end_epoch(self, bar: Any) -> None:
        """Evaluate, record, snapshot the best parameters, count towards early stopping, report."""
        self.read_losses()
        self.check_params_finite()
        train_acc = self.check_accuracy(self.X_train, self.y_train, subset=self.train_subset)
        val_acc = self.check_accuracy(self.X_val, self.y_val) if self.num_val else None
        self.train_acc_history.append(train_acc)
        if val_acc is not None:
            self.val_acc_history.append(val_acc)
            if not self.best_params or self.best_val_acc is None or val_acc > self.best_val_acc:
                self.epochs_without_improvement = 0
                self.best_val_acc = val_acc
                xp = self.backend.xp
                self.best_params = {k: xp.asarray(v, copy=True) for k, v in self.model.params.items()}
                self.best_buffers = {k: xp.asarray(v, copy=True) for k, v in self.net.buffers.items()}
            else:
                self.epochs_without_improvement += 1
        val_text = "n/a" if val_acc is None else f"{val_acc:.3f}"
        bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", lr=f"{self.learning_rate:.2e}",
                        train=f"{train_acc:.3f}", val=val_text)  # fmt: skip
        if self.verbose:
            # whole epochs: a run that ends mid-epoch says so with its iteration, not "Epoch 2.4 / 2.4"
            ipe = self.iterations_per_epoch
            epoch, total = -(-self.iteration // ipe), -(-self.num_iters // ipe)
            partial = f", iteration {self.iteration}" if self.iteration % ipe else ""
            tqdm.write(f"(Epoch {epoch} / {total}{partial}) train acc: {train_acc:.3f}; val acc: {val_text}")
        if self.on_epoch_end is not None:
            self.on_epoch_end(self)
        if self.patience_exhausted():
            self.stopped_early = True
            if self.verbose:
                tqdm.write(
                    f"stopping early at iteration {self.iteration}: no better validation accuracy in "
                    f"{self.patience} evaluations (best {self.best_val_acc:.3f})"
                )

    def patience_exhausted(self) -> bool:
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    # -- best and last arrays ---------------------------------------------------------------------------------

    def restore_best(self) -> None:
        """Put the best parameters (and buffers) into the model; keep the last ones to continue from."""
        if not self.best_params:  # no validation set: the parameters training ended with stay
            return
        xp, params, buffers = self.backend.xp, self.model.params, self.net.buffers
        self.last_params = dict(params)  # the arrays themselves: the model gets copies of the best ones
        self.last_buffers = dict(buffers)
        for name, value in self.best_params.items():
            dict.__setitem__(params, name, xp.asarray(value, copy=True))
        for name, value in self.best_buffers.items():
            dict.__setitem__(buffers, name, xp.asarray(value, copy=True))

    def continue_from_last(self) -> None:
        """Before training again: the model continues from the parameters training ended with, not the best."""
        if self.last_params is None:
            return
        params, buffers = self.model.params, self.net.buffers
        for name, value in self.last_params.items():
            dict.__setitem__(params, name, value)
        for name, value in self.last_buffers.items():
            dict.__setitem__(buffers, name, value)
        self.discard_last_arrays()

    def discard_last_arrays(self) -> None:
        self.last_params, self.last_buffers = None, {}

    def resume_arrays(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The parameters and buffers a resumed run continues from: the last ones, not the restored best."""
        if self.last_params is None:
            return self.model.params, self.net.buffers
        return self.last_params, self.last_buffers
