"""``run_sweep``: load the data once, run the trials on an engine, write the tables, plot and summary."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy

from ..sysinfo import machine_info
from .engines import import_ray, run_ray, run_sequential
from .results import SweepResult, best_row, plot_sweep, sort_key, write_json, write_tables
from .space import SweepError, resolve_space
from .trial import TrialSettings

_SPLITS = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


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
    """Run a hyperparameter sweep and write its results to ``out``; see :mod:`fcn.sweep`.

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
        import_ray()  # fail now, with the install hint, before minutes of data loading
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
    if data is None:
        from ..data import get_CIFAR10_data

        # Host arrays: the object store ships NumPy arrays; trials move them to their own device once.
        data = get_CIFAR10_data(
            num_train, num_val, num_test, root=data_dir, dtype=dtype, backend="numpy", download=download
        )
        source = str(data_dir or os.environ.get("FCN_DATA_DIR") or "default cache")
    else:
        source = "given arrays"
    host = {k: numpy.asarray(data[k]) for k in _SPLITS if k in data}
    missing = [k for k in _SPLITS[:4] if k not in host]
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

    if engine == "ray":
        rows, retrained_raw, extra = run_ray(
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
        rows, retrained_raw, extra = run_sequential(
            dims, host, settings, num_samples=num_samples, search_seed=search_seed, retrain=retrain, say=say
        )
    rows.sort(key=sort_key)
    # The table first: when every trial failed it is where the errors are.
    write_tables(rows, list(dims), out)
    best = best_row(rows)
    if best is None:
        errors = sorted({r["error"] for r in rows if r["error"]})
        raise SweepError(
            f"no trial produced a validation accuracy ({len(rows)} trials, see {out / 'trials.csv'}); "
            f"errors: {errors[:3]}"
        )

    retrained = None
    if retrained_raw is not None:
        info, blob = retrained_raw
        retrained = {k: v for k, v in info.items() if k != "stats"}
        retrained["config"] = best["config"]
        if blob:
            (out / "best_checkpoint.npz").write_bytes(blob)
            retrained["checkpoint"] = str(out / "best_checkpoint.npz")
        if "stats" in info:
            write_json(out / "best_history.json", info["stats"])

    plot_sweep(rows, out / "sweep.png")
    result = SweepResult(rows, best, retrained, out, round(time.perf_counter() - t_start, 2), engine)
    result.summary = {
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
        "machine": machine_info(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    write_json(out / "summary.json", result.summary)
    return result
