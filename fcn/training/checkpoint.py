"""The checkpoint format: one ``.npz`` (no pickle) holding everything a run needs to continue exactly.

- ``params/<name>``, ``buffers/<name>``: the parameters and buffers training ended with (what a resumed run
  continues from); ``best/<name>``, ``best_buffers/<name>``: the best epoch's, which training put into the model;
- ``optim/<param>/<state>``: the optimiser's state arrays;
- ``loss_history``, ``train_acc_history``, ``val_acc_history``; ``order``: the current epoch's batch order;
- ``meta``: JSON with the format tag, counters, the optimiser's hyperparameters, the batch RNG's state, the
  model's random state, and the run's settings (compared on resume); :data:`META_FIELDS` lists its fields.

Files are written atomically (:func:`fcn.npz.write_npz`; a write removes the temporary files that earlier writers
of the same checkpoint left when killed mid-write) and are device-neutral: a checkpoint written on a GPU
loads on a CPU and back. Formats 1 and 2 (which kept only the current, decayed learning rate) still load.
Reading checks everything before anything is assigned: a checkpoint that does not fit changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy

from ..atomic import stale_temp_files
from ..backend import to_backend, to_host
from ..npz import NpzError, read_npz, write_npz
from ..validation import check_float, check_int
from .config import setting_differences
from .optimizer import OptimizerStateError

if TYPE_CHECKING:
    from ..solver import Solver

__all__ = ["CHECKPOINT_FORMAT", "READABLE_FORMATS", "CheckpointError", "write_checkpoint", "load_checkpoint"]

#: 3: the learning rate is a schedule of the step (the base rate, early stopping and the model's random state are
#: saved); 1 and 2 kept the current, decayed rate and are still read.
CHECKPOINT_FORMAT = "fcn-checkpoint-3"
READABLE_FORMATS = (CHECKPOINT_FORMAT, "fcn-checkpoint-2", "fcn-checkpoint-1")
HISTORIES = ("loss_history", "train_acc_history", "val_acc_history")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, or does not fit the model."""


def write_checkpoint(solver: Solver, path: str | os.PathLike) -> Path:
    """Write ``solver``'s whole training state to ``path`` (see the module docstring); returns the path."""
    path = Path(path)
    step, optimizer = solver.train_step, solver.optimizer
    params, buffers = solver.resume_arrays()
    groups = {"params": params, "buffers": buffers, "best": solver.best_params, "best_buffers": solver.best_buffers}
    arrays = {f"{group}/{name}": to_host(v) for group, values in groups.items() for name, v in values.items()}
    state, shared_config, hyper = optimizer.state_dict()
    for name, named_arrays in state.items():
        for key, value in named_arrays.items():
            arrays[f"optim/{name}/{key}"] = to_host(value)
    for key in HISTORIES:
        arrays[key] = numpy.asarray(getattr(solver, key), dtype=float)
    if step.order_host is not None:
        arrays["order"] = step.order_host
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model": type(solver.model).__name__,
        "iteration": step.iteration,
        "epoch": solver.epoch,
        "num_iters": solver.num_iters,
        "batch_size": step.batch_size,
        "update_rule": optimizer.name,
        "optim_config": shared_config,
        "optim_hyper": hyper,
        "best_val_acc": solver.best_val_acc,
        "rng_state": step.rng.bit_generator.state,
        "settings": solver.settings(),
        "base_learning_rate": optimizer.base_learning_rate,
        "epochs_without_improvement": solver.epochs_without_improvement,
        "stopped_early": solver.stopped_early,
        "model_rng_state": solver.net.get_rng_state() or None,
    }
    try:
        arrays["meta"] = numpy.asarray(json.dumps(meta))
    except TypeError as exc:
        raise CheckpointError(
            f"cannot save the optimiser's configuration ({exc}): an update rule's config may hold arrays "
            "(saved as state) and numbers or strings (saved as hyperparameters), nothing else"
        ) from None
    for stale in stale_temp_files(path):  # what a writer killed mid-write (SIGKILL, power loss) left behind
        with contextlib.suppress(OSError):  # tidying up: a file that cannot be removed does not stop the write
            stale.unlink(missing_ok=True)
    write_npz(path, arrays)  # readers see the old file or the new one, never half of one
    return path


