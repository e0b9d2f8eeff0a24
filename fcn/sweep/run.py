"""``run_sweep``: start or join Ray, load the data once, run the trials on Ray Tune, write tables, plot, summary."""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy

from ..factory import MODELS
from ..sysinfo import machine_info
from .results import SweepResult, plot_sweep, sort_rows, write_file, write_json, write_tables
from .space import SweepError, SweepInputError, parse_value, resolve_space, to_tune
from .trial import TrialSettings, retrain_full, train_trial

RAY_MISSING_MESSAGE = 'Ray Tune is not installed (fcn sweep runs its trials on it): pip install "fcn-cifar[sweep]"'
_SPLITS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
_PREPROCESSING = ("mean_image", "class_names")  # what the model file records of how its inputs were prepared


class MissingRayError(SweepError, ImportError):
    """Ray Tune is not installed; the message names the extra to install."""


def _number(what: str, check: Callable[[float], bool], optional: bool = False) -> tuple[str, Callable[[Any], bool]]:
    """A rule for a numeric argument: a finite real number (not a bool) passing ``check``; ``None`` if ``optional``."""

    def ok(value: Any) -> bool:
        if value is None:
            return optional
        number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        return number and check(value)

    return what, ok


_COUNT = _number("a positive integer", lambda v: float(v).is_integer() and v >= 1)
_COUNT_OR_NONE = _number("a positive integer", lambda v: float(v).is_integer() and v >= 1, optional=True)

#: What each argument of :func:`run_sweep` must be: (what it is, the check), checked before anything is read
#: or started. Ray's ASHA asserts ``grace_period > 0`` and ``reduction_factor > 1``; a factor just above 1
#: builds millions of rungs, so 2 (each rung keeps the better half) is the least accepted.
SWEEP_ARGUMENTS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "num_samples": _COUNT,
    "num_iters": _COUNT_OR_NONE,
    "epochs": _COUNT_OR_NONE,
    "trial_num_train": _COUNT_OR_NONE,
    "grace_period": _number("a number > 0", lambda v: v > 0),
    "reduction_factor": _number("a number >= 2", lambda v: v >= 2),
    "max_concurrent": _COUNT_OR_NONE,
    "cpus_per_trial": _number("a number > 0", lambda v: v > 0),
    "num_cpus": _COUNT_OR_NONE,
    "search_seed": _number("an integer >= 0", lambda v: float(v).is_integer() and v >= 0, optional=True),
    "scheduler": ("'asha' or 'fifo'", lambda v: v in ("asha", "fifo")),
    "model": (" or ".join(repr(m) for m in MODELS), lambda v: v in MODELS),
}


def check_sweep_arguments(values: Mapping[str, Any]) -> None:
    """Check the arguments of :func:`run_sweep` in ``values`` against :data:`SWEEP_ARGUMENTS`, the trials'
    length, and that there is a validation set to rank them by (``data`` or ``num_val``); others are not looked
    at. :class:`SweepInputError` naming the first bad one. Nothing is read or started."""
    for name, value in values.items():
        if name in SWEEP_ARGUMENTS and not SWEEP_ARGUMENTS[name][1](value):
            raise SweepInputError(f"must be {SWEEP_ARGUMENTS[name][0]}, got {value!r}", argument=name)
    if values.get("num_iters", 1) is None and values.get("epochs") is None:
        raise SweepInputError("give each trial a length: num_iters or epochs")
    # trials are ranked by validation accuracy: without validation samples there is no ranking
    data = values.get("data")
    if data is not None and "y_val" in data and not len(data["y_val"]):
        raise SweepInputError("has no validation samples (y_val is empty); trials are ranked by them", argument="data")
    if data is None and values.get("num_val", 1) < 1:
        why = "trials are ranked by validation accuracy"
        raise SweepInputError(f"must be at least 1 ({why}), got {values['num_val']}", argument="num_val")


def _ray_trial(config: dict[str, Any], data: Mapping[str, Any], settings: TrialSettings) -> None:
    """The Tune trainable. ``tune.with_parameters`` hands it the object-store arrays (read-only, zero copy)."""
    from ray import tune

    train_trial(config, data, settings, report=tune.report)


