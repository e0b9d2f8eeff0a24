"""One place that turns a model name and hidden sizes into a network (``fcn train``, ``fcn sweep``, benchmarks).

:class:`ModelConfig` is the one definition of a network's settings as the command line and the sweep see
them (each field with its help text and how a sweep draws it, as :class:`fcn.training.config.TrainConfig`
does for training); :data:`CHAPTER_DEFAULTS` are the chapter's values, the defaults of ``fcn train`` and of
the parameters a sweep leaves out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .models import NORMALIZATIONS, FullyConnectedNet, ShallowLayerNet

__all__ = ["MODELS", "ModelConfig", "model_fields", "CHAPTER_DEFAULTS", "HYPERPARAMETERS", "build_model"]

#: Model names -> (class, default weight scale): the chapter's 1e-3 for the shallow net, 1e-2 for deeper ones.
MODELS: dict[str, tuple[type, float]] = {"shallow": (ShallowLayerNet, 1e-3), "fc": (FullyConnectedNet, 1e-2)}


# mutmut cannot test this function: it runs only while the module is imported, before any mutant is switched on,
# so its lines are not mutated; tests/test_factory.py fails with each of their mutations put in by hand.
def _option(default: Any, help: str, *, search: str | None = None, **extra: Any) -> Any:  # pragma: no mutate
    """A dataclass field with its help text; ``search``: how a sweep draws it (``"log"``, ``"linear"``,
    ``"choice"``, ``"hidden"``: lists of layer sizes), ``None``: not searchable."""
    if isinstance(default, list):  # a mutable default needs a factory  # pragma: no mutate
        return field(default_factory=lambda: list(default), metadata={"help": help, "search": search, **extra})  # noqa: E501  # pragma: no mutate
    return field(default=default, metadata={"help": help, "search": search, **extra})  # pragma: no mutate


@dataclass
class ModelConfig:
    """What :func:`build_model` is given: the network's kind, sizes, initialisation, regularisation, arrays."""

    model: str = _option("shallow", "shallow: ShallowLayerNet (one hidden layer); fc: FullyConnectedNet",
                         choices=tuple(MODELS))  # fmt: skip
    hidden_dims: list[int] = _option([100], "hidden sizes, e.g. 100 or 1024,512", search="hidden")
    weight_scale: float | str | None = _option(
        None, "std of the initial weights, or he / xavier (per layer from its size); none: 1e-3 shallow, 1e-2 fc",
        search="log",
    )  # fmt: skip
    normalization: str | None = _option(None, "normalization between each hidden affine layer and its ReLU (fc)",
                                        search="choice", choices=tuple(NORMALIZATIONS))  # fmt: skip
    dropout_keep_ratio: float = _option(1.0, "probability of keeping a hidden unit in training (1: no dropout; fc)",
                                        search="linear")  # fmt: skip
    reg: float = _option(0.0, "L2 regularisation strength", search="log")
    dtype: str = _option("float64", "floating-point type of the parameters and data", choices=("float32", "float64"))
    backend: str = _option("numpy", "numpy, cupy, torch or array_api_strict")

    def build(self, **net_kwargs: Any) -> FullyConnectedNet:
        """The network (``net_kwargs``: ``input_dim``, ``num_classes``, ``seed``, ``device``, ... as
        :func:`build_model` takes them). Normalization and dropout are given to ``fc`` models only."""
        fc = {"dropout_keep_ratio": self.dropout_keep_ratio, "normalization": self.normalization}
        return build_model(
            self.model, self.hidden_dims, weight_scale=self.weight_scale, reg=self.reg, dtype=self.dtype,
            backend=self.backend, **(fc if self.model == "fc" else {}), **net_kwargs,
        )  # fmt: skip


def model_fields() -> list[dataclasses.Field]:
    """The fields of :class:`ModelConfig`, with ``metadata``: ``help``, ``search`` (and ``choices``)."""
    return list(dataclasses.fields(ModelConfig))


#: The chapter's run, where it differs from the library's defaults: ShallowLayerNet with 100 hidden units,
#: 2000 iterations of SGD at batch 500, learning rate 1e-3 decayed by 0.95 per epoch, reg 0.6, float32, seed 0.
#: ``fcn train`` starts from these, and a sweep gives them to every parameter its space leaves out.
CHAPTER_DEFAULTS: dict[str, Any] = {
    "reg": 0.6,
    "dtype": "float32",
    "learning_rate": 1e-3,
    "lr_decay": 0.95,
    "batch_size": 500,
    "num_iters": 2000,
    "seed": 0,
}

#: The optimiser hyperparameters that fcn train and fcn sweep set (into ``optim_config``), with their help;
#: which update rules take each is in :data:`fcn.optim.RULES`.
HYPERPARAMETERS: dict[str, str] = {"learning_rate": "the step size", "weight_decay": "AdamW's decoupled weight decay"}


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
