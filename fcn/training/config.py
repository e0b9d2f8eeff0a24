"""The settings of a training run, defined once: :class:`TrainConfig`.

Every setting has its default, its check and its help text here. :class:`fcn.Solver` is built from a
``TrainConfig`` (its keyword arguments are this class's fields); the command line (``fcn train``) and the
sweep's search space (``fcn sweep``) derive their options from :func:`setting_fields`; a checkpoint records
the settings that shape a run's trajectory (the fields marked ``resume``) and a resumed run is compared with
them by :func:`setting_differences`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..backend import dtype_name
from ..optim import RULES, UPDATE_RULES, get_update_rule
from ..validation import check_float, check_int
from .augment import parse_augment
from .optimizer import is_state_array, json_number
from .schedules import SCHEDULES, make_schedule

if TYPE_CHECKING:
    from ..solver import Solver

__all__ = ["TrainConfig", "setting_fields", "setting_differences", "run_settings", "RESUME_SETTINGS", "RUN_SETTINGS"]


# mutmut cannot test this function: it runs only while the module is imported, before any mutant is switched on,
# so its lines are not mutated; tests/training/test_config.py fails with each of their mutations put in by hand.
def _setting(default: Any, help: str, *, resume: bool = False, search: str | None = None, **extra: Any) -> Any:  # noqa: E501  # pragma: no mutate
    """A dataclass field with its help text; ``resume``: compared when a checkpoint is resumed; ``search``: how
    a sweep draws it (``"log"``, ``"linear"``, ``"int"``, ``"choice"``), ``None``: not searchable."""
    return field(default=default, metadata={"help": help, "resume": resume, "search": search, **extra})  # noqa: E501  # pragma: no mutate


@dataclass
class TrainConfig:
    """How :class:`fcn.Solver` trains: the update rule, the learning-rate schedule, batches, length, output.

    Every field is checked on construction (a bad value raises ``TypeError``/``ValueError`` naming it);
    ``augment`` is normalised to ``"flip"``, ``"crop"``, ``"flip,crop"`` or ``None`` and ``optim_config`` of a
    built-in rule is completed with the rule's defaults.
    """

    update_rule: str | Callable = _setting(
        "sgd", f"update rule: {', '.join(UPDATE_RULES)}, or a callable (w, dw, config) -> (w, config)",
        resume=True, search="choice", choices=tuple(UPDATE_RULES),
    )  # fmt: skip
    optim_config: dict[str, Any] | None = _setting(
        None, "the rule's hyperparameters, e.g. {'learning_rate': 1e-3}; unknown keys of a built-in rule are an error",
        resume=True,
    )  # fmt: skip
    lr_decay: float = _setting(1.0, "learning-rate factor after every epoch (lr_schedule 'step')", resume=True,
                               search="linear")  # fmt: skip
    lr_schedule: str = _setting(
        "step", "step: multiply by lr_decay after every epoch; cosine / linear: decay to 0 at the last step",
        resume=True, search="choice", choices=SCHEDULES,
    )  # fmt: skip
    warmup_epochs: float = _setting(0.0, "linear learning-rate warmup first, in epochs (fractions allowed)",
                                    resume=True, search="linear")  # fmt: skip
    batch_size: int = _setting(100, "samples per step; an epoch is num_train // batch_size steps (at least one)",
                               resume=True, search="int")  # fmt: skip
    num_epochs: int = _setting(10, "epochs to train, unless num_iters is given (0: no step)")
    num_iters: int | None = _setting(None, "total steps, overriding num_epochs (0: no step)")
    num_train_samples: int | None = _setting(
        1000, "training samples (a fixed random subset) scored for the train-accuracy history; None: all"
    )
    print_every: int = _setting(100, "log the loss every this many steps (also how often divergence is checked)")
    verbose: bool = _setting(True, "print log lines")
    progress: bool | None = _setting(None, "show a progress bar (None: only when stderr is a terminal)")
    checkpoint: str | os.PathLike | None = _setting(
        None, "path of an .npz checkpoint written at every epoch end and when training finishes"
    )
    seed: int | None = _setting(None, "seed of the host RNG that orders the batches (and draws augmentations)",
                                resume=True)  # fmt: skip
    patience: int | None = _setting(None, "stop after this many evaluations without a better validation accuracy")
    clip_grad_norm: float | None = _setting(None, "rescale the gradients to at most this global L2 norm",
                                            resume=True, search="log")  # fmt: skip
    augment: str | None = _setting(
        None, "flip, crop or flip,crop: random horizontal flips / crops of the 4-pixel zero-padded image",
        resume=True, search="choice", choices=(None, "flip", "crop", "flip,crop"),
    )  # fmt: skip
    cuda_graph: bool | None = _setting(None, "replay the step as a CUDA graph (None: $FCN_CUDA_GRAPH)")

    def __post_init__(self) -> None:
        builtin = BUILTIN_NAMES.get(get_update_rule(self.update_rule))  # an unknown name fails here
        spec = RULES[builtin] if builtin else None
        self.optim_config = spec.hyperparameters(self.optim_config) if spec else dict(self.optim_config or {})
        self.lr_decay = check_float("lr_decay", self.lr_decay, positive=True)
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)
        self.print_every = check_int("print_every", self.print_every, minimum=1)
        if self.num_iters is not None:  # 0 is a valid length; num_epochs is ignored when num_iters is given
            self.num_iters = check_int("num_iters", self.num_iters, minimum=0)
        else:
            self.num_epochs = check_int("num_epochs", self.num_epochs, minimum=0)
        if self.num_train_samples is not None:
            self.num_train_samples = check_int("num_train_samples", self.num_train_samples, minimum=1)
        self.seed = None if self.seed is None else check_int("seed", self.seed, minimum=0)
        self.patience = None if self.patience is None else check_int("patience", self.patience, minimum=1)
        if self.clip_grad_norm is not None:
            self.clip_grad_norm = check_float("clip_grad_norm", self.clip_grad_norm, positive=True)
        self.augment = ",".join(parse_augment(self.augment)) or None
        # the schedule's own checks (name, decay, warmup), on a placeholder length
        make_schedule(self.lr_schedule, iterations_per_epoch=1, num_iters=1, decay=self.lr_decay,
                      warmup_epochs=self.warmup_epochs)  # fmt: skip

    @property
    def rule_name(self) -> str:
        """The update rule's name ("" for an anonymous callable); an unknown name is an error naming the choices."""
        rule = get_update_rule(self.update_rule)
        return BUILTIN_NAMES.get(rule) or str(getattr(self.update_rule, "__name__", ""))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values (a callable rule by its name, the checkpoint path as text)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["update_rule"] = self.rule_name
        out["checkpoint"] = None if self.checkpoint is None else os.fspath(self.checkpoint)
        out["optim_config"] = {k: json_number(v) for k, v in (self.optim_config or {}).items() if not is_state_array(v)}
        return out

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Settings from :meth:`to_json` (unknown keys are an error naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown training setting(s) {', '.join(map(repr, unknown))}")
        return cls(**dict(values))

    def resume_settings(self) -> dict[str, Any]:
        """The settings a checkpoint records and a resumed run must share (JSON)."""
        values = self.to_json()
        return {name: values[name] for name in RESUME_SETTINGS if name in values}


def setting_fields() -> list[dataclasses.Field]:
    """The fields of :class:`TrainConfig`, with ``metadata``: ``help``, ``resume``, ``search`` (and ``choices``)."""
    return list(dataclasses.fields(TrainConfig))


#: What a run's data and model add to the resume-marked fields of TrainConfig: each setting's value on a Solver
#: (JSON). Nothing else of the model needs comparing: its sizes and normalization layers show in the saved
#: parameters and buffers (checked array by array), the saved parameters replace its initialisation, and a
#: checkpoint may move between backends.
RUN_SETTINGS: dict[str, Callable[[Solver], Any]] = {
    "num_train": lambda solver: solver.num_train,
    "num_val": lambda solver: solver.num_val,
    "model": lambda solver: type(solver.model).__name__,
    "reg": lambda solver: solver.net.reg,
    "dtype": lambda solver: dtype_name(next(iter(solver.model.params.values())).dtype),
    "dropout_keep_ratio": lambda solver: getattr(solver.model, "dropout_keep_ratio", None),
}

#: Settings a checkpoint records and a resumed run must share (the training length may change: that extends
#: it): the resume-marked fields of TrainConfig, then :data:`RUN_SETTINGS`.
RESUME_SETTINGS: tuple[str, ...] = (
    *(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resume"]),
    *RUN_SETTINGS,
)


def run_settings(solver: Solver) -> dict[str, Any]:
    """The values of :data:`RESUME_SETTINGS` for ``solver``: what a checkpoint records (JSON)."""
    return {
        **solver.config.resume_settings(),
        "optim_config": solver.optimizer.settings(),
        **{name: value(solver) for name, value in RUN_SETTINGS.items()},
    }


#: The built-in rules' functions by identity (a rule passed as fcn.optim.adam is the built-in adam).
BUILTIN_NAMES = {fn: name for name, fn in UPDATE_RULES.items()}

_LABELS = {"num_train": "training samples", "num_val": "validation samples"}


def setting_differences(saved: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Each setting of :data:`RESUME_SETTINGS` in which ``given`` differs from ``saved``, as text.

    A setting the saved run did not record (an older checkpoint) is not compared. Hyperparameters are compared
    one by one when the rule is the same; another rule has other hyperparameters, so only the rule is named.
    """
    differences = []
    for key in RESUME_SETTINGS:
        if key not in saved or saved[key] == given.get(key):
            continue
        if key == "optim_config" and saved.get("update_rule") == given.get("update_rule"):
            old, new = saved[key] or {}, given[key] or {}
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    differences.append(f"{name} {old.get(name)!r} in the checkpoint, {new.get(name)!r} here")
        elif key == "optim_config":
            continue
        elif key in _LABELS:
            differences.append(f"{saved[key]} {_LABELS[key]} in the checkpoint, {given.get(key)} here")
        else:
            differences.append(f"{key} {saved[key]!r} in the checkpoint, {given.get(key)!r} here")
    return differences
