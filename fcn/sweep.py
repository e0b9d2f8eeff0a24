"""Hyperparameter sweeps: ``fcn sweep`` and :func:`run_sweep`, on Ray Tune (optional) or a plain loop.

The chapter's next step is tuning the hidden size, learning rate, regularisation and decay. Rather than a
home-made scheduler, the search runs on `Ray Tune <https://docs.ray.io/en/latest/tune/>`_, installed with the
``sweep`` extra (``pip install "fcn[sweep]"``, which pulls ``ray[tune]``):

- **Where it runs.** Locally by default: Ray starts inside this process and uses this machine's cores, one
  trial per CPU (``cpus_per_trial``). Given ``address`` (``--address`` or ``$RAY_ADDRESS``) it joins a Ray
  cluster instead and ships this ``fcn`` package to the workers (``runtime_env`` ``py_modules``), so the
  nodes need only Ray and ``fcn``'s dependencies; ``out`` should then be on storage all nodes can write
  (Tune's ``storage_path``). Trials on the ``cupy`` backend ask for one GPU each, so Ray places one trial
  per GPU.
- **Data.** CIFAR-10 is read and preprocessed once, by the driver, and put in Ray's object store
  (``ray.put``); trials receive the reference through ``tune.with_parameters`` and map the arrays read-only
  (zero copy) from their node's store, so a node fetches the data at most once however many trials it runs.
- **Search.** A search space (see below) sampled ``num_samples`` times (times the size of any grid), every
  trial trained by :class:`fcn.Solver` (float32 by default) and reporting its validation accuracy after
  every epoch.
  ASHA (``ASHAScheduler``) stops trials that are behind their peers at the same epoch, so a bad learning
  rate costs a couple of epochs, not a full run. A diverging trial (:class:`fcn.TrainingDiverged`) is
  recorded as ``diverged`` with accuracy NaN; the sweep goes on.
- **Results** in ``out``: ``trials.csv`` and ``trials.json`` (one row per trial: parameters, best val
  accuracy, iterations, seconds, status), ``summary.json`` (settings, space, best trial, retrained model,
  machine, wall time), ``sweep.png`` (val accuracy against learning rate and reg), and the best
  configuration retrained on the full training split without early stopping, saved with
  :meth:`fcn.Solver.save_checkpoint` as ``best_checkpoint.npz``.

Without Ray, ``engine="sequential"`` (``--engine sequential``) runs the sampled configurations one after
another in this process, with no early stopping: fine for a handful of small trials. It is never chosen
silently; asking for Ray without it installed raises :class:`MissingRayError` naming the extra.

**Search spaces** map a parameter (``learning_rate``, ``reg``, ``hidden_dims``, ``lr_decay``,
``batch_size``, ``weight_scale``, ``update_rule``) to a spec. In a JSON or TOML file, or a dict::

    {"learning_rate": {"loguniform": [1e-4, 1e-2]},   # log-uniform between the bounds
     "reg": "1e-3..1",                                 # a range: log-uniform for learning_rate/reg/weight_scale
     "hidden_dims": [100, 200, [512, 256]],            # a list: random choice (one trial each draw)
     "lr_decay": {"grid": [0.9, 0.95]},                # a grid: every value, num_samples times each
     "batch_size": 500}                                # a constant

On the command line the same specs are strings: ``--lr 1e-4..1e-2``, ``--hidden-dims 100,200,512x256``
(``x`` separates the layers of one FullyConnectedNet), ``--lr-decay grid:0.9,0.95``, ``--reg log:1e-3..1``,
``--lr-decay uniform:0.9..0.99``, ``--batch-size 500``. ``fcn sweep`` starts from ``--space`` (or
:data:`DEFAULT_SPACE`: learning rate, reg and hidden size) and each option replaces one parameter's spec;
:func:`run_sweep` takes the space as given. Parameters outside the space keep ``fcn train``'s defaults.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy

from .backend import to_backend
from .models import FullyConnectedNet, ShallowLayerNet
from .solver import Solver, TrainingDiverged

__all__ = [
    "RAY_MISSING_MESSAGE",
    "PARAMETERS",
    "DEFAULT_SPACE",
    "Dimension",
    "SweepError",
    "MissingRayError",
    "TrialSettings",
    "SweepResult",
    "grid",
    "choice",
    "uniform",
    "loguniform",
    "parse_spec",
    "load_space",
    "resolve_space",
    "sample_configs",
    "train_trial",
    "run_sweep",
    "plot_sweep",
    "add_sweep_arguments",
    "sweep_command",
]

RAY_MISSING_MESSAGE = (
    'fcn sweep needs Ray Tune, which is not installed: pip install "fcn[sweep]" (or pip install "ray[tune]"). '
    "For a small sweep without Ray, use --engine sequential (run_sweep(..., engine='sequential'))."
)


class SweepError(RuntimeError):
    """A sweep could not run: a bad search space, no usable trial, or a missing dependency."""


class MissingRayError(SweepError, ImportError):
    """Ray Tune is not installed; the message names the extra to install."""


# --------------------------------------------------------------------------------------------------------------
# Search spaces
# --------------------------------------------------------------------------------------------------------------

#: The tunable parameters: kind of value, whether ranges are sampled on a log scale, and ``fcn train``'s default.
PARAMETERS: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": float, "log": True, "default": 1e-3},
    "reg": {"type": float, "log": True, "default": 0.6},
    "hidden_dims": {"type": "hidden", "log": True, "default": [100]},
    "lr_decay": {"type": float, "log": False, "default": 0.95},
    "batch_size": {"type": int, "log": False, "default": 500},
    "weight_scale": {"type": float, "log": True, "default": None},  # None: 1e-3 shallow, 1e-2 fc (as fcn train)
    "update_rule": {"type": str, "log": False, "default": "sgd"},
}
_ALIASES = {"lr": "learning_rate", "hidden_dim": "hidden_dims", "hidden": "hidden_dims", "decay": "lr_decay"}
_UPDATE_RULES = ("sgd", "sgd_momentum", "rmsprop", "adam")

#: What ``fcn sweep`` searches when given no space at all: the chapter's three knobs around its defaults.
DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"loguniform": [3e-4, 1e-2]},
    "reg": {"loguniform": [1e-3, 1.0]},
    "hidden_dims": [100, 200, 400],
}

_KINDS = ("const", "grid", "choice", "uniform", "loguniform", "randint", "lograndint")


@dataclass(frozen=True)
class Dimension:
    """One parameter's search spec.

    ``kind`` is ``const`` (``values == (v,)``), ``grid`` (every value, each ``num_samples`` times), ``choice``
    (a random value per trial), or a range ``(low, high)`` sampled ``uniform``/``loguniform`` (floats) or
    ``randint``/``lograndint`` (integers, both bounds included).
    """

    kind: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise SweepError(f"unknown search kind {self.kind!r}; expected one of {', '.join(_KINDS)}")
        if not self.values or (self.kind == "const" and len(self.values) != 1):
            raise SweepError(f"{self.kind} needs {'one value' if self.kind == 'const' else 'values'}")
        if self.kind in ("uniform", "loguniform", "randint", "lograndint"):
            if len(self.values) != 2 or not self.values[0] <= self.values[1]:
                raise SweepError(f"{self.kind} needs two bounds low <= high, got {list(self.values)}")
            if self.kind.startswith("log") and self.values[0] <= 0:
                raise SweepError(f"{self.kind} needs positive bounds, got {list(self.values)}")

    @property
    def grid_size(self) -> int:
        """How many trials this dimension multiplies each sample into (1 unless a grid)."""
        return len(self.values) if self.kind == "grid" else 1

    def sample(self, rng: numpy.random.Generator) -> Any:
        """A random value (grids are expanded by :func:`sample_configs`, not sampled)."""
        lo_hi = self.values
        if self.kind in ("const", "grid"):
            return self.values[0]
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "uniform":
            return float(rng.uniform(*lo_hi))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1]))))
        if self.kind == "randint":
            return int(rng.integers(lo_hi[0], lo_hi[1] + 1))
        # lograndint as Ray draws it: a log-uniform float on [low, high + 1), rounded down
        return min(int(math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1] + 1)))), lo_hi[1])

    def to_tune(self, tune: Any) -> Any:
        """The equivalent Ray Tune domain (``tune`` is the imported ``ray.tune`` module)."""
        v = self.values
        if self.kind == "const":
            return v[0]
        if self.kind == "grid":
            return tune.grid_search(list(v))
        if self.kind == "choice":
            return tune.choice(list(v))
        if self.kind == "uniform":
            return tune.uniform(*v)
        if self.kind == "loguniform":
            return tune.loguniform(*v)
        # Tune's integer bounds exclude the upper one; ours include it, as a user reading "50..400" expects.
        return (tune.randint if self.kind == "randint" else tune.lograndint)(v[0], v[1] + 1)

    def to_json(self) -> Any:
        """The spec as written in a space file (constants as plain values)."""
        return self.values[0] if self.kind == "const" else {self.kind: list(self.values)}

    def upper(self) -> Any:
        """The largest value this dimension can take (for numbers), used to size ASHA's rungs."""
        if self.kind in ("uniform", "loguniform", "randint", "lograndint"):
            return self.values[1]
        return max(self.values)


