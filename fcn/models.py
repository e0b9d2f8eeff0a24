"""The chapter's networks: a dict of named parameters plus ``loss(X, y=None)``, on any backend.

A model owns a :class:`~fcn.backend.Backend` (NumPy, CuPy, or another Array-API namespace), a floating
dtype, and a list of layers (:mod:`fcn.modules`) that run through the backend's kernel table.
Parameters are drawn from a host RNG (``numpy.random.default_rng(seed)``) in float64 and then cast
and moved, so one seed gives the same network on every backend: that is what makes "the backends give the
same gradients" testable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy

from .backend import Backend, dtype_name, get_backend, is_host_array, resolve_dtype, to_backend, to_host
from .modules import Affine, AffineReLU, BatchNorm, Dropout, Layer, LayerNorm, ReLU
from .protocols import ChapterModel, TrainableModel
from .serialization import register_model, save_model
from .solver import Solver
from .validation import (
    all_finite,
    check_features,
    check_fits_dtype,
    check_float,
    check_int,
    check_labels,
    trusted_inputs,
)

__all__ = ["Params", "ChapterModel", "TrainableModel", "FullyConnectedNet", "ShallowLayerNet"]


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


#: Values accepted by ``FullyConnectedNet(normalization=...)``.
NORMALIZATIONS = (None, "batchnorm", "layernorm")
#: Named initialisations accepted by ``weight_scale=``: the standard deviation as a function of the layer's size.
WEIGHT_SCALES = {
    "he": lambda fan_in, fan_out: math.sqrt(2.0 / fan_in),  # He et al. (2015), for ReLU layers
    "xavier": lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)),  # Glorot & Bengio (2010)
}


def _positive_int(name: str, value: Any) -> int:
    return check_int(name, value, minimum=1)


def _hidden_sizes(hidden_dims: Any) -> list[int]:
    """``hidden_dims`` as a list of positive ints (an int is one hidden layer)."""
    if isinstance(hidden_dims, (int, numpy.integer)) and not isinstance(hidden_dims, bool):
        hidden_dims = [hidden_dims]
    if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Iterable):
        raise TypeError(f"hidden_dims must be a sequence of positive integers such as [100], got {hidden_dims!r}")
    return [check_int("hidden_dims entries", h, minimum=1) for h in hidden_dims]


def _float_dtype(xp: Any, dtype: Any) -> Any:
    """The namespace's real floating dtype for ``dtype`` (``TypeError`` for anything else)."""
    bad_dtype = TypeError(f"dtype must be a real floating type such as 'float32' or 'float64', got {dtype!r}")
    if dtype is None:
        raise bad_dtype
    resolved = resolve_dtype(xp, dtype)
    try:
        floating = xp.isdtype(resolved, "real floating")
    except (TypeError, ValueError, AttributeError):  # torch's isdtype raises AttributeError for a non-dtype
        floating = False
    if not floating:
        raise bad_dtype
    return resolved


