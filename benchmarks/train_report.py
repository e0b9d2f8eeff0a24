"""The report of ``bench_train.py``: the targets a run can check, the markdown table and the bar chart."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy

#: Targets, checked for every dtype the run has the rows of: (net, runner, ratio, bound, what).
TARGETS = [
    ("shallow", "fcn[numpy]", "ratio_to_gather_floor", 1.05, "fcn / gather + GEMM floor, shallow net"),
    ("deep", "fcn[numpy]", "ratio_to_gather_floor", 1.10, "fcn / gather + all-GEMM floor, deep net"),
    ("shallow", "fcn[numpy]", "ratio_to_jax", 1.0, "fcn / JAX jit (CPU), shallow net"),
    ("deep", "fcn[numpy]", "ratio_to_jax", 1.0, "fcn / JAX jit (CPU), deep net"),
    ("shallow", "fcn[numpy]", "ratio_to_torch", 1 / 1.8, "fcn / PyTorch CPU eager (1.8x faster), shallow net"),
    ("deep", "fcn[numpy]", "ratio_to_torch", 1 / 1.8, "fcn / PyTorch CPU eager (1.8x faster), deep net"),
    ("tiny", "fcn[numpy]", "ratio_to_torch", 0.40, "per-step Python overhead: fcn / PyTorch CPU eager, tiny net"),
]


def targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The :data:`TARGETS` this run can check (CPU rows, per dtype), each met or not."""
    out = []
    for dtype in dict.fromkeys(r["dtype"] for r in records):
        for (net, runner, key, bound, what), fused in itertools.product(TARGETS, (False, True)):
            runner = runner.replace("]", "+blas]") if fused else runner  # the fused (BLAS) path's row, if any
            rec = next((r for r in records if (r["net"], r["runner"], r["dtype"]) == (net, runner, dtype)), None)
            if rec is not None and rec[key] is not None:
                measured = round(rec[key], 3)
                out.append(
                    {
                        "what": f"{what}, {dtype}" + (", fused (BLAS) path" if fused else ""),
                        "measured": measured,
                        "target": f"<= {bound:.2f}",
                        "met": measured <= bound,
                        "measured_p10": None if rec.get(f"p10_{key}") is None else round(rec[f"p10_{key}"], 3),
                    }
                )
    return out


def ratio_cell(record: dict[str, Any], key: str) -> str:
    """``median ratio (10th-percentile ratio)``, or ``-`` where the group has no such runner."""
    median, p10 = record.get(f"ratio_to_{key}"), record.get(f"p10_ratio_to_{key}")
    if median is None:
        return "-"
    return f"{median:.2f}x" if p10 is None else f"{median:.2f}x ({p10:.2f}x)"


def markdown(payload: dict[str, Any]) -> str:
    """The results as markdown: where and what ran, one table row per runner, the targets."""
    env, m = payload["environment"], payload["environment"]["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines = [
        "# fcn training step benchmark\n",
        f"- date (UTC): {payload['date']}; commit {env['commit']}; FCN_FUSED_KERNELS={payload['fused_kernels']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or m['torch_gpu'] or 'none'}; "
        f"load average at the start {env['load_average_1min']}",
        f"- data: {payload['data']}; versions: {versions}",
        f"- BLAS: {env['blas']}; CPU vector level: {env.get('cpu_vector_level')}",
        *[f"- WARNING: {w}" for w in env.get("warnings", [])],
        "",
        "Median time per training step over interleaved rounds. Ratios: time / GEMM floor and / gather + GEMM "
        "floor of the same library, / PyTorch eager on the same device, / JAX jit on the CPU (below 1: faster than "
        "the peer); in brackets the same ratio of 10th percentiles. BLAS: what each runner's matrix products run on.\n",
        "| net | dims | batch | dtype | runner | median ms | IQR ms | vs floor | vs gather+floor | vs torch | vs jax "
        "| epoch s | eval s | BLAS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        cells = [r["net"], "-".join(map(str, r["dims"])), r["batch_size"], r["dtype"], r["runner"]]
        cells += [f"{r['iteration'][k] * 1e3:.3f}" for k in ("median_s", "iqr_s")]
        cells += [ratio_cell(r, k) for k in ("floor", "gather_floor", "torch", "jax")]
        cells += [f"{r[k]['median_s']:.3f}" if k in r else "" for k in ("epoch", "eval")]
        cells += ["; ".join(r.get("blas", []))]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines.append("")
    for t in payload["targets"]:
        p10 = "" if t.get("measured_p10") is None else f", of 10th percentiles {t['measured_p10']:.2f}x"
        lines.append(
            f"- {t['what']}: {t['measured']:.2f}x{p10} (target {t['target']}x): {'met' if t['met'] else 'NOT met'}"
        )
    lines += [f"- skipped: {note}" for note in payload["skipped"]]
    for r in (r for r in payload["results"] if "profile" in r):
        lines += [
            f"\ncProfile of `Solver.step()`, {r['net']} {r['dtype']} {r['runner']} (per step; cProfile inflates "
            "small calls):\n",
            "| function | calls | own us | cumulative us |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{f['function']}` | {f['calls']:.0f} | {f['own_us']:.1f} | {f['cumulative_us']:.1f} |"
            for f in r["profile"]
        ]
    return "\n".join(lines) + "\n"


def bar_chart(path: Path, records: list[dict[str, Any]], title: str) -> None:
    """One panel per net: median per runner with quartile whiskers (log axis when
    the bars span more than 20x); fcn blue, PyTorch orange, floors grey."""
    from matplotlib.figure import Figure

    panels: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        panels.setdefault(f"{r['net']} ({'-'.join(map(str, r['dims']))}, batch {r['batch_size']})", []).append(r)
    fig = Figure(figsize=(9, sum(0.3 * len(v) + 0.9 for v in panels.values()) + 0.5), layout="constrained")
    for ax, (name, rows) in zip(fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels.items(), strict=True):
        med, lo, hi = (numpy.array([r["iteration"][k] * 1e3 for r in rows]) for k in ("median_s", "q1_s", "q3_s"))
        colors = ["#9e9e9e" if "floor" in r["kind"] else "#ee6a2f" if "torch" in r["kind"] else "#2f6fee" for r in rows]
        ax.barh(range(len(rows)), med, xerr=[med - lo, hi - med], color=colors, capsize=3)
        ax.set_yticks(range(len(rows)), [f"{r['dtype']} {r['runner']}" for r in rows], fontsize=8)
        ax.invert_yaxis()
        if med.max() > 20 * med.min():  # floors of microseconds beside steps of milliseconds
            ax.set_xscale("log")
        ax.set_title(name, fontsize=10)
    fig.axes[-1].set_xlabel("ms per training step (median; whiskers: quartiles)")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110)
