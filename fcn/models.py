"""The chapter's networks: a dict of named parameters plus ``loss(X, y=None)``, on any backend.

A model owns a :class:`~fcn.backend.Backend` (NumPy, CuPy, or another Array-API namespace) and a floating
dtype. Parameters are drawn from a host RNG (``numpy.random.default_rng(seed)``) in float64 and then cast
and moved, so one seed gives the same network on every backend: that is what makes "the backends give the
same gradients" testable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy

from .backend import Backend, get_backend, is_host_array, resolve_dtype, to_backend, to_host
from .layer_utils import affine_relu_backward, affine_relu_forward
from .layers import affine_backward, affine_forward, softmax_loss
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
    """Fully connected network: ``{affine - relu} x L - affine - softmax``.

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

    ``params`` holds ``W1, b1, ..., Wn, bn`` with ``Wi (d_{i-1}, d_i)`` and ``bi (d_i,)``.
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

        rng = numpy.random.default_rng(seed)
        dims = [self.input_dim, *self.hidden_dims, self.num_classes]
        self.params = Params(self.backend, self.dtype)
        for i in range(1, self.num_layers + 1):
            self.params[f"W{i}"] = weight_scale * rng.standard_normal((dims[i - 1], dims[i]))
            self.params[f"b{i}"] = numpy.zeros(dims[i])

    @property
    def xp(self) -> Any:
        """The model's array namespace."""
        return self.backend.xp

    def __repr__(self) -> str:
        dims = "-".join(str(d) for d in [self.input_dim, *self.hidden_dims, self.num_classes])
        dtype = getattr(self.dtype, "__name__", None) or str(self.dtype).rsplit(".", 1)[-1]
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

    def loss(self, X: Any, y: Any = None) -> Any:
        """Class scores, or the loss and its gradients.

        Shapes: ``X (N, d_1, ..., d_k)`` (host data or arrays of this model's backend; cast to the model's
        dtype), ``y (N,)`` integer labels in ``[0, C)``.

        Returns ``scores (N, C)`` when ``y`` is None, else ``(loss, grads)``: ``loss`` a 0-d array on the
        model's device (``float(loss)`` reads it), ``grads`` a dict keyed like ``params``. All results live on
        the model's backend.
        """
        X = self._inputs(X)
        if y is not None:
            y = self._labels(y, X.shape[0])
        params = self.params
        last = self.num_layers

        caches = []
        h = X
        for i in range(1, last):
            h, cache = affine_relu_forward(h, params[f"W{i}"], params[f"b{i}"])
            caches.append(cache)
        scores, last_cache = affine_forward(h, params[f"W{last}"], params[f"b{last}"])
        if y is None:
            return scores

        data_loss, dscores = softmax_loss(scores, y)
        xp = self.xp
        weights = [params[f"W{i}"] for i in range(1, last + 1)]
        # sum(W**2) as a dot product of the flattened weights: no temporary the size of W
        reg_loss = sum(xp.vecdot(xp.reshape(w, (-1,)), xp.reshape(w, (-1,))) for w in weights)
        loss = data_loss + 0.5 * self.reg * reg_loss

        grads = {}
        dh, grads[f"W{last}"], grads[f"b{last}"] = affine_backward(dscores, last_cache, need_dx=last > 1)
        for i in range(last - 1, 0, -1):
            # the first layer's input gradient (N x D, as costly as its weight gradient) is never used
            dh, grads[f"W{i}"], grads[f"b{i}"] = affine_relu_backward(dh, caches[i - 1], need_dx=i > 1)
        if self.reg:
            for i, w in enumerate(weights, start=1):
                grads[f"W{i}"] += self.reg * w
        return loss, grads

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

    # Preprocessing a saved model carries: set by ``fcn train``, restored by :func:`fcn.load_model`.
    mean_image: numpy.ndarray | None = None  #: per-pixel mean subtracted from the training images (host array)
    class_names: list[str] | None = None  #: one name per class, for printing predictions

    def save(self, path: Any) -> Any:
        """Write this model to one ``.npz`` file (``path``: a str or path-like) and return its ``Path``.

        Architecture, dtype, parameters, buffers, ``mean_image`` and ``class_names``: all that
        :func:`fcn.load_model` needs to rebuild it on any backend (see :func:`fcn.serialization.save_model`).
        """
        from .serialization import save_model  # fcn.serialization imports this module

        return save_model(self, path)


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