def grid(*values: Any) -> Dimension:
    """Every value, each ``num_samples`` times: ``grid(0.9, 0.95)``."""
    return Dimension("grid", tuple(values))


def choice(*values: Any) -> Dimension:
    """One value drawn at random per trial: ``choice(100, 200, 400)``."""
    return Dimension("choice", tuple(values))


def uniform(low: float, high: float) -> Dimension:
    """A float drawn uniformly from ``[low, high]``."""
    return Dimension("uniform", (float(low), float(high)))


def loguniform(low: float, high: float) -> Dimension:
    """A float whose logarithm is uniform on ``[log low, log high]`` (learning rates, regularisation)."""
    return Dimension("loguniform", (float(low), float(high)))


def _canonical_name(name: str) -> str:
    key = _ALIASES.get(name, name).replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in PARAMETERS:
        raise SweepError(f"unknown sweep parameter {name!r}; tunable: {', '.join(PARAMETERS)}")
    return key


def _value(name: str, raw: Any) -> Any:
    """``raw`` (from JSON, TOML or the command line) converted to the parameter's type, and checked."""
    kind = PARAMETERS[name]["type"]
    try:
        if kind == "hidden":
            if isinstance(raw, str):
                dims = [int(p) for p in raw.lower().split("x")]
            elif isinstance(raw, (list, tuple)):
                dims = [int(p) for p in raw]
            else:
                dims = [int(raw)]
            if not dims or any(d <= 0 for d in dims):
                raise ValueError("sizes must be positive")
            return dims
        if kind is str:
            if raw not in _UPDATE_RULES:
                raise ValueError(f"expected one of {', '.join(_UPDATE_RULES)}")
            return str(raw)
        if isinstance(raw, bool):
            raise ValueError("not a number")
        number = float(raw)
        if kind is int:
            if not number.is_integer() or number <= 0:
                raise ValueError("must be a positive integer")
            return int(number)
        if not math.isfinite(number) or number < 0:
            raise ValueError("must be finite and non-negative")
        return number
    except (TypeError, ValueError) as exc:
        raise SweepError(f"bad value {raw!r} for {name}: {exc}") from None


def parse_spec(name: str, spec: Any) -> Dimension:
    """The :class:`Dimension` for parameter ``name`` given ``spec`` in any accepted form.

    ``spec`` is a :class:`Dimension`; a constant; a list (random choice); a one-key dict
    ``{"grid" | "choice" | "uniform" | "loguniform" | "randint" | "lograndint": [...]}``; or a string as on the
    command line: ``"1e-3"``, ``"a,b,c"`` (choice), ``"lo..hi"`` (a range: log scale for learning rate, reg,
    weight scale and hidden size), or those with a prefix ``grid:``, ``choice:``, ``uniform:``, ``log:``.
    """
    name = _canonical_name(name)
    info = PARAMETERS[name]
    kind: str = ""  # "" = decide from the values: one value is a constant, a range follows the parameter's scale
    if isinstance(spec, Dimension):
        kind, raw = spec.kind, list(spec.values)
    elif isinstance(spec, Mapping):
        if len(spec) != 1:
            raise SweepError(f"{name}: a spec dict has exactly one key (one of {', '.join(_KINDS)}), got {dict(spec)}")
        kind, value = next(iter(spec.items()))
        kind = {"log": "loguniform", "range": "uniform"}.get(kind, kind)
        raw = list(value) if isinstance(value, (list, tuple)) else [value]
    elif isinstance(spec, (list, tuple)):
        # A list is always a set of alternatives; a 2-layer net is written [[512, 256]] or "512x256".
        kind, raw = "choice", list(spec)
    elif isinstance(spec, str):
        prefix, sep, rest = spec.strip().partition(":")
        prefixes = {"log": "loguniform", "grid": "grid", "choice": "choice"}
        prefixes.update({k: k for k in _KINDS})
        if sep and prefix in prefixes:
            kind = prefixes[prefix]
        else:
            rest = spec.strip()
        if ".." in rest:
            if kind in ("grid", "choice", "const"):
                raise SweepError(f"{name}: {kind} takes a comma-separated list, not a range ({spec!r})")
            raw = [p.strip() for p in rest.split("..", 1)]
            kind = kind or ("loguniform" if info["log"] else "uniform")
        else:
            raw = [p.strip() for p in rest.split(",") if p.strip()]
            if kind in ("uniform", "loguniform", "randint", "lograndint"):
                raise SweepError(f"{name}: {kind} takes a range lo..hi, got {spec!r}")
            kind = kind or ("choice" if len(raw) > 1 else "const")
    else:
        kind, raw = "const", [spec]

    if kind in ("uniform", "loguniform", "randint", "lograndint"):
        if info["type"] is str:
            raise SweepError(f"{name} cannot be drawn from a range; give a list of values")
        if info["type"] in (int, "hidden"):
            # Integer parameters take integer ranges (a hidden-size range means one layer of that size).
            bounds = [_value(name, v) for v in raw]
            bounds = [b[0] if isinstance(b, list) and len(b) == 1 else b for b in bounds]
            if not all(isinstance(b, int) for b in bounds):
                raise SweepError(f"{name}: a range needs two integers, got {raw}")
            kind = "lograndint" if kind in ("loguniform", "lograndint") else "randint"
            return Dimension(kind, tuple(bounds))
        return Dimension(kind, tuple(float(_value(name, v)) for v in raw))
    return Dimension(kind, tuple(_value(name, v) for v in raw))


