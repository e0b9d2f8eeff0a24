"""CUDA graphs for the training step. Opt-in, **not yet verified on a GPU**.

A training step of a small network is dozens of short kernels; on a GPU the host's cost of launching them
(CuPy's Python, the driver) can exceed their run time. A CUDA graph records the step's launches once and
replays them with one call. This module holds:

- :class:`CapturedStep`: captures a function's GPU work into a graph (``cupy.cuda.Stream.begin_capture`` /
  ``end_capture``) and replays it (``graph.launch``). Allocations made while capturing come from a private
  memory pool that lives as long as the graph, so no later allocation can reuse memory the graph still
  writes (CuPy's default pool would hand it out again as soon as the capture's temporaries are freed).
- :class:`GraphedStep`: a :class:`~fcn.training.step.TrainStep` replayed as a graph, with the same call
  signature (the compiled step replaces the eager one). With ``Solver(..., cuda_graph=True)`` or
  ``FCN_CUDA_GRAPH=1``, the first step runs eagerly (compiling kernels, creating the optimiser state and
  every cached buffer on the capture stream), the second is captured, and every later step is a replay:
  copy the batch's indices into the graph's index buffer, launch the graph, copy the loss out. The learning
  rate and Adam's step count live in a small device array (``FusedCupyOps.device_hyper``) that the captured
  update kernels read, so learning-rate decay and Adam's bias correction need no new capture. It needs the
  fused kernels (:class:`fcn.ops.FusedCupyOps`), a built-in update rule and a model whose step has no
  randomness of its own (no dropout): :func:`unsupported` says why when it cannot be used, and the Solver
  then trains eagerly.

Captures run on a non-blocking stream (as CuPy's own capture example does): a blocking stream is ordered with
the legacy default stream, and any work there would invalidate the capture. The diagnostics
(:func:`fcn.ops.cuda.host_waits`, :func:`fcn.ops.cuda.graph_node_counts`) live with the other CUDA helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy

from ..ops import FusedCupyOps
from ..ops.switches import env_switch
from .step import TrainStep

__all__ = [
    "ENV_CUDA_GRAPH",
    "CapturedStep",
    "GraphedStep",
    "unsupported",
    "cuda_graph_requested",
]

#: Environment variable that turns CUDA-graph replay of the training step on (where it is supported).
ENV_CUDA_GRAPH = "FCN_CUDA_GRAPH"


def cuda_graph_requested(explicit: bool | None = None) -> bool:
    """``explicit`` when given, else ``$FCN_CUDA_GRAPH`` (off when unset; see :func:`fcn.ops.switches.env_switch`)."""
    return env_switch(ENV_CUDA_GRAPH, False, explicit)


class CapturedStep:
    """``fn``'s GPU work captured once into a CUDA graph on ``stream``; :meth:`replay` runs it again.

    ``fn`` takes no arguments and must be capturable: no host synchronisation, no host -> device copy from
    pageable memory, and the same arrays (addresses) on every run: inputs are written into buffers that
    exist before the capture, and results are read from ``outputs`` (what ``fn`` returned at capture time,
    kept alive here and overwritten by each replay). Kernels must already be compiled (run ``fn``, or the
    step it is part of, once eagerly on ``stream`` first).
    """

    def __init__(self, fn: Callable[[], Any], stream: Any = None):
        import cupy

        self.stream = stream if stream is not None else cupy.cuda.Stream(non_blocking=True)
        # a private pool, kept as long as the graph: the capture's allocations are never handed to anyone else
        self.pool = cupy.cuda.MemoryPool()
        with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
            self.stream.begin_capture()
            try:
                self.outputs = fn()
            except BaseException:
                try:
                    self.stream.end_capture()
                except Exception:  # the capture is invalid anyway: report fn's error, not this one
                    pass
                raise
            self.graph = self.stream.end_capture()

    def replay(self) -> None:
        """Launch the captured work on :attr:`stream` (asynchronously)."""
        self.graph.launch(stream=self.stream)


# -- the training step as a graph ------------------------------------------------------------------------


def unsupported(step: TrainStep) -> str | None:
    """Why ``step`` cannot be replayed as a graph, or ``None`` when it can."""
    backend = step.backend
    if not backend.is_cupy:
        return f"CUDA graphs need the CuPy backend, not {backend.name}"
    if not isinstance(backend.ops, FusedCupyOps):
        return "CUDA graphs need the fused kernels (FCN_FUSED_KERNELS=1 or get_backend('cupy', fused=True))"
    if step.optimizer.spec is None:
        return "CUDA graphs need a built-in update rule (a callable rule runs per parameter on the host)"
    for layer in getattr(step.model, "layers", ()):
        if "dropout" in type(layer).__name__.lower():
            return "the model has dropout: its random mask would be replayed unchanged"
    if step.augmenter:
        return "augmentation draws its flips and crops on the host at every step"
    if step.clip_grad_norm is not None:
        return "gradient clipping is not part of the captured step"
    return None


class GraphedStep:
    """Runs ``step``'s training steps as replays of one captured CUDA graph; called like ``step()`` itself.

    The results are those of the eager steps (same kernels, same order), the loss history included; the
    host-side step count ``t`` of Adam advances as in eager mode, so checkpoints are unaffected. The graph is
    captured again whenever the parameter, state or buffer arrays were replaced (a loaded checkpoint, the best
    snapshot put back).
    """

    def __init__(self, step: TrainStep):
        import cupy

        reason = unsupported(step)
        if reason is not None:
            raise ValueError(reason)
        self.step = step
        self.cp = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.captured: CapturedStep | None = None
        self.idx: Any = None
        self.hyper: Any = None
        self._lr_on_device: float | None = None
        self._identity: tuple = ()

    def _identities(self) -> tuple:
        s = self.step
        return (
            tuple(map(id, s.model.params.values())),
            tuple(id(a) for state in s.optimizer.state.values() for a in state.values()),
            tuple(map(id, s.model.buffers.values())),
        )

    def __call__(self) -> None:
        """One training step: eager the first time (and after the arrays changed), then a replay."""
        s, cp = self.step, self.cp
        origin = cp.cuda.get_current_stream()
        if self.captured is not None and self._identities() != self._identity:
            self.captured = None  # parameters or state were replaced (a checkpoint, the best snapshot): recapture
        if self.captured is None:
            self.stream.wait_event(origin.record())
            with self.stream:
                s()  # compiles, creates state and scratch buffers on this stream; a real step
                self._capture()
            origin.wait_event(self.stream.record())
            return
        idx = s.next_indices()
        self.stream.wait_event(origin.record())
        with self.stream:
            cp.copyto(self.idx, idx)
            lr = float(s.optimizer.config["learning_rate"])
            if lr != self._lr_on_device:
                self.hyper[0:1].fill(lr)
                self._lr_on_device = lr
            self.captured.replay()
            loss = self.captured.outputs.copy()  # the graph overwrites its loss on the next replay
        origin.wait_event(self.stream.record())
        config = s.optimizer.config
        if "t" in config:
            config["t"] = int(config["t"]) + 1
        s.pending_losses.append(loss)
        s.iteration += 1

    def _capture(self) -> None:
        s, cp = self.step, self.cp
        ops = s.backend.ops
        config = s.optimizer.config
        # every batch has min(batch_size, num_train) rows (an epoch is at least one step over all samples)
        self.idx = cp.zeros(min(s.batch_size, s.num_train), dtype=cp.int64)
        t = int(config.get("t", 0))
        beta1, beta2 = float(config.get("beta1", 0.0)), float(config.get("beta2", 0.0))
        lr = float(config["learning_rate"])
        self.hyper = cp.asarray(numpy.array([lr, t, 1 - beta1**t, 1 - beta2**t], dtype=numpy.float64))
        self._lr_on_device = lr
        before = self._identities()

        def device_step() -> Any:
            X_batch, y_batch = s.gather(self.idx)
            loss, grads = s.loss_and_grads(X_batch, y_batch)
            s.update(grads)
            return loss

        saved = dict(config)
        ops.device_hyper = self.hyper
        try:
            self.captured = CapturedStep(device_step, stream=self.stream)
        finally:
            ops.device_hyper = None
            config.clear()
            config.update(saved)  # capturing ran the host side of the update (t += 1) without running the step
        if self._identities() != before:
            self.captured = None
            raise RuntimeError("the training step replaced its parameter or state arrays: it cannot be replayed")
        self._identity = before