def _error_text(error: BaseException) -> str:
    """One line naming a failed trial's exception: the trial's own error, not Ray's wrapper around it."""
    cause = getattr(error, "cause", None)  # RayTaskError keeps the exception raised in the trial here
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0][:300]
    lines = [line for line in str(error).splitlines() if line.strip()]  # a traceback ends with "Type: message"
    return (lines[-1] if lines else type(error).__name__)[:300]


def trial_row(result: Any, names: Sequence[str], ended: set[str]) -> dict[str, Any]:
    """The table row of one Tune result; ``ended``: the ids of the trials Tune saw end (or ASHA stop).

    Any other trial was cut short by an interrupted sweep: it may have no metrics and no config at all.
    """
    m = dict(result.metrics or {})
    trial_id, iterations = m.get("trial_id") or Path(str(result.path)).name, int(m.get("iteration", 0))
    status, error = "stopped", ""  # by ASHA: behind its peers at a milestone
    if result.error is not None:
        status, error = "error", _error_text(result.error)
    elif m.get("diverged"):
        status, error = "diverged", str(m.get("error", ""))
    elif trial_id not in ended:
        status = "interrupted"
    elif iterations > 0 and iterations >= m.get("num_iters", math.inf):
        status = "completed"
    config = m.get("config") or {}
    nan = float("nan")
    return {
        "trial": trial_id,
        "status": status,
        "best_val_acc": float(m.get("best_val_acc", nan)) if status in ("completed", "stopped") else nan,
        "last_val_acc": float(m.get("val_acc", nan)) if status != "error" else nan,
        "iterations": iterations,
        "epochs": round(float(m.get("epoch", 0.0)), 3),
        "seconds": round(float(m.get("time_total_s", 0.0)), 2),
        # hidden sizes as lists, also where an integer range drew a plain int
        "config": {k: parse_value(k, config[k]) if k == "hidden_dims" else config[k] for k in names if k in config},
        "error": error,
    }


def _start_ray(ray: Any, address: str | None, num_cpus: int | None) -> None:
    # Trials print nothing and their errors come back in the results: worker output stays in Ray's logs.
    if not address:  # in-process local cluster on this machine's cores; no dashboard (it costs seconds)
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        return
    import fcn  # shipped to the workers (py_modules): nodes need only the dependencies, and run this code

    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False, runtime_env={"py_modules": [fcn]})
    except (ConnectionError, RuntimeError) as exc:
        raise SweepError(
            f"cannot join the Ray cluster at {address} ({str(exc).splitlines()[0]}); check the address "
            "(ray status on the head node) and, with Ray's token authentication, this machine's token"
        ) from exc


@dataclass
class _Plan:
    """What one :func:`run_sweep` does, gathered once so that each of its steps takes it whole."""

    dims: dict[str, Any]  # every parameter's canonical spec
    settings: TrialSettings
    out: Path
    num_samples: int
    scheduler: str
    grace_period: float
    reduction_factor: float
    search_seed: int | None
    max_concurrent: int | None
    cpus_per_trial: float
    gpus: int  # per trial: one for cupy
    verbose: bool
    callbacks: tuple[Any, ...]
    command: str | None
    recorded_data_dir: str | None  # the data folder as fcn train records it; None: arrays given in Python

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> _Plan:
        """The plan of a :func:`run_sweep` call from its ``arguments`` (by name): those of the same name, and
        what is derived from the others."""
        a = arguments
        same = {f.name: a[f.name] for f in fields(cls) if f.name in a}
        settings = TrialSettings(
            a["model"], None if a["epochs"] else a["num_iters"], a["epochs"], a["backend"], a["dtype"], a["seed"],
            a["trial_num_train"],
        )  # fmt: skip
        data_dir = (
            None if a["data"] is not None else str(a["data_dir"] or os.environ.get("FCN_DATA_DIR") or "default cache")
        )
        return cls(
            **{**same, "out": Path(a["out"]), "callbacks": tuple(a["callbacks"])},
            dims=resolve_space(a["space"], a["model"]), settings=settings, gpus=1 if a["backend"] == "cupy" else 0,
            recorded_data_dir=data_dir,
        )  # fmt: skip

    def say(self, *parts: Any) -> None:
        if self.verbose:
            print(*parts, flush=True)


