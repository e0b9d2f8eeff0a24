"""The CUDA-graph replay of the training step (fcn/training/cuda_graph.py), its launch logic on a stand-in CuPy.

What a real graph captures needs a GPU (tests/test_fused_gpu.py); these tests pin the host-side decisions that
CPU CI can check: the stream captures run on, and the size of the captured index buffer.
"""

from __future__ import annotations

import sys
import types
from contextlib import nullcontext

import numpy as np
import pytest

from fcn.training import cuda_graph


class FakeStream:
    """Records how it was made; captures return a token graph."""

    made: list[bool] = []

    def __init__(self, non_blocking: bool = False):
        FakeStream.made.append(non_blocking)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin_capture(self):
        pass

    def end_capture(self):
        return types.SimpleNamespace(launch=lambda stream: None)

    def record(self):
        return None

    def wait_event(self, event):
        pass


@pytest.fixture
def fake_cupy(monkeypatch):
    FakeStream.made = []
    cuda = types.SimpleNamespace(
        Stream=FakeStream,
        MemoryPool=lambda: types.SimpleNamespace(malloc=None),
        using_allocator=lambda malloc: nullcontext(),
        get_current_stream=lambda: FakeStream(non_blocking=True),
    )
    cp = types.SimpleNamespace(cuda=cuda, zeros=np.zeros, int64=np.int64, asarray=np.asarray, copyto=np.copyto)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    return cp


def test_captures_run_on_a_non_blocking_stream(fake_cupy):
    cuda_graph.CapturedStep(lambda: None)
    assert FakeStream.made == [True]  # a blocking stream is ordered with the legacy default stream


class RecordingStep:
    """The parts of a TrainStep that the graph uses, recording the batch it gathers."""

    def __init__(self, num_train: int, batch_size: int):
        self.num_train, self.batch_size, self.iteration = num_train, batch_size, 0
        self.optimizer = types.SimpleNamespace(config={"learning_rate": 0.1}, state={})
        self.model = types.SimpleNamespace(params={"W": np.zeros(2)}, buffers={})
        self.backend = types.SimpleNamespace(ops=types.SimpleNamespace(device_hyper=None))
        self.pending_losses: list = []
        self.gathered: list[tuple] = []

    def __call__(self):
        self.iteration += 1

    def next_indices(self):
        return np.arange(min(self.batch_size, self.num_train))

    def gather(self, idx):
        self.gathered.append(idx.shape)
        return idx, idx

    def loss_and_grads(self, X, y):
        return np.zeros(()), {}

    def update(self, grads):
        pass


@pytest.mark.parametrize(("num_train", "batch_size"), [(3, 8), (1, 8), (20, 8)])
def test_the_captured_index_buffer_has_the_rows_of_a_real_batch(fake_cupy, monkeypatch, num_train, batch_size):
    monkeypatch.setattr(cuda_graph, "unsupported", lambda step: None)
    step = RecordingStep(num_train, batch_size)
    graphed = cuda_graph.GraphedStep(step)
    graphed()  # eager, then the capture
    graphed()  # a replay: the epoch's indices are copied into the captured buffer
    rows = min(batch_size, num_train)  # an epoch has at least one step, over all samples
    assert step.gathered == [(rows,)] and graphed.idx.shape == (rows,)
    assert step.iteration == 2 and len(step.pending_losses) == 1
