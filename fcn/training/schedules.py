"""Learning-rate schedules: pure functions from the position in training to a factor of the base learning rate.

A training loop sets its learning rate to ``make_schedule(..., learning_rate=base)(iteration)`` before every
step, where ``iteration`` is the 0-based index of the step about to be taken (epochs are
``iteration / iterations_per_epoch``). Being pure functions, they need no state of their own in a checkpoint.

- ``"step"``: the chapter's schedule, ``decay ** epochs_completed`` (the rate is multiplied by ``decay`` once
  per epoch, in that order of floating-point products, so it equals the chapter's loop bit for bit;
  ``decay=1`` keeps it constant).
- ``"cosine"``: half a cosine from 1 down to ``final_factor`` over the steps after the warmup
  (Loshchilov & Hutter, 2017, without restarts).
- ``"linear"``: a straight line from 1 down to ``final_factor`` over the steps after the warmup.

Any schedule can start with a linear warmup over ``warmup_epochs`` (fractions allowed): the factor rises as
``(iteration + 1) / warmup_iters`` so the first step already moves, and reaches 1 at the end of the warmup.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = [
    "SCHEDULES",
    "check_schedule",
    "step_factor",
    "cosine_factor",
    "linear_factor",
    "warmup_factor",
    "lr_factor",
    "make_schedule",
    "LearningRate",
]

#: Names accepted by ``lr_schedule=`` / ``fcn train --lr-schedule``.
SCHEDULES = ("step", "cosine", "linear")


def check_schedule(name: Any) -> str:
    """``name`` if it is a known schedule, else a ``ValueError`` naming ``lr_schedule`` and the choices."""
    if not isinstance(name, str) or name not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {name!r}")
    return name


def _number(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if value < low or (low_open and value == low) or value > high:
        lo = "(" if low_open else "["
        raise ValueError(f"{name} must be in {lo}{low:g}, {high:g}], got {value!r}")
    return value


def step_factor(epoch: int, decay: float) -> float:
    """``decay ** epoch``: the factor after ``epoch`` completed epochs of per-epoch decay."""
    return float(decay) ** int(epoch)


def cosine_factor(progress: float, final_factor: float = 0.0) -> float:
    """Half a cosine: 1 at ``progress = 0``, ``final_factor`` at ``progress = 1`` (clipped to [0, 1])."""
    progress = min(max(progress, 0.0), 1.0)
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_factor(progress: float, final_factor: float = 0.0) -> float:
    """A straight line: 1 at ``progress = 0``, ``final_factor`` at ``progress = 1`` (clipped to [0, 1])."""
    progress = min(max(progress, 0.0), 1.0)
    return 1.0 - (1.0 - final_factor) * progress


def warmup_factor(iteration: int, warmup_iters: int) -> float:
    """Linear warmup: ``(iteration + 1) / warmup_iters`` during the first ``warmup_iters`` steps, then 1."""
    if warmup_iters <= 0 or iteration >= warmup_iters:
        return 1.0
    return (iteration + 1) / warmup_iters


def lr_factor(
    schedule: str,
    iteration: int,
    *,
    iterations_per_epoch: int,
    num_iters: int,
    decay: float = 1.0,
    warmup_epochs: float = 0.0,
    final_factor: float = 0.0,
) -> float:
    """The factor of the base learning rate for the step with 0-based index ``iteration``.

    ``num_iters`` is the length of the whole run (cosine and linear reach ``final_factor`` there);
    ``decay`` is the per-epoch factor of ``"step"``.
    """
    return make_schedule(
        schedule,
        learning_rate=1.0,
        iterations_per_epoch=iterations_per_epoch,
        num_iters=num_iters,
        decay=decay,
        warmup_epochs=warmup_epochs,
        final_factor=final_factor,
    )(iteration)


def make_schedule(
    schedule: str,
    *,
    learning_rate: float = 1.0,
    iterations_per_epoch: int,
    num_iters: int,
    decay: float = 1.0,
    warmup_epochs: float = 0.0,
    final_factor: float = 0.0,
) -> Callable[[int], float]:
    """Validate the arguments once and return ``rate(iteration) -> learning_rate * factor`` (see :func:`lr_factor`).

    With the default ``learning_rate=1`` the function returns the factor itself.
    """
    check_schedule(schedule)
    ipe = int(_number("iterations_per_epoch", iterations_per_epoch, 0, low_open=True))
    total = int(_number("num_iters", num_iters, 0))
    decay = _number("lr_decay", decay, 0.0, low_open=True)
    warmup_epochs = _number("warmup_epochs", warmup_epochs, 0.0)
    final_factor = _number("final_factor", final_factor, 0.0, 1.0)
    warmup_iters = round(warmup_epochs * ipe)
    span = max(total - warmup_iters, 1)

    base = float(learning_rate)

    def rate(iteration: int) -> float:
        if schedule == "step":
            lr = base
            for _ in range(iteration // ipe):  # the chapter's loop: lr *= decay after every epoch
                lr *= decay
        else:
            progress = (iteration - warmup_iters) / span
            lr = base * (cosine_factor if schedule == "cosine" else linear_factor)(progress, final_factor)
        warm = warmup_factor(iteration, warmup_iters)
        return lr * warm if warm < 1.0 else lr

    return rate


class LearningRate:
    """The learning rate of each step of one run: ``base * factor(iteration)`` of a validated schedule.

    ``base`` ``None`` means the update rule has no learning rate to schedule (only ``"step"`` without warmup is
    allowed then). A pure function of the step, so a resumed run needs nothing but the step count;
    :meth:`continue_legacy` serves checkpoints from before schedules, which kept only the decayed rate.
    """

    def __init__(
        self,
        schedule: str,
        base: float | None,
        *,
        iterations_per_epoch: int,
        num_iters: int,
        decay: float = 1.0,
        warmup_epochs: float = 0.0,
    ):
        if base is None and (schedule != "step" or warmup_epochs):
            raise ValueError(
                f"lr_schedule={schedule!r} with warmup_epochs={warmup_epochs!r} needs a learning rate to scale: "
                "put one in optim_config['learning_rate']"
            )
        self.schedule, self.base = schedule, base
        self.iterations_per_epoch, self.decay, self.warmup_epochs = iterations_per_epoch, decay, warmup_epochs
        self._rate = make_schedule(
            schedule,
            learning_rate=1.0 if base is None else base,
            iterations_per_epoch=iterations_per_epoch,
            num_iters=num_iters,
            decay=decay,
            warmup_epochs=warmup_epochs,
        )
        self.num_iters = num_iters

    def __call__(self, iteration: int) -> float | None:
        """The rate of the step with 0-based index ``iteration`` (``None`` without a base rate)."""
        return None if self.base is None else self._rate(iteration)

    def continue_legacy(self, rate_now: float, epoch_now: int) -> None:
        """Continue the per-epoch decay from ``rate_now``, the rate of epoch ``epoch_now`` (old checkpoints)."""
        if self.warmup_epochs or self.schedule != "step":
            return
        ipe = self.iterations_per_epoch
        rate = make_schedule(
            "step", learning_rate=rate_now, iterations_per_epoch=ipe, num_iters=self.num_iters, decay=self.decay
        )
        self._rate = lambda iteration: rate(max(iteration - epoch_now * ipe, 0))
