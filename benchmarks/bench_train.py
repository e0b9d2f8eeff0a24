#!/usr/bin/env python
"""Time fcn's own training iteration against a GEMM floor and a PyTorch peer.

The work unit is one SGD iteration of the chapter's net (3072-100-10, batch 500, reg 0.6) on the full
CIFAR-10 training split (49,000 images resident on the device): gather a batch, forward, softmax loss,
backward (no input gradient for the first layer), L2 term, update. About 617 MFLOP, nearly all of it in
two GEMMs: ``X_batch @ W1`` and ``X_batch.T @ dH``. The deeper net (3072-1024-512-10) puts the same loop
in a larger-GEMM regime.

For every backend (NumPy; CuPy where ``fcn.has_gpu()``) and dtype, in one process and interleaved in
rounds so that drift in a shared machine's load hits every runner alike:

- ``fcn``: ``fcn.Solver._step()`` (the library's own iteration, under ``trusted_inputs()`` exactly as
  ``Solver.train()`` runs it), per-iteration median and spread; an epoch as ``Solver.train()`` over one
  epoch's iterations (so including the end-of-epoch accuracy checks); full-set evaluation with
  ``model.predict`` (public API, value checks on) and ``Solver.check_accuracy`` (as the Solver runs it);
- ``torch``: the same iteration in PyTorch (same weights, same batch size and order scheme, autograd and an
  in-place SGD update), on the CPU and on CUDA where available; skipped with a message without torch;
- ``gemm-floor``: only the matrix products one iteration cannot avoid, in the same library and dtype.

Every runner is reported as a ratio to the floor of its own library and to PyTorch on the same
device and dtype. A profile of one NumPy iteration (pieces timed one by one, plus cProfile) says where
fcn loses time to the floor.

Run ``python benchmarks/bench_train.py --help``; results land in ``benchmarks/results/`` as
``train-<host>-<UTC time>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import math
import operator
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package

import _common as C  # noqa: E402  (needs the path entry above)

import fcn  # noqa: E402
from fcn.validation import trusted_inputs  # noqa: E402

#: The chapter's regularisation strength and the update rule's learning rate (small enough never to diverge:
#: a NaN loss would change what the CPU computes and so the timings).
REG = 0.6
LEARNING_RATE = 1e-4
#: Other processes' share of the CPUs above which a group counts as contended (and is retried with --retries).
CONTENDED = 0.1
EVAL_CHUNK = 10_000  # rows per forward pass in evaluation, as fcn's predict/check_accuracy use


@dataclass(frozen=True)
class NetSpec:
    """A network to time: its name in the results, hidden sizes, and the initial weight scale."""

    name: str
    hidden: tuple[int, ...]
    weight_scale: float

    def dims(self, input_dim: int = 3072, num_classes: int = 10) -> list[int]:
        """Layer widths, input to output."""
        return [input_dim, *self.hidden, num_classes]


def iteration_flops(dims: Sequence[int], batch: int) -> int:
    """FLOPs of the GEMMs of one iteration: forward and weight gradient per layer, input gradient from layer 2."""
    layers = list(zip(dims[:-1], dims[1:], strict=True))
    fwd = sum(2 * batch * a * b for a, b in layers)
    dx = sum(2 * batch * a * b for a, b in layers[1:])
    return 2 * fwd + dx


# ----------------------------------------------------------------------------------------------------------
# The runners
# ----------------------------------------------------------------------------------------------------------


def gemm_floor(make: Callable[[tuple[int, ...]], Any], dims: Sequence[int], batch: int) -> Callable[[], None]:
    """A callable doing only the matrix products of one iteration, on operands made by ``make(shape)``.

    Per layer ``i`` (``d_{i-1} -> d_i``): forward ``H_{i-1} @ W_i``, weight gradient ``H_{i-1}.T @ dA_i``, and
    from the second layer on the input gradient ``dA_i @ W_i.T``. For the shallow net the two first-layer
    products are 99.7% of the FLOPs; the three 10-column products add a few microseconds. ``.T`` and ``@``
    are spelled the same in NumPy, CuPy and PyTorch, so one function serves all three.
    """
    ops: list[tuple[Any, Any]] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        H, W, dA = make((batch, a)), make((a, b)), make((batch, b))
        ops.append((H, W))
        ops.append((H.T, dA))
        if i > 0:
            ops.append((dA, W.T))

    def run() -> None:
        for left, right in ops:
            left @ right

    return run


def eval_floor(make: Callable[[tuple[int, ...]], Any], dims: Sequence[int], n: int) -> Callable[[], None]:
    """Only the forward GEMMs of evaluating ``n`` samples in chunks of :data:`EVAL_CHUNK` rows."""
    chunks = [min(EVAL_CHUNK, n - i) for i in range(0, n, EVAL_CHUNK)]
    full = [
        (make((EVAL_CHUNK if n >= EVAL_CHUNK else n, a)), make((a, b)))
        for a, b in zip(dims[:-1], dims[1:], strict=True)
    ]

    def run() -> None:
        for rows in chunks:
            for H, W in full:
                H[:rows] @ W

    return run


class FcnRunner:
    """fcn's own training loop on one backend/dtype: a Solver whose ``_step`` is the timed unit."""

    def __init__(self, spec: NetSpec, be: fcn.Backend, dtype: str, data: dict[str, Any], batch: int, seed: int):
        self.backend = be
        self.model = make_model(spec, be, dtype, seed)
        self.solver = fcn.Solver(
            self.model,
            data,
            batch_size=batch,
            num_iters=10**9,  # _step is driven by hand; train() is used with fresh solvers for the epoch
            optim_config={"learning_rate": LEARNING_RATE},
            verbose=False,
            progress=False,
            seed=seed,
        )
        self.batch = batch

    def step(self) -> None:
        """One training iteration, under ``trusted_inputs`` as ``Solver.train`` runs it."""
        with trusted_inputs():
            self.solver._step()

    def after_block(self) -> None:
        """Read back the pending losses outside the timed region (raises if training diverged)."""
        self.solver._read_losses()

    def device_data(self) -> dict[str, Any]:
        """The data as the solver holds it (already on the device: new solvers copy nothing)."""
        s = self.solver
        return {"X_train": s.X_train, "y_train": s.y_train, "X_val": s.X_val, "y_val": s.y_val}

    def epoch(self, seed: int) -> Callable[[], Any]:
        """A callable running one epoch with ``Solver.train()`` (a fresh solver, built outside the timing)."""
        s = self.solver
        solver = fcn.Solver(
            self.model,
            self.device_data(),
            batch_size=self.batch,
            num_iters=s.iterations_per_epoch,
            optim_config={"learning_rate": LEARNING_RATE},
            verbose=False,
            progress=False,
            seed=seed,
        )
        return solver.train

    def predict(self) -> None:
        """Labels for the whole training split with the public ``predict`` (value checks on)."""
        self.model.predict(self.solver.X_train)

    def check_accuracy(self) -> None:
        """Accuracy on the whole training split as the Solver measures it (trusted inputs)."""
        self.solver.check_accuracy(self.solver.X_train, self.solver.y_train)


