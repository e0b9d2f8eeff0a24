"""The engines that run a sweep's trials: Ray Tune with ASHA (optional), or a plain loop in this process.

Both take the resolved space, the host arrays and the shared :class:`TrialSettings`, and return the trial rows
(unsorted), the best configuration retrained on the full training split (or ``None``) and engine facts for the
summary.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .results import best_row, describe, trial_row
from .space import Dimension, SweepError, normalise_config, sample_configs
from .trial import TrialSettings, retrain_full, train_trial

RAY_MISSING_MESSAGE = (
    'fcn sweep needs Ray Tune, which is not installed: pip install "fcn-cifar[sweep]" (or pip install "ray[tune]"). '
    "For a small sweep without Ray, use --engine sequential (run_sweep(..., engine='sequential'))."
)

Retrained = tuple[dict[str, Any], bytes]


class MissingRayError(SweepError, ImportError):
    """Ray Tune is not installed; the message names the extra to install."""


def import_ray() -> tuple[Any, Any]:
    """``(ray, ray.tune)``, or :class:`MissingRayError` naming the extra to install."""
    try:
        import ray
        from ray import tune
    except ImportError as exc:
        raise MissingRayError(RAY_MISSING_MESSAGE) from exc
    return ray, tune


# --------------------------------------------------------------------------------------------------------------
# Ray Tune
# --------------------------------------------------------------------------------------------------------------


def _ray_trial(config: dict[str, Any], data: Mapping[str, Any], settings: TrialSettings) -> None:
    """The Tune function trainable: train, reporting every epoch.

    ``tune.with_parameters`` resolves the object-store reference it was given, so ``data`` arrives as the
    arrays themselves, mapped read-only (zero copy) from this node's store.
    """
    from ray import tune

    train_trial(config, data, settings, report=tune.report)


def _error_line(exc: BaseException) -> str:
    """``Type: message``, first line only and at most 300 characters: one table cell."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _ray_error_text(error: BaseException) -> str:
    """One line naming a failed trial's exception: the trial's own error, not Ray's wrapper around it."""
    cause = getattr(error, "cause", None)  # RayTaskError keeps the exception raised in the trial here
    if isinstance(cause, BaseException):
        return _error_line(cause)
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


def _start_ray(ray: Any, address: str | None, num_cpus: int | None) -> None:
    # Trials print nothing themselves and their errors come back in the results, so worker output is only
    # Ray's own shutdown noise (idle actors get SIGTERM); it stays in the session logs (log_to_driver=False).
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        # In-process local cluster on this machine's cores; no dashboard (it costs seconds and memory).
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        return
    # Ship this fcn package to the cluster's workers (py_modules), so nodes need only the dependencies and
    # always run the same code as the driver.
    import fcn

    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False, runtime_env={"py_modules": [fcn]})
    except (ConnectionError, RuntimeError) as exc:
        raise SweepError(
            f"cannot join the Ray cluster at {address} ({str(exc).splitlines()[0]}); check the address "
            "(ray status on the head node) and, with Ray's token authentication, this machine's token"
        ) from exc


def _ray_row(result: Any, names: list[str]) -> dict[str, Any]:
    """The table row of one finished Tune trial."""
    m = dict(result.metrics or {})
    if result.error is not None:
        status, error = "error", _ray_error_text(result.error)
    elif m.get("diverged"):
        status, error = "diverged", str(m.get("error", ""))
    elif m.get("iteration", 0) >= m.get("num_iters", math.inf):
        status, error = "completed", ""
    else:
        status, error = "stopped", ""  # ASHA cut it: behind its peers at a milestone
    nan = float("nan")
    return trial_row(
        m.get("trial_id") or Path(str(result.path)).name,
        status,
        normalise_config({k: result.config.get(k) for k in names}),
        best_val_acc=m.get("best_val_acc", nan) if status in ("completed", "stopped") else nan,
        last_val_acc=m.get("val_acc", nan) if status != "error" else nan,
        iterations=int(m.get("iteration", 0)),
        epochs=round(float(m.get("epoch", 0.0)), 3),
        seconds=round(float(m.get("time_total_s", 0.0)), 2),
        error=error,
    )