def load_space(path: str | os.PathLike[str]) -> dict[str, Dimension]:
    """Read a search space from a JSON or TOML file (``.toml``; needs Python 3.11+ or the ``tomli`` package).

    The file maps parameters to specs (see :func:`parse_spec`); a top-level ``space`` table is accepted too.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(f"cannot read search space {path}: {exc}") from exc
    if path.suffix.lower() == ".toml":
        try:
            import tomllib  # Python 3.11+
        except ModuleNotFoundError:  # the package supports 3.10, where only the tomli backport has it
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise SweepError(
                    f"{path}: reading TOML needs Python 3.11+ or pip install tomli; or write the space as JSON"
                ) from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SweepError(f"{path} is not valid TOML: {exc}") from exc
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SweepError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("space"), dict) and len(raw) == 1:
        raw = raw["space"]
    if not isinstance(raw, dict):
        raise SweepError(f"{path} must hold a table/object of parameter -> spec")
    return {_canonical_name(k): parse_spec(k, v) for k, v in raw.items()}


def resolve_space(
    space: Mapping[str, Any] | str | os.PathLike[str] | None, model: str = "shallow"
) -> dict[str, Dimension]:
    """Every tunable parameter's :class:`Dimension`: ``space`` (a mapping or a file; ``None``: the
    :data:`DEFAULT_SPACE`), and ``fcn train``'s defaults as constants for the parameters it leaves out."""
    if space is None:
        given = {k: parse_spec(k, v) for k, v in DEFAULT_SPACE.items()}
    elif isinstance(space, (str, os.PathLike)):
        given = load_space(space)
    else:
        given = {}
        for k, v in space.items():
            key = _canonical_name(k)
            if key in given:
                raise SweepError(f"parameter {key} given twice (as {k!r})")
            given[key] = parse_spec(key, v)
    full: dict[str, Dimension] = {}
    for name, info in PARAMETERS.items():
        default = info["default"]
        if name == "weight_scale" and default is None:
            default = 1e-3 if model == "shallow" else 1e-2
        full[name] = given.get(name, Dimension("const", (default,)))
    if model == "shallow":
        multi = [v for v in full["hidden_dims"].values if isinstance(v, list) and len(v) != 1]
        if multi:
            raise SweepError(f"model 'shallow' has one hidden layer; hidden sizes {multi} need model 'fc'")
    return full


def sample_configs(space: Mapping[str, Dimension], num_samples: int, seed: int | None = 0) -> list[dict[str, Any]]:
    """The trial configurations, as Ray Tune's basic search would make them: for each of ``num_samples``
    samples, every combination of the grid values, with the random dimensions drawn afresh per trial.

    Used by the sequential engine; Ray draws its own (seeded by ``search_seed``) from :meth:`Dimension.to_tune`.
    """
    if num_samples < 1:
        raise SweepError(f"num_samples must be at least 1, got {num_samples}")
    rng = numpy.random.default_rng(seed)
    grid_names = [k for k, d in space.items() if d.kind == "grid"]
    configs = []
    for _ in range(num_samples):
        for combo in itertools.product(*(space[k].values for k in grid_names)):
            config = {k: d.sample(rng) for k, d in space.items() if d.kind != "grid"}
            config.update(zip(grid_names, combo, strict=True))
            configs.append(_normalise({k: config[k] for k in space}))
        # keep the key order of the space, so tables list parameters in the same order every time
    return configs


# --------------------------------------------------------------------------------------------------------------
# One trial
# --------------------------------------------------------------------------------------------------------------


@dataclass
class TrialSettings:
    """What every trial shares: the model family, training length, numerics and data subset.

    ``num_iters`` steps per trial (or ``epochs`` if given); ``trial_num_train`` trains trials on the first
    that many training images (``None``: all), while the final retraining always uses all of them.
    ``num_classes`` ``None`` means the largest label seen plus one.
    """

    model: str = "shallow"
    num_iters: int | None = 2000
    epochs: int | None = None
    backend: str = "numpy"
    dtype: str = "float32"
    seed: int = 0
    trial_num_train: int | None = None
    num_classes: int | None = None
    print_every: int = 100


class _ReportingSolver(Solver):
    """A :class:`fcn.Solver` that calls ``on_epoch(solver)`` after each evaluation.

    The Solver evaluates train/val accuracy at every epoch end (and at the last step) but offers no hook,
    and the sweep must report each epoch to ASHA while training runs, so it extends that one step.
    """

    on_epoch: Callable[[Any], None] | None = None

    def _end_epoch(self, bar: Any) -> None:
        super()._end_epoch(bar)
        if self.on_epoch is not None:
            self.on_epoch(self)


def _build_model(config: Mapping[str, Any], settings: TrialSettings, input_dim: int, num_classes: int) -> Any:
    hidden = _value("hidden_dims", config["hidden_dims"])
    common = dict(reg=float(config["reg"]), backend=settings.backend, dtype=settings.dtype, seed=settings.seed)
    if settings.model == "shallow":
        if len(hidden) != 1:
            raise SweepError(f"model 'shallow' takes one hidden size, got {hidden}")
        return ShallowLayerNet(input_dim, hidden[0], num_classes, weight_scale=float(config["weight_scale"]), **common)
    return FullyConnectedNet(input_dim, hidden, num_classes, weight_scale=float(config["weight_scale"]), **common)


