"""Trained models as files: :func:`save_model` writes one ``.npz``, :func:`load_model` rebuilds the model from it.

A model file holds everything needed to use a network after training, and nothing that runs code:

- ``meta``: a JSON string with the format tag, the model's class name and constructor arguments
  (``net.get_config()``), its dtype, the parameter and buffer names, the class names, and the fcn version;
- ``params/<name>``: every parameter (``W1``, ``b1``, ...), as a NumPy array in the model's dtype;
- ``buffers/<name>``: every non-trainable array of the model (``net.buffers``, where it has any);
- ``mean_image``: the per-pixel mean that was subtracted from the training images (when the model has one),
  so new images can be preprocessed exactly as the training data was.

It is read with ``allow_pickle=False``: loading a model file never executes anything. The file is written to a
temporary file in the same folder and moved into place with ``os.replace``, so a reader sees the old file or the
new one, never half of one. Arrays are stored on the host, so a model saved from a GPU loads on a CPU and back::

    net.mean_image, net.class_names = data["mean_image"], list(data["class_names"])
    fcn.save_model(net, "model.npz")            # or net.save("model.npz")
    net = fcn.load_model("model.npz", backend="numpy")

Only the classes registered with :func:`register_model` are saved and loaded: a file names its model's class, and
loading looks that name up among them, nothing else. fcn's own models (:mod:`fcn.models`) register themselves; a
model class of your own can too, when it has ``params``, ``loss`` and ``get_config()`` (the constructor's keyword
arguments, JSON-able) as :class:`fcn.FullyConnectedNet` does::

    @fcn.serialization.register_model
    class MyNet(fcn.FullyConnectedNet): ...
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, TypeVar

import numpy

from .backend import get_backend, to_backend, to_host
from .npz import NpzArchive, NpzError, write_npz
from .version import __version__

__all__ = ["MODEL_FORMAT", "MAX_META_CHARS", "ModelFileError", "register_model", "save_model", "load_model"]

#: The format tag written into every model file's ``meta``.
MODEL_FORMAT = "fcn-model-1"

# Constructor arguments that describe where and how a model runs, not what it is: chosen again at load time.
_PLACEMENT_KEYS = ("backend", "device", "dtype")
_SINGULAR = {"params": "parameter", "buffers": "buffer"}


class ModelFileError(ValueError):
    """A model file is missing, unreadable, corrupt, or does not describe a model this version of fcn knows.

    The message names the file.
    """


# The model classes a file may name, by the name it stores (the class's __name__).
_MODEL_CLASSES: dict[str, type] = {}

_ModelClass = TypeVar("_ModelClass", bound=type)


def register_model(cls: _ModelClass) -> _ModelClass:
    """Let :func:`save_model` and :func:`load_model` handle the model class ``cls``; returns ``cls`` (a decorator).

    A file stores the class's ``__name__``, so two registered classes may not share one. The class must have
    ``loss`` and ``get_config()`` (the constructor's keyword arguments): ``cls(**config, backend=..., dtype=...)``
    is how :func:`load_model` rebuilds it. Subclasses are not registered with their base: each class that is
    saved registers itself. Raises ``TypeError`` for a class without them, ``ValueError`` for a name taken by
    another class.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_model takes a class, not {type(cls).__name__}")
    missing = [attr for attr in ("loss", "get_config") if not callable(getattr(cls, attr, None))]
    if missing:
        raise TypeError(f"{cls.__qualname__} cannot be saved and loaded: it has no {' and no '.join(missing)}()")
    name = cls.__name__
    taken = _MODEL_CLASSES.get(name)
    if taken is not None and taken is not cls:
        raise ValueError(
            f"a model class named {name!r} is already registered ({taken.__module__}.{taken.__qualname__}); "
            "model files name classes by their name, so it must be unique"
        )
    _MODEL_CLASSES[name] = cls
    return cls


def _config(net: Any) -> dict[str, Any]:
    """The constructor keyword arguments that rebuild ``net``'s architecture (no backend, device or dtype)."""
    config = dict(net.get_config())
    for key in _PLACEMENT_KEYS:
        config.pop(key, None)
    return config


def _class_names(value: Any, num_classes: int | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
        raise TypeError(f"class_names must be a list of names, one per class, got {type(value).__name__} {value!r:.40}")
    names = [str(n) for n in (value.tolist() if hasattr(value, "tolist") else value)]
    for i, name in enumerate(names):
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, as JSON's "\udcff" decodes to: no text can print it
            raise ValueError(f"class_names entry {i} ({name!r}) is not UTF-8 text") from None
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} entries but the model has {num_classes} classes")
    return names


def _mean_image(value: Any, input_dim: int | None) -> numpy.ndarray:
    """``value`` as a host array, checked: finite floats, one per input feature of the model."""
    mean = numpy.asarray(to_host(value))
    if mean.ndim == 3 and mean.shape[-1] in (1, 3, 4) and mean.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"mean_image has the channels-last shape {mean.shape}; give it as the training images are laid out, "
            f"channels first ({mean.shape[-1]}, {mean.shape[0]}, {mean.shape[1]}), or flat"
        )
    if input_dim is not None and mean.size != input_dim:
        raise ValueError(f"mean_image has shape {mean.shape} ({mean.size} values) but the model takes {input_dim}")
    # The layouts a model's input has: flat (D,), or one image channels first (C, H, W) as the training data is.
    # Any other shape of the right size would be reshaped into the image layout in the wrong order.
    if not (mean.ndim == 1 or (mean.ndim == 3 and mean.shape[0] in (1, 3, 4))):
        raise ValueError(
            f"mean_image has shape {mean.shape}; give it as the model's input is laid out: flat ({mean.size},) or "
            "one image, channels first (C, H, W) with C = 1, 3 or 4"
        )
    if mean.dtype.kind != "f" or not numpy.isfinite(mean).all():
        raise ValueError("mean_image must hold finite floating-point values")
    return mean