def make_model(spec: NetSpec, be: fcn.Backend, dtype: str, seed: int) -> fcn.FullyConnectedNet:
    """The chapter's ShallowLayerNet for one hidden layer, a FullyConnectedNet otherwise."""
    if len(spec.hidden) == 1:
        return fcn.ShallowLayerNet(
            hidden_dim=spec.hidden[0], weight_scale=spec.weight_scale, reg=REG, backend=be, dtype=dtype, seed=seed
        )
    return fcn.FullyConnectedNet(
        hidden_dims=list(spec.hidden), weight_scale=spec.weight_scale, reg=REG, backend=be, dtype=dtype, seed=seed
    )


class TorchRunner:
    """The PyTorch peer: the same net, weights, batch size and batch-order scheme, written as PyTorch users do.

    Autograd computes the gradients (``loss.backward()``), the update is ``p.add_(p.grad, alpha=-lr)`` (what
    ``torch.optim.SGD`` does), and the thread count is PyTorch's default. The data lives on the device; on
    the CPU ``torch.from_numpy`` shares the NumPy buffer, so no second copy of the data set is made.
    """

    def __init__(
        self,
        torch: ModuleType,
        device: str,
        dtype: str,
        data: dict[str, numpy.ndarray],
        params: dict[str, numpy.ndarray],
        batch: int,
        seed: int,
    ):
        self.torch = torch
        self.device = torch.device(device)
        tdtype = getattr(torch, dtype)
        X = data["X_train"]
        self.X = torch.from_numpy(X.reshape(X.shape[0], -1)).to(self.device, tdtype)
        self.y = torch.from_numpy(numpy.ascontiguousarray(data["y_train"], dtype=numpy.int64)).to(self.device)
        n_layers = len(params) // 2
        self.layers = [
            (
                torch.tensor(params[f"W{i}"], dtype=tdtype, device=self.device, requires_grad=True),
                torch.tensor(params[f"b{i}"], dtype=tdtype, device=self.device, requires_grad=True),
            )
            for i in range(1, n_layers + 1)
        ]
        self.params = [p for layer in self.layers for p in layer]
        self.batch = batch
        self.num_train = self.X.shape[0]
        self.iterations_per_epoch = max(self.num_train // batch, 1)
        self.generator = torch.Generator().manual_seed(seed)
        self.order: Any = None
        self.iteration = 0
        self.losses: list[Any] = []

    def sync(self) -> None:
        """Wait for queued CUDA work (nothing to do on the CPU)."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def forward(self, xb: Any) -> Any:
        """Class scores: ``{affine - relu} x L - affine``."""
        h = xb
        for W, b in self.layers[:-1]:
            h = self.torch.relu(h @ W + b)
        W, b = self.layers[-1]
        return h @ W + b

    def step(self) -> None:
        """One SGD iteration: gather on the device, forward, loss + L2, backward, update."""
        torch = self.torch
        k = self.iteration % self.iterations_per_epoch
        if k == 0 or self.order is None:
            # drawn on the host and moved once per epoch, as fcn's Solver does
            self.order = torch.randperm(self.num_train, generator=self.generator).to(self.device)
        idx = self.order[k * self.batch : min((k + 1) * self.batch, self.num_train)]
        xb = self.X.index_select(0, idx)
        yb = self.y.index_select(0, idx)
        scores = self.forward(xb)
        reg = sum((W * W).sum() for W, _ in self.layers)
        loss = torch.nn.functional.cross_entropy(scores, yb) + 0.5 * REG * reg
        loss.backward()
        with torch.no_grad():
            for p in self.params:
                p.add_(p.grad, alpha=-LEARNING_RATE)
                p.grad = None
        self.losses.append(loss.detach())
        self.iteration += 1

    def after_block(self) -> None:
        """Read back the losses outside the timing; fail loudly on divergence like fcn's Solver."""
        if self.losses:
            last = float(self.losses[-1])
            self.losses = []
            if not math.isfinite(last):
                raise FloatingPointError(f"torch peer diverged: loss {last}")

    def evaluate(self) -> None:
        """Accuracy on the whole training split in chunks of :data:`EVAL_CHUNK` rows, without autograd."""
        torch = self.torch
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        with torch.no_grad():
            for i in range(0, self.num_train, EVAL_CHUNK):
                pred = self.forward(self.X[i : i + EVAL_CHUNK]).argmax(dim=1)
                correct += (pred == self.y[i : i + EVAL_CHUNK]).sum()
        int(correct)  # the read-back a user needs to see the number (and the sync on CUDA)


# ----------------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------------


def host_data(base: C.Dataset, dtype: str) -> dict[str, numpy.ndarray]:
    """The data set in ``dtype`` on the host (cast once per dtype and shared by every runner of that dtype)."""
    cast = (lambda a: a) if base.X_train.dtype == numpy.dtype(dtype) else (lambda a: a.astype(dtype))
    return {"X_train": cast(base.X_train), "y_train": base.y_train, "X_val": cast(base.X_val), "y_val": base.y_val}


def available_backends(names: Sequence[str]) -> list[fcn.Backend]:
    """fcn backends to time among ``names``; CuPy only where fcn sees a GPU (with a printed reason otherwise)."""
    out = []
    for name in names:
        if name == "cupy" and not fcn.has_gpu():
            print("fcn[cupy]: skipped (" + ("no CUDA GPU visible" if fcn.has_cupy() else "CuPy not installed") + ")")
            continue
        out.append(fcn.get_backend(name))
    return out


def torch_devices(torch: ModuleType | None, backends: Sequence[str]) -> list[str]:
    """PyTorch devices to time: the CPU next to NumPy, CUDA next to CuPy where torch sees a GPU."""
    if torch is None:
        return []
    devices = ["cpu"] if "numpy" in backends else []
    if "cupy" in backends:
        if torch.cuda.is_available():
            devices.append("cuda")
        else:
            print("torch[cuda]: skipped (torch sees no CUDA device)")
    return devices


def run_group(
    net: NetSpec,
    dtype: str,
    device: str,
    be: fcn.Backend | None,
    torch: ModuleType | None,
    torch_device: str | None,
    data: dict[str, numpy.ndarray],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Time fcn, the GEMM floors and the torch peer for one net/dtype/device; return one record per runner."""
    dims = net.dims(input_dim=int(numpy.prod(data["X_train"].shape[1:])))
    batch, seed = args.batch_size, args.seed
    rng = numpy.random.default_rng(seed)
    entries: list[tuple[C.Runner, dict[str, Any], Any]] = []

    fcn_runner = None
    if be is not None:
        fcn_runner = FcnRunner(net, be, dtype, data, batch, seed)
        entries.append(
            (
                C.Runner(f"fcn[{be.name}]", fcn_runner.step, be.synchronize, fcn_runner.after_block),
                {"kind": "fcn", "library": be.name},
                fcn_runner,
            )
        )

        def make_be(shape: tuple[int, ...], be: fcn.Backend = be) -> Any:
            return be.asarray(rng.standard_normal(shape).astype(dtype))

        entries.append(
            (
                C.Runner(f"gemm-floor[{be.name}]", gemm_floor(make_be, dims, batch), be.synchronize),
                {"kind": "floor", "library": be.name, "eval_fn": eval_floor(make_be, dims, data["X_train"].shape[0])},
                None,
            )
        )
    peer = None
    if torch is not None and torch_device is not None:
        host_params = (
            {k: fcn.to_host(v) for k, v in fcn_runner.model.params.items()}
            if fcn_runner is not None
            else {k: fcn.to_host(v) for k, v in make_model(net, fcn.get_backend("numpy"), dtype, seed).params.items()}
        )
        peer = TorchRunner(torch, torch_device, dtype, data, host_params, batch, seed)
        entries.append(
            (
                C.Runner(f"torch[{torch_device}]", peer.step, peer.sync, peer.after_block),
                {"kind": "torch", "library": f"torch-{torch_device}"},
                peer,
            )
        )
        tdtype, tdev = getattr(torch, dtype), torch.device(torch_device)

        def make_t(shape: tuple[int, ...]) -> Any:
            return torch.from_numpy(rng.standard_normal(shape).astype(dtype)).to(tdev, tdtype)

        entries.append(
            (
                C.Runner(f"gemm-floor[torch-{torch_device}]", gemm_floor(make_t, dims, batch), peer.sync),
                {
                    "kind": "floor",
                    "library": f"torch-{torch_device}",
                    "eval_fn": eval_floor(make_t, dims, peer.num_train),
                },
                None,
            )
        )

    label = f"{net.name} {dtype} {device}"
    print(f"\n== {label}: {'-'.join(map(str, dims))}, batch {batch}, {len(entries)} runners ==", flush=True)
    runners = [r for r, _, _ in entries]
    per_round = max(math.ceil(args.repeats / args.rounds), 1)
    with C.OtherLoad() as other:
        C.run_interleaved(runners, rounds=args.rounds, repeats=per_round, warmup=args.warmup, settle_s=args.settle)
    if other.share is not None and other.share > CONTENDED:
        print(f"  warning: other processes used {100 * other.share:.0f}% of the CPUs during this group")

    flops = iteration_flops(dims, batch)
    records: list[dict[str, Any]] = []
    # epoch and evaluation: their contention is measured separately from the iterations'
    with C.OtherLoad() as long_units:
        for runner, meta, obj in entries:
            it = C.summarize(runner.samples)
            rec: dict[str, Any] = {
                "net": net.name,
                "dims": dims,
                "batch_size": batch,
                "dtype": dtype,
                "device": device,
                "runner": runner.name,
                "kind": meta["kind"],
                "library": meta["library"],
                "iteration": it,
                "other_load_during_iterations": other.share,
                "flops_per_iteration": flops,
                "gflops_per_s": flops / it["median_s"] / 1e9 if it.get("median_s") else None,
                "images_per_s": batch / it["median_s"] if it.get("median_s") else None,
            }
            # Epoch and evaluation: long units, timed whole, a few times each, after a settle pause.
            if isinstance(obj, FcnRunner):
                ipe = obj.solver.iterations_per_epoch
                epochs = []
                for r in range(args.epoch_repeats):
                    run_epoch = obj.epoch(seed + 1 + r)
                    C.settle(args.settle)
                    epochs.append(C.time_once(run_epoch, obj.backend.synchronize))
                rec["epoch"] = C.summarize(epochs) | {
                    "iterations": ipe,
                    "includes": "Solver.train(): steps + end-of-epoch",
                }
                rec["epoch_from_median_s"] = ipe * it["median_s"]
                C.settle(args.settle)
                rec["eval_predict"] = C.summarize(
                    [C.time_once(obj.predict, obj.backend.synchronize) for _ in range(args.eval_repeats)]
                )
                rec["eval_check_accuracy"] = C.summarize(
                    [C.time_once(obj.check_accuracy, obj.backend.synchronize) for _ in range(args.eval_repeats)]
                )
                rec["eval_samples"] = int(obj.solver.num_train)
            elif isinstance(obj, TorchRunner):
                rec["epoch_from_median_s"] = obj.iterations_per_epoch * it["median_s"]
                C.settle(args.settle)
                rec["eval"] = C.summarize([C.time_once(obj.evaluate, obj.sync) for _ in range(args.eval_repeats)])
                rec["eval_samples"] = int(obj.num_train)
            elif "eval_fn" in meta:
                C.settle(args.settle)
                rec["eval"] = C.summarize([C.time_once(meta["eval_fn"], runner.sync) for _ in range(args.eval_repeats)])
            records.append(rec)
    for rec in records:
        rec["other_load_during_epoch_eval"] = long_units.share

    add_ratios(records)
    for rec in records:
        print(
            f"  {rec['runner']:<24} {C.ms(rec['iteration']['median_s']):>9} ms/it "
            f"[p10 {C.ms(rec['iteration']['p10_s'])}, p90 {C.ms(rec['iteration']['p90_s'])}]  "
            f"vs floor {C.fmt_ratio(rec['ratio_to_floor']):>6}  vs torch {C.fmt_ratio(rec['ratio_to_torch']):>6}",
            flush=True,
        )
    return records


def group_load(records: list[dict[str, Any]]) -> float:
    """The larger of the other processes' CPU shares seen during a group's iterations and its long units."""
    shares = [r.get(k) for r in records[:1] for k in ("other_load_during_iterations", "other_load_during_epoch_eval")]
    return max((x for x in shares if x is not None), default=0.0)


def run_group_retrying(*a: Any) -> list[dict[str, Any]]:
    """:func:`run_group`, run again (up to ``--retries`` times, after waiting for idle CPUs) when contended.

    On a shared machine another job can start in the middle of a group; the attempt in which other
    processes took the least CPU is kept, and every record says how many attempts there were.
    """
    args: argparse.Namespace = a[-1]
    best: list[dict[str, Any]] = []
    for attempt in range(args.retries + 1):
        records = run_group(*a)
        if not best or group_load(records) < group_load(best):
            best = records
        if group_load(best) <= CONTENDED or attempt == args.retries:
            break
        print(f"  contended ({100 * group_load(records):.0f}% of the CPUs used by others): retrying the group")
        C.wait_until_idle(args.wait_idle)
    for rec in best:
        rec["attempts"] = attempt + 1
    return best


def profile_retrying(net: NetSpec, dtype: str, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """:func:`profile_iteration`, retried like the groups (``--retries``) when other jobs took the CPUs."""
    best: dict[str, Any] = {}
    for attempt in range(args.retries + 1):
        with C.OtherLoad() as load:
            prof = profile_iteration(net, dtype, data, args)
        prof["other_load"] = load.share
        prof["attempts"] = attempt + 1
        if not best or (load.share or 0.0) < (best["other_load"] or 0.0):
            best = prof
        if (best["other_load"] or 0.0) <= CONTENDED or attempt == args.retries:
            break
        print(f"  contended ({100 * (load.share or 0.0):.0f}% of the CPUs used by others): profiling again")
        C.wait_until_idle(args.wait_idle)
    return best


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Per record: time over the floor of its own library, and over PyTorch of the same device and dtype."""
    floors = {r["library"]: r["iteration"].get("median_s") for r in records if r["kind"] == "floor"}
    torch_med = next((r["iteration"].get("median_s") for r in records if r["kind"] == "torch"), None)
    for r in records:
        med = r["iteration"].get("median_s")
        r["ratio_to_floor"] = C.ratio(med, floors.get(r["library"]))
        r["ratio_to_torch"] = C.ratio(med, torch_med)


# ----------------------------------------------------------------------------------------------------------
# Where the time goes: one NumPy iteration in pieces
# ----------------------------------------------------------------------------------------------------------


def profile_iteration(net: NetSpec, dtype: str, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Time the pieces of one fcn iteration on NumPy one by one, then cProfile a run of steps.

    The pieces are the calls ``FullyConnectedNet.loss`` and ``Solver._step`` make, with the same arguments,
    each timed in isolation (median of many calls). Their sum against the measured step says how much is
    glue (input handling, dict traffic, per-call namespace lookups); ``raw GEMM`` rows give the floor.
    """
    be = fcn.get_backend("numpy")
    xp = be.xp
    runner = FcnRunner(net, be, dtype, data, args.batch_size, args.seed)
    solver, model = runner.solver, runner.model
    p = model.params
    L = model.num_layers
    reps = args.profile_repeats
    for _ in range(args.warmup + 1):
        runner.step()
    solver._read_losses()
    idx = solver._order[: args.batch_size]
    Xb = xp.take(solver.X_train, idx, axis=0)
    yb = xp.take(solver.y_train, idx, axis=0)

    # One forward/backward by hand, keeping every intermediate, so that each piece gets its real inputs.
    h = [xp.reshape(Xb, (Xb.shape[0], -1))]  # h[i]: input of layer i + 1
    pre, caches = {}, {}
    for i in range(1, L):
        pre[i], caches[i] = fcn.affine_forward(h[-1], p[f"W{i}"], p[f"b{i}"])
        h.append(fcn.relu_forward(pre[i])[0])
    scores, caches[L] = fcn.affine_forward(h[-1], p[f"W{L}"], p[f"b{L}"])
    dpre = {L: _trusted(fcn.softmax_loss, scores, yb)[1]}  # dpre[i]: gradient at layer i's affine output
    dh = {}  # dh[i]: gradient reaching layer i's ReLU
    for i in range(L, 1, -1):
        dh[i - 1] = fcn.affine_backward(dpre[i], caches[i], need_dx=True)[0]
        dpre[i - 1] = fcn.relu_backward(dh[i - 1], pre[i - 1])
    grads = _trusted(model.loss, Xb, yb)[1]
    weights = [p[f"W{i}"] for i in range(1, L + 1)]
    # the reg-gradient and update pieces write in place: give them copies, so the model stays as it was
    g_copy = {k: xp.asarray(v, copy=True) for k, v in grads.items()}
    w_copy = {k: xp.asarray(v, copy=True) for k, v in p.items()}
    configs: dict[str, dict[str, Any]] = {k: {"learning_rate": LEARNING_RATE} for k in p}

    def flat_dot(w: Any) -> Any:
        return xp.vecdot(xp.reshape(w, (-1,)), xp.reshape(w, (-1,)))

    def reg_grad() -> None:
        for i, w in enumerate(weights, start=1):
            g_copy[f"W{i}"] += REG * w

    def update() -> None:
        for k in w_copy:
            fcn.sgd(w_copy[k], g_copy[k], configs[k])

    Piece = tuple[str, str, Callable[[], Any]]
    # The gathers cycle through an epoch's batches: the same batch again and again would be hot in cache,
    # while a training step reads 500 rows (6 MB in float32) it has not touched for a whole epoch.
    batches = [solver._order[k * len(idx) : (k + 1) * len(idx)] for k in range(solver.iterations_per_epoch)]
    turn = itertools.count()

    def next_idx() -> Any:
        return batches[next(turn) % len(batches)]

    X_all, y_all = solver.X_train, solver.y_train
    pieces: list[Piece] = [
        ("gather", "xp.take(X_train, idx): batch of images", lambda: xp.take(X_all, next_idx(), axis=0)),
        ("gather", "xp.take(y_train, idx): batch of labels", lambda: xp.take(y_all, next_idx(), axis=0)),
    ]
    if hasattr(model, "_inputs") and hasattr(model, "_labels"):
        pieces.append(
            ("glue", "model._inputs + model._labels (trusted)", lambda: _trusted(_inputs_labels, model, Xb, yb))
        )
    for i in range(1, L):
        W, b = p[f"W{i}"], p[f"b{i}"]
        pieces += [
            ("forward GEMM", f"raw h{i - 1} @ W{i}", partial(operator.matmul, h[i - 1], W)),
            ("forward", f"affine_forward layer {i}", partial(fcn.affine_forward, h[i - 1], W, b)),
            ("forward", f"relu_forward layer {i}", partial(fcn.relu_forward, pre[i])),
        ]
    pieces += [
        ("forward", f"affine_forward layer {L}", lambda: fcn.affine_forward(h[-1], p[f"W{L}"], p[f"b{L}"])),
        ("softmax", "softmax_loss (trusted)", lambda: _trusted(fcn.softmax_loss, scores, yb)),
        ("checks", "softmax_loss (value checks on)", lambda: fcn.softmax_loss(scores, yb)),
        ("reg", "reg loss: sum(vecdot(W, W)) over layers", lambda: sum(flat_dot(w) for w in weights)),
    ]
    for i in range(L, 0, -1):
        if i < L:
            pieces.append(("backward", f"relu_backward layer {i}", partial(fcn.relu_backward, dh[i], pre[i])))
        pieces += [
            (
                "backward GEMM",
                f"raw h{i - 1}.T @ dA{i}",
                partial(operator.matmul, xp.matrix_transpose(h[i - 1]), dpre[i]),
            ),
            (
                "backward",
                f"affine_backward layer {i} (need_dx={i > 1})",
                partial(fcn.affine_backward, dpre[i], caches[i], need_dx=i > 1),
            ),
        ]
    pieces += [
        ("reg", "reg grad: grads[W] += reg * W, all layers", reg_grad),
        ("update", "fcn.sgd on every parameter", update),
        ("total", "model.loss(X_batch, y_batch) (trusted)", lambda: _trusted(model.loss, Xb, yb)),
        ("total", "model.loss(X_batch, y_batch) (value checks on)", lambda: model.loss(Xb, yb)),
        ("total", "Solver._step() (trusted, as Solver.train runs it)", runner.step),
        ("total", "Solver._step() (value checks on)", solver._step),
    ]
    floor_fn = gemm_floor(
        lambda s: be.asarray(numpy.random.default_rng(0).standard_normal(s).astype(dtype)), model_dims(model), len(idx)
    )
    pieces.append(("total", "GEMM floor (the iteration's matrix products alone)", floor_fn))
    # Experiments for the analysis (each a candidate change to fcn, timed on the same inputs):
    # - the gather into a buffer allocated once (``mode="clip"``: with the default ``mode="raise"`` NumPy
    #   buffers ``out`` and copies twice), and split over two threads (NumPy's take releases the GIL);
    # - relu_backward as a multiplication by the mask (branch-free) instead of ``where``;
    # - the L2 gradient and the SGD update fused in place: ``w *= 1 - lr * reg; dw *= lr; w -= dw``;
    # - gather + GEMM floor: the realistic lower bound of a step that draws random batches.
    buf = numpy.empty_like(Xb)
    pool = ThreadPoolExecutor(2)
    half = len(idx) // 2

    def take_threads() -> None:
        i = next_idx()
        right = pool.submit(numpy.take, X_all, i[half:], 0, buf[half:], "clip")
        numpy.take(X_all, i[:half], 0, buf[:half], "clip")
        right.result()

    # In the library the gradient would be scaled in place (it is a fresh array every step); here it is
    # scaled into a scratch buffer, so that repeated calls do not shrink it into denormals (which are slow).
    scratch = {k: numpy.empty_like(v) for k, v in g_copy.items()}

    def fused_update() -> None:
        for i in range(1, L + 1):
            w_copy[f"W{i}"] *= 1 - LEARNING_RATE * REG
            for name in (f"W{i}", f"b{i}"):
                numpy.multiply(g_copy[name], LEARNING_RATE, out=scratch[name])
                w_copy[name] -= scratch[name]

    a1, dh1 = pre[1] if L > 1 else scores, dh[1] if L > 1 else dpre[L]
    pieces += [
        (
            "experiment",
            "numpy.take(X_train, idx, out=buf, mode='clip') (reused buffer)",
            lambda: numpy.take(X_all, next_idx(), 0, buf, "clip"),
        ),
        ("experiment", "the same split over 2 threads", take_threads),
        ("experiment", "relu_backward as dout * (x > 0)", lambda: dh1 * (a1 > 0)),
        ("experiment", "reg grad + sgd fused in place (all parameters)", fused_update),
        ("experiment", "gather (fresh) + GEMM floor", lambda: (xp.take(X_all, next_idx(), axis=0), floor_fn())),
    ]

    rows = []
    for group, name, fn in pieces:
        r = C.Runner(name, fn)
        C.time_block(r, reps, warmup=2)
        rows.append({"group": group, "piece": name, **C.summarize(r.samples)})
        solver._read_losses()  # the step pieces queue losses; keep the list short
    pool.shutdown()
    med = {r["piece"]: r["median_s"] for r in rows}
    step_med = med["Solver._step() (trusted, as Solver.train runs it)"]
    # The pieces a trusted step is made of (raw GEMMs are inside affine_*; value-checked variants are not run).
    accounted = sum(
        r["median_s"]
        for r in rows
        if r["group"] in ("gather", "glue", "forward", "softmax", "reg", "backward", "update")
    )

    in_situ = instrumented_iterations(model, solver.X_train, solver.y_train, args.batch_size, reps, args.seed)

    # cProfile over a run of steps: which Python functions the time is spent in (cProfile's own overhead
    # inflates the many small calls, so read it for call counts and ranking more than for absolute times).
    prof = cProfile.Profile()
    n_prof = max(reps // 2, 2)
    with trusted_inputs():
        prof.enable()
        for _ in range(n_prof):
            solver._step()
        prof.disable()
    solver._read_losses()
    stats = pstats.Stats(prof, stream=io.StringIO())
    entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    top = [
        {
            "function": f"{Path(filename).name}:{line}({func})",
            "calls_per_iteration": nc / n_prof,
            "tottime_ms_per_iteration": tt / n_prof * 1e3,
            "cumtime_ms_per_iteration": ct / n_prof * 1e3,
        }
        for (filename, line, func), (_, nc, tt, ct, _) in entries[:25]
    ]
    calls = sum(v[1] for v in stats.stats.values()) / n_prof  # type: ignore[attr-defined]
    return {
        "net": net.name,
        "dtype": dtype,
        "dims": model_dims(model),
        "pieces": rows,
        "step_median_s": step_med,
        "sum_of_pieces_s": accounted,
        "glue_residual_s": step_med - accounted,
        "gemm_floor_median_s": med["GEMM floor (the iteration's matrix products alone)"],
        "in_situ": in_situ,
        "cprofile_top_by_tottime": top,
        "cprofile_function_calls_per_iteration": calls,
    }


def instrumented_iterations(model: Any, X: Any, y: Any, batch: int, reps: int, seed: int) -> dict[str, Any]:
    """Run ``reps`` training iterations with a clock read between the stages; per-stage medians.

    Timing pieces in isolation misses what they do to each other (a freshly gathered batch is cold in cache
    for the GEMM, allocations are recycled differently). So this runs the iteration itself, stage by
    stage, with the calls ``Solver._step`` and ``FullyConnectedNet.loss`` make (fcn 0.1.0), on the model's
    own parameters, and reads ``perf_counter`` between stages (a clock read costs ~0.1 us). The total is
    checked against the measured ``Solver._step``.
    """
    xp = model.xp
    p = model.params
    L = model.num_layers
    rng = numpy.random.default_rng(seed)
    n = X.shape[0]
    order = xp.asarray(rng.permutation(n))
    ipe = max(n // batch, 1)
    configs = {k: {"learning_rate": LEARNING_RATE} for k in p}
    clock = time.perf_counter
    stages: dict[str, list[float]] = {}
    totals: list[float] = []
    has_private = hasattr(model, "_inputs") and hasattr(model, "_labels")

    def one(k: int) -> None:
        marks: list[tuple[str, float]] = []
        t0 = clock()
        idx = order[k * batch : (k + 1) * batch]
        Xb = xp.take(X, idx, axis=0)
        yb = xp.take(y, idx, axis=0)
        marks.append(("gather X, y (xp.take)", clock()))
        if has_private:
            Xb = model._inputs(Xb)
            yb = model._labels(yb, Xb.shape[0])
        marks.append(("input handling (_inputs, _labels)", clock()))
        caches = []
        h = Xb
        for i in range(1, L):
            a, c = fcn.affine_forward(h, p[f"W{i}"], p[f"b{i}"])
            marks.append((f"forward: affine layer {i} (GEMM + bias)", clock()))
            h, _ = fcn.relu_forward(a)
            caches.append((c, a))
            marks.append((f"forward: relu layer {i}", clock()))
        scores, last = fcn.affine_forward(h, p[f"W{L}"], p[f"b{L}"])
        marks.append((f"forward: affine layer {L}", clock()))
        data_loss, dscores = fcn.softmax_loss(scores, yb)
        marks.append(("softmax_loss", clock()))
        weights = [p[f"W{i}"] for i in range(1, L + 1)]
        reg_loss = sum(xp.vecdot(xp.reshape(w, (-1,)), xp.reshape(w, (-1,))) for w in weights)
        _ = data_loss + 0.5 * REG * reg_loss  # the loss value, computed as the model does
        marks.append(("reg loss (vecdot)", clock()))
        grads = {}
        dh, grads[f"W{L}"], grads[f"b{L}"] = fcn.affine_backward(dscores, last, need_dx=L > 1)
        marks.append((f"backward: affine layer {L}", clock()))
        for i in range(L - 1, 0, -1):
            c, a = caches[i - 1]
            da = fcn.relu_backward(dh, a)
            marks.append((f"backward: relu layer {i}", clock()))
            dh, grads[f"W{i}"], grads[f"b{i}"] = fcn.affine_backward(da, c, need_dx=i > 1)
            marks.append((f"backward: affine layer {i} (need_dx={i > 1})", clock()))
        for i, w in enumerate(weights, start=1):
            grads[f"W{i}"] += REG * w
        marks.append(("reg gradient (W += reg * W)", clock()))
        for name in p:
            p[name], configs[name] = fcn.sgd(p[name], grads[name], configs[name])
        marks.append(("sgd updates", clock()))
        prev = t0
        for name, t in marks:
            stages.setdefault(name, []).append(t - prev)
            prev = t
        totals.append(prev - t0)

    with trusted_inputs():
        for it in range(reps + 3):
            if it == 3:  # the first few are warm-up
                stages.clear()
                totals.clear()
            one(it % ipe)
    return {
        "stages": [{"stage": name, **C.summarize(v)} for name, v in stages.items()],
        "total": C.summarize(totals),
        "mirrors": "Solver._step + FullyConnectedNet.loss of fcn 0.1.0, trusted inputs",
    }


def _trusted(fn: Callable[..., Any], *a: Any) -> Any:
    """Call ``fn`` with value checks off (as inside ``Solver.train``)."""
    with trusted_inputs():
        return fn(*a)


def _inputs_labels(model: Any, X: Any, y: Any) -> None:
    """The input handling ``model.loss`` does before any arithmetic (private methods, read-only use)."""
    X = model._inputs(X)
    model._labels(y, X.shape[0])


def model_dims(model: Any) -> list[int]:
    """Layer widths of an fcn model."""
    return [model.input_dim, *model.hidden_dims, model.num_classes]


# ----------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------


def markdown_report(payload: dict[str, Any]) -> str:
    """The results as markdown: per-iteration table with ratios, epoch/eval table, profile, targets."""
    recs = payload["results"]
    out = [C.header_markdown("fcn training benchmark", payload)]
    out.append(
        f"Work unit: one SGD iteration, batch {payload['config']['batch_size']}, reg {REG}, on "
        f"{payload['config']['num_train']} device-resident training images. Ratios: time / GEMM floor of the "
        "same library, time / PyTorch on the same device and dtype (below 1 = faster than torch).\n"
    )
    out.append(
        f"Other processes used {_pct(payload.get('other_load_during_run'))} of the CPUs during the run "
        f"({_pct(payload.get('cpu_busy_before'))} busy just before it); the `others' CPU` column gives that share "
        "per group: above ~10%, absolute times are inflated.\n"
    )
    out.append("## Per iteration\n")
    out.append(
        C.markdown_table(
            [
                "net",
                "dtype",
                "runner",
                "median ms",
                "p10-p90 ms",
                "IQR ms",
                "images/s",
                "GFLOP/s",
                "vs floor",
                "vs torch",
                "others' CPU",
            ],
            [
                [
                    r["net"],
                    r["dtype"],
                    r["runner"],
                    C.ms(r["iteration"]["median_s"]),
                    f"{C.ms(r['iteration']['p10_s'])}-{C.ms(r['iteration']['p90_s'])}",
                    C.ms(r["iteration"]["iqr_s"]),
                    f"{r['images_per_s']:,.0f}",
                    f"{r['gflops_per_s']:.1f}",
                    C.fmt_ratio(r["ratio_to_floor"]),
                    C.fmt_ratio(r["ratio_to_torch"]),
                    _pct(r.get("other_load_during_iterations")),
                ]
                for r in recs
            ],
        )
    )
    out.append("\n## Epoch and full-set evaluation\n")
    rows = []
    for r in recs:
        epoch = r.get("epoch", {}).get("median_s")
        ev = r.get("eval_predict", r.get("eval", {})).get("median_s")
        ev2 = r.get("eval_check_accuracy", {}).get("median_s")
        rows.append(
            [
                r["net"],
                r["dtype"],
                r["runner"],
                "-" if epoch is None else f"{epoch:.3f}",
                f"{r['epoch_from_median_s']:.3f}" if r.get("epoch_from_median_s") else "-",
                "-" if ev is None else f"{ev:.3f}",
                "-" if ev2 is None else f"{ev2:.3f}",
                _pct(r.get("other_load_during_epoch_eval")),
            ]
        )
    out.append(
        C.markdown_table(
            [
                "net",
                "dtype",
                "runner",
                "epoch s (Solver.train)",
                "iterations x median s",
                "eval s",
                "eval s (check_accuracy)",
                "others' CPU",
            ],
            rows,
        )
    )
    out.append(
        "\n`eval s` is `model.predict` on the whole training split for fcn (value checks on), a `no_grad` forward "
        "for torch, and the forward GEMMs alone for the floors.\n"
    )
    targets = payload.get("targets")
    if targets:
        out.append("## Targets (NumPy float32, shallow net)\n")
        for t in targets:
            out.append(
                f"- {t['what']}: measured {t['measured']}, target {t['target']}: {'met' if t['met'] else 'NOT met'}"
            )
        out.append("")
    prof = payload.get("profile")
    if prof:
        out.append(f"## Where one fcn NumPy {prof['dtype']} iteration goes ({prof['net']} net)\n")
        out.append(f"Other processes used {_pct(prof.get('other_load'))} of the CPUs during the profile.\n")
        out.append(
            C.markdown_table(
                ["group", "piece", "median ms", "p10-p90 ms"],
                [
                    [r["group"], r["piece"], C.ms(r["median_s"]), f"{C.ms(r['p10_s'])}-{C.ms(r['p90_s'])}"]
                    for r in prof["pieces"]
                ],
            )
        )
        out.append(
            f"\nStep {C.ms(prof['step_median_s'])} ms; pieces of the step add up to {C.ms(prof['sum_of_pieces_s'])} ms "
            f"(residual glue {C.ms(prof['glue_residual_s'])} ms); GEMM floor {C.ms(prof['gemm_floor_median_s'])} ms; "
            f"{prof['cprofile_function_calls_per_iteration']:.0f} Python function calls per iteration.\n"
        )
        situ = prof.get("in_situ")
        if situ:
            out.append(
                "In situ: the iteration itself, with a clock read between stages (medians over iterations; "
                f"total {C.ms(situ['total']['median_s'])} ms, vs the measured step {C.ms(prof['step_median_s'])} ms):\n"
            )
            total = situ["total"]["median_s"]
            out.append(
                C.markdown_table(
                    ["stage", "median ms", "p10-p90 ms", "share"],
                    [
                        [
                            r["stage"],
                            C.ms(r["median_s"]),
                            f"{C.ms(r['p10_s'])}-{C.ms(r['p90_s'])}",
                            f"{100 * r['median_s'] / total:.1f}%",
                        ]
                        for r in situ["stages"]
                    ],
                )
            )
            out.append("")
        out.append("cProfile, top functions by own time (per iteration; cProfile inflates small calls):\n")
        out.append(
            C.markdown_table(
                ["function", "calls", "own ms", "cumulative ms"],
                [
                    [
                        f"`{t['function']}`",
                        f"{t['calls_per_iteration']:.0f}",
                        f"{t['tottime_ms_per_iteration']:.3f}",
                        f"{t['cumtime_ms_per_iteration']:.3f}",
                    ]
                    for t in prof["cprofile_top_by_tottime"][:15]
                ],
            )
        )
    return "\n".join(out) + "\n"


def _pct(share: float | None) -> str:
    """A 0..1 share as a percentage for tables."""
    return "-" if share is None else f"{100 * share:.0f}%"


def targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets for NumPy float32 on the shallow net: <= 1.10x the floor, >= 1.5x faster than torch."""
    rec = next(
        (r for r in records if r["net"] == "shallow" and r["dtype"] == "float32" and r["runner"] == "fcn[numpy]"), None
    )
    if rec is None:
        return []
    out = []
    if rec["ratio_to_floor"] is not None:
        out.append(
            {
                "what": "fcn[numpy] float32 / gemm-floor[numpy]",
                "measured": f"{rec['ratio_to_floor']:.2f}x",
                "target": "<= 1.10x",
                "met": rec["ratio_to_floor"] <= 1.10,
            }
        )
    if rec["ratio_to_torch"] is not None:
        speedup = 1 / rec["ratio_to_torch"]
        out.append(
            {
                "what": "torch[cpu] float32 / fcn[numpy] float32 (speed-up over torch)",
                "measured": f"{speedup:.2f}x",
                "target": ">= 1.5x",
                "met": speedup >= 1.5,
            }
        )
    return out


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------

#: Defaults of a full run, and of ``--quick`` (a smoke run: tiny, synthetic, seconds).
FULL = {
    "n_train": 49_000,
    "n_val": 1_000,
    "batch_size": 500,
    "shallow_hidden": "100",
    "deep_hidden": "1024,512",
    "repeats": 60,
    "rounds": 4,
    "warmup": 3,
    "settle": 0.2,
    "epoch_repeats": 2,
    "eval_repeats": 2,
    "profile_repeats": 60,
}
QUICK = {
    "n_train": 1_000,
    "n_val": 100,
    "batch_size": 100,
    "shallow_hidden": "16",
    "deep_hidden": "32,16",
    "repeats": 2,
    "rounds": 1,
    "warmup": 1,
    "settle": 0.0,
    "epoch_repeats": 1,
    "eval_repeats": 1,
    "profile_repeats": 4,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line; unset options take their value from :data:`FULL` or, with ``--quick``, :data:`QUICK`."""
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="tiny smoke run (1000 synthetic samples, batch 100, small nets, 2 repeats)"
    )
    ap.add_argument(
        "--data-dir", help="CIFAR-10 folder (default: $FCN_DATA_DIR, else ../shared/datasets/... if present)"
    )
    ap.add_argument("--synthetic", action="store_true", help="use synthetic data even where CIFAR-10 is found")
    ap.add_argument("--out", type=Path, default=C.DEFAULT_OUT, help="results folder (default: benchmarks/results)")
    ap.add_argument("--backends", default="numpy,cupy", help="fcn backends to time (cupy only where a GPU is seen)")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--nets", default="shallow,deep", help="shallow (3072-100-10) and/or deep (3072-1024-512-10)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer even where torch is installed")
    ap.add_argument("--no-profile", action="store_true", help="skip the piece-by-piece profile of a NumPy iteration")
    ap.add_argument("--repeats", type=int, help="timed iterations per runner (spread over --rounds)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (runners alternate between rounds)")
    ap.add_argument("--warmup", type=int, help="untimed iterations before each block")
    ap.add_argument("--settle", type=float, help="seconds of pause before each block (lets BLAS threads go idle)")
    ap.add_argument("--epoch-repeats", type=int, help="epochs timed per fcn runner")
    ap.add_argument("--eval-repeats", type=int, help="full-set evaluations timed per runner")
    ap.add_argument("--profile-repeats", type=int, help="calls per piece in the profile")
    ap.add_argument("--n-train", type=int, help="training samples resident on the device (default 49000)")
    ap.add_argument("--n-val", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--shallow-hidden", help="hidden size of the shallow net (default 100)")
    ap.add_argument("--deep-hidden", help="hidden sizes of the deep net (default 1024,512)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--wait-idle", type=float, default=0.0, help="wait up to this many seconds for other jobs to leave the CPUs"
    )
    ap.add_argument(
        "--retries", type=int, default=0, help="run a group again (up to N times) when other jobs took >10%% CPU"
    )
    args = ap.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick and not args.data_dir:
        args.synthetic = True  # a smoke run must not read 180 MB
    return args


def run_all(
    base: C.Dataset,
    dtypes: Sequence[str],
    nets: Sequence[NetSpec],
    fcn_backends: Sequence[fcn.Backend],
    torch: ModuleType | None,
    t_devices: Sequence[str],
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every group (dtype x net x device), then the profile of a NumPy iteration; returns (records, profile)."""
    records: list[dict[str, Any]] = []
    profile = None
    be_by_device = {("gpu" if b.is_cupy else "cpu"): b for b in fcn_backends}
    has_numpy = "cpu" in be_by_device
    for dtype in dtypes:
        data = host_data(base, dtype)  # one host copy per dtype, shared by every runner of that dtype
        for net in nets:
            # CPU group: fcn[numpy] + numpy floor + torch[cpu] + torch floor; GPU group: the same with cupy/cuda.
            for device, tdev in (("cpu", "cpu"), ("gpu", "cuda")):
                be = be_by_device.get(device)
                t_dev = tdev if tdev in t_devices else None
                if be is not None or t_dev is not None:
                    records += run_group_retrying(net, dtype, device, be, torch, t_dev, data, args)
        # the profile is of NumPy float32 (the target), or of the only dtype asked for
        if not args.no_profile and profile is None and has_numpy and (dtype == "float32" or len(dtypes) == 1):
            print(f"\n== profile: fcn numpy {dtype}, {nets[0].name} net ==", flush=True)
            profile = profile_retrying(nets[0], dtype, data, args)
        del data
    return records, profile


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Run the benchmark; return the paths of the JSON, markdown and PNG written."""
    args = parse_args(argv)
    when = C.utc_now()
    C.wait_until_idle(args.wait_idle)
    busy_before = C.cpu_busy_fraction()
    C.warn_if_busy(busy_before)
    load_before = C.load_average()
    torch = C.load_torch(not args.no_torch)
    backends = C.split_csv(args.backends)
    dtypes = C.split_csv(args.dtypes)
    nets_all = {
        "shallow": NetSpec("shallow", tuple(C.parse_dims(args.shallow_hidden)), 1e-3),
        "deep": NetSpec("deep", tuple(C.parse_dims(args.deep_hidden)), 1e-2),
    }
    nets = [nets_all[n] for n in C.split_csv(args.nets)]
    fcn_backends = available_backends(backends)
    t_devices = torch_devices(torch, backends)

    base = C.load_data(args.data_dir, args.n_train, args.n_val, synthetic=args.synthetic)
    print(f"data: {base.kind}; X_train {base.X_train.shape} {base.X_train.dtype}")

    with C.OtherLoad() as run_load:
        records, profile = run_all(base, dtypes, nets, fcn_backends, torch, t_devices, args)

    payload = C.common_payload(torch, base.kind, when, args) | {
        "benchmark": "train",
        "config": {
            "num_train": int(base.X_train.shape[0]),
            "batch_size": args.batch_size,
            "reg": REG,
            "learning_rate": LEARNING_RATE,
            "nets": {n.name: n.dims() for n in nets},
            "eval_chunk": EVAL_CHUNK,
            "timing": "median over interleaved rounds; fcn steps run under trusted_inputs() as Solver.train does",
            "data_note": "timings do not depend on pixel values; synthetic data is a faithful stand-in",
        },
        "load_average": {"before": load_before, "after": C.load_average()},
        "cpu_busy_before": busy_before,
        "other_load_during_run": run_load.share,
        "results": records,
        "targets": targets(records),
        "profile": profile,
    }
    stem = C.result_stem("train", when)
    out = Path(args.out)
    paths = {
        "json": C.write_json(out / f"{stem}.json", payload),
        "md": out / f"{stem}.md",
        "png": out / f"{stem}.png",
    }
    paths["md"].write_text(markdown_report(payload))
    panels: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for r in records:
        dims = "-".join(map(str, r["dims"]))
        panels.setdefault(f"{r['net']} net ({dims}), batch {r['batch_size']}", []).append(
            (f"{r['dtype']} {r['runner']}", r["iteration"])
        )
    C.bar_chart(
        paths["png"],
        panels,
        title=f"fcn training iteration ({base.kind.split(' (')[0]}), {payload['machine']['cpu_model']}",
    )
    for t in payload["targets"]:
        print(f"target {t['what']}: {t['measured']} (want {t['target']}) -> {'met' if t['met'] else 'NOT met'}")
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return paths


if __name__ == "__main__":
    main()
