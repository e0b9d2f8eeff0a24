"""A sweep's results: the trial rows, :class:`SweepResult`, the ``trials.csv``/``trials.json`` tables and the plot."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

from ..atomic import write_atomic

#: The columns of the trials table before the parameters (then ``error``). ``best_val_acc`` is NaN unless
#: the trial ``completed`` or was ``stopped`` early by ASHA; other statuses: ``diverged``, ``error``, and
#: ``interrupted`` (the sweep was stopped, e.g. by Ctrl-C, before this trial ended).
COLUMNS = ("trial", "status", "best_val_acc", "last_val_acc", "iterations", "epochs", "seconds")
RANKED = ("completed", "stopped")


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns (and writes to ``out``).

    ``trials`` are rows sorted best first: the :data:`COLUMNS`, ``config`` (every tunable parameter) and
    ``error``. ``best`` is the best row (``None`` only when interrupted before any trial ended);
    ``retrained`` the best configuration trained again on the full training split (``val_acc``,
    ``test_acc``, ``model_file``, ``checkpoint``), or ``None`` when skipped; ``interrupted``: the sweep was
    stopped early.
    """

    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    retrained: dict[str, Any] | None
    out: Path
    wall_seconds: float
    interrupted: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of trials per status."""
        return dict(Counter(row["status"] for row in self.trials))


def ranked(row: Mapping[str, Any]) -> bool:
    """Whether a row competes for best: it ended normally (or by ASHA), trained, and has an accuracy."""
    acc = row["best_val_acc"]
    return row["status"] in RANKED and row["iterations"] > 0 and isinstance(acc, float) and math.isfinite(acc)


def sort_rows(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Sort ``rows`` best first in place (unranked last) and return the best, or ``None``.

    Ties go to the trial that trained longest (a completed run over an ASHA-stopped one)."""
    rows.sort(key=lambda r: (not ranked(r), -r["best_val_acc"] if ranked(r) else 0.0, -r["iterations"]))
    return dict(rows[0]) if rows and ranked(rows[0]) else None


def _hidden_text(value: Any) -> str:
    return "x".join(str(int(d)) for d in (value if isinstance(value, (list, tuple)) else [value]))


def describe(config: Mapping[str, Any]) -> str:
    """A configuration on one line: ``learning_rate=0.001 reg=0.6 hidden=512x256 ...``."""
    return " ".join(
        f"hidden={_hidden_text(v)}" if k == "hidden_dims" else f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in config.items()
    )


def _json_safe(obj: Any) -> Any:
    """NaN/inf become ``null`` (strict JSON has no NaN); NumPy scalars and paths become plain values."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, numpy.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return str(obj) if isinstance(obj, Path) else obj


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as every fcn file is written (:func:`fcn.atomic.write_atomic`): a reader sees the
    old file or the new one, never half of it, and a symlink at ``path`` is replaced, not followed."""
    write_atomic(path, lambda f: f.write(data))


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as strict JSON (NaN as ``null``), one key per line (atomically, :func:`write_file`)."""
    write_file(path, (json.dumps(_json_safe(obj), indent=1) + "\n").encode())


def write_tables(rows: Sequence[Mapping[str, Any]], names: Sequence[str], out: Path) -> None:
    """``trials.json`` and ``trials.csv`` in ``out``: one row per trial, the parameters ``names`` as columns."""
    flat = [{**{k: row[k] for k in COLUMNS}, **row["config"], "error": row["error"]} for row in rows]
    write_json(out / "trials.json", flat)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[*COLUMNS, *names, "error"], extrasaction="ignore")
    writer.writeheader()
    for item in flat:  # floats to 6 digits: readable, and enough to reproduce a run
        writer.writerow(
            {
                k: _hidden_text(v) if k == "hidden_dims" else f"{v:.6g}" if isinstance(v, float) else v
                for k, v in item.items()
            }
        )
    write_file(out / "trials.csv", text.getvalue().encode())


def plot_sweep(
    trials: Sequence[Mapping[str, Any]], path: str | os.PathLike[str] | None = None, title: str | None = None
) -> Any:
    """Best validation accuracy (colour) against learning rate (x) and reg (y), log axes where possible.

    ``trials`` are :class:`SweepResult` rows (an ASHA-stopped trial shows the best accuracy it reached).
    Trials without an accuracy are grey crosses; the best is ringed; marker area grows with the hidden size.
    Built with the Figure API (headless); saved to ``path`` if given.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def xy(rows: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
        lr, reg = ([float(r["config"].get(k, "nan")) for r in rows] for k in ("learning_rate", "reg"))
        return lr, reg

    ok = [r for r in trials if math.isfinite(r["best_val_acc"])]
    bad = [r for r in trials if not math.isfinite(r["best_val_acc"])]
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    if ok:
        sizes = [20 + 0.25 * numpy.sum(r["config"].get("hidden_dims", 100)) for r in ok]
        x, y = xy(ok)
        sc = ax.scatter(x, y, c=[r["best_val_acc"] for r in ok], s=sizes, cmap="viridis", edgecolors="k", lw=0.4)
        fig.colorbar(sc, ax=ax, label="best validation accuracy")
        (bx,), (by,) = xy([max(ok, key=lambda r: r["best_val_acc"])])
        ax.scatter([bx], [by], s=400, facecolors="none", edgecolors="red", linewidths=1.5)
        ax.annotate(
            f"best {max(r['best_val_acc'] for r in ok):.3f}",
            (bx, by),
            xytext=(10, 10),
            textcoords="offset points",
            color="red",
        )
    if bad:
        x, y = xy(bad)
        ax.scatter(x, y, marker="x", color="0.5", label="diverged / failed / interrupted")
        ax.legend(loc="best")
    for set_scale, axis, values in zip((ax.set_xscale, ax.set_yscale), (ax.xaxis, ax.yaxis), xy(trials), strict=True):
        if all(v > 0 for v in values if math.isfinite(v)):  # a log axis cannot show reg = 0
            set_scale("log")  # ticks at 1, 2, 5 x 10^k as plain numbers: 10^k alone leaves short ranges bare
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="learning rate", ylabel="L2 regularisation (reg)")
    ax.set_title(title or f"Sweep: {len(trials)} trials (marker size ~ hidden units)")
    if path is not None:
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110)
        write_file(Path(path), png.getvalue())
    return fig
