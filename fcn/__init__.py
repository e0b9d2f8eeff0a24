"""fcn: feedforward (fully connected) networks on CIFAR-10, one code path for NumPy (CPU) and CuPy (GPU).

``from fcn import *`` gives the chapter's names: the layers, the gradient checks, the networks and the
data loader. The backend is chosen at runtime: ``fcn.FullyConnectedNet(..., backend="cupy")``.
"""

from .backend import Backend, BackendError, get_backend, has_cupy, has_gpu, namespace_of, to_backend, to_host
from .data import DatasetError, get_CIFAR10_data, load_CIFAR10
from .factory import build_model
from .gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from .layer_utils import affine_relu_backward, affine_relu_forward
from .layers import affine_backward, affine_forward, relu_backward, relu_forward, softmax_loss
from .models import FullyConnectedNet, ShallowLayerNet
from .normalization import (
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
)
from .optim import adam, adamw, rmsprop, sgd, sgd_momentum
from .serialization import ModelFileError, load_model, save_model
from .solver import CheckpointError, Solver, TrainingDiverged
from .training import TrainConfig
from .validation import trusted_inputs
from .version import __version__ as __version__  # written in fcn/version.py, where the package metadata reads it

__all__ = [
    "Backend",
    "BackendError",
    "get_backend",
    "has_cupy",
    "has_gpu",
    "namespace_of",
    "to_backend",
    "to_host",
    "affine_forward",
    "affine_backward",
    "relu_forward",
    "relu_backward",
    "affine_relu_forward",
    "affine_relu_backward",
    "softmax_loss",
    "dropout_forward",
    "dropout_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "layernorm_forward",
    "layernorm_backward",
    "eval_numerical_gradient",
    "eval_numerical_gradient_array",
    "rel_error",
    "FullyConnectedNet",
    "ShallowLayerNet",
    "build_model",
    "Solver",
    "TrainConfig",
    "TrainingDiverged",
    "CheckpointError",
    "sgd",
    "sgd_momentum",
    "rmsprop",
    "adam",
    "adamw",
    "trusted_inputs",
    "get_CIFAR10_data",
    "load_CIFAR10",
    "DatasetError",
    "save_model",
    "load_model",
    "ModelFileError",
]