def run_ray(
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
) -> tuple[list[dict[str, Any]], Retrained | None, dict[str, Any]]:
    """Run the trials on Ray Tune (joining ``address`` or starting a local Ray unless one is running)."""
    ray, tune = import_ray()
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    started = not ray.is_initialized()  # a Ray the caller started is used as is and left running
    if started:
        _start_ray(ray, address, num_cpus)
    try:
        resources = ray.cluster_resources()
        cluster = {"cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0), "nodes": len(ray.nodes())}
        say(f"ray {ray.__version__}: {cluster['nodes']} node(s), {cluster['cpus']:g} CPUs, {cluster['gpus']:g} GPUs")
        gpus = 1 if settings.backend == "cupy" else 0  # one trial per GPU

        # One copy in the object store; trials and the retraining task all read this one object.
        data_ref = ray.put(data)
        trainable = tune.with_resources(
            tune.with_parameters(_ray_trial, data=data_ref, settings=settings), {"cpu": cpus_per_trial, "gpu": gpus}
        )
        if scheduler == "asha":
            sched = ASHAScheduler(
                time_attr="epoch",
                metric="val_acc",
                mode="max",
                max_t=max(_max_epochs(space, settings, len(data["X_train"])), grace_period),
                grace_period=grace_period,
                reduction_factor=reduction_factor,
            )
        else:
            sched = FIFOScheduler()
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
            results = tuner.fit()
        rows = [_ray_row(result, list(space)) for result in results]

        retrained = None
        best = best_row(rows)
        if retrain and best is not None:
            # A Ray task with a trial's resources, so on a cluster it runs where a trial could (a GPU for
            # cupy), reading the same object-store copy of the data; it runs now, while Ray is still up.
            task = ray.remote(retrain_full).options(num_cpus=cpus_per_trial, num_gpus=gpus)
            say(f"retraining the best configuration on all {len(data['X_train'])} training images")
            retrained = ray.get(task.remote(best["config"], data_ref, settings))
        return rows, retrained, {"ray_version": ray.__version__, "cluster": cluster, "storage": str(storage)}
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------------------------------------------
# Sequential
# --------------------------------------------------------------------------------------------------------------


def run_sequential(
    space: dict[str, Dimension],
    data: dict[str, Any],
    settings: TrialSettings,
    *,
    num_samples: int,
    search_seed: int | None,
    retrain: bool,
    say: Callable[..., None],
) -> tuple[list[dict[str, Any]], Retrained | None, dict[str, Any]]:
    """Run the sampled configurations one after another in this process, with no early stopping."""
    configs = sample_configs(space, num_samples, search_seed)
    rows = []
    for i, config in enumerate(configs):
        t0 = time.perf_counter()
        try:
            outcome, solver = train_trial(config, data, settings)
        except Exception as exc:  # a failing trial is recorded, not fatal; all-failed is reported by run_sweep
            row = trial_row(f"trial_{i:04d}", "error", config, error=_error_line(exc))
        else:
            completed = outcome["status"] == "completed"
            row = trial_row(
                f"trial_{i:04d}",
                outcome["status"],
                config,
                best_val_acc=outcome["best_val_acc"],
                last_val_acc=solver.val_acc_history[-1] if completed and solver.val_acc_history else float("nan"),
                iterations=outcome["iterations"],
                epochs=outcome["epochs"],
                error=outcome["error"],
            )
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        say(f"trial {i + 1}/{len(configs)}: {describe(config)} -> {row['status']}, best val {row['best_val_acc']:.4f}")

    retrained = None
    best = best_row(rows)
    if retrain and best is not None:
        say(f"retraining the best configuration on all {len(data['X_train'])} training images")
        retrained = retrain_full(best["config"], data, settings)
    return rows, retrained, {}