def _import_ray() -> Any:
    """The ``ray`` module, with Tune importable; :class:`MissingRayError` naming the extra without it."""
    try:
        import ray
        import ray.tune  # noqa: F401  (Tune has its own dependencies: check them now too)
    except ImportError as exc:
        raise MissingRayError(RAY_MISSING_MESSAGE) from exc
    return ray


def _load_data(
    plan: _Plan,
    data: Mapping[str, Any] | None,
    data_dir: Any,
    sizes: tuple[int, int, int],
    dtype: str,
    download: bool,
) -> tuple[dict[str, numpy.ndarray], float]:
    """The host arrays every trial reads (``data``, or CIFAR-10 as ``fcn train`` loads it) and the seconds it
    took; sets ``plan.settings.num_classes``."""
    t0 = time.perf_counter()
    if data is None:
        from ..data import get_CIFAR10_data

        # Host arrays: the object store ships NumPy arrays; trials move them to their own device once.
        data = get_CIFAR10_data(*sizes, root=data_dir, dtype=dtype, download=download)
    host = {k: numpy.asarray(data[k]) for k in (*_SPLITS, *_PREPROCESSING) if k in data}
    if any(k not in host for k in _SPLITS[:4]):
        raise SweepError(f"data needs {', '.join(_SPLITS[:4])}; got {', '.join(host)}")
    load_s = time.perf_counter() - t0
    # Classes from every split's labels, so a small training subset missing a class still scores the test set.
    plan.settings.num_classes = 1 + int(max(numpy.max(host[k]) for k in _SPLITS[1::2] if k in host and host[k].size))
    dims = plan.dims
    n_trials = plan.num_samples * math.prod(
        len(v["grid"]) for v in dims.values() if isinstance(v, dict) and "grid" in v
    )
    searched = {k: v for k, v in dims.items() if isinstance(v, dict)}
    plan.say(f"data: X_train {host['X_train'].shape} ({load_s:.1f} s); {n_trials} trials over {searched}")
    return host, load_s


def _check_cluster(ray: Any, plan: _Plan) -> dict[str, Any]:
    """The Ray cluster's CPUs, GPUs and nodes; :class:`SweepError` if it lacks what one trial asks for (Tune
    would wait for them forever)."""
    res = ray.cluster_resources()
    cluster = {"cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0), "nodes": len(ray.nodes())}
    plan.say(f"ray {ray.__version__}: {cluster['nodes']} node(s), {cluster['cpus']:g} CPUs, {cluster['gpus']:g} GPUs")
    if cluster["gpus"] < plan.gpus:
        raise SweepError("backend cupy runs each trial on a GPU, but the Ray cluster has no GPU")
    if cluster["cpus"] < plan.cpus_per_trial:
        raise SweepError(f"cpus_per_trial is {plan.cpus_per_trial:g} but the Ray cluster has {cluster['cpus']:g} CPUs")
    return cluster


def _scheduler(plan: _Plan) -> Any:
    """ASHA on the trials' epochs (its ``max_t`` bounds them: steps are a safe bound, an epoch is at least one
    step), or FIFO."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if plan.scheduler != "asha":
        return FIFOScheduler()
    length = plan.settings.epochs or plan.settings.num_iters or 1
    return ASHAScheduler(
        time_attr="epoch", metric="val_acc", mode="max", max_t=max(float(length), plan.grace_period),
        grace_period=plan.grace_period, reduction_factor=plan.reduction_factor,
    )  # fmt: skip


def _run_trials(plan: _Plan, data_ref: Any) -> list[dict[str, Any]]:
    """Run the trials on Tune; one :func:`trial_row` per trial (Ctrl-C: Tune stops them and returns what it has)."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    ended: set[str] = set()

    class _Ended(tune.Callback):  # the trials Tune saw end or stop; others were cut short by an interrupt
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            ended.add(trial.trial_id)

    trainable = tune.with_parameters(_ray_trial, data=data_ref, settings=plan.settings)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": plan.cpus_per_trial, "gpu": plan.gpus}),
        param_space={k: to_tune(v, tune) for k, v in plan.dims.items()},
        tune_config=tune.TuneConfig(
            num_samples=plan.num_samples,
            scheduler=_scheduler(plan),
            search_alg=BasicVariantGenerator(random_state=plan.search_seed),
            max_concurrent_trials=plan.max_concurrent,
            reuse_actors=True,  # the trainable is stateless between trials; saves an actor start per trial
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str((plan.out / "ray_results").resolve()),
            verbose=1 if plan.verbose else 0,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[_Ended(), *plan.callbacks],
        ),
    )
    with warnings.catch_warnings():
        # ASHA takes a nan-percentile of each rung; a rung of only diverged (NaN) trials warns, harmlessly.
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        results = tuner.fit()
    return [trial_row(result, list(plan.dims), ended) for result in results]