def train_trial(
    config: Mapping[str, Any],
    data: Mapping[str, Any],
    settings: TrialSettings,
    *,
    report: Callable[[dict[str, Any]], None] | None = None,
    full_data: bool = False,
) -> tuple[dict[str, Any], Any]:
    """Train one configuration with :class:`fcn.Solver`; return ``(outcome, solver)``.

    ``report(metrics)`` is called after every epoch with ``val_acc``, ``best_val_acc``, ``train_acc``,
    ``loss``, ``epoch`` (fractional), ``iteration`` and ``num_iters``. ``outcome`` holds ``status``
    (``completed`` or ``diverged``), ``best_val_acc`` (NaN when diverged), ``iterations``, ``epochs`` and
    ``train_seconds``. Divergence is caught, reported once with ``val_acc`` NaN and ``diverged`` true, and
    not raised. ``full_data`` ignores ``settings.trial_num_train`` (the final retraining).
    """
    X_train, y_train = data["X_train"], data["y_train"]
    if settings.trial_num_train and not full_data:
        # A view into the shared (read-only) arrays: no copy per trial.
        X_train, y_train = X_train[: settings.trial_num_train], y_train[: settings.trial_num_train]
    input_dim = int(numpy.prod(X_train.shape[1:]))
    num_classes = settings.num_classes or int(max(numpy.max(y_train), numpy.max(data["y_val"]))) + 1
    net = _build_model(config, settings, input_dim, num_classes)

    solver = _ReportingSolver(
        net,
        {"X_train": X_train, "y_train": y_train, "X_val": data["X_val"], "y_val": data["y_val"]},
        update_rule=str(config["update_rule"]),
        optim_config={"learning_rate": float(config["learning_rate"])},
        lr_decay=float(config["lr_decay"]),
        batch_size=int(config["batch_size"]),
        num_iters=settings.num_iters if settings.epochs is None else None,
        num_epochs=settings.epochs or 10,
        print_every=settings.print_every,
        verbose=False,
        progress=False,
        seed=settings.seed,
    )

    def metrics(s: Any, **extra: Any) -> dict[str, Any]:
        return {
            "val_acc": s.val_acc_history[-1] if s.val_acc_history else float("nan"),
            "best_val_acc": s.best_val_acc,
            "train_acc": s.train_acc_history[-1] if s.train_acc_history else float("nan"),
            "loss": s.loss_history[-1] if s.loss_history else float("nan"),
            "epoch": s.iteration / s.iterations_per_epoch,
            "iteration": s.iteration,
            "num_iters": s.num_iters,
            "diverged": False,
            "error": "",
            **extra,
        }

    if report is not None:
        solver.on_epoch = lambda s: report(metrics(s))
    t0 = time.perf_counter()
    status, error = "completed", ""
    try:
        # Overflow on the way to NaN is how a too-high learning rate shows; TrainingDiverged reports it, so
        # NumPy's warnings would only repeat it (noisily, once per trial).
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            solver.train()
    except TrainingDiverged as exc:
        status, error = "diverged", str(exc)
        if report is not None:
            # The metric must be present in every report (Tune checks); NaN is ignored by ASHA's percentiles.
            report(metrics(solver, val_acc=float("nan"), best_val_acc=float("nan"), diverged=True, error=error))
    outcome = {
        "status": status,
        "best_val_acc": solver.best_val_acc if status == "completed" else float("nan"),
        "iterations": solver.iteration,
        "epochs": round(solver.iteration / solver.iterations_per_epoch, 3),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "error": error,
    }
    return outcome, solver


