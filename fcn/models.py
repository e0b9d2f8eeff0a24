"""The chapter's networks: a dict of named parameters plus ``loss(X, y=None)``, on any backend.

A model owns a :class:`~fcn.backend.Backend` (NumPy, CuPy, or another Array-API namespace), a floating
dtype, and a list of layers (:mod:`fcn.modules`) that run through the backend's kernel table.
Parameters are drawn from a host RNG (``numpy.random.default_rng(seed)``) in float64 and then cast
and moved, so one seed gives the same network on every backend: that is what makes "the backends give the
same gradients" testable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy

from .backend import Backend, dtype_name, get_backend, is_host_array, resolve_dtype, to_backend, to_host
from .modules import Affine, AffineReLU, Layer
from .validation import check_features, check_labels, trusted_inputs

__all__ = ["Params", "FullyConnectedNet", "ShallowLayerNet"]


class Params(dict):
    """A ``dict`` of parameters that keeps every value on the model's backend and in its dtype.

    Assigning a NumPy array (as the chapter does: ``model.params["W1"] = numpy.linspace(...)``) copies it to
    the backend and casts it; an array already there is stored as is, with no copy.
    """

    def __init__(self, backend: Backend, dtype: Any):
        super().__init__()
        self._backend = backend
        self._dtype = dtype

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, to_backend(value, self._backend, dtype=self._dtype))

    def update(self, other: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **kwargs: Any) -> None:
        for name, value in dict(other, **kwargs).items():
            self[name] = value

    def setdefault(self, name: str, default: Any = None) -> Any:
        if name not in self:
            self[name] = default
        return self[name]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class FullyConnectedNet:
    """Fully connected network: ``{affine - relu} x L - affine - softmax``, as a list of layers.

    Args:
        input_dim: features per sample ``D`` (``3 * 32 * 32`` for CIFAR-10); inputs of shape
            ``(N, d_1, ..., d_k)`` with ``d_1 * ... * d_k == D`` are flattened.
        hidden_dims: sizes of the hidden layers (an int means one hidden layer).
        num_classes: number of classes ``C``.
        reg: L2 strength; the loss adds ``0.5 * reg * sum(W**2)`` over all weight matrices.
        weight_scale: standard deviation of the normal initial weights; biases start at 0.
        backend: ``"numpy"`` (default), ``"cupy"``, ``"array_api_strict"``, a namespace module, or a
            :class:`~fcn.backend.Backend`.
        device: device of that backend (``None`` for its default).
        dtype: ``"float64"`` (default: exact gradient checks) or ``"float32"`` (twice as fast).
        seed: seed of the host RNG that draws the initial weights.

    ``params`` holds ``W1, b1, ..., Wn, bn`` with ``Wi (d_{i-1}, d_i)`` and ``bi (d_i,)``; ``buffers`` holds
    non-trainable state (empty for this architecture); ``layers`` is the list of :mod:`fcn.modules` layers
    the forward pass runs through, in order.
    """

    def __init__(
        self,
        input_dim: int = 3 * 32 * 32,
        hidden_dims: Sequence[int] | int = (100,),
        num_classes: int = 10,
        reg: float = 0.0,
        weight_scale: float = 1e-2,
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float64",
        seed: int | None = None,
    ):
        if isinstance(hidden_dims, (int, numpy.integer)):
            hidden_dims = [hidden_dims]
        self.input_dim = _positive_int("input_dim", input_dim)
        self.hidden_dims = [_positive_int("hidden_dims entries", h) for h in hidden_dims]
        self.num_classes = _positive_int("num_classes", num_classes)
        if not numpy.isfinite(reg) or reg < 0:
            raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
        if not numpy.isfinite(weight_scale) or weight_scale < 0:
            raise ValueError(f"weight_scale must be a finite number >= 0, got {weight_scale!r}")
        self.reg = float(reg)
        self.weight_scale = float(weight_scale)
        self.seed = seed
        self.backend = get_backend(backend, device)
        self.dtype = resolve_dtype(self.backend.xp, dtype)
        if not self.xp.isdtype(self.dtype, "real floating"):
            raise TypeError(f"dtype must be a real floating type such as 'float32' or 'float64', got {dtype!r}")
        self.num_layers = len(self.hidden_dims) + 1

        self.layers = self.build_layers()
        with_params = [layer for layer in self.layers if layer.params]
        if with_params:  # the first layer's input gradient (N x D, as costly as its weights') is never used
            with_params[0].need_dx = False
        rng = numpy.random.default_rng(seed)
        self.params = Params(self.backend, self.dtype)
        self.buffers = Params(self.backend, self.dtype)
        for layer in self.layers:
            self.params.update(layer.init_params(rng))
            self.buffers.update(layer.init_buffers())

    def build_layers(self) -> list[Layer]:
        """The layer list, in forward order: ``AffineReLU`` per hidden layer, then ``Affine`` to the scores."""
        dims = [self.input_dim, *self.hidden_dims, self.num_classes]
        layers: list[Layer] = [
            AffineReLU(i, dims[i - 1], dims[i], self.weight_scale) for i in range(1, self.num_layers)
        ]
        layers.append(Affine(self.num_layers, dims[-2], dims[-1], self.weight_scale))
        return layers

    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (JSON-able, without backend and device): rebuilds this net."""
        return {
            "input_dim": self.input_dim,
            "hidden_dims": list(self.hidden_dims),
            "num_classes": self.num_classes,
            "reg": self.reg,
            "weight_scale": self.weight_scale,
            "dtype": dtype_name(self.dtype),
            "seed": self.seed,
        }

    @property
    def xp(self) -> Any:
        """The model's array namespace."""
        return self.backend.xp

    @property
    def ops(self) -> Any:
        """The kernel table of the model's backend (:class:`fcn.ops.Ops`)."""
        return self.backend.ops

    def __repr__(self) -> str:
        dims = "-".join(str(d) for d in [self.input_dim, *self.hidden_dims, self.num_classes])
        dtype = dtype_name(self.dtype)
        return f"{type(self).__name__}({dims}, reg={self.reg}, backend={self.backend.name}, dtype={dtype})"

    # -- input handling ---------------------------------------------------------------------------------

    def _inputs(self, X: Any) -> Any:
        """``X`` on the model's backend, in its dtype, flattened to ``(N, D)``, after checks."""
        X_dev = to_backend(X, self.backend)
        check_features(self.xp, X_dev, self.input_dim)
        if X_dev.dtype != self.dtype:
            X_dev = self.xp.astype(X_dev, self.dtype)
        return X_dev if X_dev.ndim == 2 else self.xp.reshape(X_dev, (X_dev.shape[0], self.input_dim))

    def _labels(self, y: Any, num_samples: int) -> Any:
        y_dev = to_backend(y, self.backend)
        check_labels(self.xp, y_dev, num_samples, self.num_classes)
        return y_dev

    # -- the contract -----------------------------------------------------------------------------------

    def loss(self, X: Any, y: Any = None, *, mode: str | None = None) -> Any:
        """Class scores, or the loss and its gradients.

        Shapes: ``X (N, d_1, ..., d_k)`` (host data or arrays of this model's backend; cast to the model's
        dtype), ``y (N,)`` integer labels in ``[0, C)``.

        ``mode`` is ``"train"`` (dropout active, batch statistics) or ``"eval"``; by default it follows the
        chapter's convention: ``"train"`` when labels are given, ``"eval"`` for scores alone.

        Returns ``scores (N, C)`` when ``y`` is None, else ``(loss, grads)``: ``loss`` a 0-d array on the
        model's device (``float(loss)`` reads it), ``grads`` a dict keyed like ``params``. All results live on
        the model's backend.
        """
        if mode not in (None, "train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        train = (y is not None) if mode is None else mode == "train"
        X = self._inputs(X)
        if y is None:
            return self.forward(X, train=train)[0]
        return self.loss_and_grads(X, self._labels(y, X.shape[0]), train=train)

    def forward(self, X: Any, *, train: bool = False) -> tuple[Any, list]:
        """Scores ``(N, C)`` of checked input ``X (N, D)`` and the layers' caches (no input checks here)."""
        ops, params, buffers = self.backend.ops, self.params, self.buffers
        caches = []
        h = X
        for layer in self.layers:
            h, cache = layer.forward(ops, h, params, buffers, train)
            caches.append(cache)
        return h, caches

    def loss_and_grads(self, X: Any, y: Any, *, train: bool = True) -> tuple[Any, dict[str, Any]]:
        """The training step's forward and backward pass, with no input checks.

        ``X (N, D)`` must already be on the model's device in its dtype and ``y (N,)`` valid labels: this is
        the path the training loop takes for batches of data it validated once. Returns ``(loss, grads)``
        as :meth:`loss` does.
        """
        ops, params = self.backend.ops, self.params
        scores, caches = self.forward(X, train=train)
        data_loss, dout = ops.softmax_cross_entropy(scores, y)
        grads: dict[str, Any] = {}
        for layer, cache in zip(reversed(self.layers), reversed(caches), strict=True):
            dout, layer_grads = layer.backward(ops, dout, cache)
            grads.update(layer_grads)
        decayed = self._decayed_names()
        if not self.reg:
            return data_loss, grads
        weights = [params[name] for name in decayed]
        loss = data_loss + (0.5 * self.reg) * ops.sum_of_squares(weights)
        for name, w in zip(decayed, weights, strict=True):
            grads[name] += self.reg * w
        return loss, grads

    def _decayed_names(self) -> list[str]:
        return [name for layer in self.layers for name in layer.decay]

    def predict(self, X: Any, batch_size: int = 10_000) -> Any:
        """Predicted class labels ``(N,)``, in the namespace (and on the device) of ``X``.

        Host input gives a NumPy result even on a GPU model, so ``(net.predict(X) == y).mean()`` works with
        NumPy ``y``. Scores are computed ``batch_size`` rows at a time to bound memory.
        """
        X_dev = self._inputs(X)
        xp = self.xp
        n = X_dev.shape[0]
        with trusted_inputs():  # X_dev was checked just above; don't scan each chunk again
            parts = [
                xp.argmax(self.loss(X_dev[i : min(i + batch_size, n), ...]), axis=1) for i in range(0, n, batch_size)
            ]
        if not parts:  # no samples
            labels = xp.zeros(0, dtype=xp.int64, device=self.backend.device)
        else:
            labels = parts[0] if len(parts) == 1 else xp.concat(parts)
        if is_host_array(X) and not self.backend.is_numpy:
            return to_host(labels)
        return labels

    def train(
        self,
        X: Any,
        y: Any,
        X_val: Any,
        y_val: Any,
        learning_rate: float = 1e-3,
        learning_rate_decay: float = 0.95,
        reg: float | None = None,
        num_iters: int = 100,
        batch_size: int = 200,
        verbose: bool = False,
        **solver_options: Any,
    ) -> dict[str, Any]:
        """Minibatch SGD, the chapter's loop: the learning rate decays once per epoch.

        Returns ``stats`` with ``loss_history`` (per iteration), ``train_acc_history`` and
        ``val_acc_history`` (per epoch) and ``best_val_acc``; the parameters with the best validation
        accuracy are restored at the end. ``reg`` (if given) replaces ``self.reg``. Extra keyword arguments
        go to :class:`fcn.solver.Solver` (e.g. ``update_rule="adam"``, ``progress=True``, ``seed``).
        """
        from .solver import Solver

        if reg is not None:
            self.reg = float(reg)
        solver = Solver(
            self,
            {"X_train": X, "y_train": y, "X_val": X_val, "y_val": y_val},
            update_rule=solver_options.pop("update_rule", "sgd"),
            optim_config={"learning_rate": learning_rate, **solver_options.pop("optim_config", {})},
            lr_decay=learning_rate_decay,
            batch_size=batch_size,
            num_iters=num_iters,
            verbose=verbose,
            **solver_options,
        )
        solver.train()
        return solver.stats()


class ShallowLayerNet(FullyConnectedNet):
    """Two-layer net ``affine - relu - affine - softmax`` (the chapter's shallow network).

    ``hidden_dim`` is the single hidden size; everything else is :class:`FullyConnectedNet`.
    """

    def __init__(
        self,
        input_dim: int = 3 * 32 * 32,
        hidden_dim: int = 100,
        num_classes: int = 10,
        weight_scale: float = 1e-3,
        reg: float = 0.0,
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float64",
        seed: int | None = None,
    ):
        super().__init__(
            input_dim,
            [hidden_dim],
            num_classes,
            reg=reg,
            weight_scale=weight_scale,
            backend=backend,
            device=device,
            dtype=dtype,
            seed=seed,
        )

    @property
    def hidden_dim(self) -> int:
        return self.hidden_dims[0]