def read_checkpoint(path: Path) -> tuple[dict[str, numpy.ndarray], dict[str, Any]]:
    """The arrays and the checked meta of a checkpoint file (:data:`META_FIELDS`), or :class:`CheckpointError`
    naming the file."""
    try:
        arrays = read_npz(path, what="fcn checkpoint")
    except NpzError as exc:
        raise CheckpointError(f"checkpoint {path} does not exist" if exc.missing else str(exc)) from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (ValueError, KeyError, RecursionError) as exc:  # RecursionError: JSON nested too deep for a checkpoint
        raise CheckpointError(f"{path} is not a readable fcn checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS:
        tag = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path}: unknown checkpoint format {tag!r}")
    return arrays, _checked_meta(path, meta)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {value!r}")
    return value


def _object(key: str, value: Any) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{key} must be a JSON object or null, got {type(value).__name__}")
    return value


def _per_parameter(key: str, value: Any) -> dict[str, Any] | None:
    if _object(key, value) and not all(isinstance(v, dict) for v in value.values()):
        raise TypeError(f"{key} must map each parameter to a JSON object")
    return value


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, got {value!r}")
    return value


def _optional_number(key: str, value: Any) -> float | None:
    return None if value is None else check_float(key, value)


def _counter(key: str, value: Any) -> int:
    return check_int(key, value, minimum=0)


#: The meta's fields: name -> (whether every readable format has it, its check). Every field is checked when
#: the file is read, before anything is compared or assigned; a field of no format is ignored.
META_FIELDS: dict[str, tuple[bool, Callable[[str, Any], Any]]] = {
    "format": (True, _text),
    "model": (False, _text),
    "iteration": (True, _counter),
    "epoch": (True, _counter),
    "num_iters": (False, _counter),
    "batch_size": (False, lambda key, value: check_int(key, value, minimum=1)),
    "update_rule": (False, _text),
    "optim_config": (False, _object),
    "optim_hyper": (False, _per_parameter),
    "best_val_acc": (True, _optional_number),
    "rng_state": (True, _object),
    "settings": (False, _object),
    "base_learning_rate": (False, _optional_number),
    "epochs_without_improvement": (False, _counter),
    "stopped_early": (False, _flag),
    "model_rng_state": (False, _object),
}