def save_model(
    net: Any,
    path: str | os.PathLike[str],
    *,
    mean_image: Any = None,
    class_names: Any = None,
) -> Path:
    """Write ``net`` to ``path`` as one ``.npz`` file (atomically; no pickle) and return the path.

    Stored: the architecture (class name and constructor arguments), the dtype, every parameter and buffer,
    and the preprocessing: ``mean_image`` (the per-pixel mean subtracted from the training images, shape
    ``(3, 32, 32)`` for CIFAR-10, or ``(D,)``) and ``class_names`` (one name per class). Both default to
    ``net.mean_image`` / ``net.class_names`` where the model has them set.

    ``net`` must be of a class registered with :func:`register_model`, as the models of :mod:`fcn.models` are
    (a model of another class could not be rebuilt); its arrays may live on any backend. Raises ``ValueError``
    when the class is not registered or the preprocessing does not fit the model.
    """
    cls: type = type(net)  # compared as a variable: `type(net) is X` would narrow net to X for mypy
    name = cls.__name__
    if _MODEL_CLASSES.get(name) is not cls:
        raise ValueError(
            f"save_model supports the registered model classes ({', '.join(sorted(_MODEL_CLASSES))}; see "
            f"fcn.serialization.register_model), not {cls.__module__}.{cls.__qualname__}"
        )
    config = _config(net)
    num_classes = getattr(net, "num_classes", None)
    input_dim = getattr(net, "input_dim", None)

    mean = getattr(net, "mean_image", None) if mean_image is None else mean_image
    names = _class_names(getattr(net, "class_names", None) if class_names is None else class_names, num_classes)

    arrays: dict[str, Any] = {}
    for pname, value in net.params.items():
        arrays[f"params/{pname}"] = to_host(value)
    buffers = dict(getattr(net, "buffers", None) or {})
    for bname, value in buffers.items():
        arrays[f"buffers/{bname}"] = to_host(value)
    if mean is not None:
        arrays["mean_image"] = _mean_image(mean, input_dim)
    first = next(iter(arrays.values()), None)
    if first is None:
        raise ValueError(f"{name} has no parameters to save")
    meta = {
        "format": MODEL_FORMAT,
        "class": name,
        "config": config,
        "dtype": first.dtype.name,
        "params": list(net.params),
        "buffers": list(buffers),
        "class_names": names,
        "fcn_version": __version__,
    }
    try:
        arrays["meta"] = numpy.asarray(json.dumps(meta))
    except TypeError as exc:  # a get_config() value JSON cannot hold
        raise ValueError(f"{name}'s configuration cannot be written as JSON: {exc}") from exc
    return write_npz(path, arrays)


#: The largest model description read (a JSON string: the architecture, a few names); larger is not a model file.
MAX_META_CHARS = 1 << 20


def _meta(path: Path, npz: NpzArchive) -> dict[str, Any]:
    """The model description (``meta``) of an open model file, checked; :class:`ModelFileError` when it is not."""
    if "meta" not in npz.names:
        raise ModelFileError(f"{path} is not an fcn model file (it has no 'meta' entry)")
    shape, dtype = npz.header("meta")
    if shape != () or dtype.kind != "U" or dtype.itemsize // 4 > MAX_META_CHARS:
        raise ModelFileError(f"{path}: the model description is corrupt (a {dtype} array of shape {shape})")
    try:
        meta = json.loads(str(npz.read("meta")))
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep to be a model description
        raise ModelFileError(f"{path}: the model description is corrupt ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the model description is corrupt (not a JSON object)")
    if meta.get("format") != MODEL_FORMAT:
        if str(meta.get("format", "")).startswith("fcn-checkpoint"):
            raise ModelFileError(
                f"{path} is a training checkpoint, not a model file: use the model.npz that fcn train writes next "
                "to it, or fcn.save_model(net, path)"
            )
        raise ModelFileError(f"{path}: unknown model file format {meta.get('format')!r} (expected {MODEL_FORMAT!r})")
    return meta


