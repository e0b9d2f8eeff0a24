"""The JAX peer of ``bench_train.py``: fcn's training step as one ``jax.jit``-compiled function."""

from __future__ import annotations

import math
from typing import Any

import numpy


def plain_net_loss(jax: Any, num_layers: int, reg: float) -> Any:
    """``loss(params, x (N, D), y (N,))``: ``{affine - relu} x (L - 1) - affine``, softmax cross-entropy + L2."""
    jnp = jax.numpy

    def loss_fn(p: dict[str, Any], xb: Any, yb: Any) -> Any:
        h = xb
        for i in range(1, num_layers):
            h = jax.nn.relu(h @ p[f"W{i}"] + p[f"b{i}"])
        scores = h @ p[f"W{num_layers}"] + p[f"b{num_layers}"]
        logp = jax.nn.log_softmax(scores, axis=1)
        data_loss = -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))
        return data_loss + 0.5 * reg * sum(jnp.sum(p[f"W{i}"] ** 2) for i in range(1, num_layers + 1))

    return loss_fn


def make_jax_peer(
    jax: Any,
    dtype: str,
    data: dict[str, Any],
    params: dict[str, Any],
    *,
    batch: int,
    seed: int,
    reg: float,
    lr: float,
    dropout_keep_ratio: float | None = None,
) -> Any:
    """A ``step()`` doing fcn's plain step in JAX: the same weights, batch size and batch-order scheme.

    One jitted function gathers the batch from device-resident data (``jnp.take``), runs ``{affine - relu} x L
    - affine``, softmax cross-entropy + ``0.5 * reg * sum(W * W)``, ``jax.value_and_grad`` and the SGD update,
    with the parameters donated (updated in place). ``step()`` waits for its result (``block_until_ready``):
    a NumPy step is synchronous too. Nets with batch norm or dropout raise ``NotImplementedError``.
    """
    if dropout_keep_ratio is not None or any(k.startswith("gamma") for k in params):
        raise NotImplementedError("the JAX peer runs plain nets only (no batch norm, no dropout)")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # JAX computes in float32 unless told otherwise
    jnp = jax.numpy
    num_layers = sum(1 for k in params if k.startswith("W"))
    cpu = jax.devices("cpu")[0]  # beside NumPy on the CPU, even where JAX also sees a GPU
    X = jax.device_put(numpy.asarray(data["X_train"], dtype).reshape(len(data["X_train"]), -1), cpu)
    y = jax.device_put(numpy.asarray(data["y_train"], numpy.int32), cpu)
    p = {k: jax.device_put(numpy.asarray(v, dtype), cpu) for k, v in params.items()}

    loss_fn = plain_net_loss(jax, num_layers, reg)

    def train_step(p: dict[str, Any], X: Any, y: Any, order: Any, k: Any) -> tuple[dict[str, Any], Any]:
        idx = jax.lax.dynamic_slice_in_dim(order, k * batch, batch)
        loss, grads = jax.value_and_grad(loss_fn)(p, jnp.take(X, idx, axis=0), jnp.take(y, idx, axis=0))
        return {name: w - lr * grads[name] for name, w in p.items()}, loss

    jitted = jax.jit(train_step, donate_argnums=0)
    num_train = X.shape[0]
    per_epoch = max(num_train // batch, 1)
    rng = numpy.random.default_rng(seed)
    state: dict[str, Any] = {"it": 0, "order": None, "params": p, "last": None}

    def step() -> None:
        k = state["it"] % per_epoch
        if k == 0:  # drawn on the host and moved once per epoch, as fcn's Solver does
            state["order"] = jax.device_put(rng.permutation(num_train).astype(numpy.int32), cpu)
        state["params"], state["last"] = jitted(state["params"], X, y, state["order"], k)
        state["last"].block_until_ready()
        state["it"] += 1

    def check() -> None:
        """Read the last loss back (outside the timing): fail loudly on divergence, like fcn's Solver."""
        if state["last"] is not None and not math.isfinite(float(state["last"])):
            raise FloatingPointError(f"the JAX peer diverged: loss {float(state['last'])}")

    step.check = check  # type: ignore[attr-defined]
    return step
