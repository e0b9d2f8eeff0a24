#!/usr/bin/env python
"""Time fcn's own training iteration against GEMM floors and a PyTorch peer.

The work unit is one SGD iteration of the chapter's net (3072-100-10, batch 500, reg 0.6) on the full
CIFAR-10 training split (49,000 images resident on the device): gather a batch, forward, softmax loss, L2
term, backward (no input gradient for the first layer), update. About 617 MFLOP, nearly all of it in two
GEMMs, ``X_batch @ W1`` and ``X_batch.T @ dH``. The deep net (3072-1024-512-10) puts the same loop in a
larger-GEMM regime.

For every backend (NumPy; CuPy where ``fcn.has_gpu()``), dtype and net, in one process and interleaved in
rounds so that drift in a shared machine's load hits every runner alike:

- ``fcn``: ``fcn.Solver.step()``; an epoch with ``Solver.train()``; full-set evaluation with
  ``model.predict`` and ``Solver.check_accuracy``;
- ``gemm-floor``: only the matrix products one iteration cannot avoid, operands hot in cache;
- ``gather+gemm-floor``: the same on a freshly gathered batch (the floor of any step drawing random batches);
- ``torch``: the same iteration in PyTorch (same weights, batch size and batch-order scheme, autograd and an
  in-place SGD update), with its own GEMM floor; skipped with a message without torch.

Then ``profile_step.py`` breaks one NumPy iteration down stage by stage. Results land in
``benchmarks/results/`` as ``train-<host>-<UTC time>.{json,md,png}``; ``--help`` lists the options.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package

import _common as C  # noqa: E402  (needs the path entry above)
import profile_step  # noqa: E402
from torch_peer import TorchRunner  # noqa: E402

import fcn  # noqa: E402


def iteration_flops(dims: Sequence[int], batch: int) -> int:
    """FLOPs of the GEMMs of one iteration: forward and weight gradient per layer, input gradient from layer 2."""
    layers = list(zip(dims[:-1], dims[1:], strict=True))
    return 4 * sum(batch * a * b for a, b in layers) + 2 * sum(batch * a * b for a, b in layers[1:])


def eval_floor(make: Callable[[tuple[int, ...]], Any], dims: Sequence[int], n: int) -> Callable[[], None]:
    """Only the forward GEMMs of evaluating ``n`` samples in chunks of :data:`_common.EVAL_CHUNK` rows."""
    ops = [(make((min(C.EVAL_CHUNK, n), a)), make((a, b))) for a, b in zip(dims[:-1], dims[1:], strict=True)]
    chunks = [min(C.EVAL_CHUNK, n - i) for i in range(0, n, C.EVAL_CHUNK)]

    def run() -> None:
        for rows in chunks:
            for H, W in ops:
                H[:rows] @ W

    return run


class FcnRunner:
    """fcn's own training loop on one backend/dtype: a Solver whose public ``step()`` is the timed unit."""

    def __init__(self, hidden: Sequence[int], be: fcn.Backend, dtype: str, data: dict[str, Any], args: Any):
        self.backend, self.batch, self.seed = be, args.batch_size, args.seed
        self.model = C.make_model(hidden, be, dtype, args.seed, int(numpy.prod(data["X_train"].shape[1:])))
        self.solver = C.make_solver(self.model, data, self.batch, args.seed)

    def after_block(self) -> None:
        """Read back the pending losses outside the timed region (raises if training diverged)."""
        self.solver._read_losses()

    def gather_floor(self, floor: Callable[..., None]) -> Callable[[], None]:
        """``floor`` on a freshly gathered batch: ``xp.take`` of images and labels, cycling through an epoch."""
        xp, s = self.backend.xp, self.solver
        order = numpy.random.default_rng(self.seed).permutation(s.num_train)
        batches = [xp.asarray(order[k * self.batch : (k + 1) * self.batch]) for k in range(s.iterations_per_epoch)]
        turn = itertools.count()

        def run() -> None:
            idx = batches[next(turn) % len(batches)]
            xp.take(s.y_train, idx, axis=0)
            floor(xp.reshape(xp.take(s.X_train, idx, axis=0), (idx.shape[0], -1)))

        return run

    def long_units(self, args: argparse.Namespace) -> dict[str, Any]:
        """Epochs with ``Solver.train()`` (fresh solvers on the device data, built outside the timing) and
        full-set evaluation with the public ``predict`` (value checks on) and ``Solver.check_accuracy``."""
        s, sync = self.solver, self.backend.synchronize
        data = {"X_train": s.X_train, "y_train": s.y_train, "X_val": s.X_val, "y_val": s.y_val}
        epochs = []
        for r in range(args.epoch_repeats):
            solver = C.make_solver(self.model, data, self.batch, self.seed + 1 + r, s.iterations_per_epoch)
            C.settle(args.settle)
            epochs.append(C.time_once(solver.train, sync))
        C.settle(args.settle)
        times = {"predict": [], "check": []}
        for _ in range(args.eval_repeats):
            times["predict"].append(C.time_once(lambda: self.model.predict(s.X_train), sync))
            times["check"].append(C.time_once(lambda: s.check_accuracy(s.X_train, s.y_train), sync))
        return {
            "epoch": C.summarize(epochs) | {"iterations": s.iterations_per_epoch, "includes": "steps + end-of-epoch"},
            "eval_predict": C.summarize(times["predict"]),
            "eval_check_accuracy": C.summarize(times["check"]),
            "eval_samples": int(s.num_train),
        }