def _build(path: Path, meta: dict[str, Any], be: Any) -> Any:
    """The model ``meta`` describes, freshly initialised on ``be``; :class:`ModelFileError` when it cannot be."""
    cls = _MODEL_CLASSES.get(str(meta.get("class")))
    if cls is None:
        raise ModelFileError(
            f"{path} holds a model of class {meta.get('class')!r}, which this version of fcn ({__version__}) "
            "does not have (a model class of your own must be registered with fcn.serialization.register_model "
            "before loading)"
        )
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: the model description has no constructor arguments")
    try:
        return cls(**config, backend=be, dtype=str(meta.get("dtype")))
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: cannot rebuild {cls.__name__} from {config} ({exc})") from exc
    except MemoryError as exc:  # sizes no file of this size could hold the weights of
        raise ModelFileError(
            f"{path} describes a model too large to build here ({cls.__name__} with {config}: {exc})"
        ) from exc


def _place(path: Path, npz: NpzArchive, cls: type, group: str, target: dict[str, Any], names: Any, be: Any) -> None:
    """Check the file's ``group`` ("params" or "buffers") against the model's and put each array in place.

    Each entry's header (shape, dtype) is checked before its data is read, so a file declaring arrays the model
    does not have is refused without reading them.
    """
    saved = {k.split("/", 1)[1]: k for k in npz.names if k.startswith(f"{group}/")}
    if set(saved) != set(target) or (names is not None and set(names) != set(saved)):
        raise ModelFileError(f"{path} holds {group} {sorted(saved)}, but {cls.__name__} has {sorted(target)}")
    what = _SINGULAR[group]
    for name, entry in saved.items():
        like = target[name]
        shape, dtype = npz.header(entry)
        if shape != tuple(like.shape):
            raise ModelFileError(f"{path}: {what} {name} has shape {shape}, the model's is {tuple(like.shape)}")
        if dtype.kind not in "fiub":
            raise ModelFileError(f"{path}: {what} {name} has dtype {dtype}, expected numbers")
    for name, entry in saved.items():
        value = npz.read(entry)
        if value.dtype.kind == "f" and not numpy.isfinite(value).all():
            raise ModelFileError(
                f"{path}: {what} {name} holds NaN or infinite values (saved from a run that diverged?): its "
                "predictions would be meaningless"
            )
        if group == "buffers" and name.startswith("running_var") and (value < 0).any():
            raise ModelFileError(f"{path}: buffer {name} holds negative variances: the file is corrupt")
        target[name] = to_backend(value, be, dtype=target[name].dtype)


def _read_mean_image(path: Path, npz: NpzArchive, input_dim: int | None) -> numpy.ndarray | None:
    """The file's ``mean_image`` (``None`` where it has none), checked against the model before and after reading."""
    if "mean_image" not in npz.names:
        return None
    shape, dtype = npz.header("mean_image")
    size = math.prod(shape)
    if dtype.kind != "f" or (input_dim is not None and size != input_dim):
        raise ModelFileError(f"{path}: mean_image has shape {shape} and dtype {dtype}; the model takes {input_dim}")
    mean = npz.read("mean_image")
    if not numpy.isfinite(mean).all():
        raise ModelFileError(f"{path}: mean_image holds NaN or infinite values: the file is corrupt")
    return mean


def load_model(path: str | os.PathLike[str], *, backend: Any = None, device: Any = None) -> Any:
    """Rebuild the model saved in ``path`` by :func:`save_model`, with its arrays on ``backend`` / ``device``.

    ``backend`` and ``device`` are as in :func:`fcn.get_backend` (``None``: NumPy on the CPU), whatever backend
    the model was trained on. The model comes back in its saved dtype, with ``mean_image`` (a host NumPy array,
    or ``None``) and ``class_names`` (a list of str, or ``None``) set as attributes. It applies that
    preprocessing itself: ``net.predict(images)`` and ``net.predict_proba(images)`` on uint8 images as CIFAR-10
    stores them subtract the mean image (see :meth:`fcn.FullyConnectedNet.prepare`); float input is taken as
    already preprocessed.

    Raises :class:`ModelFileError`, naming the file, when it is missing, not a model file, corrupt, or holds
    arrays that do not fit the architecture it describes; :class:`fcn.BackendError` when the backend is
    unavailable.
    """
    path = Path(path)
    be = get_backend(backend, device)  # an unavailable backend fails before anything is read
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder; expected a model file such as {path / 'model.npz'}")
    try:
        # Only the format's own entries are read, each checked against the model before its data is inflated.
        with NpzArchive(path, what="fcn model file") as npz:
            meta = _meta(path, npz)
            net = _build(path, meta, be)
            cls = type(net)
            _place(path, npz, cls, "params", net.params, meta.get("params"), be)
            buffers = getattr(net, "buffers", None)
            _place(path, npz, cls, "buffers", buffers if buffers is not None else {}, meta.get("buffers") or None, be)
            mean = _read_mean_image(path, npz, getattr(net, "input_dim", None))
    except NpzError as exc:
        raise ModelFileError(str(exc)) from exc.__cause__
    try:
        names = _class_names(meta.get("class_names"), getattr(net, "num_classes", None))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    net.mean_image = mean
    net.class_names = names
    return net
