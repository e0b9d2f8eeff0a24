"""Trained models as ONNX graphs, for runtimes other than fcn: ``fcn export model.npz model.onnx``.

:func:`export_onnx` builds the graph from the model's layers, in evaluation mode: an affine layer is a ``Gemm``,
a ReLU a ``Relu``, batch normalization the running statistics applied as ``Sub``/``Div``/``Mul``/``Add``, layer
normalization the same ops over each sample's features (``ReduceMean``), dropout nothing at all (the identity
in evaluation). Each op does what fcn's kernels do, in the model's dtype (float32 or float64), so an ONNX runtime
gives the probabilities of :meth:`fcn.FullyConnectedNet.predict_proba` to rounding.

The input contract (``input=``):

- ``"images"`` (the default): the graph takes ``images``, uint8 pixels as CIFAR-10 stores them, channels first
  ``(N, C, H, W)`` (the shape of the model's ``mean_image``; flat rows ``(N, D)`` for a model whose mean image is
  flat or absent). The preprocessing is in the graph, as :meth:`~fcn.FullyConnectedNet.prepare` does it: cast to
  float64, the mean image subtracted, cast to the model's dtype, flattened. Channels-last pictures
  ``(N, H, W, C)`` must be transposed first (``images.transpose(0, 3, 1, 2)``).
- ``"features"``: the graph takes ``features``, already preprocessed floats ``(N, D)`` in the model's dtype, as
  float input to ``net.predict`` is.

Outputs: ``probabilities`` ``(N, C)`` (the softmax of the scores, in the model's dtype) and ``label`` ``(N,)``
(int64, the most likely class). The batch size ``N`` is free. The class names, the fcn version and the input
contract are in the model's metadata (``metadata_props``). ONNX comes from the ``onnx`` extra
(``pip install "fcn-cifar[onnx]"``); fcn itself never needs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy

from .atomic import write_atomic
from .backend import dtype_name, to_host
from .modules import Affine, AffineReLU, BatchNorm, Dropout, Layer, LayerNorm, ReLU
from .version import __version__

__all__ = ["ONNX_MISSING_MESSAGE", "OPSET", "INPUTS", "MissingOnnxError", "require_onnx", "build_onnx", "export_onnx"]

ONNX_MISSING_MESSAGE = 'exporting to ONNX needs the onnx package, which is not installed: pip install "fcn-cifar[onnx]"'
#: The ONNX operator set the graphs use: 17 (2022) is read by every current runtime, and has ``ReduceMean`` with
#: its axes as an attribute. Its IR version, 8, is written too, so older runtimes open the file.
OPSET, IR_VERSION = 17, 8
#: What the graph's input may be (see the module docstring): raw uint8 images or preprocessed features.
INPUTS = ("images", "features")


class MissingOnnxError(ImportError):
    """The ``onnx`` package is not installed; the message names the extra to install."""


def require_onnx() -> Any:
    """The ``onnx`` module, or :class:`MissingOnnxError` naming the extra that installs it."""
    try:
        import onnx
    except ImportError as exc:
        raise MissingOnnxError(ONNX_MISSING_MESSAGE) from exc
    return onnx


class _Graph:
    """The nodes and constants of a graph being built, each computed value named after its op (``gemm_3``)."""

    def __init__(self, onnx: Any, dtype: numpy.dtype[Any]) -> None:
        self.onnx, self.dtype = onnx, dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, name: str, value: Any, dtype: Any = None) -> str:
        """A constant (a model array, host-copied and cast to the model's dtype unless ``dtype`` is given)."""
        array = numpy.asarray(to_host(value), dtype=self.dtype if dtype is None else dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes: Any) -> str:
        """Append node ``op_type(inputs)`` and return the name of its output."""
        out = output or self._name(op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attributes))
        return out


def _normalize(g: _Graph, h: str, layer: BatchNorm | LayerNorm, params: Any, buffers: Any) -> str:
    """``gamma * (h - mean) / std + beta``: batchnorm with its running statistics, layernorm with each row's."""
    if isinstance(layer, BatchNorm):
        running_var = numpy.asarray(to_host(buffers[layer.var]), dtype=g.dtype)
        centred = g.op("Sub", h, g.constant(layer.mean, buffers[layer.mean]))
        std_value = numpy.sqrt(running_var + g.dtype.type(layer.eps))  # as fcn's kernels: in the model's dtype
        std = g.constant(f"std{layer.mean.removeprefix('running_mean')}", std_value)
    else:
        centred = g.op("Sub", h, g.op("ReduceMean", h, axes=[1], keepdims=1))
        var = g.op("ReduceMean", g.op("Mul", centred, centred), axes=[1], keepdims=1)
        eps = g.constant(f"eps_{layer.gamma}", layer.eps)
        std = g.op("Sqrt", g.op("Add", var, eps))
    scaled = g.op("Mul", g.op("Div", centred, std), g.constant(layer.gamma, params[layer.gamma]))
    return g.op("Add", scaled, g.constant(layer.beta, params[layer.beta]))


