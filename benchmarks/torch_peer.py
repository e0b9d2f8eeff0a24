"""The PyTorch peer of ``bench_train.py``: fcn's training step as a PyTorch user would write it."""

from __future__ import annotations

import math
from typing import Any

import numpy


def make_peer(
    torch: Any,
    device: str,
    dtype: str,
    data: dict[str, Any],
    params: dict[str, Any],
    *,
    batch: int,
    seed: int,
    reg: float,
    lr: float,
    dropout_keep_ratio: float | None = None,
    compiled: bool = False,
) -> Any:
    """A ``step()`` doing fcn's step in PyTorch: the same weights, batch size and batch-order scheme.

    ``params`` are fcn's host arrays (``W1, b1, ...``, and ``gamma1, beta1, ...`` with batch norm). The step
    gathers a batch from device-resident data, runs ``{affine - [batchnorm] - relu - [dropout]} x L - affine``,
    cross-entropy + ``0.5 * reg * sum(W * W)``, ``backward()``, and ``p.add_(p.grad, alpha=-lr)`` (what
    ``torch.optim.SGD`` does). ``compiled``: the loss goes through ``torch.compile(mode="reduce-overhead")``
    (CUDA graphs on a GPU); compilation happens on the first calls, which the benchmark's warm-up absorbs.
    """
    nn, F = torch.nn, torch.nn.functional
    tdtype, dev = getattr(torch, dtype), torch.device(device)
    num_layers = sum(1 for k in params if k.startswith("W"))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            X = data["X_train"]  # on the CPU, from_numpy shares the buffer: no second copy of the data
            self.register_buffer("X", torch.from_numpy(X.reshape(len(X), -1)).to(dev, tdtype))
            self.register_buffer("y", torch.from_numpy(numpy.asarray(data["y_train"], numpy.int64)).to(dev))
            self.p = nn.ParameterDict(
                {k: nn.Parameter(torch.tensor(v, dtype=tdtype, device=dev)) for k, v in params.items()}
            )

        def forward(self, idx: Any) -> Any:
            p, h = self.p, self.X.index_select(0, idx)
            for i in range(1, num_layers):
                h = h @ p[f"W{i}"] + p[f"b{i}"]
                if f"gamma{i}" in p:
                    h = F.batch_norm(h, None, None, p[f"gamma{i}"], p[f"beta{i}"], training=True)
                h = torch.relu(h)
                if dropout_keep_ratio is not None:
                    h = F.dropout(h, 1 - dropout_keep_ratio)
            scores = h @ p[f"W{num_layers}"] + p[f"b{num_layers}"]
            l2 = sum((p[f"W{i}"] * p[f"W{i}"]).sum() for i in range(1, num_layers + 1))
            return F.cross_entropy(scores, self.y.index_select(0, idx)) + 0.5 * reg * l2

    net = Net()
    loss_fn = torch.compile(net, mode="reduce-overhead") if compiled else net
    num_train = net.X.shape[0]
    per_epoch = max(num_train // batch, 1)
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {"it": 0, "order": None, "last": None}

    def step() -> None:
        k = state["it"] % per_epoch
        if k == 0:  # drawn on the host and moved once per epoch, as fcn's Solver does
            state["order"] = torch.randperm(num_train, generator=generator).to(dev)
        if compiled and dev.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # each call is a new training step
        loss = loss_fn(state["order"][k * batch : (k + 1) * batch])
        loss.backward()
        with torch.no_grad():
            for w in net.p.values():
                w.add_(w.grad, alpha=-lr)
                w.grad = None
        state["last"] = loss.detach().clone() if compiled else loss.detach()  # CUDA graphs reuse output memory
        state["it"] += 1

    def check() -> None:
        """Read the last loss back (outside the timing): fail loudly on divergence, like fcn's Solver."""
        if state["last"] is not None and not math.isfinite(float(state["last"])):
            raise FloatingPointError(f"the PyTorch peer diverged: loss {float(state['last'])}")

    step.check = check  # type: ignore[attr-defined]
    return step
