"""A sweep's results: the trial rows, :class:`SweepResult`, the ``trials.csv``/``trials.json`` tables and the plot."""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

from .space import parse_value

_NAN = float("nan")


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
        return dict(Counter(row["status"] for row in self.trials))


def trial_row(
    trial: str,
    status: str,
    config: dict[str, Any],
    *,
    best_val_acc: float = _NAN,
    last_val_acc: float = _NAN,
    iterations: int = 0,
    epochs: float = 0.0,
    seconds: float = 0.0,
    error: str = "",
) -> dict[str, Any]:
    """One row of the results table (the fields :class:`SweepResult` lists, in table order)."""
    return {
        "trial": trial,
        "status": status,
        "best_val_acc": best_val_acc,
        "last_val_acc": last_val_acc,
        "iterations": iterations,
        "epochs": epochs,
        "seconds": seconds,
        "config": config,
        "error": error,
    }


def _scored(row: Mapping[str, Any]) -> bool:
    acc = row["best_val_acc"]
    return isinstance(acc, float) and math.isfinite(acc)


def best_row(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The best trial, or ``None`` when none produced a validation accuracy."""
    scored = [r for r in rows if _scored(r)]
    if not scored:
        return None
    # Highest accuracy; ties go to the trial that trained longest (a completed run over an ASHA-stopped one).
    return dict(max(scored, key=lambda r: (r["best_val_acc"], r["iterations"])))


def sort_key(row: Mapping[str, Any]) -> tuple[bool, float]:
    """Best accuracy first; unscored (diverged, failed) trials last."""
    ok = _scored(row)
    return (not ok, -row["best_val_acc"] if ok else 0.0)


def _hidden_text(value: Any) -> str:
    dims = value if isinstance(value, (list, tuple)) else [value]
    return "x".join(str(int(d)) for d in dims)


def describe(config: Mapping[str, Any]) -> str:
    """A configuration on one line: ``learning_rate=0.001 reg=0.6 hidden=512x256 ...``."""
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


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as strict JSON (NaN as ``null``), one key per line."""
    path.write_text(json.dumps(_json_safe(obj), indent=1) + "\n")


def write_tables(rows: Sequence[Mapping[str, Any]], names: Sequence[str], out: Path) -> None:
    """``trials.json`` and ``trials.csv`` in ``out``: one row per trial, the parameters ``names`` as columns."""
    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k not in ("config", "error")}
        flat.append({**item, **row["config"], "error": row["error"]})
    write_json(out / "trials.json", flat)
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
        sizes = [20 + 0.25 * sum(parse_value("hidden_dims", r["config"].get("hidden_dims", 100))) for r in ok]
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