def _checked_meta(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with every field of :data:`META_FIELDS` checked (integers as ``int``), or CheckpointError."""
    checked = dict(meta)
    for key, (required, check) in META_FIELDS.items():
        if key not in meta:
            if required:
                raise CheckpointError(f"{path} is not a complete fcn checkpoint: its meta has no {key!r}")
            continue
        try:
            checked[key] = check(key, meta[key])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: corrupt {key} in the checkpoint's meta ({exc})") from None
    return checked


def load_checkpoint(solver: Solver, path: str | os.PathLike, *, strict: bool = True) -> None:
    """Restore ``path`` into ``solver`` (see :meth:`fcn.Solver.load_checkpoint`): all checked, then assigned."""
    path = Path(path)
    arrays, meta = read_checkpoint(path)
    try:
        prepared = _prepare(solver, path, arrays, meta, strict)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a complete fcn checkpoint ({type(exc).__name__}: {exc})") from exc
    _assign(solver, meta, prepared)


def _group(arrays: dict[str, numpy.ndarray], prefix: str) -> dict[str, numpy.ndarray]:
    return {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def _model_arrays(solver: Solver, path: Path, arrays: dict[str, numpy.ndarray]) -> dict[str, dict[str, Any]]:
    """Parameters, buffers and the best snapshot of both, checked against the model and moved to its device."""
    params, buffers = solver.model.params, solver.net.buffers
    checks = [("params", "parameter", params, False), ("buffers", "buffer", buffers, False)]
    checks += [("best", "best parameter", params, True), ("best_buffers", "best buffer", buffers, True)]
    restored: dict[str, dict[str, Any]] = {}
    for prefix, what, like, may_be_empty in checks:
        saved = _group(arrays, prefix)
        if set(saved) != set(like) and not (may_be_empty and not saved):
            raise CheckpointError(f"{path} holds {what}s {sorted(saved)}, but the model has {sorted(like)}")
        for name, value in saved.items():
            if tuple(value.shape) != tuple(like[name].shape):
                raise CheckpointError(
                    f"{path}: {what} {name} has shape {value.shape}, the model's is {tuple(like[name].shape)}"
                )
            _check_finite(path, f"{what} {name}", value)
        restored[prefix] = {n: to_backend(v, solver.backend, dtype=like[n].dtype) for n, v in saved.items()}
    return restored


def _check_finite(path: Path, what: str, value: numpy.ndarray) -> None:
    if value.dtype.kind not in "fiub":
        raise CheckpointError(f"{path}: {what} has dtype {value.dtype}, expected numbers")
    if value.dtype.kind == "f" and not numpy.isfinite(value).all():
        raise CheckpointError(f"{path}: {what} holds NaN or infinite values; the checkpoint cannot be resumed")


def _saved_settings(meta: dict[str, Any], arrays: dict[str, numpy.ndarray]) -> dict[str, Any]:
    """The settings a checkpoint records; older formats are completed from what they hold."""
    saved = dict(meta.get("settings") or {})
    saved.setdefault("batch_size", meta.get("batch_size"))
    order = arrays.get("order")  # one entry per training sample
    if order is not None and order.ndim == 1:
        saved.setdefault("num_train", int(order.shape[0]))
    return saved


def _best_val_acc(solver: Solver, path: Path, meta: dict[str, Any], strict: bool) -> float | None:
    best = meta["best_val_acc"]  # a finite number or None (checked when read)
    if (best is None) != (solver.num_val == 0):
        if strict:
            raise CheckpointError(f"{path}: best_val_acc {best!r} does not fit {solver.num_val} validation samples")
        best = 0.0 if solver.num_val else None
    return best


def _order(solver: Solver, path: Path, arrays: dict[str, numpy.ndarray], strict: bool) -> numpy.ndarray | None:
    order = arrays.get("order")
    n = solver.num_train
    fits = order is None or (
        order.ndim == 1 and order.shape[0] == n and numpy.array_equal(numpy.sort(order), numpy.arange(n))
    )
    if not fits and strict:
        raise CheckpointError(f"{path}: the saved batch order is not a permutation of this run's {n} training samples")
    return order if fits else None  # strict=False with another training set: a new order at the next step


def _histories(path: Path, arrays: dict[str, numpy.ndarray], iteration: int) -> list[list[float]]:
    histories = []
    for key in HISTORIES:
        values = arrays[key]
        if values.ndim != 1 or not numpy.issubdtype(values.dtype, numpy.floating):
            raise CheckpointError(f"{path}: {key} must be a 1-D float array, got {values.dtype} {values.shape}")
        histories.append(values.tolist())
    if len(histories[0]) != iteration:
        raise CheckpointError(f"{path}: {len(histories[0])} losses recorded for {iteration} iterations")
    return histories


def _prepare(solver: Solver, path: Path, arrays: dict[str, numpy.ndarray], meta: dict[str, Any], strict: bool) -> dict:
    """Every check of a checkpoint against ``solver``; returns what :func:`_assign` puts in place."""
    restored = _model_arrays(solver, path, arrays)
    differences = setting_differences(_saved_settings(meta, arrays), solver.settings())
    if differences and strict:
        raise CheckpointError(
            f"cannot resume {path}: it was written by a run with other settings ({'; '.join(differences)}). "
            "Resume with the saved settings, or start a new run"
        )
    if differences:
        warnings.warn(
            f"{path} was written with other settings ({'; '.join(differences)}); this solver's apply from here",
            stacklevel=4,
        )
    iteration, epoch = meta["iteration"], meta["epoch"]
    if not differences and epoch > iteration // solver.iterations_per_epoch:  # an epoch ends after its last step
        raise CheckpointError(
            f"{path}: corrupt counters: epoch {epoch} ended by iteration {iteration}, with "
            f"{solver.iterations_per_epoch} iterations an epoch"
        )
    if iteration > solver.num_iters and strict:
        raise CheckpointError(
            f"{path} is at iteration {iteration}, past this run's length of {solver.num_iters} iterations; "
            "ask for more iterations (or epochs) to continue it"
        )
    prepared = {
        "model": restored,
        "differences": differences,
        "iteration": iteration,
        "epoch": epoch,
        "best_val_acc": _best_val_acc(solver, path, meta, strict),
        "order": _order(solver, path, arrays, strict),
        "histories": _histories(path, arrays, iteration),
        "epochs_without_improvement": meta.get("epochs_without_improvement", 0),
    }
    for key, value in arrays.items():
        if key.startswith("optim/"):
            _check_finite(path, f"optimiser state {key[len('optim/') :]}", value)
    try:
        prepared["optimizer"] = solver.optimizer.prepare_load(
            meta, {name: _group(arrays, f"optim/{name}") for name in _optim_names(arrays)}, solver.model.params,
            loose=bool(differences),
        )  # fmt: skip
    except OptimizerStateError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _check_random_states(solver, path, meta)
    return prepared


def _check_random_states(solver: Solver, path: Path, meta: dict[str, Any]) -> None:
    """The batch RNG's and the model's saved states, tried on a scratch generator and on the model (then put
    back): a state they would not take, or would take only as another value, fails before anything is assigned."""
    saved = meta["rng_state"]
    scratch = type(solver.rng.bit_generator)()
    try:
        scratch.state = saved
        taken = scratch.state == saved
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"{path}: corrupt rng_state, not a state of the batch generator ({exc})") from None
    if not taken:
        raise CheckpointError(f"{path}: corrupt rng_state: the batch order's generator reads it as another state")
    model_rng = meta.get("model_rng_state")
    if not model_rng:
        return
    net, current = solver.net, solver.net.get_rng_state()
    try:
        net.set_rng_state(model_rng)
        taken = net.get_rng_state() == model_rng
    except (TypeError, ValueError, KeyError, OverflowError):
        taken = False
    finally:
        net.set_rng_state(current)
    if not taken:
        raise CheckpointError(f"{path}: corrupt model_rng_state {model_rng!r}: the model does not take it")


def _optim_names(arrays: dict[str, numpy.ndarray]) -> list[str]:
    return sorted({k.split("/")[1] for k in arrays if k.startswith("optim/")})


def _assign(solver: Solver, meta: dict[str, Any], prepared: dict[str, Any]) -> None:
    """Put a checked checkpoint in place (nothing here can fail on the checkpoint's contents)."""
    restored = prepared["model"]
    for name, value in restored["params"].items():
        dict.__setitem__(solver.model.params, name, value)
    for name, value in restored["buffers"].items():
        dict.__setitem__(solver.net.buffers, name, value)
    solver.best_params, solver.best_buffers = restored["best"], restored["best_buffers"]
    solver.optimizer.load(prepared["optimizer"])
    solver.loss_history, solver.train_acc_history, solver.val_acc_history = prepared["histories"]
    solver.best_val_acc = prepared["best_val_acc"]
    step = solver.train_step
    step.iteration, solver.epoch = prepared["iteration"], prepared["epoch"]
    step.rng.bit_generator.state = meta["rng_state"]
    step.set_order(prepared["order"])
    step.pending_losses = []
    solver.discard_last_arrays()
    solver.sections.consistent = True
    solver.epochs_without_improvement = prepared["epochs_without_improvement"]
    solver.stopped_early = bool(meta.get("stopped_early", False))
    if meta.get("model_rng_state"):
        solver.net.set_rng_state(meta["model_rng_state"])
    solver.rebuild_schedule()
    config = solver.optimizer.config if solver.optimizer.spec else next(iter(solver.optimizer.configs.values()), {})
    saved_lr = config.get("learning_rate")
    legacy = meta.get("format") != CHECKPOINT_FORMAT
    if legacy and not prepared["differences"] and saved_lr is not None:
        # A checkpoint from before schedules kept only the current, already decayed rate: continue from it as
        # the per-epoch decay did (the same products in the same order), not from this solver's base rate.
        solver.schedule.continue_legacy(float(saved_lr), prepared["iteration"] // step.iterations_per_epoch)
    solver.apply_schedule()  # the rate of the saved step (the settings were compared above)
