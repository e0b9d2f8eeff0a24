"""The PyTorch peer of ``bench_train.py``: fcn's training iteration as a PyTorch user would write it."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy
from _common import EVAL_CHUNK, LEARNING_RATE, REG


class TorchRunner:
    """The PyTorch peer: the same net, weights, batch size and batch-order scheme, written as PyTorch users do.

    Autograd computes the gradients (``loss.backward()``), the update is ``p.add_(p.grad, alpha=-lr)`` (what
    ``torch.optim.SGD`` does), and the thread count is PyTorch's default. The data lives on the device; on
    the CPU ``torch.from_numpy`` shares the NumPy buffer, so no second copy of the data set is made.
    """

    def __init__(self, torch: ModuleType, device: str, dtype: str, data: dict[str, Any], params: dict, args: Any):
        self.torch, self.device, self.batch = torch, torch.device(device), args.batch_size
        tdtype = getattr(torch, dtype)
        X = data["X_train"]
        self.X = torch.from_numpy(X.reshape(X.shape[0], -1)).to(self.device, tdtype)
        self.y = torch.from_numpy(numpy.ascontiguousarray(data["y_train"], dtype=numpy.int64)).to(self.device)
        self.layers = [
            tuple(torch.tensor(params[f"{k}{i}"], dtype=tdtype, device=self.device, requires_grad=True) for k in "Wb")
            for i in range(1, len(params) // 2 + 1)
        ]
        self.num_train = self.X.shape[0]
        self.iterations_per_epoch = max(self.num_train // self.batch, 1)
        self.generator = torch.Generator().manual_seed(args.seed)
        self.order: Any = None
        self.iteration = 0
        self.losses: list[Any] = []

    def sync(self) -> None:
        """Wait for queued CUDA work (nothing to do on the CPU)."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def forward(self, h: Any) -> Any:
        """Class scores: ``{affine - relu} x L - affine``."""
        for W, b in self.layers[:-1]:
            h = self.torch.relu(h @ W + b)
        W, b = self.layers[-1]
        return h @ W + b

    def step(self) -> None:
        """One SGD iteration: gather on the device, forward, loss + L2, backward, update."""
        torch = self.torch
        k = self.iteration % self.iterations_per_epoch
        if k == 0 or self.order is None:  # drawn on the host and moved once per epoch, as fcn's Solver does
            self.order = torch.randperm(self.num_train, generator=self.generator).to(self.device)
        idx = self.order[k * self.batch : (k + 1) * self.batch]
        scores = self.forward(self.X.index_select(0, idx))
        reg = sum((W * W).sum() for W, _ in self.layers)
        loss = torch.nn.functional.cross_entropy(scores, self.y.index_select(0, idx)) + 0.5 * REG * reg
        loss.backward()
        with torch.no_grad():
            for p in (p for layer in self.layers for p in layer):
                p.add_(p.grad, alpha=-LEARNING_RATE)
                p.grad = None
        self.losses.append(loss.detach())
        self.iteration += 1

    def after_block(self) -> None:
        """Read back the losses outside the timing; fail loudly on divergence like fcn's Solver."""
        if self.losses:
            last, self.losses = float(self.losses[-1]), []
            if not math.isfinite(last):
                raise FloatingPointError(f"torch peer diverged: loss {last}")

    def evaluate(self) -> None:
        """Accuracy on the whole training split in chunks of :data:`EVAL_CHUNK` rows, without autograd."""
        correct = self.torch.zeros((), dtype=self.torch.int64, device=self.device)
        with self.torch.no_grad():
            for i in range(0, self.num_train, EVAL_CHUNK):
                correct += (self.forward(self.X[i : i + EVAL_CHUNK]).argmax(dim=1) == self.y[i : i + EVAL_CHUNK]).sum()
        int(correct)  # the read-back a user needs to see the number (and the sync on CUDA)