# ----------------------------------------------------------------------------------------------------------
# One group: a net, a dtype, a device
# ----------------------------------------------------------------------------------------------------------


def entry(name: str, fn, sync, kind: str, library: str, after=None, long=None, ipe=None) -> dict[str, Any]:
    """A runner of a group with its kind, library, long units (epoch/eval; a callable) and iterations per epoch."""
    return {"runner": C.Runner(name, fn, sync, after), "kind": kind, "library": library, "long": long, "ipe": ipe}


def evals(fn: Callable[[], Any], sync: Callable[[], None], n: int) -> Callable[[], dict[str, Any]]:
    """The long unit of a peer or floor: ``n`` full-set evaluations by ``fn``."""
    return lambda: {"eval": C.summarize([C.time_once(fn, sync) for _ in range(n)])}


def group_entries(hidden, dtype: str, be, torch: ModuleType | None, tdev: str | None, data, args) -> list[dict]:
    """The runners of one group (fcn and its floors on ``be``; torch and its floor on ``tdev``)."""
    dims = [int(numpy.prod(data["X_train"].shape[1:])), *hidden, 10]
    rng = numpy.random.default_rng(args.seed)
    entries: list[dict[str, Any]] = []
    fcn_runner = None
    if be is not None:
        fcn_runner = FcnRunner(hidden, be, dtype, data, args)
        s, sync, lib = fcn_runner.solver, be.synchronize, be.name

        def make_be(shape: tuple[int, ...]) -> Any:
            return be.asarray(rng.standard_normal(shape).astype(dtype))

        floor = C.gemm_floor(make_be, dims, args.batch_size)
        ev = evals(eval_floor(make_be, dims, s.num_train), sync, args.eval_repeats)
        entries += [
            entry(f"fcn[{lib}]", s.step, sync, "fcn", lib, fcn_runner.after_block, lambda: fcn_runner.long_units(args))
            | {"ipe": s.iterations_per_epoch},
            entry(f"gemm-floor[{lib}]", floor, sync, "floor", lib, long=ev),
            entry(f"gather+gemm-floor[{lib}]", fcn_runner.gather_floor(floor), sync, "gather-floor", lib),
        ]
    if torch is not None and tdev is not None:
        model = fcn_runner.model if fcn_runner else C.make_model(hidden, fcn.get_backend("numpy"), dtype, args.seed)
        peer = TorchRunner(torch, tdev, dtype, data, {k: fcn.to_host(v) for k, v in model.params.items()}, args)
        tdtype, device, lib = getattr(torch, dtype), torch.device(tdev), f"torch-{tdev}"

        def make_t(shape: tuple[int, ...]) -> Any:
            return torch.from_numpy(rng.standard_normal(shape).astype(dtype)).to(device, tdtype)

        tfloor = C.gemm_floor(make_t, dims, args.batch_size)
        tev = eval_floor(make_t, dims, peer.num_train)
        entries += [
            entry(
                f"torch[{tdev}]",
                peer.step,
                peer.sync,
                "torch",
                lib,
                peer.after_block,
                evals(peer.evaluate, peer.sync, args.eval_repeats),
                peer.iterations_per_epoch,
            ),
            entry(f"gemm-floor[{lib}]", tfloor, peer.sync, "floor", lib, long=evals(tev, peer.sync, args.eval_repeats)),
        ]
    return entries