def _layer(g: _Graph, h: str, layer: Layer, params: Any, buffers: Any) -> str:
    """The nodes of one layer in evaluation mode, after ``h``; returns the layer's output."""
    if isinstance(layer, Affine):  # AffineReLU too: the ReLU follows
        out = g.op("Gemm", h, g.constant(layer.w, params[layer.w]), g.constant(layer.b, params[layer.b]))
        return g.op("Relu", out) if isinstance(layer, AffineReLU) else out
    if isinstance(layer, ReLU):
        return g.op("Relu", h)
    if isinstance(layer, (BatchNorm, LayerNorm)):
        return _normalize(g, h, layer, params, buffers)
    if isinstance(layer, Dropout) or type(layer) is Layer:  # the identity in evaluation
        return h
    raise ValueError(
        f"cannot export a {type(layer).__name__} layer to ONNX: fcn exports affine, ReLU, batch and layer "
        "normalization and dropout layers"
    )


def _input(g: _Graph, net: Any, input: str) -> tuple[Any, str]:
    """The graph's input (its ``ValueInfo``) and the name of the ``(N, D)`` features it becomes."""
    helper, mapping = g.onnx.helper, g.onnx.helper.np_dtype_to_tensor_dtype
    if input == "features":
        return helper.make_tensor_value_info("features", mapping(g.dtype), ["N", net.input_dim]), "features"
    mean = getattr(net, "mean_image", None)
    shape = list(mean.shape) if mean is not None and mean.ndim == 3 else [net.input_dim]
    info = helper.make_tensor_value_info("images", g.onnx.TensorProto.UINT8, ["N", *shape])
    # FullyConnectedNet.prepare's arithmetic: the mean subtracted in float64, rounded once to the model's dtype
    h = g.op("Cast", "images", to=g.onnx.TensorProto.DOUBLE)
    if mean is not None:
        h = g.op("Sub", h, g.constant("mean_image", mean, numpy.float64))
    h = g.op("Cast", h, to=mapping(g.dtype))
    return info, (g.op("Flatten", h, axis=1) if len(shape) > 1 else h)


def build_onnx(net: Any, *, input: str = "images") -> Any:
    """The ONNX ``ModelProto`` of ``net`` (a :class:`fcn.FullyConnectedNet` or subclass), checked by ONNX's
    checker. ``input`` is ``"images"`` or ``"features"`` (the module docstring says what each takes).

    Raises :class:`MissingOnnxError` without the ``onnx`` package, ``ValueError`` for an ``input`` it does not
    know or a layer it cannot express, ``TypeError`` for a model that is not built from fcn layers.
    """
    onnx = require_onnx()
    if input not in INPUTS:
        raise ValueError(f"input must be 'images' (uint8 pixels) or 'features' (preprocessed floats), got {input!r}")
    if not isinstance(getattr(net, "layers", None), list) or not hasattr(net, "input_dim"):
        raise TypeError(f"export_onnx takes a model built from fcn layers (FullyConnectedNet), not {type(net)!r}")
    net.check_finite()  # a diverged model exports as a graph that answers class 0 to everything
    g = _Graph(onnx, numpy.dtype(dtype_name(net.dtype)))
    info, h = _input(g, net, input)
    for layer in net.layers:
        h = _layer(g, h, layer, net.params, net.buffers)
    g.op("Softmax", h, axis=1, output="probabilities")
    g.op("ArgMax", h, axis=1, keepdims=0, output="label")
    outputs = [
        onnx.helper.make_tensor_value_info(
            "probabilities", onnx.helper.np_dtype_to_tensor_dtype(g.dtype), ["N", net.num_classes]
        ),
        onnx.helper.make_tensor_value_info("label", onnx.TensorProto.INT64, ["N"]),
    ]
    graph = onnx.helper.make_graph(g.nodes, type(net).__name__, [info], outputs, g.initializers)
    model = onnx.helper.make_model(
        graph,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="fcn",
        producer_version=__version__,
        doc_string=f"{net!r}; input {input!r} (see fcn.export)",
    )
    names = getattr(net, "class_names", None)
    props = {"input": input, "fcn_version": __version__, "class_names": json.dumps(names)}
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net: Any, path: str | os.PathLike[str], *, input: str = "images", overwrite: bool = False) -> Path:
    """Write ``net`` as an ONNX file at ``path`` (see :func:`build_onnx`) and return the path.

    The file is written as every fcn file is (:func:`fcn.atomic.write_atomic`): a reader never sees half of it,
    and it gets the permissions of any new file (the umask). An existing file is
    refused with ``FileExistsError`` unless ``overwrite`` is true; a folder at ``path`` with ``ValueError``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the ONNX file to write, such as {path / 'model.onnx'}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    data = build_onnx(net, input=input).SerializeToString()  # before anything is written: errors leave no file
    write_atomic(path, lambda f: f.write(data))  # as every file fcn writes: whole or not at all
    return path
