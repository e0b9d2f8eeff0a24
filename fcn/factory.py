"""One place that turns a model name and hidden sizes into a network (``fcn train``, ``fcn sweep``, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .models import FullyConnectedNet, ShallowLayerNet

__all__ = ["MODELS", "build_model"]

#: Model names -> (class, default weight scale): the chapter's 1e-3 for the shallow net, 1e-2 for deeper ones.
MODELS: dict[str, tuple[type, float]] = {"shallow": (ShallowLayerNet, 1e-3), "fc": (FullyConnectedNet, 1e-2)}


def build_model(
    model: str = "shallow",
    hidden_dims: int | Sequence[int] = (100,),
    *,
    weight_scale: float | str | None = None,
    **net_kwargs: Any,
) -> FullyConnectedNet:
    """``"shallow"``: :class:`ShallowLayerNet` (exactly one hidden size); ``"fc"``: :class:`FullyConnectedNet`.

    ``weight_scale`` ``None`` takes the model's default (1e-3 shallow, 1e-2 fc). Every other keyword argument
    (``input_dim``, ``num_classes``, ``reg``, ``backend``, ``device``, ``dtype``, ``seed``, ...) goes to the
    constructor unchanged. A bad name or a shallow net given several hidden sizes is a :class:`ValueError`.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    cls, default_scale = MODELS[model]
    dims = [int(hidden_dims)] if isinstance(hidden_dims, (int, float)) else [int(d) for d in hidden_dims]
    if weight_scale is None:
        scale: float | str = default_scale
    else:  # a number, or a named initialisation ("he", "xavier") the network resolves per layer
        scale = weight_scale if isinstance(weight_scale, str) else float(weight_scale)
    if cls is FullyConnectedNet:
        return FullyConnectedNet(hidden_dims=dims, weight_scale=scale, **net_kwargs)
    if len(dims) != 1:
        raise ValueError(f"model 'shallow' takes one hidden size, got {dims}; use model 'fc' for several")
    return ShallowLayerNet(hidden_dim=dims[0], weight_scale=scale, **net_kwargs)
