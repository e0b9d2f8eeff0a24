"""One training step: the next batch, its loss and gradients, the update. The unit a CUDA graph captures.

:class:`TrainStep` owns what changes from step to step: the step count, the batch order (a permutation per
epoch, drawn by a seeded host RNG and moved to the device once per epoch), the gather buffers, and the losses
not yet read back (they stay on the device until a logging point). Its public methods are the pieces of a step
(:meth:`~TrainStep.next_indices`, :meth:`~TrainStep.gather`, :meth:`~TrainStep.loss_and_grads`,
:meth:`~TrainStep.update`); :meth:`~TrainStep.__call__` runs them eagerly, and
:class:`fcn.training.cuda_graph.GraphedStep` replays them as one captured graph with the same signature.
"""

from __future__ import annotations

from typing import Any

import numpy

from ..backend import Backend, namespace_of, to_backend
from ..protocols import ChapterModel, TrainableModel
from .augment import Augmenter
from .optimizer import Optimizer

__all__ = ["TrainStep", "as_trainable", "model_backend"]


def model_backend(model: Any) -> Backend:
    """The backend of ``model``: its ``backend`` attribute, else inferred from its parameters."""
    backend = getattr(model, "backend", None)
    return backend if isinstance(backend, Backend) else namespace_of(*model.params.values())


class _ChapterModelAdapter:
    """A model with only the chapter's contract (``params``, ``loss``) seen as a :class:`TrainableModel`."""

    def __init__(self, model: ChapterModel):
        self.model = model
        self.params = model.params
        self.backend = model_backend(model)
        self.buffers: dict[str, Any] = getattr(model, "buffers", {})
        self.input_dim: Any = getattr(model, "input_dim", None)
        self.num_classes: Any = getattr(model, "num_classes", None)
        self.reg: Any = getattr(model, "reg", None)

    def loss(self, X: Any, y: Any = None) -> Any:
        return self.model.loss(X, y)

    def loss_and_grads(self, X: Any, y: Any, *, train: bool = True) -> tuple[Any, dict[str, Any]]:
        return self.model.loss(X, y)

    def set_step(self, step: int) -> None:
        """A chapter model has no randomness of its own."""

    def get_rng_state(self) -> dict[str, Any]:
        return {}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


def as_trainable(model: Any) -> TrainableModel:
    """``model`` itself when it provides :class:`TrainableModel`, else an adapter of its chapter contract."""
    if isinstance(model, TrainableModel):
        return model
    if not isinstance(model, ChapterModel):
        raise TypeError(
            f"a model needs params and loss(X, y=None) (the chapter's contract); got {type(model).__name__}"
        )
    return _ChapterModelAdapter(model)


