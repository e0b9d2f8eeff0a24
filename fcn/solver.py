"""The training loop: one for every model that honours the ``params`` / ``loss(X, y=None)`` contract.

The loop is built from parts (:mod:`fcn.training`): the settings (:class:`~fcn.training.config.TrainConfig`),
the optimiser (update rule, hyperparameters, state), the learning-rate schedule, the training step (batch
order, gather, loss, update; replayed as a CUDA graph where asked), atomic sections for Ctrl-C, and the
checkpoint format. What stays here is the loop itself: steps, logging points, epoch ends (evaluation, the best
snapshot, early stopping, checkpoints), and the chapter's ``stats``.

Where the time goes, and why the loop looks the way it does:

- The data is validated and moved to the model's device once, up front. Batches are gathered on the
  device from a permutation drawn per epoch by a seeded host RNG and moved once per epoch: no per-iteration
  host -> device traffic, and the same seed gives the same batches on every backend.
- The loss stays on the device. It is read back (one sync) only at logging points and epoch ends, where
  divergence (NaN/inf) is detected too.
- Inside the loop, value checks on batches are off (:func:`fcn.validation.trusted_inputs`): the whole
  dataset was checked once.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy
from tqdm import tqdm  # plain bar: tqdm.auto warns in a Jupyter without ipywidgets

from .training import cuda_graph
from .training.augment import Augmenter, check_image_batch
from .training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, write_checkpoint
from .training.config import TrainConfig, run_settings
from .training.history import History, TrainingDiverged, check_accuracy, device_data
from .training.interrupts import AtomicSections
from .training.optimizer import Optimizer
from .training.schedules import LearningRate
from .training.step import TrainStep, as_trainable
from .validation import trusted_inputs

__all__ = ["Solver", "TrainingDiverged", "CheckpointError", "CHECKPOINT_FORMAT", "TrainConfig"]


class Solver(History):
    """Trains ``model`` on ``data`` with minibatch gradient descent.

    Args:
        model: has ``params`` (name -> array) and ``loss(X, y=None)`` returning scores, or ``(loss, grads)``
            (:class:`fcn.models.ChapterModel`); the networks of :mod:`fcn.models` offer more
            (:class:`fcn.models.TrainableModel`: buffers, an unchecked fast path, dropout state).
        data: ``X_train, y_train, X_val, y_val`` (host arrays or arrays of the model's backend).
        config: a :class:`~fcn.training.config.TrainConfig`; or give its fields as keyword arguments
            (``update_rule="adam", optim_config={"learning_rate": 1e-3}, batch_size=..., num_epochs=...``;
            each is documented there). Not both.
        on_epoch_end: called as ``on_epoch_end(solver)`` after each evaluation (every epoch end and the last
            step), once the new accuracies are in the history: for early stopping, reporting to a tuner, ...

    An empty validation set (``X_val`` with 0 rows) is allowed: nothing selects a "best" epoch then, the
    parameters training ends with are kept, ``best_val_acc`` is ``None`` and ``val_acc_history`` stays empty.

    A step and an epoch end (evaluation, learning-rate decay, checkpoint) are atomic with respect to Ctrl-C:
    during :meth:`train` an interrupt arriving inside one is held back until it is complete. If an exception
    still escapes from the middle of one, :attr:`consistent` becomes False and :meth:`save_checkpoint`
    refuses to write that half-updated state; the last checkpoint written at an epoch end stays valid.
    """

    def __init__(
        self,
        model: Any,
        data: dict[str, Any],
        config: TrainConfig | None = None,
        *,
        on_epoch_end: Callable[[Solver], None] | None = None,
        **settings: Any,
    ):
        if config is not None and settings:
            raise TypeError("give a TrainConfig or its settings as keyword arguments, not both")
        self.config = config if config is not None else TrainConfig(**settings)
        self.model, self.net = model, as_trainable(model)
        self.backend = self.net.backend
        self.on_epoch_end = on_epoch_end
        self.verbose = self.config.verbose
        self.progress = self.config.progress if self.config.progress is not None else _stderr_is_terminal()
        self.checkpoint = None if self.config.checkpoint is None else Path(self.config.checkpoint)
        self.patience = self.config.patience
        self.optimizer = Optimizer(self.config.update_rule, self.config.optim_config, self.backend)

        missing = [k for k in ("X_train", "y_train", "X_val", "y_val") if k not in data]
        if missing:
            raise KeyError(f"data is missing {', '.join(missing)}")
        self.X_train, self.y_train = device_data(self.net, data["X_train"], data["y_train"], "X_train", "y_train")
        augmenter = Augmenter(self.config.augment)
        if augmenter:
            check_image_batch(tuple(self.X_train.shape), "augment")
        self.X_val, self.y_val = device_data(self.net, data["X_val"], data["y_val"], "X_val", "y_val")
        self.num_train: int = self.X_train.shape[0]
        self.num_val: int = self.X_val.shape[0]
        if self.num_train == 0:
            raise ValueError("X_train has no samples: the training set is empty")
        if self.patience is not None and self.num_val == 0:
            raise ValueError("patience needs a validation set: early stopping watches the validation accuracy")
        rng = numpy.random.default_rng(self.config.seed)
        self.train_step = TrainStep(
            self.net, self.optimizer, self.X_train, self.y_train, batch_size=self.config.batch_size, rng=rng,
            augmenter=augmenter, clip_grad_norm=self.config.clip_grad_norm,
        )  # fmt: skip
        self.iterations_per_epoch = self.train_step.iterations_per_epoch
        n_iters = self.config.num_iters
        self.num_iters = n_iters if n_iters is not None else self.config.num_epochs * self.iterations_per_epoch
        self.rebuild_schedule()
        wanted = self.config.num_train_samples
        n_score = self.num_train if wanted is None else min(wanted, self.num_train)
        self.train_subset = self.train_step.indices(rng.choice(self.num_train, n_score, replace=False))
        self.sections = AtomicSections()
        self.reset()
        self.run_step: Callable[[], None] = _graphed_or_eager(self.train_step, self.config.cuda_graph)

    # -- state ----------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Fresh history and optimiser state (a resumed checkpoint overwrites them)."""
        self.train_step.reset()
        self.optimizer.reset(list(self.model.params))
        self.epoch = 0
        self.reset_history()
        self.sections.consistent = True
        self.apply_schedule()

    @property
    def iteration(self) -> int:
        """Steps taken so far."""
        return self.train_step.iteration

    @iteration.setter
    def iteration(self, value: int) -> None:
        self.train_step.iteration = value

    @property
    def consistent(self) -> bool:
        """False once an exception escaped from the middle of a step or an epoch end."""
        return self.sections.consistent

    @consistent.setter
    def consistent(self, value: bool) -> None:
        self.sections.consistent = bool(value)

    @property
    def rng(self) -> numpy.random.Generator:
        """The host RNG of the batch order and the augmentation."""
        return self.train_step.rng

    @property
    def optim_config(self) -> dict[str, Any]:
        """A built-in rule's hyperparameters (shared by all parameters)."""
        return self.optimizer.config

    @property
    def optim_state(self) -> dict[str, dict[str, Any]]:
        """A built-in rule's state arrays per parameter."""
        return self.optimizer.state

    @property
    def optim_configs(self) -> dict[str, dict[str, Any]]:
        """A user's rule's config per parameter (hyperparameters and state arrays)."""
        return self.optimizer.configs

    @property
    def learning_rate(self) -> float:
        """The learning rate the next step uses (of the first parameter's config, for a user's rule)."""
        return self.optimizer.learning_rate

    @property
    def base_learning_rate(self) -> float | None:
        return self.optimizer.base_learning_rate

    def rebuild_schedule(self) -> None:
        """Build the learning-rate schedule for the current length (:attr:`num_iters`)."""
        c = self.config
        self.schedule = LearningRate(
            c.lr_schedule, self.base_learning_rate, iterations_per_epoch=self.iterations_per_epoch,
            num_iters=self.num_iters, decay=c.lr_decay, warmup_epochs=c.warmup_epochs,
        )  # fmt: skip

    def apply_schedule(self) -> None:
        """Set the learning rate of the next step (index :attr:`iteration`) from the schedule."""
        lr = self.schedule(self.iteration)
        if lr is not None:
            self.optimizer.set_learning_rate(lr)

    def settings(self) -> dict[str, Any]:
        """What defines this run, as saved in checkpoints and compared on resume (JSON)."""
        return run_settings(self)

    # -- the loop ---------------------------------------------------------------------------------------------

    def step(self) -> None:
        """One gradient step on the next batch (no sync, no logging): the unit ``train`` repeats."""
        self.continue_from_last()
        with trusted_inputs():
            self._step()

    def _step(self) -> None:
        with self.sections.atomic():  # the epoch's order, the update and the count change together or not at all
            self.run_step()
            self.apply_schedule()

    def train(self) -> Solver:
        """Run the remaining steps (all of them, unless resumed), then restore the best parameters.

        Returns ``self``; the history is in ``loss_history``, ``train_acc_history``, ``val_acc_history``,
        ``best_val_acc`` (see :meth:`stats`). Calling it again (after raising ``num_iters``) continues from the
        parameters training ended with, not from the best ones it restored. Ctrl-C is held back until the
        current step or epoch end is complete (a second Ctrl-C stops at once).

        Raises :class:`TrainingDiverged` when the loss or the parameters become NaN or infinite, and
        :class:`CheckpointError` when :attr:`consistent` is False.
        """
        if not self.consistent:
            raise CheckpointError(
                f"training stopped in the middle of a step or an epoch end at iteration {self.iteration}, so the "
                "parameters, optimiser state and history may disagree: load the last checkpoint to continue "
                "exactly (or set solver.consistent = True to go on from this state anyway)"
            )
        self.continue_from_last()
        bar = tqdm(total=self.num_iters, initial=self.iteration, disable=not self.progress, desc="training",
                   unit="it", dynamic_ncols=True, leave=False)  # fmt: skip
        try:
            with self.sections.interrupts_deferred(), trusted_inputs():
                while self.iteration < self.num_iters and not self.patience_exhausted():
                    self._train_one(bar)
                self.read_losses()
        finally:
            bar.close()
        self.restore_best()
        return self

    def _train_one(self, bar: Any) -> None:
        """A step, its logging point, and (when it ends an epoch or the run) the epoch end, as one unit."""
        t = self.iteration + 1
        epoch_end = t % self.iterations_per_epoch == 0
        evaluates = epoch_end or t == self.num_iters
        # a Ctrl-C during the step waits for the evaluation and the checkpoint too: no evaluation is skipped
        with self.sections.atomic() if evaluates else nullcontext():
            self._step()
            bar.update(1)
            if t % self.config.print_every == 0 or t == 1:
                self.read_losses()
                bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", lr=f"{self.learning_rate:.2e}")
                if self.verbose:
                    tqdm.write(f"(Iteration {t} / {self.num_iters}) loss: {self.loss_history[-1]:.6f}")
            if evaluates:
                with self.sections.atomic():  # count, history, best snapshot, early stop, checkpoint: together
                    if epoch_end:
                        self.epoch += 1
                    self.end_epoch(bar)
                    if self.checkpoint is not None:
                        self.save_checkpoint(self.checkpoint)

    def check_accuracy(self, X: Any, y: Any, subset: Any = None, batch_size: int = 10_000) -> float:
        """Fraction of samples whose highest score is the label (``subset``: device indices to score).

        ``X (N, ...)`` and ``y (N,)`` may be host data (moved to the model's device) or arrays already there;
        ``y`` must have one label per sample. Zero samples give NaN.
        """
        return check_accuracy(self.net, X, y, subset=subset, batch_size=batch_size)

    def stats(self) -> dict[str, Any]:
        """The chapter's ``stats`` dict: histories and ``best_val_acc`` (``None`` without a validation set)."""
        return {
            "loss_history": list(self.loss_history),
            "train_acc_history": list(self.train_acc_history),
            "val_acc_history": list(self.val_acc_history),
            "best_val_acc": self.best_val_acc,
        }

    # -- checkpoints ------------------------------------------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write parameters, buffers, optimiser state, history and RNG state to ``path`` (``.npz``) atomically.

        ``params/`` holds the parameters training ended with (what a resumed run continues from), ``best/``
        the best ones, which :meth:`train` put into the model. Refused (:class:`CheckpointError`) after an
        exception escaped from the middle of a step (:attr:`consistent` is False): that state is half-updated.
        The format is described in :mod:`fcn.training.checkpoint`.
        """
        if not self.consistent:
            raise CheckpointError(
                f"not saving a checkpoint at iteration {self.iteration}: training stopped in the middle of a step "
                "or an epoch end, so parameters, optimiser state and history may disagree; the last checkpoint "
                "written at an epoch end is intact"
            )
        self.read_losses()
        return write_checkpoint(self, path)

    def load_checkpoint(self, path: str | os.PathLike, *, strict: bool = True) -> Solver:
        """Restore a checkpoint written by :meth:`save_checkpoint` (on any backend) to continue training.

        Everything is checked before anything is assigned: a checkpoint that does not fit leaves the model
        and the solver as they were. The model gets the parameters training stopped at (``best_params`` holds
        the best ones).

        ``strict`` (the default) continues the saved run exactly, so the run's settings must be the saved ones
        (:data:`fcn.training.config.RESUME_SETTINGS`: update rule and hyperparameters, schedule, batch size,
        training and validation set sizes, the model's ``reg``, dtype and dropout, the seed, ...); otherwise
        :class:`CheckpointError` names each difference. Only the length (``num_iters``/``num_epochs``) may
        differ. ``strict=False`` loads the state anyway and applies this solver's settings from here on, with a
        warning listing the differences: its hyperparameters (the learning rate continuing its schedule), its
        batch order when the saved one does not fit its training set, fresh optimiser state when the update
        rule differs.
        """
        load_checkpoint(self, path, strict=strict)
        return self


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _graphed_or_eager(step: TrainStep, wanted: bool | None) -> Callable[[], None]:
    """The CUDA-graph replay of ``step`` when requested and possible, else ``step`` itself (with a warning)."""
    if not cuda_graph.cuda_graph_requested(wanted):
        return step
    reason = cuda_graph.unsupported(step)
    if reason is not None:
        warnings.warn(f"CUDA graphs requested but not used: {reason}; training eagerly", stacklevel=3)
        return step
    return cuda_graph.GraphedStep(step)