def _rank(rows: list[dict[str, Any]], plan: _Plan, interrupted: bool) -> dict[str, Any] | None:
    """Sort ``rows`` best first, write the tables, return the best row; :class:`SweepError` when no trial of a
    sweep that ran to its end produced an accuracy."""
    best = sort_rows(rows)
    out = plan.out
    write_tables(rows, list(plan.dims), out)  # first: when every trial failed, the table is where the errors are
    if best is None and not interrupted:
        errors = sorted({r["error"] for r in rows if r["error"]})
        table = out / "trials.csv"
        raise SweepError(
            f"no trial produced a validation accuracy ({len(rows)} trials, see {table}); errors: {errors[:3]}"
        )
    return best


def _retrain_best(ray: Any, plan: _Plan, config: Mapping[str, Any], data_ref: Any) -> dict[str, Any]:
    """Train the best configuration on the full training split and write its files; what ``retrained`` records.

    A Ray task with a trial's resources, so on a cluster it runs where a trial could (a GPU for cupy)."""
    task = ray.remote(retrain_full).options(num_cpus=plan.cpus_per_trial, num_gpus=plan.gpus)
    info, files = ray.get(task.remote(config, data_ref, plan.settings))
    retrained = {**{k: v for k, v in info.items() if k != "stats"}, "config": config}
    if files:
        retrained.update(_write_best(plan, info, files, config))
    return retrained


