"""The training loop: one for every model that honours the ``params`` / ``loss(X, y=None)`` contract.

Where the time goes, and why the loop looks the way it does:

- The data is validated and moved to the model's device once, up front. Batches are gathered on the
  device (``xp.take``) from a permutation drawn per epoch by a seeded host RNG and moved once per epoch:
  no per-iteration host -> device traffic, and the same seed gives the same batches on every backend.
- The loss stays on the device. It is read back (one sync) only at logging points and epoch ends, where
  divergence (NaN/inf) is detected too.
- Inside the loop, value checks on batches are off (:func:`fcn.validation.trusted_inputs`): the whole
  dataset was checked once.

Checkpoints are ``.npz`` files (no pickle) written atomically (temporary file + ``os.replace``), holding
parameters, buffers (running statistics), the best snapshot of both, optimiser state, history, the batch
RNG state and the current epoch's order, so a resumed
run takes exactly the steps the uninterrupted one would have. They are device-neutral: a checkpoint
written on a GPU loads on a CPU and vice versa.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy
from tqdm import tqdm  # plain bar: tqdm.auto warns in a Jupyter without ipywidgets

from .augment import Augmenter, check_image_batch
from .backend import Backend, namespace_of, to_backend, to_host
from .npz import write_npz as write_npz_atomically
from .optim import RULES, UPDATE_RULES, get_update_rule
from .schedules import make_schedule
from .validation import (
    all_finite,
    check_features,
    check_fits_dtype,
    check_float,
    check_int,
    check_labels,
    trusted_inputs,
)

__all__ = ["Solver", "TrainingDiverged", "CheckpointError", "CHECKPOINT_FORMAT"]

#: 3: the learning rate is a schedule of the step (the base rate, early stopping and the model's random state are
#: saved); 1 and 2 kept the current, decayed rate and are still read.
CHECKPOINT_FORMAT = "fcn-checkpoint-3"

#: Settings a checkpoint records and a resumed run must share (the training length may change: that extends it).
RESUME_SETTINGS = (
    "update_rule",
    "optim_config",
    "lr_decay",
    "lr_schedule",
    "warmup_epochs",
    "clip_grad_norm",
    "augment",
    "batch_size",
    "num_train",
    "num_val",
    "reg",
    "seed",
)


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite (usually: the learning rate is too high)."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, or does not fit the model."""


def model_backend(model: Any) -> Backend:
    """The backend of ``model``: its ``backend`` attribute, else inferred from its parameters."""
    backend = getattr(model, "backend", None)
    return backend if isinstance(backend, Backend) else namespace_of(*model.params.values())


