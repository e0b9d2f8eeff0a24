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
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
from tqdm import tqdm  # plain bar: tqdm.auto warns in a Jupyter without ipywidgets

from .backend import Backend, namespace_of, to_backend, to_host
from .optim import RULES, UPDATE_RULES, get_update_rule
from .validation import check_features, check_labels, trusted_inputs

__all__ = ["Solver", "TrainingDiverged", "CheckpointError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "fcn-checkpoint-2"


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
        lr_decay: the learning rate is multiplied by this after every epoch.
        batch_size: samples per step; an epoch is ``num_train // batch_size`` steps (at least one).
        num_epochs: epochs to train, unless ``num_iters`` is given.
        num_iters: total steps, overriding ``num_epochs``.
        num_train_samples: training samples (a fixed random subset) scored for the train-accuracy history;
            ``None`` scores all of them.
        print_every: log the loss every this many steps (also the granularity of divergence checks).
        verbose: print log lines.
        progress: show a tqdm progress bar (``None``: only when stderr is a terminal).
        checkpoint: path of an ``.npz`` written at every epoch end and when training finishes.
        seed: seed of the host RNG that orders the batches.
        on_epoch_end: called as ``on_epoch_end(solver)`` after each evaluation (every epoch end and the last
            step), once the new accuracies are in the history: for early stopping, reporting to a tuner, ...
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
        self.lr_decay = float(lr_decay)
        self.batch_size = int(batch_size)
        self.print_every = max(int(print_every), 1)
        self.verbose = verbose
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None

        missing = [k for k in ("X_train", "y_train", "X_val", "y_val") if k not in data]
        if missing:
            raise KeyError(f"data is missing {', '.join(missing)}")
        self.X_train, self.y_train = self._device_data(data["X_train"], data["y_train"], "X_train", "y_train")
        self.X_val, self.y_val = self._device_data(data["X_val"], data["y_val"], "X_val", "y_val")
        self.num_train = self.X_train.shape[0]
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.iterations_per_epoch = max(self.num_train // self.batch_size, 1)
        self.num_iters = int(num_iters) if num_iters is not None else int(num_epochs) * self.iterations_per_epoch

        self.rng = numpy.random.default_rng(seed)
        n_score = self.num_train if num_train_samples is None else min(int(num_train_samples), self.num_train)
        self._train_subset = self._indices(self.rng.choice(self.num_train, n_score, replace=False))
        self._reset()

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
        self.best_val_acc = 0.0
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

    # -- the loop ---------------------------------------------------------------------------------------

    def step(self) -> None:
        """One gradient step on the next batch (no sync, no logging): the unit ``train`` repeats.

        Batches come from this epoch's permutation, gathered on the device. The loss is kept on the device
        until the next logging point. Value checks on the batch are off: the data was checked up front.
        """
        with trusted_inputs():
            self._step()

    def _step(self) -> None:
        k = self.iteration % self.iterations_per_epoch
        if k == 0 or self._order is None:
            self._order_host = self.rng.permutation(self.num_train)
            self._order = self._indices(self._order_host)
        idx = self._order[k * self.batch_size : min((k + 1) * self.batch_size, self.num_train)]
        X_batch, y_batch = self._gather(idx)
        loss, grads = self._loss_and_grads(X_batch, y_batch)
        self._pending_losses.append(loss)
        self._update(grads)
        self.iteration += 1

    def _gather(self, idx: Any) -> tuple[Any, Any]:
        """The batch's rows of the training data, gathered on the device into buffers reused per size."""
        ops = self.backend.ops
        n = idx.shape[0]
        buffers = self._batch_buffers.get(n)
        if buffers is None and self.backend.is_numpy:
            buffers = self._batch_buffers[n] = (
                numpy.empty((n, *self.X_train.shape[1:]), dtype=self.X_train.dtype),
                numpy.empty(n, dtype=self.y_train.dtype),
            )
        X_out, y_out = buffers if buffers is not None else (None, None)
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
                self.optim_state.setdefault(name, ops.init_state(spec.kernel, params[name]))
        config = self.optim_config
        if "t" in config:
            config["t"] = int(config["t"]) + 1
        ops.update_all(
            spec.kernel,
            [params[n] for n in names],
            [grads[n] for n in names],
            [self.optim_state[n] for n in names],
            config,
        )

    def _read_losses(self) -> None:
        """Read the pending losses back (one sync) and fail loudly if training diverged."""
        if not self._pending_losses:
            return
        xp = self.backend.xp
        values = to_host(xp.stack([xp.asarray(v) for v in self._pending_losses])).astype(float)
        first = self.iteration - len(values)
        self._pending_losses = []
        self.loss_history.extend(values.tolist())
        bad = numpy.flatnonzero(~numpy.isfinite(values))
        if bad.size:
            at = first + int(bad[0])
            raise TrainingDiverged(
                f"the loss became {values[bad[0]]} at iteration {at}: training diverged; "
                f"lower the learning rate (now {self.learning_rate:g}) or check the data"
            )

    @property
    def learning_rate(self) -> float:
        """The current learning rate (of the first parameter's config, for a user's rule)."""
        config = self.optim_config if self.rule_spec else next(iter(self.optim_configs.values()), {})
        return float(config.get("learning_rate", float("nan")))

    def _decay_learning_rate(self) -> None:
        for config in [self.optim_config] if self.rule_spec else self.optim_configs.values():
            config["learning_rate"] = config.get("learning_rate", 1e-2) * self.lr_decay

    def _end_epoch(self, bar: Any) -> None:
        self._read_losses()
        train_acc = self.check_accuracy(self.X_train, self.y_train, subset=self._train_subset)
        val_acc = self.check_accuracy(self.X_val, self.y_val)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc or not self.best_params:
            self.best_val_acc = val_acc
            xp = self.backend.xp
            self.best_params = {k: xp.asarray(v, copy=True) for k, v in self.model.params.items()}
            self.best_buffers = {k: xp.asarray(v, copy=True) for k, v in self._buffers().items()}
        bar.set_postfix(
            loss=f"{self.loss_history[-1]:.3f}",
            lr=f"{self.learning_rate:.2e}",
            train=f"{train_acc:.3f}",
            val=f"{val_acc:.3f}",
        )
        if self.verbose:
            tqdm.write(
                f"(Epoch {self.iteration / self.iterations_per_epoch:.4g} / "
                f"{self.num_iters / self.iterations_per_epoch:.4g}) "
                f"train acc: {train_acc:.3f}; val acc: {val_acc:.3f}"
            )
        if self.on_epoch_end is not None:
            self.on_epoch_end(self)

    def train(self) -> Solver:
        """Run the remaining steps (all of them, unless resumed), then restore the best parameters.

        Returns ``self``; the history is in ``loss_history``, ``train_acc_history``, ``val_acc_history``,
        ``best_val_acc`` (see :meth:`stats`).
        """
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
            with trusted_inputs():
                while self.iteration < self.num_iters:
                    self._step()
                    bar.update(1)
                    t = self.iteration
                    if t % self.print_every == 0 or t == 1:
                        self._read_losses()
                        bar.set_postfix(loss=f"{self.loss_history[-1]:.3f}", lr=f"{self.learning_rate:.2e}")
                        if self.verbose:
                            tqdm.write(f"(Iteration {t} / {self.num_iters}) loss: {self.loss_history[-1]:.6f}")
                    epoch_end = t % self.iterations_per_epoch == 0
                    if epoch_end:
                        self.epoch += 1
                    if epoch_end or t == self.num_iters:
                        self._end_epoch(bar)
                        if epoch_end:
                            self._decay_learning_rate()
                        if self.checkpoint is not None:
                            self.save_checkpoint(self.checkpoint)
        finally:
            bar.close()
        self._read_losses()
        for name, value in self.best_params.items():
            self.model.params[name] = self.backend.xp.asarray(value, copy=True)
        for name, value in self.best_buffers.items():
            self._buffers()[name] = self.backend.xp.asarray(value, copy=True)
        return self

    def _buffers(self) -> dict[str, Any]:
        """The model's non-trainable state (running statistics, ...): saved and restored with the parameters."""
        return getattr(self.model, "buffers", {})

    def stats(self) -> dict[str, Any]:
        """The chapter's ``stats`` dict: histories and ``best_val_acc``."""
        return {
            "loss_history": list(self.loss_history),
            "train_acc_history": list(self.train_acc_history),
            "val_acc_history": list(self.val_acc_history),
            "best_val_acc": self.best_val_acc,
        }

    def check_accuracy(self, X: Any, y: Any, subset: Any = None, batch_size: int = 10_000) -> float:
        """Fraction of samples whose highest score is the label (``subset``: device indices to score)."""
        xp = self.backend.xp
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
        """Write parameters, buffers, optimiser state, history and RNG state to ``path`` (``.npz``) atomically."""
        self._read_losses()
        path = Path(path)
        arrays: dict[str, numpy.ndarray] = {}
        groups = {
            "params": self.model.params,
            "buffers": self._buffers(),
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
        }
        try:
            arrays["meta"] = numpy.asarray(json.dumps(meta))
        except TypeError as exc:
            raise CheckpointError(
                f"cannot save the optimiser's configuration ({exc}): an update rule's config may hold arrays "
                "(saved as state) and numbers or strings (saved as hyperparameters), nothing else"
            ) from None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                numpy.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half of one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> Solver:
        """Restore a checkpoint written by :meth:`save_checkpoint` (on any backend) to continue training.

        Everything is checked before anything is assigned: a checkpoint that does not fit leaves the model
        and the solver as they were.
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
        if meta.get("format") not in (CHECKPOINT_FORMAT, "fcn-checkpoint-1"):
            raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
        try:
            return self._restore(path, arrays, meta)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{path} is not a complete fcn checkpoint ({type(exc).__name__}: {exc})") from exc

    def _restore(self, path: Path, arrays: dict[str, numpy.ndarray], meta: dict[str, Any]) -> Solver:
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
        if meta.get("batch_size") != self.batch_size:
            raise CheckpointError(f"{path} was written with batch_size {meta.get('batch_size')}, not {self.batch_size}")
        best_val_acc = float(meta["best_val_acc"])
        if not math.isfinite(best_val_acc):
            raise CheckpointError(f"{path}: corrupt best_val_acc")

        state: dict[str, dict[str, Any]] = {name: {} for name in params}
        for key, value in group("optim").items():
            name, _, item = key.partition("/")
            if name not in params:
                raise CheckpointError(f"{path} holds optimiser state for unknown parameter {name!r}")
            state[name][item] = to_backend(value, self.backend, dtype=params[name].dtype)
        hyper = meta.get("optim_hyper") or {}
        if self.rule_spec is not None:
            config = meta.get("optim_config")
            if config is None:  # the first format kept one copy of the (shared) config per parameter
                config = next(iter(hyper.values()), {})
            optim_config = self.rule_spec.hyperparameters(config)
            optim_state = {name: s for name, s in state.items() if s}
            optim_configs: dict[str, dict[str, Any]] = {}
        else:
            optim_config, optim_state = dict(self._initial_optim_config), {}
            optim_configs = {name: {**hyper.get(name, {}), **state[name]} for name in params}
        rng_state = meta["rng_state"]
        order = arrays.get("order")
        iteration, epoch = int(meta["iteration"]), int(meta["epoch"])
        histories = [arrays[k].tolist() for k in ("loss_history", "train_acc_history", "val_acc_history")]

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
        return self


def _is_array(value: Any) -> bool:
    """Whether an optimiser config entry is state (an array of any backend) rather than a hyperparameter."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, numpy.generic)