@register_model
class FullyConnectedNet:
    """Fully connected network: ``{affine - [batch/layer norm] - relu - [dropout]} x L - affine - softmax``.

    Args:
        input_dim: features per sample ``D`` (``3 * 32 * 32`` for CIFAR-10); inputs of shape
            ``(N, d_1, ..., d_k)`` with ``d_1 * ... * d_k == D`` are flattened.
        hidden_dims: sizes of the hidden layers (an int means one hidden layer).
        num_classes: number of classes ``C``.
        reg: L2 strength; the loss adds ``0.5 * reg * sum(W**2)`` over all weight matrices.
        weight_scale: standard deviation of the normal initial weights, or ``"he"`` (``sqrt(2 / fan_in)`` per
            layer: for ReLU nets) or ``"xavier"`` (``sqrt(2 / (fan_in + fan_out))``); biases start at 0.
        dropout_keep_ratio: probability of keeping a hidden unit in training, in ``(0, 1]``; 1 (default)
            means no dropout layers. Dropout follows each hidden ReLU.
        normalization: ``None`` (default), ``"batchnorm"`` or ``"layernorm"``, between each hidden affine
            layer and its ReLU; adds ``gamma{i}``/``beta{i}`` parameters (not L2-regularised) and, for
            batchnorm, ``running_mean{i}``/``running_var{i}`` buffers.
        backend: ``"numpy"`` (default), ``"cupy"``, ``"array_api_strict"``, a namespace module, or a
            :class:`~fcn.backend.Backend`.
        device: device of that backend (``None`` for its default).
        dtype: ``"float64"`` (default: exact gradient checks) or ``"float32"`` (twice as fast).
        seed: seed of the host RNG that draws the initial weights, and of the dropout masks.

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
        weight_scale: float | str = 1e-2,
        *,
        backend: Any = None,
        device: Any = None,
        dtype: Any = "float64",
        seed: int | None = None,
        dropout_keep_ratio: float = 1.0,
        normalization: str | None = None,
    ):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be None, 'batchnorm' or 'layernorm', got {normalization!r}")
        if (
            isinstance(dropout_keep_ratio, bool)
            or not isinstance(dropout_keep_ratio, (int, float, numpy.floating, numpy.integer))
            or not 0.0 < float(dropout_keep_ratio) <= 1.0
        ):
            raise ValueError(
                f"dropout_keep_ratio is the probability of keeping a unit and must be in (0, 1], "
                f"got {dropout_keep_ratio!r}"
            )
        self.dropout_keep_ratio = float(dropout_keep_ratio)
        self.normalization = normalization
        self.input_dim = _positive_int("input_dim", input_dim)
        self.hidden_dims = _hidden_sizes(hidden_dims)
        self.num_classes = _positive_int("num_classes", num_classes)
        self.reg = check_float("reg", reg, nonnegative=True)
        if isinstance(weight_scale, str):
            if weight_scale not in WEIGHT_SCALES:
                raise ValueError(f"weight_scale must be a number >= 0, 'he' or 'xavier', got {weight_scale!r}")
            self.weight_scale: float | str = weight_scale
        else:
            self.weight_scale = check_float("weight_scale", weight_scale, nonnegative=True)
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        # the dropout masks' seed: the model's, or fresh entropy (saved in checkpoints) when there is none
        self.dropout_seed = self.seed if self.seed is not None else int(numpy.random.default_rng().integers(2**63))
        self.backend = get_backend(backend, device)
        self.dtype = _float_dtype(self.backend.xp, dtype)
        self.num_layers = len(self.hidden_dims) + 1
        self.layers = self.build_layers()
        with_params = [layer for layer in self.layers if layer.params]
        if with_params:  # the first layer's input gradient (N x D, as costly as its weights') is never used
            with_params[0].need_dx = False
        self._init_arrays(numpy.random.default_rng(seed))

    def _init_arrays(self, rng: numpy.random.Generator) -> None:
        """Draw every layer's initial parameters (host RNG, float64, then cast and moved) and its buffers."""
        self.params = Params(self.backend, self.dtype)
        self.buffers = Params(self.backend, self.dtype)
        limit = float(numpy.finfo(dtype_name(self.dtype)).max)
        for layer in self.layers:
            initial = layer.init_params(rng)
            for name, value in initial.items():
                # a huge weight_scale overflows the dtype: the first loss would be inf and look like divergence
                if value.size and not float(numpy.max(numpy.abs(value))) <= limit:
                    raise ValueError(
                        f"weight_scale={self.weight_scale:g} gives initial weights ({name}) beyond the range of "
                        f"{dtype_name(self.dtype)} (largest {limit:.3g}); use a smaller weight_scale"
                    )
            self.params.update(initial)
            self.buffers.update(layer.init_buffers())

    def build_layers(self) -> list[Layer]:
        """The layer list, in forward order.

        Per hidden layer: ``AffineReLU`` (one pass for bias and ReLU) without normalization, else ``Affine``,
        ``BatchNorm``/``LayerNorm``, ``ReLU``; then ``Dropout`` if ``dropout_keep_ratio < 1``. Last, ``Affine``
        to the scores.
        """
        dims = [self.input_dim, *self.hidden_dims, self.num_classes]
        layers: list[Layer] = []
        for i in range(1, self.num_layers):
            scale = self.layer_weight_scale(dims[i - 1], dims[i])
            if self.normalization is None:
                layers.append(AffineReLU(i, dims[i - 1], dims[i], scale))
            else:
                norm = BatchNorm(i, dims[i]) if self.normalization == "batchnorm" else LayerNorm(i, dims[i])
                layers += [Affine(i, dims[i - 1], dims[i], scale), norm, ReLU()]
            if self.dropout_keep_ratio < 1.0:
                layers.append(Dropout(i, self.dropout_keep_ratio, self.dropout_seed))
        layers.append(Affine(self.num_layers, dims[-2], dims[-1], self.layer_weight_scale(dims[-2], dims[-1])))
        return layers

    def layer_weight_scale(self, fan_in: int, fan_out: int) -> float:
        """The standard deviation of the initial weights of a ``fan_in x fan_out`` layer."""
        if isinstance(self.weight_scale, str):
            return WEIGHT_SCALES[self.weight_scale](fan_in, fan_out)
        return self.weight_scale

    def set_step(self, step: int) -> None:
        """Say which training step the next training passes belong to: dropout masks are a function of
        ``(seed, step, layer)``. The Solver calls this before every step; repeated passes at one step (as in a
        gradient check) see the same masks."""
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.step = int(step)

    def get_rng_state(self) -> dict[str, Any]:
        """The model's random state beyond its parameters (JSON-able; saved in checkpoints)."""
        return {"dropout_seed": self.dropout_seed}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_rng_state` returned."""
        self.dropout_seed = int(state["dropout_seed"])
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.seed = self.dropout_seed

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
            "dropout_keep_ratio": self.dropout_keep_ratio,
            "normalization": self.normalization,
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
        extra = f", {self.normalization}" if self.normalization else ""
        extra += f", dropout_keep_ratio={self.dropout_keep_ratio:g}" if self.dropout_keep_ratio < 1 else ""
        return f"{type(self).__name__}({dims}, reg={self.reg}{extra}, backend={self.backend.name}, dtype={dtype})"

    # -- input handling ---------------------------------------------------------------------------------

    def _inputs(self, X: Any) -> Any:
        """``X`` on the model's backend, in its dtype, flattened to ``(N, D)``, after checks."""
        X_dev = to_backend(X, self.backend)
        check_features(self.xp, X_dev, self.input_dim)
        check_fits_dtype(self.xp, X_dev, self.dtype)
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
            # the L2 term's gradient reg * W is added by the layer, inside the product that makes dW
            extra = {"reg": self.reg} if layer.decay and self.reg else {}
            dout, layer_grads = layer.backward(ops, dout, cache, **extra)
            grads.update(layer_grads)
        if not self.reg:
            return data_loss, grads
        weights = [params[name] for name in self._decayed_names()]
        return data_loss + (0.5 * self.reg) * ops.sum_of_squares(weights), grads

    def loss_and_sgd(self, X: Any, y: Any, learning_rate: float, *, train: bool = True) -> Any:
        """:meth:`loss_and_grads` and a plain SGD step ``p -= lr * dp`` of every parameter, in one pass.

        Each layer takes its step as soon as its gradients are known, so on a kernel table that folds the step
        into the weight-gradient product (``ops.fuses_sgd``) no weight gradient is ever stored. The loss (a
        device scalar) is that of the parameters before the step, as :meth:`loss_and_grads` reports it.
        """
        ops, params = self.backend.ops, self.params
        scores, caches = self.forward(X, train=train)
        loss, dout = ops.softmax_cross_entropy(scores, y)
        if self.reg:  # the L2 term of the weights this step starts from, before they change
            loss = loss + (0.5 * self.reg) * ops.sum_of_squares([params[n] for n in self._decayed_names()])
        for layer, cache in zip(reversed(self.layers), reversed(caches), strict=True):
            extra = {"reg": self.reg} if layer.decay and self.reg else {}
            dout, grads = layer.backward_sgd(ops, dout, cache, learning_rate, **extra)
            for name, grad in grads.items():
                ops.sgd(params[name], grad, learning_rate=learning_rate)
        return loss

    def _decayed_names(self) -> list[str]:
        return [name for layer in self.layers for name in layer.decay]

    def predict(self, X: Any, batch_size: int = 10_000, *, raw: bool | None = None) -> Any:
        """Predicted class labels ``(N,)``, in the namespace (and on the device) of ``X``.

        ``X`` is prepared by :meth:`prepare`: raw images as CIFAR-10 stores them (uint8, ``(N, 3, 32, 32)`` or
        ``(N, 32, 32, 3)``) get the model's preprocessing; float input is taken as already preprocessed
        (``raw=True`` preprocesses it too). Host input gives a NumPy result even on a GPU model, so
        ``(net.predict(X) == y).mean()`` works with NumPy ``y``. Scores are computed ``batch_size`` rows at a
        time to bound memory. Parameters that are NaN or infinite (a training run that blew up) raise
        ``ValueError``: their "predictions" would be class 0 for everything.
        """
        labels = self._in_batches(X, batch_size, raw, lambda scores: self.xp.argmax(scores, axis=1), self.xp.int64)
        return to_host(labels) if is_host_array(X) and not self.backend.is_numpy else labels

    def predict_proba(self, X: Any, batch_size: int = 10_000, *, raw: bool | None = None) -> Any:
        """Class probabilities ``(N, C)`` (the softmax of the scores), prepared and placed as :meth:`predict`."""
        xp = self.xp

        def softmax(scores: Any) -> Any:
            exp = xp.exp(scores - xp.max(scores, axis=1, keepdims=True))  # exp of at most 0: no overflow
            return exp / xp.sum(exp, axis=1, keepdims=True)

        proba = self._in_batches(X, batch_size, raw, softmax, self.dtype)
        return to_host(proba) if is_host_array(X) and not self.backend.is_numpy else proba

    def _in_batches(self, X: Any, batch_size: int, raw: bool | None, fn: Any, dtype: Any) -> Any:
        batch_size = check_int("batch_size", batch_size, minimum=1)
        self.check_finite()
        X_dev = self._inputs(self.prepare(X, raw=raw))
        xp, n = self.xp, X_dev.shape[0]
        with trusted_inputs():  # X_dev was checked just above; don't scan each chunk again
            parts = [fn(self.loss(X_dev[i : min(i + batch_size, n), ...])) for i in range(0, n, batch_size)]
        if not parts:  # no samples
            shape = (0,) if dtype is xp.int64 else (0, self.num_classes)
            return xp.zeros(shape, dtype=dtype, device=self.backend.device)
        return parts[0] if len(parts) == 1 else xp.concat(parts)

    def _channels_last(self, shape: tuple[int, ...]) -> bool:
        """Whether raw images of ``shape`` are ``(N, H, W, C)``: told by the mean image's ``(C, H, W)`` where the
        model has one (images in neither layout are refused), else by a last axis of 1, 3 or 4 channels after a
        first that cannot be one."""
        if len(shape) != 4:
            return False
        mean_shape = None if self.mean_image is None else tuple(self.mean_image.shape)
        if mean_shape is not None and len(mean_shape) == 3:
            c, h, w = mean_shape
            if shape[1:] not in (mean_shape, (h, w, c)):  # the right size in another order: wrong pixels
                raise ValueError(
                    f"raw images have shape {shape[1:]}, but the model's are {mean_shape} (channels first) or "
                    f"{(h, w, c)} (channels last)"
                )
            return shape[1:] != mean_shape
        return shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4)

    def prepare(self, X: Any, *, raw: bool | None = None) -> Any:
        """Images made ready for the model, on its backend: the preprocessing its training data had.

        ``raw`` ``None``: integer input (``uint8`` pixels, as CIFAR-10 stores them) is raw, float input is
        already preprocessed and passes unchanged; ``True`` / ``False`` say which it is whatever the dtype. Raw
        images ``(N, C, H, W)`` or channels-last ``(N, H, W, C)`` (or flat ``(N, D)``) become floats in the
        model's dtype, minus :attr:`mean_image` when the model has one (subtracted in float64 and rounded once,
        as :func:`fcn.get_CIFAR10_data` does).
        """
        if raw is not None and not isinstance(raw, bool):
            raise TypeError(f"raw must be True, False or None (decided by the dtype), got {raw!r}")
        X_dev = to_backend(X, self.backend)
        if not (raw if raw is not None else not self.xp.isdtype(X_dev.dtype, "real floating")):
            return X_dev
        xp = self.xp
        check_features(xp, X_dev, self.input_dim)  # before the mean is shaped like one image
        if self._channels_last(tuple(X_dev.shape)):
            X_dev = xp.permute_dims(X_dev, (0, 3, 1, 2))  # as image libraries give them
        X_dev = xp.astype(X_dev, xp.float64)
        if self.mean_image is not None:
            mean = xp.reshape(to_backend(self.mean_image, self.backend, dtype="float64"), X_dev.shape[1:])
            if not all_finite(xp, mean):  # said here: the images would be blamed for the NaN further on
                raise ValueError("the model's mean_image holds NaN or infinite values: its preprocessing is broken")
            X_dev = X_dev - mean
        return xp.astype(X_dev, self.dtype)

    def check_finite(self) -> None:
        """Raise ``ValueError`` naming the parameters that hold NaN or infinite values (one reduction each)."""
        bad = [name for name, value in self.params.items() if not all_finite(self.xp, value)]
        if bad:
            raise ValueError(
                f"the model's parameters {', '.join(bad)} hold NaN or infinite values (a training run that "
                "diverged?): its predictions would be meaningless"
            )

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
        if reg is not None:
            reg = check_float("reg", reg, nonnegative=True)
        previous_reg = self.reg
        if reg is not None:
            self.reg = reg
        try:
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
        except BaseException:
            self.reg = previous_reg  # a rejected call changes nothing
            raise
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
        return save_model(self, path)


@register_model
class ShallowLayerNet(FullyConnectedNet):
    """Two-layer net ``affine - relu - affine - softmax`` (the chapter's shallow network).

    ``hidden_dim`` is the single hidden size; everything else is :class:`FullyConnectedNet`.
    """

    def __init__(
        self,
        input_dim: int = 3 * 32 * 32,
        hidden_dim: int = 100,
        num_classes: int = 10,
        weight_scale: float | str = 1e-3,
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

    def get_config(self) -> dict[str, Any]:
        """As :meth:`FullyConnectedNet.get_config`, with this constructor's ``hidden_dim`` (one hidden size)."""
        config = super().get_config()
        config["hidden_dim"] = config.pop("hidden_dims")[0]
        del config["dropout_keep_ratio"], config["normalization"]  # always off in the shallow net
        return config