def _write_best(plan: _Plan, info: Mapping[str, Any], files: Mapping[str, bytes], config: Any) -> dict[str, str]:
    """The retrained best configuration's files in ``out``, as ``fcn train`` writes a run's: ``model.npz`` (for
    ``fcn evaluate`` / ``fcn predict``), ``history.json`` and its checkpoint ``best_checkpoint.npz``."""
    out = plan.out
    write_file(out / "model.npz", files["model"])
    write_file(out / "best_checkpoint.npz", files["checkpoint"])
    history = {
        "command": plan.command, "config": config, "settings": info["settings"], "model": info["model"],
        "data_dir": plan.recorded_data_dir, "iterations": info["iterations"], "best_val_acc": info["best_val_acc"],
        "val_acc": info["val_acc"], "test_acc": info["test_acc"], "train_seconds": info["train_seconds"],
        "machine": machine_info(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info["stats"],
    }  # fmt: skip
    write_json(out / "history.json", history)
    return {"model_file": str(out / "model.npz"), "checkpoint": str(out / "best_checkpoint.npz")}


def _summary(
    plan: _Plan, result: SweepResult, host: Mapping[str, numpy.ndarray], load_s: float, cluster: Any, version: str
) -> dict[str, Any]:
    """What ``summary.json`` records of a sweep."""
    rows = result.trials
    return {
        "command": plan.command, "space": plan.dims, "num_samples": plan.num_samples, "num_trials": len(rows),
        "status_counts": result.counts(), "interrupted": result.interrupted, "settings": asdict(plan.settings),
        "scheduler": plan.scheduler,
        "asha": {"grace_period": plan.grace_period, "reduction_factor": plan.reduction_factor},
        "data": {"source": plan.recorded_data_dir or "given arrays", "load_seconds": round(load_s, 2),
                 **{k: list(host[k].shape) for k in _SPLITS[::2] if k in host}},
        "best": result.best, "retrained": result.retrained,
        "trial_seconds_total": round(sum(r["seconds"] for r in rows), 2), "wall_seconds": result.wall_seconds,
        "ray_version": version, "cluster": cluster, "machine": machine_info(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip


def run_sweep(
    space: Mapping[str, Any] | str | os.PathLike[str] | None = None, *,
    data: Mapping[str, Any] | None = None, data_dir: str | os.PathLike[str] | None = None,
    num_train: int = 49000, num_val: int = 1000, num_test: int = 1000, download: bool = True,
    num_samples: int = 16, model: str = "shallow", num_iters: int | None = 2000, epochs: int | None = None,
    trial_num_train: int | None = None, backend: str = "numpy", dtype: str = "float32", seed: int = 0,
    search_seed: int | None = 0, scheduler: str = "asha", grace_period: float = 2.0, reduction_factor: float = 3.0,
    max_concurrent: int | None = None, cpus_per_trial: float = 1.0, address: str | None = None,
    num_cpus: int | None = None, out: str | os.PathLike[str] = "runs/sweep", retrain: bool = True,
    verbose: bool = True, command: str | None = None, callbacks: Sequence[Any] = (),
) -> SweepResult:  # fmt: skip
    """Run a hyperparameter sweep on Ray Tune and write its results to ``out``; see :mod:`fcn.sweep`.

    ``space``: parameter -> spec (:func:`parse_spec`), or a JSON/TOML file; ``None``: :data:`DEFAULT_SPACE`.
    ``data``: host arrays ``X_train, y_train, X_val, y_val`` (``X_test, y_test`` optional); ``None`` loads
    CIFAR-10 from ``data_dir`` as ``fcn train`` does. ``num_samples`` random draws, each times the product of
    the grid sizes. Each trial trains ``model`` (``"shallow"`` or ``"fc"``) for ``num_iters`` steps, or
    ``epochs`` epochs when given, on the first ``trial_num_train`` images (``None``: all) with ``backend``,
    ``dtype`` and ``seed`` as in ``fcn train`` (``cupy``: one GPU per trial). ``scheduler`` ``"asha"`` stops
    trials behind their peers (first milestone ``grace_period`` epochs, keeps 1/``reduction_factor`` per
    rung); ``"fifo"`` runs all to the end. Ray: ``address`` (default ``$RAY_ADDRESS``) joins a cluster, else
    a local Ray starts on ``num_cpus`` CPUs; an already initialised Ray is used as is and left running.
    ``retrain``: train the best configuration on the full training split and write it as ``fcn train`` does
    (``model.npz``, ``history.json``; its checkpoint ``best_checkpoint.npz``).
    ``callbacks``: more Tune callbacks (``ray.tune.Callback``), e.g. a logger.
    """
    arguments = dict(locals())  # run_sweep's arguments, by name: nothing else is bound yet
    check_sweep_arguments(arguments)
    ray = _import_ray()  # before anything slow, so a missing extra is the first thing said
    t_start = time.perf_counter()
    plan = _Plan.of(arguments)
    host, load_s = _load_data(plan, data, data_dir, (num_train, num_val, num_test), dtype, download)

    started = not ray.is_initialized()  # a Ray the caller started is used as is and left running
    if started:
        _start_ray(ray, address or os.environ.get("RAY_ADDRESS"), num_cpus)
    try:
        cluster = _check_cluster(ray, plan)
        plan.out.mkdir(parents=True, exist_ok=True)  # only now: a sweep that cannot start leaves nothing behind
        data_ref = ray.put(host)  # one copy in the object store, read by every trial and the retraining
        rows = _run_trials(plan, data_ref)
        interrupted = any(r["status"] == "interrupted" for r in rows)
        best = _rank(rows, plan, interrupted)
        retrained = None
        if retrain and best is not None and not interrupted:
            plan.say(f"retraining the best configuration on all {len(host['X_train'])} training images")
            retrained = _retrain_best(ray, plan, best["config"], data_ref)
    finally:
        if started:
            ray.shutdown()

    plot_sweep(rows, plan.out / "sweep.png")
    result = SweepResult(rows, best, retrained, plan.out, round(time.perf_counter() - t_start, 2), interrupted)
    result.summary = _summary(plan, result, host, load_s, cluster, ray.__version__)
    write_json(plan.out / "summary.json", result.summary)
    return result