class TrainStep:
    """Minibatch gradient steps of ``model`` on the device-resident training data ``X_train``, ``y_train``.

    Shapes: ``X_train (N, ...)``, ``y_train (N,)``, validated and on the model's device. Each epoch is
    ``max(N // batch_size, 1)`` steps over a fresh permutation; ``augment`` and ``clip_grad_norm`` as in
    :class:`fcn.Solver`. The random choices (batch order, augmentation) come from :attr:`rng`.
    """

    def __init__(
        self,
        model: TrainableModel,
        optimizer: Optimizer,
        X_train: Any,
        y_train: Any,
        *,
        batch_size: int,
        rng: numpy.random.Generator,
        augmenter: Augmenter,
        clip_grad_norm: float | None,
    ):
        self.model, self.optimizer = model, optimizer
        self.backend: Backend = model.backend
        self.X_train, self.y_train = X_train, y_train
        self.num_train = int(X_train.shape[0])
        self.batch_size = batch_size
        self.iterations_per_epoch = max(self.num_train // batch_size, 1)
        self.rng, self.augmenter, self.clip_grad_norm = rng, augmenter, clip_grad_norm
        self._batch_buffers: dict[int, tuple[Any, Any]] = {}
        self.reset()

    def reset(self) -> None:
        #: steps taken
        self.iteration = 0
        #: this epoch's batch order, on the host (checkpointed) and on the device
        self.order_host: numpy.ndarray | None = None
        self.order: Any = None
        #: device scalars of the losses not yet read back
        self.pending_losses: list[Any] = []

    def indices(self, host_indices: numpy.ndarray) -> Any:
        """Host indices as an int64 array on the device."""
        return to_backend(numpy.asarray(host_indices, dtype=numpy.int64), self.backend)

    def set_order(self, order_host: numpy.ndarray | None) -> None:
        """Use ``order_host`` as this epoch's batch order (``None``: draw a new one at the next step)."""
        self.order_host = order_host
        self.order = None if order_host is None else self.indices(order_host)

    def next_indices(self) -> Any:
        """This step's rows of the training data (device indices); a new permutation at each epoch start."""
        k = self.iteration % self.iterations_per_epoch
        if k == 0 or self.order is None:
            self.set_order(self.rng.permutation(self.num_train))
        return self.order[k * self.batch_size : min((k + 1) * self.batch_size, self.num_train)]

    def gather(self, idx: Any) -> tuple[Any, Any]:
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
        return ops.take_batch(self.X_train, self.y_train, idx, out=buffers)

    def features(self, X_batch: Any) -> Any:
        """The batch as the model's ``(N, input_dim)`` rows (a chapter model takes it as it is)."""
        num_features = self.model.input_dim
        if num_features is not None and X_batch.ndim != 2 and not isinstance(self.model, _ChapterModelAdapter):
            X_batch = self.backend.xp.reshape(X_batch, (X_batch.shape[0], num_features))
        return X_batch

    def loss_and_grads(self, X_batch: Any, y_batch: Any) -> tuple[Any, dict[str, Any]]:
        """Loss (a device scalar) and gradients of a training batch, through the model's unchecked path."""
        return self.model.loss_and_grads(self.features(X_batch), y_batch, train=True)

    def folded_sgd_rate(self) -> float | None:
        """The learning rate when this step folds plain SGD into the backward pass, else ``None``.

        Only where it is faster: the kernel table folds the step into its products (``ops.fuses_sgd``), the
        rule is the built-in ``sgd``, no gradient clipping (it needs every gradient first), and the model
        offers ``loss_and_sgd``.
        """
        if self.clip_grad_norm is not None or not self.backend.ops.fuses_sgd:
            return None
        if not hasattr(self.model, "loss_and_sgd"):
            return None
        return self.optimizer.plain_sgd_rate

    def update(self, grads: dict[str, Any]) -> None:
        """Clip the gradients (if asked) and apply the update rule to every parameter, in place."""
        if self.clip_grad_norm is not None:
            xp = self.backend.xp
            norm = xp.sqrt(self.backend.ops.sum_of_squares(list(grads.values())))
            factor = xp.clip(self.clip_grad_norm / (norm + 1e-6), max=1.0)
            for g in grads.values():
                g *= factor
        self.optimizer.step(self.model.params, grads)

    def __call__(self) -> None:
        """One eager step on the next batch; its loss joins :attr:`pending_losses`."""
        idx = self.next_indices()
        X_batch, y_batch = self.gather(idx)
        if self.augmenter:
            X_batch = self.augmenter(X_batch, self.rng)
        self.model.set_step(self.iteration)  # the model's randomness (dropout masks) follows the step
        rate = self.folded_sgd_rate()
        if rate is not None:
            loss_and_sgd = self.model.loss_and_sgd  # type: ignore[attr-defined]  # checked in folded_sgd_rate
            self.pending_losses.append(loss_and_sgd(self.features(X_batch), y_batch, rate))
        else:
            loss, grads = self.loss_and_grads(X_batch, y_batch)
            self.pending_losses.append(loss)
            self.update(grads)
        self.iteration += 1

    def take_losses(self) -> list[Any]:
        """The pending device losses, oldest first; the list is emptied."""
        losses, self.pending_losses = self.pending_losses, []
        return losses