def _retrain(
    config: Mapping[str, Any], data: Mapping[str, Any], settings: TrialSettings
) -> tuple[dict[str, Any], bytes]:
    """Train ``config`` on the full training split; return its summary and the checkpoint file's bytes.

    Bytes rather than a path, so that the same function works as a Ray task on another node.
    """
    outcome, solver = train_trial(config, data, settings, full_data=True)
    if outcome["status"] != "completed":
        return {**outcome, "val_acc": float("nan"), "test_acc": float("nan")}, b""
    summary = {
        **outcome,
        "val_acc": solver.check_accuracy(solver.X_val, solver.y_val),
        "test_acc": (
            solver.check_accuracy(
                to_backend(data["X_test"], solver.backend), to_backend(data["y_test"], solver.backend)
            )
            if "X_test" in data and len(data["X_test"])
            else float("nan")
        ),
        "model": repr(solver.model),
        "stats": solver.stats(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = solver.save_checkpoint(Path(tmp) / "checkpoint.npz")
        return summary, path.read_bytes()


# --------------------------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------------------------


def _import_ray() -> tuple[Any, Any]:
    """``(ray, ray.tune)``, or :class:`MissingRayError` naming the extra to install."""
    try:
        import ray
        from ray import tune
    except ImportError as exc:
        raise MissingRayError(RAY_MISSING_MESSAGE) from exc
    return ray, tune


def _ray_trial(config: dict[str, Any], data_ref: Any = None, settings: dict[str, Any] | None = None) -> None:
    """The Tune function trainable: fetch the shared data (zero copy), train, report every epoch."""
    import ray
    from ray import tune

    data = ray.get(data_ref) if isinstance(data_ref, ray.ObjectRef) else data_ref
    train_trial(config, data, TrialSettings(**(settings or {})), report=tune.report)


def _ray_retrain(config: dict[str, Any], data: Any, settings: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    return _retrain(config, data, TrialSettings(**settings))


def _ray_error_text(error: BaseException) -> str:
    """One line naming a failed trial's exception: the trial's own error, not Ray's wrapper around it."""
    cause = getattr(error, "cause", None)  # RayTaskError keeps the exception raised in the trial here
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
    # Otherwise the traceback text ends with the "Type: message" line.
    lines = [line for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _max_epochs(space: Mapping[str, Dimension], settings: TrialSettings, num_train: int) -> float:
    """The most epochs any trial can run: ASHA's ``max_t`` (the largest batch gives the most epochs)."""
    if settings.epochs is not None:
        return float(settings.epochs)
    n = min(num_train, settings.trial_num_train or num_train)
    largest_batch = int(space["batch_size"].upper())
    return float(settings.num_iters or 1) / max(n // largest_batch, 1)


def _run_ray(
    space: dict[str, Dimension],
    data: dict[str, Any],
    settings: TrialSettings,
    *,
    num_samples: int,
    search_seed: int | None,
    scheduler: str,
    grace_period: float,
    reduction_factor: float,
    max_concurrent: int | None,
    cpus_per_trial: float,
    address: str | None,
    num_cpus: int | None,
    storage: Path,
    retrain: bool,
    verbose: bool,
    say: Callable[..., None],
) -> tuple[list[dict[str, Any]], tuple[dict[str, Any], bytes] | None, dict[str, Any]]:
    """Run the trials on Ray Tune; return the trial rows, the retrained best (or None) and run facts."""
    ray, tune = _import_ray()
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        # Trials print nothing themselves and their errors come back in the results, so worker output is
        # only Ray's own shutdown noise (idle actors get SIGTERM); it stays in the session logs.
        if address:
            # Ship this fcn package to the cluster's workers (py_modules), so nodes need only the dependencies
            # and always run the same code as the driver.
            import fcn

            runtime_env = {"py_modules": [fcn]}
            try:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False, runtime_env=runtime_env)
            except (ConnectionError, RuntimeError) as exc:
                raise SweepError(
                    f"cannot join the Ray cluster at {address} ({str(exc).splitlines()[0]}); check the address "
                    "(ray status on the head node) and, with Ray's token authentication, this machine's token"
                ) from exc
        else:
            # In-process local cluster on this machine's cores; no dashboard (it costs seconds and memory).
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        started = True
    try:
        resources = ray.cluster_resources()
        cluster = {"cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0), "nodes": len(ray.nodes())}
        say(f"ray {ray.__version__}: {cluster['nodes']} node(s), {cluster['cpus']:g} CPUs, {cluster['gpus']:g} GPUs")
        gpus = 1 if settings.backend == "cupy" else 0  # one trial per GPU

        # One copy in the object store; trials and the retraining task all read this one object.
        data_ref = ray.put({k: numpy.asarray(v) for k, v in data.items()})
        trainable = tune.with_resources(
            tune.with_parameters(_ray_trial, data_ref=data_ref, settings=asdict(settings)),
            {"cpu": cpus_per_trial, "gpu": gpus},
        )
        max_t = _max_epochs(space, settings, len(data["X_train"]))
        sched = (
            ASHAScheduler(
                time_attr="epoch",
                metric="val_acc",
                mode="max",
                max_t=max(max_t, grace_period),
                grace_period=grace_period,
                reduction_factor=reduction_factor,
            )
            if scheduler == "asha"
            else FIFOScheduler()
        )
        tuner = tune.Tuner(
            trainable,
            param_space={k: d.to_tune(tune) for k, d in space.items()},
            tune_config=tune.TuneConfig(
                num_samples=num_samples,
                scheduler=sched,
                search_alg=BasicVariantGenerator(random_state=search_seed),
                max_concurrent_trials=max_concurrent or None,
                reuse_actors=True,  # the trainable is stateless between trials; saves an actor start per trial
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=str(storage.resolve()),
                verbose=1 if verbose else 0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        with warnings.catch_warnings():
            # ASHA takes a nan-percentile of each rung; a rung holding only diverged (NaN) trials warns, harmlessly.
            warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
            grid = tuner.fit()

        rows = []
        for result in grid:
            m = dict(result.metrics or {})
            if result.error is not None:
                status, error = "error", _ray_error_text(result.error)
            elif m.get("diverged"):
                status, error = "diverged", str(m.get("error", ""))
            elif m.get("iteration", 0) >= m.get("num_iters", math.inf):
                status, error = "completed", ""
            else:
                status, error = "stopped", ""  # ASHA cut it: behind its peers at a milestone
            acc = m.get("best_val_acc", float("nan")) if status in ("completed", "stopped") else float("nan")
            rows.append(
                {
                    "trial": m.get("trial_id") or Path(str(result.path)).name,
                    "status": status,
                    "best_val_acc": acc,
                    "last_val_acc": m.get("val_acc", float("nan")) if status != "error" else float("nan"),
                    "iterations": int(m.get("iteration", 0)),
                    "epochs": round(float(m.get("epoch", 0.0)), 3),
                    "seconds": round(float(m.get("time_total_s", 0.0)), 2),
                    "config": _normalise({k: result.config.get(k) for k in space}),
                    "error": error,
                }
            )

        retrained = None
        best = _best_row(rows)
        if retrain and best is not None:
            # A Ray task with a trial's resources, so on a cluster it runs where a trial could (a GPU for
            # cupy), reading the same object-store copy of the data; it runs now, while Ray is still up.
            task = ray.remote(_ray_retrain).options(num_cpus=cpus_per_trial, num_gpus=gpus)
            say(f"retraining the best configuration on all {len(data['X_train'])} training images")
            retrained = ray.get(task.remote(best["config"], data_ref, asdict(settings)))
        return rows, retrained, {"ray_version": ray.__version__, "cluster": cluster, "storage": str(storage)}
    finally:
        if started:
            ray.shutdown()


def _run_sequential(
    space: dict[str, Dimension],
    data: dict[str, Any],
    settings: TrialSettings,
    *,
    num_samples: int,
    search_seed: int | None,
    say: Callable[..., None],
) -> list[dict[str, Any]]:
    configs = sample_configs(space, num_samples, search_seed)
    rows = []
    for i, config in enumerate(configs):
        t0 = time.perf_counter()
        try:
            outcome, solver = train_trial(config, data, settings)
            last = solver.val_acc_history[-1] if solver.val_acc_history else float("nan")
        except Exception as exc:  # a failing trial is recorded, not fatal; all-failed is reported by run_sweep
            outcome = {"status": "error", "best_val_acc": float("nan"), "iterations": 0, "epochs": 0.0}
            outcome["error"], last = f"{type(exc).__name__}: {exc}".splitlines()[0][:300], float("nan")
        rows.append(
            {
                "trial": f"trial_{i:04d}",
                "status": outcome["status"],
                "best_val_acc": outcome["best_val_acc"],
                "last_val_acc": last if outcome["status"] == "completed" else float("nan"),
                "iterations": outcome["iterations"],
                "epochs": outcome["epochs"],
                "seconds": round(time.perf_counter() - t0, 2),
                "config": config,
                "error": outcome.get("error", ""),
            }
        )
        say(
            f"trial {i + 1}/{len(configs)}: {_describe(config)} -> {outcome['status']}, "
            f"best val {outcome['best_val_acc']:.4f}"
        )
    return rows


# --------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns (and writes to ``out``).

    ``trials`` are rows sorted best first: ``trial``, ``status`` (``completed``, ``stopped`` by ASHA,
    ``diverged`` or ``error``), ``best_val_acc`` (NaN unless completed or stopped), ``last_val_acc``,
    ``iterations``, ``epochs``, ``seconds``, ``config`` (every tunable parameter) and ``error``.
    ``best`` is the best row; ``retrained`` the best configuration trained again on the full training
    split (``val_acc``, ``test_acc``, ``checkpoint``), or ``None`` when skipped.
    """

    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    retrained: dict[str, Any] | None
    out: Path
    wall_seconds: float
    engine: str
    summary: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of trials per status."""
        out: dict[str, int] = {}
        for row in self.trials:
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out


def _best_row(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if isinstance(r["best_val_acc"], float) and math.isfinite(r["best_val_acc"])]
    if not scored:
        return None
    # Highest accuracy; ties go to the trial that trained longest (a completed run over an ASHA-stopped one).
    return dict(max(scored, key=lambda r: (r["best_val_acc"], r["iterations"])))


def _sort_key(row: Mapping[str, Any]) -> tuple[bool, float]:
    acc = row["best_val_acc"]
    ok = isinstance(acc, float) and math.isfinite(acc)
    return (not ok, -acc if ok else 0.0)


def _hidden_text(value: Any) -> str:
    dims = value if isinstance(value, (list, tuple)) else [value]
    return "x".join(str(int(d)) for d in dims)


def _normalise(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config with ``hidden_dims`` always a list (an integer range draws plain ints)."""
    out = dict(config)
    if "hidden_dims" in out:
        out["hidden_dims"] = _value("hidden_dims", out["hidden_dims"])
    return out


def _describe(config: Mapping[str, Any]) -> str:
    parts = []
    for k, v in config.items():
        if k == "hidden_dims":
            parts.append(f"hidden={_hidden_text(v)}")
        elif isinstance(v, float):
            parts.append(f"{k}={v:.3g}")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


def _json_safe(obj: Any) -> Any:
    """NaN/inf become ``null`` (strict JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, numpy.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _write_tables(rows: Sequence[Mapping[str, Any]], names: Sequence[str], out: Path) -> None:
    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k != "config"}
        error = item.pop("error", "")
        item.update(row["config"])
        item["error"] = error
        flat.append(item)
    (out / "trials.json").write_text(json.dumps(_json_safe(flat), indent=1) + "\n")
    columns = ["trial", "status", "best_val_acc", "last_val_acc", "iterations", "epochs", "seconds", *names, "error"]
    with open(out / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for item in flat:
            cells = dict(item)
            if "hidden_dims" in cells:
                cells["hidden_dims"] = _hidden_text(cells["hidden_dims"])
            for k in ("best_val_acc", "last_val_acc"):
                cells[k] = "nan" if not math.isfinite(cells[k]) else f"{cells[k]:.4f}"
            for k in names:  # sampled floats to 6 digits: readable, and enough to reproduce a run
                if isinstance(cells.get(k), float):
                    cells[k] = f"{cells[k]:.6g}"
            writer.writerow(cells)


def plot_sweep(
    trials: Sequence[Mapping[str, Any]], path: str | os.PathLike[str] | None = None, title: str | None = None
) -> Any:
    """Validation accuracy against learning rate (x) and reg (y), log axes, colour = best val accuracy.

    ``trials`` are :class:`SweepResult` rows; an ASHA-stopped trial shows the best accuracy it reached before
    it was stopped. Diverged and failed trials are grey crosses; the best trial is ringed; marker area grows
    with the hidden size. Built with the Figure API (headless); saved to ``path`` if given.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def get(row: Mapping[str, Any], key: str) -> float:
        return float(row["config"].get(key, float("nan")))

    ok = [r for r in trials if math.isfinite(r["best_val_acc"])]
    bad = [r for r in trials if not math.isfinite(r["best_val_acc"])]
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    if ok:
        sizes = [20 + 0.25 * sum(_value("hidden_dims", r["config"].get("hidden_dims", 100))) for r in ok]
        sc = ax.scatter(
            [get(r, "learning_rate") for r in ok],
            [get(r, "reg") for r in ok],
            c=[r["best_val_acc"] for r in ok],
            s=sizes,
            cmap="viridis",
            edgecolors="k",
            linewidths=0.4,
        )
        fig.colorbar(sc, ax=ax, label="best validation accuracy")
        best = max(ok, key=lambda r: r["best_val_acc"])
        ax.scatter(
            [get(best, "learning_rate")], [get(best, "reg")], s=400, facecolors="none", edgecolors="red", linewidths=1.5
        )
        ax.annotate(
            f"best {best['best_val_acc']:.3f}",
            (get(best, "learning_rate"), get(best, "reg")),
            textcoords="offset points",
            xytext=(10, 10),
            color="red",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
    if bad:
        ax.scatter(
            [get(r, "learning_rate") for r in bad],
            [get(r, "reg") for r in bad],
            marker="x",
            color="0.5",
            label="diverged / failed",
        )
        ax.legend(loc="best")
    for set_scale, axis, key in ((ax.set_xscale, ax.xaxis, "learning_rate"), (ax.set_yscale, ax.yaxis, "reg")):
        values = [get(r, key) for r in trials]
        if values and all(v > 0 for v in values):  # a log axis cannot show reg = 0
            set_scale("log")
            # Ticks at 1, 2, 5 x 10^k labelled as plain numbers: matplotlib's default labels either only the
            # powers of ten (one label on a sweep spanning 1.5 decades) or every minor tick (they collide).
            decades = math.log10(max(values) / min(values))
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 4 else (1.0,)))
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="learning rate", ylabel="L2 regularisation (reg)")
    ax.set_title(title or f"Sweep: {len(trials)} trials (marker size ~ hidden units)")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _machine() -> dict[str, Any]:
    from .cli import _machine as machine  # the same description fcn train writes

    return machine()


def run_sweep(
    space: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    num_train: int = 49000,
    num_val: int = 1000,
    num_test: int = 1000,
    download: bool = True,
    num_samples: int = 16,
    model: str = "shallow",
    num_iters: int | None = 2000,
    epochs: int | None = None,
    trial_num_train: int | None = None,
    backend: str = "numpy",
    dtype: str = "float32",
    seed: int = 0,
    search_seed: int | None = 0,
    engine: str = "ray",
    scheduler: str = "asha",
    grace_period: float = 2.0,
    reduction_factor: float = 3.0,
    max_concurrent: int | None = None,
    cpus_per_trial: float = 1.0,
    address: str | None = None,
    num_cpus: int | None = None,
    out: str | os.PathLike[str] = "runs/sweep",
    retrain: bool = True,
    verbose: bool = True,
    command: str | None = None,
) -> SweepResult:
    """Run a hyperparameter sweep and write its results to ``out``; see the module docstring.

    Args:
        space: parameter -> spec (see :func:`parse_spec`), or a JSON/TOML file; ``None``: :data:`DEFAULT_SPACE`.
        data: ready arrays ``X_train, y_train, X_val, y_val`` (and optionally ``X_test, y_test``) on the host;
            when ``None``, CIFAR-10 is loaded once from ``data_dir`` (as in ``fcn train``) with the given split.
        num_samples: random draws; the number of trials is ``num_samples`` times the product of grid sizes.
        model: ``"shallow"`` (ShallowLayerNet) or ``"fc"`` (FullyConnectedNet).
        num_iters / epochs: each trial's training length (ASHA may stop a trial sooner).
        trial_num_train: train trials on this many images (``None``: all); the best is retrained on all.
        backend / dtype / seed: as in ``fcn train``; ``cupy`` trials take one GPU each.
        search_seed: seed of the random sampling (``None``: unseeded).
        engine: ``"ray"`` (Ray Tune; :class:`MissingRayError` if absent) or ``"sequential"`` (a plain loop).
        scheduler: ``"asha"`` (early stopping on ``val_acc`` per epoch) or ``"fifo"`` (none). Ray only.
        grace_period / reduction_factor: ASHA's first milestone (epochs) and the fraction 1/rf kept per rung.
        max_concurrent: at most this many trials at once (``None``: as many as resources allow).
        cpus_per_trial: CPUs Ray reserves per trial (also the BLAS threads it gives each trial).
        address: Ray cluster to join (default ``$RAY_ADDRESS``); none: a local Ray on ``num_cpus`` CPUs.
            An already initialised Ray (``ray.init`` by the caller) is used as is and left running.
        out: output folder. retrain: retrain the best configuration and save ``best_checkpoint.npz``.
    """
    if engine not in ("ray", "sequential"):
        raise SweepError(f"engine must be 'ray' or 'sequential', got {engine!r}")
    if scheduler not in ("asha", "fifo"):
        raise SweepError(f"scheduler must be 'asha' or 'fifo', got {scheduler!r}")
    if model not in ("shallow", "fc"):
        raise SweepError(f"model must be 'shallow' or 'fc', got {model!r}")
    if engine == "ray":
        _import_ray()  # fail now, with the install hint, before minutes of data loading
    t_start = time.perf_counter()
    say = (lambda *a: print(*a, flush=True)) if verbose else (lambda *a: None)
    dims = resolve_space(space, model)
    settings = TrialSettings(
        model=model,
        num_iters=num_iters if epochs is None else None,
        epochs=epochs,
        backend=backend,
        dtype=dtype,
        seed=seed,
        trial_num_train=trial_num_train,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    source = str(data_dir or os.environ.get("FCN_DATA_DIR") or "default cache") if data is None else "given arrays"
    if data is None:
        from .data import get_CIFAR10_data

        # Host arrays: the object store ships NumPy arrays; trials move them to their own device once.
        data = get_CIFAR10_data(
            num_train, num_val, num_test, root=data_dir, dtype=dtype, backend="numpy", download=download
        )
    host = {
        k: numpy.asarray(data[k]) for k in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test") if k in data
    }
    missing = [k for k in ("X_train", "y_train", "X_val", "y_val") if k not in host]
    if missing:
        raise SweepError(f"data is missing {', '.join(missing)}")
    load_s = time.perf_counter() - t0
    # Classes from every split's labels, so a small training subset missing a class still scores the test set.
    settings.num_classes = 1 + int(
        max(numpy.max(host[k]) for k in ("y_train", "y_val", "y_test") if k in host and host[k].size)
    )
    n_trials = num_samples * math.prod(d.grid_size for d in dims.values())
    searched = {k: d.to_json() for k, d in dims.items() if d.kind != "const"}
    say(
        f"data: X_train {host['X_train'].shape}, X_val {host['X_val'].shape} ({load_s:.1f} s); "
        f"{n_trials} trials over {json.dumps(searched)} with engine {engine}"
    )

    extra: dict[str, Any] = {}
    retrained_raw: tuple[dict[str, Any], bytes] | None = None
    if engine == "ray":
        rows, retrained_raw, extra = _run_ray(
            dims,
            host,
            settings,
            num_samples=num_samples,
            search_seed=search_seed,
            scheduler=scheduler,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            max_concurrent=max_concurrent,
            cpus_per_trial=cpus_per_trial,
            address=address,
            num_cpus=num_cpus,
            storage=out / "ray_results",
            retrain=retrain,
            verbose=verbose,
            say=say,
        )
    else:
        rows = _run_sequential(dims, host, settings, num_samples=num_samples, search_seed=search_seed, say=say)
    rows.sort(key=_sort_key)
    # The table first: when every trial failed it is where the errors are.
    _write_tables(rows, list(dims), out)
    best = _best_row(rows)
    if best is None:
        errors = sorted({r["error"] for r in rows if r["error"]})
        raise SweepError(
            f"no trial produced a validation accuracy ({len(rows)} trials, see {out / 'trials.csv'}); "
            f"errors: {errors[:3]}"
        )
    if retrain and engine == "sequential":
        say(f"retraining the best configuration on all {len(host['X_train'])} training images")
        retrained_raw = _retrain(best["config"], host, settings)

    retrained = None
    if retrained_raw is not None:
        info, blob = retrained_raw
        retrained = {k: v for k, v in info.items() if k != "stats"}
        retrained["config"] = best["config"]
        if blob:
            (out / "best_checkpoint.npz").write_bytes(blob)
            retrained["checkpoint"] = str(out / "best_checkpoint.npz")
        if "stats" in info:
            (out / "best_history.json").write_text(json.dumps(_json_safe(info["stats"]), indent=1) + "\n")

    plot_sweep(rows, out / "sweep.png")
    wall = time.perf_counter() - t_start
    result = SweepResult(rows, best, retrained, out, round(wall, 2), engine)
    summary = {
        "command": command,
        "engine": engine,
        "scheduler": scheduler if engine == "ray" else "none",
        "space": {k: d.to_json() for k, d in dims.items()},
        "num_samples": num_samples,
        "num_trials": len(rows),
        "status_counts": result.counts(),
        "settings": asdict(settings),
        "asha": {"grace_period": grace_period, "reduction_factor": reduction_factor} if scheduler == "asha" else None,
        "data": {
            "source": source,
            "X_train": list(host["X_train"].shape),
            "X_val": list(host["X_val"].shape),
            "X_test": list(host["X_test"].shape) if "X_test" in host else None,
            "load_seconds": round(load_s, 2),
        },
        "best": best,
        "retrained": retrained,
        "trial_seconds_total": round(sum(r["seconds"] for r in rows), 2),
        "wall_seconds": result.wall_seconds,
        "machine": _machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    result.summary = summary
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=1) + "\n")
    return result


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``fcn sweep`` options (the same names and defaults as ``fcn train`` where they overlap)."""
    space = parser.add_argument_group(
        "search space",
        "SPEC is a value (0.95), a list to choose from (100,200,400), a range lo..hi (log scale for lr,\n"
        "reg, weight scale and hidden size), or prefixed: grid:a,b  choice:a,b  log:lo..hi  uniform:lo..hi.\n"
        "The base space is --space, else lr 3e-4..1e-2, reg 1e-3..1, hidden 100,200,400; each option\n"
        "replaces one parameter's spec (--reg 0.6 fixes reg). Parameters not in the space keep fcn train's\n"
        "defaults (lr-decay 0.95, batch-size 500, ...).",
    )
    space.add_argument("--space", default=None, help="JSON or TOML file mapping parameters to specs")
    space.add_argument("--learning-rate", "--lr", dest="learning_rate", metavar="SPEC", default=None)
    space.add_argument("--reg", metavar="SPEC", default=None, help="L2 regularisation strength")
    space.add_argument("--hidden-dims", metavar="SPEC", default=None, help="hidden sizes; 512x256 is one 2-layer net")
    space.add_argument("--lr-decay", metavar="SPEC", default=None, help="learning-rate factor per epoch")
    space.add_argument("--batch-size", metavar="SPEC", default=None)
    space.add_argument("--weight-scale", metavar="SPEC", default=None, help="(default: 1e-3 shallow, 1e-2 fc)")
    space.add_argument("--update-rule", metavar="SPEC", default=None, help="sgd, sgd_momentum, rmsprop or adam")

    model = parser.add_argument_group("trials")
    model.add_argument("--model", choices=["shallow", "fc"], default="shallow")
    model.add_argument("--backend", default="numpy", help="numpy, or cupy (one trial per GPU)")
    model.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    model.add_argument("--seed", type=int, default=0, help="seed of every trial's weights and batch order")
    length = model.add_mutually_exclusive_group()
    length.add_argument("--num-iters", type=int, default=None, help="training steps per trial (default 2000)")
    length.add_argument("--epochs", type=int, default=None, help="training epochs per trial instead of --num-iters")

    search = parser.add_argument_group("search")
    search.add_argument(
        "--num-samples", type=int, default=16, help="random draws (trials = this x the product of the grid sizes)"
    )
    search.add_argument("--search-seed", type=int, default=0, help="seed of the random sampling")
    search.add_argument(
        "--engine",
        choices=["ray", "sequential"],
        default="ray",
        help="ray: Ray Tune (pip install 'fcn[sweep]'); sequential: a plain loop, no early stopping",
    )
    search.add_argument("--scheduler", choices=["asha", "fifo"], default="asha", help="asha stops bad trials early")
    search.add_argument("--grace-period", type=float, default=2.0, help="ASHA: epochs before a trial can be stopped")
    search.add_argument("--reduction-factor", type=float, default=3.0, help="ASHA: keep the best 1/rf at each rung")
    search.add_argument("--max-concurrent", type=int, default=None, help="at most this many trials at once")
    search.add_argument("--cpus-per-trial", type=float, default=1.0)
    search.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS; none: local)")
    search.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")

    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir", default=None, help="folder with cifar-10-batches-py (default: $FCN_DATA_DIR, else the user cache)"
    )
    data.add_argument("--no-download", action="store_true", help="fail instead of downloading CIFAR-10")
    data.add_argument("--num-train", type=int, default=49000)
    data.add_argument("--num-val", type=int, default=1000)
    data.add_argument("--num-test", type=int, default=1000)
    data.add_argument(
        "--trial-num-train",
        type=int,
        default=None,
        help="train trials on this many images (the best is retrained on all)",
    )

    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None, help="output folder (default: runs/sweep-<UTC time>)")
    out.add_argument("--no-retrain", action="store_true", help="skip retraining the best configuration")
    out.add_argument("--quiet", action="store_true", help="no progress output")


def sweep_command(args: argparse.Namespace) -> SweepResult:
    """Run ``fcn sweep`` from parsed arguments; prints the best trials and where the results are."""
    given = {k: getattr(args, k) for k in PARAMETERS if getattr(args, k, None) is not None}
    try:
        # The file (or the default space) is the base; each option replaces one parameter's spec, so
        # "--lr-decay 0.9..0.99" adds decay to the default search instead of replacing it.
        base = load_space(args.space) if args.space is not None else dict(DEFAULT_SPACE)
        space: Mapping[str, Any] = {**base, **{k: parse_spec(k, v) for k, v in given.items()}}
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        result = run_sweep(
            space,
            data_dir=args.data_dir,
            num_train=args.num_train,
            num_val=args.num_val,
            num_test=args.num_test,
            download=not args.no_download,
            num_samples=args.num_samples,
            model=args.model,
            num_iters=args.num_iters if args.num_iters is not None or args.epochs is not None else 2000,
            epochs=args.epochs,
            trial_num_train=args.trial_num_train,
            backend=args.backend,
            dtype=args.dtype,
            seed=args.seed,
            search_seed=args.search_seed,
            engine=args.engine,
            scheduler=args.scheduler,
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
            max_concurrent=args.max_concurrent,
            cpus_per_trial=args.cpus_per_trial,
            address=args.address,
            num_cpus=args.num_cpus,
            out=args.out or f"runs/sweep-{stamp}",
            retrain=not args.no_retrain,
            verbose=not args.quiet,
            command=" ".join(["fcn", *getattr(args, "argv", ["sweep"])]),
        )
    except SweepError as exc:
        # Same convention as fcn train: a one-line message and exit status 1, no traceback.
        raise SystemExit(f"fcn sweep: {exc}") from None

    print(
        f"{len(result.trials)} trials ({', '.join(f'{n} {s}' for s, n in result.counts().items())}) "
        f"in {result.wall_seconds:.1f} s"
    )
    for row in result.trials[:5]:
        print(f"  {row['best_val_acc']:.4f}  {row['status']:<9} {row['iterations']:>5} it  {_describe(row['config'])}")
    best = result.best or {}
    print(f"best: val acc {best.get('best_val_acc', float('nan')):.4f} with {_describe(best.get('config', {}))}")
    if result.retrained:
        r = result.retrained
        print(f"retrained on the full training split: val acc {r['val_acc']:.4f}, test acc {r['test_acc']:.4f}")
    print(
        f"outputs in {result.out}/ (trials.csv, trials.json, summary.json, sweep.png"
        f"{', best_checkpoint.npz' if result.retrained else ''})"
    )
    return result