class Solver:
    """Trains ``model`` on ``data`` with minibatch gradient descent.

    Args:
        model: has ``params`` (name -> array) and ``loss(X, y=None)`` returning scores, or ``(loss, grads)``.
        data: ``X_train, y_train, X_val, y_val`` (host arrays or arrays of the model's backend).
        update_rule: ``"sgd"``, ``"sgd_momentum"``, ``"rmsprop"``, ``"adam"``, ``"adamw"`` or a callable
            ``(w, dw, config) -> (w, config)``. A built-in rule updates all parameters in one call of the
            backend's kernel table, with one set of hyperparameters (``optim_config``) and state arrays per
            parameter (``optim_state``); a callable gets its own copy of ``optim_config`` per parameter
            (``optim_configs``), whose arrays are checkpointed as state and the rest as hyperparameters.
        optim_config: hyperparameters for the rule (e.g. ``{"learning_rate": 1e-3}``); unknown keys of a
            built-in rule are an error.
        lr_decay: the learning rate is multiplied by this after every epoch (``lr_schedule="step"``).
        batch_size: samples per step; an epoch is ``num_train // batch_size`` steps (at least one).
        num_epochs: epochs to train, unless ``num_iters`` is given (0: no step).
        num_iters: total steps, overriding ``num_epochs`` (0: no step).
        num_train_samples: training samples (a fixed random subset) scored for the train-accuracy history;
            ``None`` scores all of them.
        print_every: log the loss every this many steps (also the granularity of divergence checks).
        verbose: print log lines.
        progress: show a tqdm progress bar (``None``: only when stderr is a terminal).
        checkpoint: path of an ``.npz`` written at every epoch end and when training finishes.
        seed: seed of the host RNG that orders the batches.
        cuda_graph: replay the training step as a CUDA graph (``None``: ``$FCN_CUDA_GRAPH``). Opt-in and not yet
            verified on a GPU; needs CuPy with the fused kernels, a built-in update rule and no dropout, and
            otherwise trains eagerly with a warning (see :mod:`fcn.cuda_graph`).
        on_epoch_end: called as ``on_epoch_end(solver)`` after each evaluation (every epoch end and the last
            step), once the new accuracies are in the history: for early stopping, reporting to a tuner, ...
        lr_schedule: ``"step"`` (default: the per-epoch ``lr_decay``), ``"cosine"`` or ``"linear"`` (from the
            base rate down to 0 at the last step); see :mod:`fcn.schedules`. The base rate is
            ``optim_config["learning_rate"]``; :attr:`learning_rate` is the one the next step uses.
        warmup_epochs: a linear warmup of the learning rate over this many epochs (fractions allowed) first.
        patience: stop early once the validation accuracy has not improved for this many evaluations in a
            row (``None``: never); the best parameters are restored as usual.
        clip_grad_norm: rescale the gradients so that their global L2 norm (over all parameters) is at most
            this (``None``: no clipping). Computed on the device: no sync per step.
        augment: ``"flip"``, ``"crop"`` or ``"flip,crop"`` (random horizontal flips; random crops of the image
            padded with 4 zero pixels) applied to each training batch; needs image-shaped data
            ``(N, C, H, W)``. Off by default. The random choices come from the batch-order RNG.

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
        *,
        update_rule: Any = "sgd",
        optim_config: dict[str, Any] | None = None,
        lr_decay: float = 1.0,
        batch_size: int = 100,
        num_epochs: int = 10,
        num_iters: int | None = None,
        num_train_samples: int | None = 1000,
        print_every: int = 100,
        verbose: bool = True,
        progress: bool | None = None,
        checkpoint: str | os.PathLike | None = None,
        seed: int | None = None,
        on_epoch_end: Callable[[Solver], None] | None = None,
        cuda_graph: bool | None = None,
        lr_schedule: str = "step",
        warmup_epochs: float = 0.0,
        patience: int | None = None,
        clip_grad_norm: float | None = None,
        augment: str | None = None,
    ):
        self.model = model
        self.on_epoch_end = on_epoch_end
        self.backend = model_backend(model)
        self.update_rule = get_update_rule(update_rule)
        builtin = {fn: name for name, fn in UPDATE_RULES.items()}.get(self.update_rule)
        self.update_rule_name = builtin or getattr(update_rule, "__name__", "")
        #: the built-in rule's spec (applied to all parameters at once), or None for a user's callable
        self.rule_spec = RULES[builtin] if builtin else None
        self._initial_optim_config = (
            self.rule_spec.hyperparameters(optim_config) if self.rule_spec else dict(optim_config or {})
        )
        self.lr_decay = check_float("lr_decay", lr_decay, positive=True)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.print_every = check_int("print_every", print_every, minimum=1)
        # 0 is a valid length (no step is taken); only num_epochs is ignored when num_iters is given
        num_iters = None if num_iters is None else check_int("num_iters", num_iters, minimum=0)
        if num_iters is None:
            num_epochs = check_int("num_epochs", num_epochs, minimum=0)
        if num_train_samples is not None:
            num_train_samples = check_int("num_train_samples", num_train_samples, minimum=1)
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.patience = None if patience is None else check_int("patience", patience, minimum=1)
        self.clip_grad_norm = (
            None if clip_grad_norm is None else check_float("clip_grad_norm", clip_grad_norm, positive=True)
        )
        self.augmenter = Augmenter(augment)
        self.verbose = verbose
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None

        missing = [k for k in ("X_train", "y_train", "X_val", "y_val") if k not in data]
        if missing:
            raise KeyError(f"data is missing {', '.join(missing)}")
        self.X_train, self.y_train = self._device_data(data["X_train"], data["y_train"], "X_train", "y_train")
        if self.augmenter:
            check_image_batch(tuple(self.X_train.shape), "augment")
        self.X_val, self.y_val = self._device_data(data["X_val"], data["y_val"], "X_val", "y_val")
        self.num_train = self.X_train.shape[0]
        self.num_val = self.X_val.shape[0]
        if self.num_train == 0:
            raise ValueError("X_train has no samples: the training set is empty")
        self.iterations_per_epoch = max(self.num_train // self.batch_size, 1)
        self.num_iters = num_iters if num_iters is not None else num_epochs * self.iterations_per_epoch
        #: the base learning rate the schedule scales (None: the rule has no learning rate to schedule)
        self.base_learning_rate = self._initial_optim_config.get("learning_rate")
        if self.base_learning_rate is None and (lr_schedule != "step" or warmup_epochs):
            raise ValueError(
                f"lr_schedule={lr_schedule!r} with warmup_epochs={warmup_epochs!r} needs a learning rate to scale: "
                "put one in optim_config['learning_rate']"
            )
        self._make_schedule()

        self.rng = numpy.random.default_rng(self.seed)
        n_score = self.num_train if num_train_samples is None else min(num_train_samples, self.num_train)
        self._train_subset = self._indices(self.rng.choice(self.num_train, n_score, replace=False))
        self._reset()
        self._graph: Any = self._graph_runner(cuda_graph)

    # -- setup ------------------------------------------------------------------------------------------

    def _device_data(self, X: Any, y: Any, x_name: str, y_name: str) -> tuple[Any, Any]:
        """Validate once (shape, dtype, labels, finiteness) and move to the device once."""
        xp = self.backend.xp
        dtype = next(iter(self.model.params.values())).dtype
        X, y = to_backend(X, self.backend), to_backend(y, self.backend)
        check_features(xp, X, getattr(self.model, "input_dim", None), where=x_name)
        num_classes = getattr(self.model, "num_classes", None)
        if num_classes is None:
            num_classes = self.model.loss(X[:1, ...]).shape[1]
        check_labels(xp, y, X.shape[0], num_classes, where=y_name)
        check_fits_dtype(xp, X, dtype, where=x_name)
        if X.dtype != dtype:
            X = xp.astype(X, dtype)
        return X, y

    def _indices(self, host_indices: numpy.ndarray) -> Any:
        return to_backend(numpy.asarray(host_indices, dtype=numpy.int64), self.backend)

    def _reset(self) -> None:
        """Fresh history and optimiser state (a resumed checkpoint overwrites them)."""
        self.iteration = 0
        self.epoch = 0
        self.loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        self.best_val_acc: float | None = 0.0 if self.num_val else None
        self.best_params: dict[str, Any] = {}
        self.best_buffers: dict[str, Any] = {}
        # built-in rule: one shared config and per-parameter state arrays (made on the first step);
        # a callable: one config per parameter, arrays and hyperparameters mixed (told apart by type)
        self.optim_config: dict[str, Any] = dict(self._initial_optim_config)
        self.optim_state: dict[str, dict[str, Any]] = {}
        self.optim_configs = {} if self.rule_spec else {n: dict(self.optim_config) for n in self.model.params}
        self._batch_buffers: dict[int, tuple[Any, Any]] = {}
        self._order: Any = None  # this epoch's batch order, on the device
        self._order_host: numpy.ndarray | None = None
        self._pending_losses: list[Any] = []  # device scalars not yet read back
        # after train() put the best parameters into the model, the arrays training ended with (to continue)
        self._last_params: dict[str, Any] | None = None
        self._last_buffers: dict[str, Any] = {}
        #: False once an exception escaped from the middle of a step or an epoch end (see the class docstring)
        self.consistent = True
        self._atomic_depth = 0
        self._interrupt_pending = False
        self.epochs_without_improvement = 0
        self.stopped_early = False
        self._apply_schedule()

    def _make_schedule(self) -> None:
        """Validate the schedule's arguments and build ``iteration -> learning rate``."""
        base = self.base_learning_rate
        self._schedule = make_schedule(
            self.lr_schedule,
            learning_rate=1.0 if base is None else base,
            iterations_per_epoch=self.iterations_per_epoch,
            num_iters=self.num_iters,
            decay=self.lr_decay,
            warmup_epochs=self.warmup_epochs,
        )

    def _legacy_schedule(self, rate_now: float, epoch_now: int) -> None:
        """Continue the per-epoch decay from ``rate_now``, the rate of epoch ``epoch_now`` (old checkpoints)."""
        if self.warmup_epochs:
            return
        ipe = self.iterations_per_epoch
        rate = make_schedule(
            "step", learning_rate=rate_now, iterations_per_epoch=ipe, num_iters=self.num_iters, decay=self.lr_decay
        )
        self._schedule = lambda iteration: rate(max(iteration - epoch_now * ipe, 0))

    def _apply_schedule(self) -> None:
        """Set the learning rate of the next step (index ``self.iteration``) from the schedule.

        A pure function of the step: the default ``"step"`` schedule gives the chapter's per-epoch decay (the
        same products in the same order), and a resumed run needs nothing but the step count.
        """
        if self.base_learning_rate is None:
            return
        lr = self._schedule(self.iteration)
        for config in [self.optim_config] if self.rule_spec else self.optim_configs.values():
            config["learning_rate"] = lr

    def _graph_runner(self, wanted: bool | None) -> Any:
        """The CUDA-graph replayer of the training step when requested and possible (else None, with a warning)."""
        from .cuda_graph import GraphedTraining, cuda_graph_requested

        if not cuda_graph_requested(wanted):
            return None
        reason = GraphedTraining.unsupported(self)
        if reason is not None:
            warnings.warn(f"CUDA graphs requested but not used: {reason}; training eagerly", stacklevel=3)
            return None
        return GraphedTraining(self)

    # -- the loop ---------------------------------------------------------------------------------------

    def step(self) -> None:
        """One gradient step on the next batch (no sync, no logging): the unit ``train`` repeats.

        Batches come from this epoch's permutation, gathered on the device. The loss is kept on the device
        until the next logging point. Value checks on the batch are off: the data was checked up front.
        """
        self._continue_from_last()
        with trusted_inputs():
            self._step()

    def _step(self) -> None:
        with self._atomic():  # drawing the epoch's order, the update and the count change together or not at all
            if self._graph is not None:
                self._graph.step()  # replays a captured step (after one eager step and the capture)
            else:
                self._eager_step()
            self._apply_schedule()

    # -- atomicity with respect to Ctrl-C ---------------------------------------------------------------

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """A block that changes the training state as a whole: an interrupt is held back until it ends.

        An exception escaping from inside marks the state inconsistent (a half-applied update cannot be
        undone without copying every parameter each step); :meth:`save_checkpoint` then refuses to save.
        """
        self._atomic_depth += 1
        try:
            yield
        except BaseException:
            self.consistent = False
            raise
        finally:
            self._atomic_depth -= 1
        if self._atomic_depth == 0 and self._interrupt_pending:
            self._interrupt_pending = False
            raise KeyboardInterrupt

    @contextmanager
    def _interrupts_deferred(self) -> Iterator[None]:
        """While training: Ctrl-C inside an atomic block is delivered when the block ends; a second one at once."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be installed from the main thread
            return
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            if self._atomic_depth > 0 and not self._interrupt_pending:
                self._interrupt_pending = True
                return
            self._interrupt_pending = False
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt

        try:
            signal.signal(signal.SIGINT, on_sigint)
        except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _next_batch_indices(self) -> Any:
        """This step's rows of the training data (device indices); a new permutation at each epoch start."""
        k = self.iteration % self.iterations_per_epoch
        if k == 0 or self._order is None:
            self._order_host = self.rng.permutation(self.num_train)
            self._order = self._indices(self._order_host)
        return self._order[k * self.batch_size : min((k + 1) * self.batch_size, self.num_train)]

    def _eager_step(self) -> None:
        idx = self._next_batch_indices()
        X_batch, y_batch = self._gather(idx)
        if self.augmenter:
            X_batch = self.augmenter(X_batch, self.rng)
        set_step = getattr(self.model, "set_step", None)
        if set_step is not None:  # the model's randomness (dropout masks) follows the step: resumable
            set_step(self.iteration)
        loss, grads = self._loss_and_grads(X_batch, y_batch)
        self._pending_losses.append(loss)
        if self.clip_grad_norm is not None:
            self._clip(grads)
        self._update(grads)
        self.iteration += 1

    def _clip(self, grads: dict[str, Any]) -> None:
        """Scale all gradients by ``min(1, clip / (norm + 1e-6))``, ``norm`` their global L2 norm, on the device."""
        xp = self.backend.xp
        norm = xp.sqrt(self.backend.ops.sum_of_squares(list(grads.values())))
        factor = xp.clip(self.clip_grad_norm / (norm + 1e-6), max=1.0)
        for g in grads.values():
            g *= factor

    def _gather(self, idx: Any) -> tuple[Any, Any]:
        """The batch's rows of the training data, gathered on the device (into reused buffers on CuPy)."""
        ops = self.backend.ops
        n = idx.shape[0]
        buffers = self._batch_buffers.get(n)
        # Reused buffers on CuPy only: on NumPy a fresh gather measured faster for the whole step (float64
        # shallow net: 10.7 vs 13.1 ms), and a model holding on to its batch never sees it overwritten.
        if buffers is None and self.backend.is_cupy:
            buffers = self._batch_buffers[n] = (
                self.backend.xp.empty((n, *self.X_train.shape[1:]), dtype=self.X_train.dtype),
                self.backend.xp.empty(n, dtype=self.y_train.dtype),
            )
        X_out, y_out = buffers if buffers is not None else (None, None)
        take_batch = getattr(ops, "take_batch", None)  # the fused kernels: images and labels in one launch
        if take_batch is not None:
            return take_batch(self.X_train, self.y_train, idx, out=buffers)
        return ops.take_rows(self.X_train, idx, out=X_out), ops.take_rows(self.y_train, idx, out=y_out)

    def _loss_and_grads(self, X_batch: Any, y_batch: Any) -> tuple[Any, dict[str, Any]]:
        """Loss and gradients of a training batch: the model's unchecked fast path where it has one."""
        fast = getattr(self.model, "loss_and_grads", None)
        if fast is None:
            return self.model.loss(X_batch, y_batch)
        num_features = getattr(self.model, "input_dim", None)
        if num_features is not None and X_batch.ndim != 2:
            X_batch = self.backend.xp.reshape(X_batch, (X_batch.shape[0], num_features))
        return fast(X_batch, y_batch, train=True)

    def _update(self, grads: dict[str, Any]) -> None:
        """Apply the update rule to every parameter, in place."""
        params = self.model.params
        if self.rule_spec is None:  # a user's rule: (w, dw, config) -> (w, config), per parameter
            for name, w in params.items():
                next_w, self.optim_configs[name] = self.update_rule(w, grads[name], self.optim_configs[name])
                if next_w is not w:
                    dict.__setitem__(params, name, next_w)  # the rule's own array: trusted, no checks
            return
        spec, ops, names = self.rule_spec, self.backend.ops, list(params)
        if len(self.optim_state) != len(names):
            for name in names:
                self.optim_state.setdefault(name, {k: self.backend.xp.zeros_like(params[name]) for k in spec.state})
        config = self.optim_config
        if "t" in config:
            config["t"] = int(config["t"]) + 1
        ops.update_all(
            spec.kernel,
            [params[n] for n in names],
            [grads[n] for n in names],
            [tuple(self.optim_state[n][k] for k in spec.state) for n in names],
            config,
        )

    def _read_losses(self) -> None:
        """Read the pending losses back (one sync) and fail loudly if training diverged."""
        if not self._pending_losses:
            return
        with self._atomic():
            xp = self.backend.xp
            values = to_host(xp.stack([xp.asarray(v) for v in self._pending_losses])).astype(float)
            first = self.iteration - len(values)
            self._pending_losses = []
            self.loss_history.extend(values.tolist())
        bad = numpy.flatnonzero(~numpy.isfinite(values))
        if bad.size:
            at = first + int(bad[0])
            if at == 0:
                # no update has happened yet: the step size cannot be the cause, whatever it is
                raise TrainingDiverged(
                    f"the loss is {values[bad[0]]} at the first iteration, before any update: the initial loss "
                    f"overflows the model's {self._dtype_name()}. Check weight_scale, reg and the scale of the data"
                )
            raise TrainingDiverged(
                f"the loss became {values[bad[0]]} at iteration {at}, after {at} updates: training diverged; "
                f"lower the learning rate (now {self.learning_rate:g})"
            )

    def _dtype_name(self) -> str:
        dtype = next(iter(self.model.params.values())).dtype
        return getattr(dtype, "__name__", None) or str(dtype).rsplit(".", 1)[-1]

    def _check_params_finite(self) -> None:
        """Fail when an update made parameters NaN or infinite (the loss of the step before can look fine)."""
        xp = self.backend.xp
        bad = [name for name, value in self.model.params.items() if not all_finite(xp, value)]
        if bad:
            raise TrainingDiverged(
                f"the parameters {', '.join(bad)} became NaN or infinite by iteration {self.iteration}: the updates "
                f"overflowed; lower the learning rate (now {self.learning_rate:g})"
            )

    @property
    def learning_rate(self) -> float:
        """The current learning rate (of the first parameter's config, for a user's rule)."""
        config = self.optim_config if self.rule_spec else next(iter(self.optim_configs.values()), {})
        return float(config.get("learning_rate", float("nan")))

    def _end_epoch(self, bar: Any) -> None:
        self._read_losses()
        self._check_params_finite()
        train_acc = self.check_accuracy(self.X_train, self.y_train, subset=self._train_subset)
        val_acc = self.check_accuracy(self.X_val, self.y_val) if self.num_val else None
        self.train_acc_history.append(train_acc)
        if val_acc is not None:
            self.val_acc_history.append(val_acc)
            if not self.best_params or self.best_val_acc is None or val_acc > self.best_val_acc:
                self.epochs_without_improvement = 0
                self.best_val_acc = val_acc
                xp = self.backend.xp
                self.best_params = {k: xp.asarray(v, copy=True) for k, v in self.model.params.items()}
                self.best_buffers = {k: xp.asarray(v, copy=True) for k, v in self._buffers().items()}
            else:
                self.epochs_without_improvement += 1
        val_text = "n/a" if val_acc is None else f"{val_acc:.3f}"
        bar.set_postfix(
            loss=f"{self.loss_history[-1]:.3f}",
            lr=f"{self.learning_rate:.2e}",
            train=f"{train_acc:.3f}",
            val=val_text,
        )
        if self.verbose:
            tqdm.write(
                f"(Epoch {self.iteration / self.iterations_per_epoch:.4g} / "
                f"{self.num_iters / self.iterations_per_epoch:.4g}) "
                f"train acc: {train_acc:.3f}; val acc: {val_text}"
            )
        if self.on_epoch_end is not None:
            self.on_epoch_end(self)

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
        self._continue_from_last()
        bar = tqdm(
            total=self.num_iters,
            initial=self.iteration,
            disable=not self.progress,
            desc="training",
            unit="it",
            dynamic_ncols=True,
            leave=False,
        )
        try:
            with self._interrupts_deferred(), trusted_inputs():
                while self.iteration < self.num_iters and not self._patience_exhausted():
                    t = self.iteration + 1
                    epoch_end = t % self.iterations_per_epoch == 0
                    evaluates = epoch_end or t == self.num_iters
                    # A step that ends an epoch and that epoch's end are one unit: a Ctrl-C during the step waits
                    # for the evaluation and the checkpoint too, so a resumed run never skips an evaluation.
                    with self._atomic() if evaluates else nullcontext():
                        self._step()
                        bar.update(1)
                        if t % self.print_every == 0 or t == 1:
                            self._read_losses()
                            bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", lr=f"{self.learning_rate:.2e}")
                            if self.verbose:
                                tqdm.write(f"(Iteration {t} / {self.num_iters}) loss: {self.loss_history[-1]:.6f}")
                        if evaluates:
                            # the epoch's count, history, best snapshot, early stop and checkpoint change together
                            with self._atomic():
                                if epoch_end:
                                    self.epoch += 1
                                self._end_epoch(bar)
                                if self._patience_exhausted():
                                    self.stopped_early = True
                                    if self.verbose:
                                        tqdm.write(
                                            f"stopping early at iteration {t}: no better validation accuracy in "
                                            f"{self.patience} evaluations (best {self.best_val_acc:.3f})"
                                        )
                                if self.checkpoint is not None:
                                    self.save_checkpoint(self.checkpoint)
                self._read_losses()
        finally:
            bar.close()
        self._restore_best()
        return self

    def _patience_exhausted(self) -> bool:
        return self.patience is not None and self.epochs_without_improvement >= self.patience

    def _restore_best(self) -> None:
        """Put the best parameters (and buffers) into the model; keep the last ones to continue from."""
        if not self.best_params:  # no validation set: the parameters training ended with stay
            return
        xp, params, buffers = self.backend.xp, self.model.params, self._buffers()
        self._last_params = dict(params)  # the arrays themselves: the model gets copies of the best ones
        self._last_buffers = dict(buffers)
        for name, value in self.best_params.items():
            dict.__setitem__(params, name, xp.asarray(value, copy=True))
        for name, value in self.best_buffers.items():
            dict.__setitem__(buffers, name, xp.asarray(value, copy=True))

    def _continue_from_last(self) -> None:
        """Before training again: the model continues from the parameters training ended with, not the best."""
        if self._last_params is None:
            return
        params, buffers = self.model.params, self._buffers()
        for name, value in self._last_params.items():
            dict.__setitem__(params, name, value)
        for name, value in self._last_buffers.items():
            dict.__setitem__(buffers, name, value)
        self._last_params, self._last_buffers = None, {}

    def _buffers(self) -> dict[str, Any]:
        """The model's non-trainable state (running statistics, ...): saved and restored with the parameters."""
        return getattr(self.model, "buffers", {})

    def stats(self) -> dict[str, Any]:
        """The chapter's ``stats`` dict: histories and ``best_val_acc`` (``None`` without a validation set)."""
        return {
            "loss_history": list(self.loss_history),
            "train_acc_history": list(self.train_acc_history),
            "val_acc_history": list(self.val_acc_history),
            "best_val_acc": self.best_val_acc,
        }

    def check_accuracy(self, X: Any, y: Any, subset: Any = None, batch_size: int = 10_000) -> float:
        """Fraction of samples whose highest score is the label (``subset``: device indices to score).

        ``X (N, ...)`` and ``y (N,)`` may be host data (moved to the model's device) or arrays already there;
        ``y`` must have one label per sample. Zero samples give NaN.
        """
        xp = self.backend.xp
        batch_size = check_int("batch_size", batch_size, minimum=1)
        X, y = to_backend(X, self.backend), to_backend(y, self.backend)
        check_features(xp, X, getattr(self.model, "input_dim", None))
        num_classes = getattr(self.model, "num_classes", None)
        check_labels(xp, y, X.shape[0], num_classes if num_classes is not None else 2**62)
        if subset is not None:
            X, y = xp.take(X, subset, axis=0), xp.take(y, subset, axis=0)
        n = X.shape[0]
        if n == 0:
            return float("nan")
        correct = 0
        with trusted_inputs():
            for i in range(0, n, batch_size):
                pred = xp.argmax(self.model.loss(X[i : min(i + batch_size, n), ...]), axis=1)
                correct = correct + xp.sum(xp.astype(pred == y[i : min(i + batch_size, n)], xp.int64))
        return int(correct) / n

    # -- checkpoints ------------------------------------------------------------------------------------

    def _optim_state_items(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Optimiser state as (arrays per parameter, JSON hyperparameters per parameter), split by type."""
        if self.rule_spec is not None:
            return self.optim_state, {}
        arrays: dict[str, dict[str, Any]] = {}
        hyper: dict[str, dict[str, Any]] = {}
        for name, config in self.optim_configs.items():
            arrays[name], hyper[name] = {}, {}
            for key, value in config.items():
                if _is_array(value):
                    arrays[name][key] = value
                else:
                    hyper[name][key] = value.item() if isinstance(value, numpy.generic) else value
        return arrays, hyper

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write parameters, buffers, optimiser state, history and RNG state to ``path`` (``.npz``) atomically.

        ``params/`` holds the parameters training ended with (what a resumed run continues from), ``best/``
        the best ones, which :meth:`train` put into the model. Refused (:class:`CheckpointError`) after an
        exception escaped from the middle of a step (:attr:`consistent` is False): that state is half-updated.
        """
        if not self.consistent:
            raise CheckpointError(
                f"not saving a checkpoint at iteration {self.iteration}: training stopped in the middle of a step "
                "or an epoch end, so parameters, optimiser state and history may disagree; the last checkpoint "
                "written at an epoch end is intact"
            )
        self._read_losses()
        path = Path(path)
        arrays: dict[str, numpy.ndarray] = {}
        groups = {
            "params": self.model.params if self._last_params is None else self._last_params,
            "buffers": self._buffers() if self._last_params is None else self._last_buffers,
            "best": self.best_params,
            "best_buffers": self.best_buffers,
        }
        for group, values in groups.items():
            for name, value in values.items():
                arrays[f"{group}/{name}"] = to_host(value)
        state, hyper = self._optim_state_items()
        for name, named_arrays in state.items():
            for key, value in named_arrays.items():
                arrays[f"optim/{name}/{key}"] = to_host(value)
        arrays["loss_history"] = numpy.asarray(self.loss_history, dtype=float)
        arrays["train_acc_history"] = numpy.asarray(self.train_acc_history, dtype=float)
        arrays["val_acc_history"] = numpy.asarray(self.val_acc_history, dtype=float)
        if self._order_host is not None:
            arrays["order"] = self._order_host
        meta = {
            "format": CHECKPOINT_FORMAT,
            "model": type(self.model).__name__,
            "iteration": self.iteration,
            "epoch": self.epoch,
            "num_iters": self.num_iters,
            "batch_size": self.batch_size,
            "update_rule": self.update_rule_name,
            "optim_config": self.optim_config if self.rule_spec else None,
            "optim_hyper": hyper,
            "best_val_acc": self.best_val_acc,
            "rng_state": self.rng.bit_generator.state,
            "settings": self._settings(),
            "base_learning_rate": self.base_learning_rate,
            "epochs_without_improvement": self.epochs_without_improvement,
            "stopped_early": self.stopped_early,
        }
        get_rng_state = getattr(self.model, "get_rng_state", None)
        if get_rng_state is not None:
            meta["model_rng_state"] = get_rng_state()
        try:
            arrays["meta"] = numpy.asarray(json.dumps(meta))
        except TypeError as exc:
            raise CheckpointError(
                f"cannot save the optimiser's configuration ({exc}): an update rule's config may hold arrays "
                "(saved as state) and numbers or strings (saved as hyperparameters), nothing else"
            ) from None
        write_npz_atomically(path, arrays)  # readers see the old file or the new one, never half of one
        return path

    def load_checkpoint(self, path: str | os.PathLike, *, strict: bool = True) -> Solver:
        """Restore a checkpoint written by :meth:`save_checkpoint` (on any backend) to continue training.

        Everything is checked before anything is assigned: a checkpoint that does not fit leaves the model
        and the solver as they were. The model gets the parameters training stopped at (``best_params`` holds
        the best ones).

        ``strict`` (the default) continues the saved run exactly, so the run's settings must be the saved ones
        (:data:`RESUME_SETTINGS`: update rule and hyperparameters, ``lr_decay``, batch size, training and
        validation set sizes, the model's ``reg``, the seed); otherwise :class:`CheckpointError` names each
        difference. Only the length (``num_iters``/``num_epochs``) may differ. ``strict=False`` loads the
        state anyway and applies this solver's settings from here on, with a warning listing the
        differences: its hyperparameters (the learning rate continuing its schedule: ``learning_rate *
        lr_decay**epoch``), its batch order when the saved one does not fit its training set, fresh optimiser
        state when the update rule differs.
        """
        path = Path(path)
        try:
            with numpy.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("meta")))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path} does not exist") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise CheckpointError(f"{path} is not a readable fcn checkpoint ({exc})") from exc
        if meta.get("format") not in (CHECKPOINT_FORMAT, "fcn-checkpoint-2", "fcn-checkpoint-1"):
            raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
        try:
            return self._restore(path, arrays, meta, strict)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{path} is not a complete fcn checkpoint ({type(exc).__name__}: {exc})") from exc

    def _restore(self, path: Path, arrays: dict[str, numpy.ndarray], meta: dict[str, Any], strict: bool) -> Solver:
        def group(prefix: str) -> dict[str, numpy.ndarray]:
            return {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + "/")}

        params, buffers = self.model.params, self._buffers()
        checks = [("params", "parameter", params, False), ("buffers", "buffer", buffers, False)]
        checks += [("best", "best parameter", params, True), ("best_buffers", "best buffer", buffers, True)]
        restored: dict[str, dict[str, Any]] = {}
        for prefix, what, like, may_be_empty in checks:
            saved = group(prefix)
            if set(saved) != set(like) and not (may_be_empty and not saved):
                raise CheckpointError(f"{path} holds {what}s {sorted(saved)}, but the model has {sorted(like)}")
            for name, value in saved.items():
                if tuple(value.shape) != tuple(like[name].shape):
                    raise CheckpointError(
                        f"{path}: {what} {name} has shape {value.shape}, the model's is {tuple(like[name].shape)}"
                    )
            restored[prefix] = {n: to_backend(v, self.backend, dtype=like[n].dtype) for n, v in saved.items()}
        differences = self._setting_differences(meta, arrays)
        if differences and strict:
            raise CheckpointError(
                f"cannot resume {path}: it was written by a run with other settings ({'; '.join(differences)}). "
                "Resume with the saved settings, or start a new run"
            )
        if differences:
            warnings.warn(
                f"{path} was written with other settings ({'; '.join(differences)}); this solver's apply from here",
                stacklevel=3,
            )
        iteration, epoch = (
            check_int("iteration", meta["iteration"], minimum=0),
            check_int("epoch", meta["epoch"], minimum=0),
        )
        saved_best = meta["best_val_acc"]
        best_val_acc = None if saved_best is None else float(saved_best)
        if best_val_acc is not None and not math.isfinite(best_val_acc):
            raise CheckpointError(f"{path}: corrupt best_val_acc {saved_best!r}")
        if (best_val_acc is None) != (self.num_val == 0):
            if strict:
                raise CheckpointError(
                    f"{path}: best_val_acc {saved_best!r} does not fit {self.num_val} validation samples"
                )
            best_val_acc = 0.0 if self.num_val else None

        state: dict[str, dict[str, Any]] = {name: {} for name in params}
        for key, value in group("optim").items():
            name, _, item = key.partition("/")
            if name not in params:
                raise CheckpointError(f"{path} holds optimiser state for unknown parameter {name!r}")
            state[name][item] = to_backend(value, self.backend, dtype=params[name].dtype)
        hyper = meta.get("optim_hyper") or {}
        same_rule = meta.get("update_rule", self.update_rule_name) == self.update_rule_name
        if self.rule_spec is not None and differences:  # strict=False: this solver's settings from here on
            optim_config = dict(self._initial_optim_config)
            if "learning_rate" in optim_config:
                optim_config["learning_rate"] = optim_config["learning_rate"] * self.lr_decay**epoch
            saved_config = meta.get("optim_config") or {}
            if same_rule and "t" in saved_config:
                optim_config["t"] = saved_config["t"]
            optim_state = {name: s for name, s in state.items() if s} if same_rule else {}
            optim_configs: dict[str, dict[str, Any]] = {}
        elif self.rule_spec is not None:
            config = meta.get("optim_config")
            if config is None:  # the first format kept one copy of the (shared) config per parameter
                config = next(iter(hyper.values()), {})
            optim_config = self.rule_spec.hyperparameters(config)
            optim_state = {name: s for name, s in state.items() if s}
            optim_configs = {}
        else:
            optim_config, optim_state = dict(self._initial_optim_config), {}
            optim_configs = {name: {**hyper.get(name, {}), **state[name]} for name in params}
        rng_state = meta["rng_state"]
        try:  # on a scratch generator: an invalid state must fail before anything is assigned
            numpy.random.default_rng().bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: invalid random generator state ({exc})") from None
        order = arrays.get("order")
        fits = order is None or (
            order.ndim == 1
            and order.shape[0] == self.num_train
            and numpy.array_equal(numpy.sort(order), numpy.arange(self.num_train))
        )
        if not fits and strict:
            raise CheckpointError(
                f"{path}: the saved batch order is not a permutation of this run's {self.num_train} training samples"
            )
        if not fits:  # strict=False with another training set: a new order is drawn at the next step
            order = None
        histories = []
        for key in ("loss_history", "train_acc_history", "val_acc_history"):
            values = arrays[key]
            if values.ndim != 1 or not numpy.issubdtype(values.dtype, numpy.floating):
                raise CheckpointError(f"{path}: {key} must be a 1-D float array, got {values.dtype} {values.shape}")
            histories.append(values.tolist())
        if len(histories[0]) != iteration:
            raise CheckpointError(f"{path}: {len(histories[0])} losses recorded for {iteration} iterations")
        if iteration > self.num_iters and strict:
            raise CheckpointError(
                f"{path} is at iteration {iteration}, past this run's length of {self.num_iters} iterations; "
                "ask for more iterations (or epochs) to continue it"
            )

        # everything checked: assign
        for name, value in restored["params"].items():
            dict.__setitem__(params, name, value)
        for name, value in restored["buffers"].items():
            dict.__setitem__(buffers, name, value)
        self.best_params, self.best_buffers = restored["best"], restored["best_buffers"]
        self.optim_config, self.optim_state, self.optim_configs = optim_config, optim_state, optim_configs
        self.loss_history, self.train_acc_history, self.val_acc_history = histories
        self.best_val_acc = best_val_acc
        self.iteration, self.epoch = iteration, epoch
        self.rng.bit_generator.state = rng_state
        self._order_host = order
        self._order = None if order is None else self._indices(order)
        self._pending_losses = []
        self._last_params, self._last_buffers = None, {}
        self.consistent = True
        self.epochs_without_improvement = int(meta.get("epochs_without_improvement", 0))
        self.stopped_early = bool(meta.get("stopped_early", False))
        if meta.get("model_rng_state") is not None and hasattr(self.model, "set_rng_state"):
            self.model.set_rng_state(meta["model_rng_state"])
        self._make_schedule()
        saved_lr = (optim_config if self.rule_spec else next(iter(optim_configs.values()), {})).get("learning_rate")
        legacy = meta.get("format") != CHECKPOINT_FORMAT
        if legacy and not differences and saved_lr is not None and self.lr_schedule == "step":
            # A checkpoint from before schedules kept only the current, already decayed rate: continue from it as
            # the per-epoch decay did (the same products in the same order), not from this solver's base rate.
            self._legacy_schedule(float(saved_lr), iteration // self.iterations_per_epoch)
        self._apply_schedule()  # the rate of the saved step (the settings were compared above)
        return self

    # -- resume: the same run, or an error naming what differs ---------------------------------------------

    def _settings(self) -> dict[str, Any]:
        """What defines this run, as saved in checkpoints and compared on resume (JSON-able)."""
        optim = {k: v for k, v in self._initial_optim_config.items() if not _is_array(v)}
        return {
            "update_rule": self.update_rule_name,
            "optim_config": {k: v.item() if isinstance(v, numpy.generic) else v for k, v in optim.items()},
            "lr_decay": self.lr_decay,
            "lr_schedule": self.lr_schedule,
            "warmup_epochs": self.warmup_epochs,
            "clip_grad_norm": self.clip_grad_norm,
            "augment": ",".join(self.augmenter.ops) or None,
            "batch_size": self.batch_size,
            "num_train": self.num_train,
            "num_val": self.num_val,
            "reg": getattr(self.model, "reg", None),
            "seed": self.seed,
        }

    def _setting_differences(self, meta: dict[str, Any], arrays: dict[str, numpy.ndarray]) -> list[str]:
        """Each setting in which this run differs from the saved one, as text (empty when they agree).

        A resumed run continues the saved one exactly, so everything that shapes its trajectory must be the
        same: update rule and its hyperparameters, learning-rate decay, batch size, the sizes of the training
        and validation sets, ``reg`` and the batch-order seed. Only the length may change (more iterations
        extend a run). Checkpoints written before settings were recorded are checked on what they hold.
        """
        saved = dict(meta.get("settings") or {})
        saved.setdefault("batch_size", meta.get("batch_size"))
        order = arrays.get("order")
        if "num_train" not in saved and order is not None and order.ndim == 1:
            saved["num_train"] = int(order.shape[0])
        given = self._settings()
        labels = {"num_train": "training samples", "num_val": "validation samples"}
        differences = []
        for key in RESUME_SETTINGS:
            if key not in saved or saved[key] == given[key]:
                continue
            if key == "optim_config" and saved.get("update_rule") == given["update_rule"]:
                old, new = saved[key] or {}, given[key]
                for name in sorted(set(old) | set(new)):
                    if old.get(name) != new.get(name):
                        differences.append(f"{name} {old.get(name)!r} in the checkpoint, {new.get(name)!r} here")
            elif key == "optim_config":
                continue  # another rule has other hyperparameters: the rule itself is reported
            elif key in labels:
                differences.append(f"{saved[key]} {labels[key]} in the checkpoint, {given[key]} here")
            else:
                differences.append(f"{key} {saved[key]!r} in the checkpoint, {given[key]!r} here")
        return differences


def _is_array(value: Any) -> bool:
    """Whether an optimiser config entry is state (an array of any backend) rather than a hyperparameter."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, numpy.generic)