def run_group(net: str, hidden, dtype: str, device: str, be, torch, tdev, data, args) -> list[dict[str, Any]]:
    """Time one group's runners interleaved, then their long units; return one record per runner."""
    entries = group_entries(hidden, dtype, be, torch, tdev, data, args)
    dims = [int(numpy.prod(data["X_train"].shape[1:])), *hidden, 10]
    print(f"\n== {net} {dtype} {device}: {'-'.join(map(str, dims))}, batch {args.batch_size} ==", flush=True)
    per_round = max(math.ceil(args.repeats / args.rounds), 1)
    with C.OtherLoad() as iterations:
        C.run_interleaved(
            [e["runner"] for e in entries],
            rounds=args.rounds,
            repeats=per_round,
            warmup=args.warmup,
            settle_s=args.settle,
        )
    flops = iteration_flops(dims, args.batch_size)
    records = []
    with C.OtherLoad() as long_units:  # epochs and evaluations: their contention is measured on its own
        for e in entries:
            it = C.summarize(e["runner"].samples)
            med = it["median_s"]
            rec = {
                "net": net,
                "dims": dims,
                "batch_size": args.batch_size,
                "dtype": dtype,
                "device": device,
                "runner": e["runner"].name,
                "kind": e["kind"],
                "library": e["library"],
                "iteration": it,
                "flops_per_iteration": flops,
                "gflops_per_s": flops / med / 1e9,
                "images_per_s": args.batch_size / med,
            }
            if e["ipe"]:
                rec["epoch_from_median_s"] = e["ipe"] * med
            if e["long"]:
                C.settle(args.settle)
                rec |= e["long"]()
            records.append(rec)
    for rec in records:
        rec["other_load_during_iterations"] = iterations.share
        rec["other_load_during_epoch_eval"] = long_units.share
    add_ratios(records)
    for rec in records:
        print(
            f"  {rec['runner']:<26} {C.ms(rec['iteration']['median_s']):>9} ms/it  vs floor "
            f"{C.fmt_ratio(rec['ratio_to_floor']):>6}  vs gather+floor {C.fmt_ratio(rec['ratio_to_gather_floor']):>6}"
            f"  vs torch {C.fmt_ratio(rec['ratio_to_torch']):>6}",
            flush=True,
        )
    if (iterations.share or 0) > C.CONTENDED:
        print(f"  warning: other processes used {C.pct(iterations.share)} of the CPUs during this group")
    return records


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Per record: time over the (gather +) GEMM floor of its library, and over PyTorch on the same device."""
    med = {(r["kind"], r["library"]): r["iteration"]["median_s"] for r in records}
    torch_med = next((r["iteration"]["median_s"] for r in records if r["kind"] == "torch"), None)
    for r in records:
        m = r["iteration"]["median_s"]
        r["ratio_to_floor"] = C.ratio(m, med.get(("floor", r["library"])))
        r["ratio_to_gather_floor"] = C.ratio(m, med.get(("gather-floor", r["library"])))
        r["ratio_to_torch"] = C.ratio(m, torch_med)


def group_load(records: list[dict[str, Any]]) -> float:
    """The larger of the other processes' CPU shares during a group's iterations and during its long units."""
    r = records[0] if records else {}
    return max(r.get("other_load_during_iterations") or 0.0, r.get("other_load_during_epoch_eval") or 0.0)


# ----------------------------------------------------------------------------------------------------------
# Targets and the report
# ----------------------------------------------------------------------------------------------------------


def targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For NumPy float32 on the shallow net: the issue's two targets, and two realistic references.

    The issue asks for <= 1.10x the GEMM floor and a >= 1.5x speed-up over PyTorch CPU. But a step that draws
    random batches must also gather one, which the GEMM floor leaves out and PyTorch pays as well; so the
    references are <= 1.10x the gather + GEMM floor, and parity with PyTorch (fcn / torch <= 1.00x).
    All four are reported as met or not met.
    """
    key = ("shallow", "float32", "fcn[numpy]")
    rec = next((r for r in records if (r["net"], r["dtype"], r["runner"]) == key), None)
    if rec is None:
        return []
    speedup = None if rec["ratio_to_torch"] is None else 1 / rec["ratio_to_torch"]
    rows = [
        ("issue", "fcn[numpy] / gemm-floor[numpy]", rec["ratio_to_floor"], "<=", 1.10),
        ("issue", "speed-up over torch[cpu] (torch / fcn)", speedup, ">=", 1.5),
        ("reference", "fcn[numpy] / gather+gemm-floor[numpy]", rec["ratio_to_gather_floor"], "<=", 1.10),
        ("reference", "parity with torch[cpu] (fcn / torch)", rec["ratio_to_torch"], "<=", 1.0),
    ]
    return [
        {"kind": kind, "what": what, "measured": f"{v:.2f}x", "target": f"{op} {bound:.2f}x"}
        | {"met": bool(v <= bound if op == "<=" else v >= bound)}
        for kind, what, v, op, bound in rows
        if v is not None
    ]


