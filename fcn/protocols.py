"""What the training loop needs of a model, stated as :class:`typing.Protocol` classes.

:class:`fcn.Solver` trains any :class:`ChapterModel` (the chapter's contract); the networks of
:mod:`fcn.models` provide the whole :class:`TrainableModel`, and the Solver adapts a plain chapter model to it
once, up front, instead of probing the model at every step.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["ChapterModel", "TrainableModel"]


@runtime_checkable
class ChapterModel(Protocol):
    """The chapter's model contract, all that :class:`fcn.Solver` needs: named parameters and a loss.

    ``loss(X)`` returns the scores ``(N, C)``; ``loss(X, y)`` returns ``(loss, grads)`` with ``grads`` keyed like
    ``params``. The Solver adapts such a model to :class:`TrainableModel` (no buffers, no dropout state).
    """

    params: dict[str, Any]

    def loss(self, X: Any, y: Any = None) -> Any: ...


@runtime_checkable
class TrainableModel(ChapterModel, Protocol):
    """Everything the training loop uses of a model; :class:`FullyConnectedNet` provides it all.

    - ``backend``: where the parameters live; ``input_dim``, ``num_classes``: the data it takes; ``reg``: its L2
      strength (recorded in checkpoints).
    - ``buffers``: non-trainable arrays (running statistics), saved and snapshotted with the parameters.
    - ``loss_and_grads(X (N, input_dim), y (N,), train=True)``: the unchecked fast path for validated batches.
    - ``set_step(step)``: which training step the next passes belong to (dropout masks follow it);
      ``get_rng_state()`` / ``set_rng_state(state)``: the model's own random state, JSON-able.
    """

    backend: Any  #: a fcn.Backend
    buffers: dict[str, Any]
    input_dim: int
    num_classes: int
    reg: float

    def loss_and_grads(self, X: Any, y: Any, *, train: bool = True) -> tuple[Any, dict[str, Any]]: ...

    def set_step(self, step: int) -> None: ...

    def get_rng_state(self) -> dict[str, Any]: ...

    def set_rng_state(self, state: dict[str, Any]) -> None: ...
