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
parameters, optimiser state, history, the batch RNG state and the current epoch's order, so a resumed
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
from .optim import STATE_KEYS, get_update_rule
from .validation import check_features, check_labels, trusted_inputs

__all__ = ["Solver", "TrainingDiverged", "CheckpointError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "fcn-checkpoint-1"


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
        update_rule: ``"sgd"``, ``"sgd_momentum"``, ``"rmsprop"``, ``"adam"`` or a callable
            ``(w, dw, config) -> (w, config)``.
        optim_config: hyperparameters for the rule (e.g. ``{"learning_rate": 1e-3}``), copied per parameter.
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
        self.update_rule_name = update_rule if isinstance(update_rule, str) else getattr(update_rule, "__name__", "")
        self.update_rule = get_update_rule(update_rule)
        self.optim_config = dict(optim_config or {})
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
        self.optim_configs = {name: dict(self.optim_config) for name in self.model.params}
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
        xp = self.backend.xp
        k = self.iteration % self.iterations_per_epoch
        if k == 0 or self._order is None:
            self._order_host = self.rng.permutation(self.num_train)
            self._order = self._indices(self._order_host)
        idx = self._order[k * self.batch_size : min((k + 1) * self.batch_size, self.num_train)]
        X_batch = xp.take(self.X_train, idx, axis=0)
        y_batch = xp.take(self.y_train, idx, axis=0)

        loss, grads = self.model.loss(X_batch, y_batch)
        self._pending_losses.append(loss)
        params = self.model.params
        for name, w in params.items():
            params[name], self.optim_configs[name] = self.update_rule(w, grads[name], self.optim_configs[name])
        self.iteration += 1

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
        """The current learning rate (of the first parameter's config)."""
        config = next(iter(self.optim_configs.values()), {})
        return float(config.get("learning_rate", float("nan")))

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
                            for config in self.optim_configs.values():
                                config["learning_rate"] = config.get("learning_rate", 1e-2) * self.lr_decay
                        if self.checkpoint is not None:
                            self.save_checkpoint(self.checkpoint)
        finally:
            bar.close()
        self._read_losses()
        for name, value in self.best_params.items():
            self.model.params[name] = self.backend.xp.asarray(value, copy=True)
        return self

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

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write parameters, optimiser state, history and RNG state to ``path`` (``.npz``) atomically."""
        self._read_losses()
        path = Path(path)
        arrays: dict[str, numpy.ndarray] = {}
        hyper: dict[str, dict[str, Any]] = {}
        for name, value in self.model.params.items():
            arrays[f"params/{name}"] = to_host(value)
        for name, value in self.best_params.items():
            arrays[f"best/{name}"] = to_host(value)
        for name, config in self.optim_configs.items():
            hyper[name] = {}
            for key, value in config.items():
                if key in STATE_KEYS:
                    arrays[f"optim/{name}/{key}"] = to_host(value)
                else:
                    hyper[name][key] = value
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
            "optim_hyper": hyper,
            "best_val_acc": self.best_val_acc,
            "rng_state": self.rng.bit_generator.state,
        }
        arrays["meta"] = numpy.asarray(json.dumps(meta))
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
        """Restore a checkpoint written by :meth:`save_checkpoint` (on any backend) to continue training."""
        path = Path(path)
        try:
            with numpy.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("meta")))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path} does not exist") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise CheckpointError(f"{path} is not a readable fcn checkpoint ({exc})") from exc
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
        params = self.model.params
        saved = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("params/")}
        if set(saved) != set(params):
            raise CheckpointError(f"{path} holds parameters {sorted(saved)}, but the model has {sorted(params)}")
        for name, value in saved.items():
            if tuple(value.shape) != tuple(params[name].shape):
                raise CheckpointError(
                    f"{path}: parameter {name} has shape {value.shape}, the model's is {tuple(params[name].shape)}"
                )
        if meta.get("batch_size") != self.batch_size:
            raise CheckpointError(f"{path} was written with batch_size {meta.get('batch_size')}, not {self.batch_size}")

        def device(value: numpy.ndarray, like: Any) -> Any:
            return to_backend(value, self.backend, dtype=like.dtype)

        for name, value in saved.items():
            params[name] = device(value, params[name])
        self.best_params = {
            k.split("/", 1)[1]: device(v, params[k.split("/", 1)[1]])
            for k, v in arrays.items()
            if k.startswith("best/")
        }
        self.optim_configs = {name: dict(meta["optim_hyper"].get(name, {})) for name in params}
        for key, value in arrays.items():
            if key.startswith("optim/"):
                _, name, state = key.split("/")
                self.optim_configs[name][state] = device(value, params[name])
        self.loss_history = arrays["loss_history"].tolist()
        self.train_acc_history = arrays["train_acc_history"].tolist()
        self.val_acc_history = arrays["val_acc_history"].tolist()
        self.best_val_acc = float(meta["best_val_acc"])
        self.iteration, self.epoch = int(meta["iteration"]), int(meta["epoch"])
        self.rng.bit_generator.state = meta["rng_state"]
        order = arrays.get("order")
        self._order_host = order
        self._order = None if order is None else self._indices(order)
        self._pending_losses = []
        if not math.isfinite(self.best_val_acc):
            raise CheckpointError(f"{path}: corrupt best_val_acc")
        return self