def markdown_report(payload: dict[str, Any]) -> str:
    """The results as markdown: per-iteration table with ratios, epoch/eval table, targets, profile."""
    recs, cfg = payload["results"], payload["config"]
    out = [
        C.header_markdown("fcn training benchmark", payload),
        f"Work unit: one SGD iteration, batch {cfg['batch_size']}, reg {C.REG}, on {cfg['num_train']} "
        "device-resident training images. Ratios: time / GEMM floor of the same library, time / (gather + GEMM "
        "floor) of the same library, time / PyTorch on the same device and dtype (below 1 = faster than torch).\n",
        f"Other processes used {C.pct(payload.get('other_load_during_run'))} of the CPUs during the run "
        f"({C.pct(payload.get('cpu_busy_before'))} busy just before it); the `others' CPU` column gives that share "
        "per group: above ~10%, absolute times are inflated.\n",
        "## Per iteration\n",
        C.markdown_table(
            ["net", "dtype", "runner", "median ms", "p10-p90 ms", "IQR ms", "images/s", "GFLOP/s", "vs floor"]
            + ["vs gather+floor", "vs torch", "others' CPU"],
            [
                [r["net"], r["dtype"], r["runner"], C.ms(r["iteration"]["median_s"])]
                + [f"{C.ms(r['iteration']['p10_s'])}-{C.ms(r['iteration']['p90_s'])}", C.ms(r["iteration"]["iqr_s"])]
                + [f"{r['images_per_s']:,.0f}", f"{r['gflops_per_s']:.1f}", C.fmt_ratio(r["ratio_to_floor"])]
                + [C.fmt_ratio(r["ratio_to_gather_floor"]), C.fmt_ratio(r["ratio_to_torch"])]
                + [C.pct(r.get("other_load_during_iterations"))]
                for r in recs
            ],
        ),
        "\n## Epoch and full-set evaluation\n",
    ]

    def sec(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    out.append(
        C.markdown_table(
            ["net", "dtype", "runner", "epoch s (Solver.train)", "iterations x median s", "eval s"]
            + ["eval s (check_accuracy)", "others' CPU"],
            [
                [r["net"], r["dtype"], r["runner"], sec(r.get("epoch", {}).get("median_s"))]
                + [sec(r.get("epoch_from_median_s")), sec(r.get("eval_predict", r.get("eval", {})).get("median_s"))]
                + [sec(r.get("eval_check_accuracy", {}).get("median_s")), C.pct(r.get("other_load_during_epoch_eval"))]
                for r in recs
                if "eval" in r or "eval_predict" in r
            ],
        )
    )
    out.append(
        "\n`eval s` is `model.predict` on the whole training split for fcn (value checks on), a `no_grad` forward "
        "for torch, and the forward GEMMs alone for the floors.\n"
    )
    if payload.get("targets"):
        out.append("## Targets (NumPy float32, shallow net)\n")
        for kind, title in (("issue", "The issue's targets"), ("reference", "Realistic references")):
            out.append(f"{title}:\n")
            out += [
                f"- {t['what']}: measured {t['measured']}, target {t['target']}: {'met' if t['met'] else 'NOT met'}"
                for t in payload["targets"]
                if t["kind"] == kind
            ]
            out.append("")
        out.append(
            "The GEMM floor leaves out the batch gather, which no step drawing random batches can avoid and "
            "which PyTorch pays too; gather + GEMM floor is the lower bound of such a step.\n"
        )
    if payload.get("profile"):
        out.append(profile_step.markdown_section(payload["profile"]))
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------

#: Defaults: (full run, ``--quick`` smoke run: tiny, synthetic, seconds).
PRESETS = {
    "n_train": (49_000, 1_000),
    "n_val": (1_000, 100),
    "batch_size": (500, 100),
    "shallow_hidden": ("100", "16"),
    "deep_hidden": ("1024,512", "32,16"),
    "repeats": (60, 2),
    "rounds": (4, 1),
    "warmup": (3, 1),
    "settle": (0.2, 0.0),
    "epoch_repeats": (2, 1),
    "eval_repeats": (2, 1),
    "profile_repeats": (60, 4),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line; unset options take their value from :data:`PRESETS`."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = ap.add_argument
    add("--quick", action="store_true", help="tiny smoke run (1000 synthetic samples, batch 100, small nets)")
    add("--data-dir", help="CIFAR-10 folder (default: $FCN_DATA_DIR, else ../shared/datasets/... if present)")
    add("--synthetic", action="store_true", help="use synthetic data even where CIFAR-10 is found")
    add("--out", type=Path, default=C.DEFAULT_OUT, help="results folder (default: benchmarks/results)")
    add("--backends", default="numpy,cupy", help="fcn backends to time (cupy only where a GPU is seen)")
    add("--dtypes", default="float32,float64")
    add("--nets", default="shallow,deep", help="shallow (3072-100-10) and/or deep (3072-1024-512-10)")
    add("--no-torch", action="store_true", help="skip the PyTorch peer even where torch is installed")
    add("--no-profile", action="store_true", help="skip the stage-by-stage profile of a NumPy iteration")
    add("--repeats", type=int, help="timed iterations per runner (spread over --rounds)")
    add("--rounds", type=int, help="interleaved rounds (runners alternate between rounds)")
    add("--warmup", type=int, help="untimed iterations before each block")
    add("--settle", type=float, help="seconds of pause before each block (lets BLAS threads go idle)")
    add("--epoch-repeats", type=int, help="epochs timed per fcn runner")
    add("--eval-repeats", type=int, help="full-set evaluations timed per runner")
    add("--profile-repeats", type=int, help="calls per reference point, and in-situ iterations, in the profile")
    add("--n-train", type=int, help="training samples resident on the device (default 49000)")
    add("--n-val", type=int)
    add("--batch-size", type=int)
    add("--shallow-hidden", help="hidden size of the shallow net (default 100)")
    add("--deep-hidden", help="hidden sizes of the deep net (default 1024,512)")
    add("--seed", type=int, default=0)
    add("--wait-idle", type=float, default=0.0, help="wait up to this many seconds for other jobs to leave the CPUs")
    add("--retries", type=int, default=0, help="run a group again (up to N times) when other jobs took >10%% CPU")
    args = ap.parse_args(argv)
    for key, (full, quick) in PRESETS.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.synthetic = args.synthetic or (args.quick and not args.data_dir)  # a smoke run must not read 180 MB
    return args


def run_all(base: C.Dataset, torch: ModuleType | None, args: argparse.Namespace) -> tuple[list, dict | None]:
    """Every group (dtype x net x device), then the profile of a NumPy iteration; returns (records, profile)."""
    nets = {"shallow": C.parse_dims(args.shallow_hidden), "deep": C.parse_dims(args.deep_hidden)}
    nets = {name: nets[name] for name in C.split_csv(args.nets)}
    backends = C.split_csv(args.backends)
    be_by_device = {}
    for name in backends:
        if name == "cupy" and not fcn.has_gpu():
            print("fcn[cupy]: skipped (" + ("no CUDA GPU visible" if fcn.has_cupy() else "CuPy not installed") + ")")
            continue
        be = fcn.get_backend(name)
        be_by_device["gpu" if be.is_cupy else "cpu"] = be
    t_devices = {"cpu": "cpu"} if torch is not None and "numpy" in backends else {}
    if torch is not None and "cupy" in backends:
        if torch.cuda.is_available():
            t_devices["gpu"] = "cuda"
        else:
            print("torch[cuda]: skipped (torch sees no CUDA device)")
    dtypes = C.split_csv(args.dtypes)
    profile_dtype = "float32" if "float32" in dtypes else dtypes[0]  # the target is NumPy float32
    records: list[dict[str, Any]] = []
    profile = None
    for dtype in dtypes:
        data = base.arrays(dtype)  # one host copy per dtype, shared by every runner of that dtype
        for net, hidden in nets.items():
            for device in ("cpu", "gpu"):  # fcn[numpy] + torch[cpu]; fcn[cupy] + torch[cuda]
                be, tdev = be_by_device.get(device), t_devices.get(device)
                if be is not None or tdev is not None:
                    group, attempts = C.least_contended(
                        partial(run_group, net, hidden, dtype, device, be, torch, tdev, data, args),
                        group_load,
                        retries=args.retries,
                        wait_idle=args.wait_idle,
                        what="running the group",
                    )
                    records += [r | {"attempts": attempts} for r in group]
        if not args.no_profile and dtype == profile_dtype and "cpu" in be_by_device:
            net, hidden = next(iter(nets.items()))
            print(f"\n== profile: fcn numpy {dtype}, {net} net ==", flush=True)
            profile = profile_step.run_profile(hidden, dtype, data, args) | {"net": net}
        del data
    return records, profile


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Run the benchmark; return the paths of the JSON, markdown and PNG written."""
    args = parse_args(argv)
    start = C.start_run(args.wait_idle)
    when, busy_before, load_before = start.when, start.busy_before, start.load_before
    torch = C.load_torch(not args.no_torch)
    base = C.load_data(args.data_dir, args.n_train, args.n_val, synthetic=args.synthetic)
    print(f"data: {base.kind}; X_train {base.X_train.shape} {base.X_train.dtype}")

    with C.OtherLoad() as run_load:
        records, profile = run_all(base, torch, args)

    payload = C.common_payload(torch, base.kind, when, args) | {
        "benchmark": "train",
        "config": {
            "num_train": int(base.X_train.shape[0]),
            "batch_size": args.batch_size,
            "reg": C.REG,
            "learning_rate": C.LEARNING_RATE,
            "eval_chunk": C.EVAL_CHUNK,
            "timing": "median over interleaved rounds; fcn runs Solver.step() (trusted inputs, as Solver.train does)",
        },
        "load_average": {"before": load_before, "after": C.load_average()},
        "cpu_busy_before": busy_before,
        "other_load_during_run": run_load.share,
        "results": records,
        "targets": targets(records),
        "profile": profile,
    }
    stem, out = C.result_stem("train", when), Path(args.out)
    paths = {"json": C.write_json(out / f"{stem}.json", payload), "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    paths["md"].write_text(markdown_report(payload))
    panels: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for r in records:
        key = f"{r['net']} net ({'-'.join(map(str, r['dims']))}), batch {r['batch_size']}"
        panels.setdefault(key, []).append((f"{r['dtype']} {r['runner']}", r["iteration"]))
    title = f"fcn training iteration ({base.kind.split(' (')[0]}), {payload['machine']['cpu']}"
    C.bar_chart(paths["png"], panels, title=title)
    for t in payload["targets"]:
        print(f"{t['kind']} {t['what']}: {t['measured']} (want {t['target']}) -> {'met' if t['met'] else 'NOT met'}")
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return paths


if __name__ == "__main__":
    main()
