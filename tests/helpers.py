"""Builders shared by the library tests: data sets, solvers, models that record what they see, file rewriting.

Import them as ``from helpers import ...`` (tests/conftest.py puts this folder on ``sys.path``). Every builder is
seeded: two calls with the same arguments give the same data, the same model and the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import fcn
from fcn import FullyConnectedNet, Solver, affine_backward, affine_forward, eval_numerical_gradient, softmax_loss
from fcn.modules import Affine, AffineReLU, Layer

# -- data ------------------------------------------------------------------------------------------------------


def separable(n: int = 400, d: int = 12, c: int = 3, seed: int = 0, n_val: int | None = None) -> dict:
    """``n`` samples of ``d`` features whose class is the argmax of a fixed linear map: learnable, quickly.

    The first three quarters are the training set (all but ``n_val`` samples where that is given), the rest
    the validation set.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ rng.standard_normal((d, c)), axis=1)
    cut = n * 3 // 4 if n_val is None else n - n_val
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


def id_data(n_train: int, n_val: int = 10, d: int = 4, c: int = 3, seed: int = 0) -> dict:
    """Training samples whose first feature is their index (a sample id the model can read back)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train, d))
    X[:, 0] = np.arange(n_train)
    X_val = rng.standard_normal((n_val, d))
    return {
        "X_train": X,
        "y_train": rng.integers(c, size=n_train),
        "X_val": X_val,
        "y_val": rng.integers(c, size=n_val),
    }


def image_data(n: int = 120, seed: int = 0) -> dict:
    """A small image-shaped problem (N, 3, 8, 8): the class is which colour channel is brightest on the left."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3, 8, 8))
    y = rng.integers(3, size=n)
    X[np.arange(n), y, :, :4] += 1.5
    cut = n * 3 // 4
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


# -- solvers -------------------------------------------------------------------------------------------------------


def quiet(**options: Any) -> dict:
    """Solver options for a silent, seeded run: plain SGD at 1e-3 unless ``options`` say otherwise."""
    defaults = dict(verbose=False, progress=False, update_rule="sgd", optim_config={"learning_rate": 1e-3}, seed=5)
    return {**defaults, **options}


MOMENTUM_RUN = dict(
    update_rule="sgd_momentum", optim_config={"learning_rate": 0.05}, batch_size=25, num_epochs=4, seed=3
)
DECAYING_RUN = {**MOMENTUM_RUN, "lr_decay": 0.9}
ADAM_RUN = dict(
    update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=10, num_epochs=3, lr_decay=0.9, seed=11
)
SHORT_RUN = dict(batch_size=25, num_epochs=4, seed=3)  # the Solver's own update rule and learning rate
RECIPE_RUN = dict(
    update_rule="adamw",
    optim_config={"learning_rate": 1e-2, "weight_decay": 1e-2},
    lr_schedule="cosine",
    warmup_epochs=1.5,
    augment="flip,crop",
    clip_grad_norm=2.0,
    batch_size=15,
    num_epochs=5,
    seed=3,
)  # every modern-training option on


def make_solver(
    backend: Any,
    data: dict,
    *,
    model: Any = None,
    dtype: str = "float64",
    hidden_dims: Iterable[int] = (16,),
    run: Mapping[str, Any] = MOMENTUM_RUN,
    **options: Any,
) -> Solver:
    """A silent Solver for ``model`` (by default a ``hidden_dims`` net with weight scale 0.1, seed 0, on ``backend``)
    with the settings of ``run``, overridden by ``options``."""
    if model is None:
        num_features = int(np.prod(data["X_train"].shape[1:]))
        model = FullyConnectedNet(
            num_features, list(hidden_dims), 3, weight_scale=0.1, seed=0, backend=backend, dtype=dtype
        )
    return Solver(model, data, **{"verbose": False, "progress": False, **run, **options})


def decaying_solver(data: dict, backend: Any = "numpy", **options: Any) -> Solver:
    """:func:`make_solver` with momentum SGD at 0.05 and a decay of 0.9 per epoch."""
    return make_solver(backend, data, run=DECAYING_RUN, **options)


def small_net_solver(backend: Any, data: dict, **options: Any) -> Solver:
    """A 9-unit net trained by Adam at 1e-2, batches of 10, 3 epochs, decay 0.9 (on ``separable(80, 6)``: 6 steps
    an epoch)."""
    return make_solver(backend, data, hidden_dims=[9], run=ADAM_RUN, **options)


def model_solver(model: Any, **options: Any) -> Solver:
    """``model`` trained on ``separable(200)`` in batches of 25 for 4 epochs, with the Solver's default rule."""
    return make_solver(None, separable(200), model=model, run=SHORT_RUN, **options)


def recipe_net(backend: Any = "numpy", **options: Any) -> FullyConnectedNet:
    """A net for :func:`image_data`: He initialisation, dropout 0.7 and batch normalization unless overridden."""
    defaults = dict(weight_scale="he", dropout_keep_ratio=0.7, normalization="batchnorm", seed=0, backend=backend)
    return FullyConnectedNet(3 * 8 * 8, [20, 16], 3, **{**defaults, **options})


def recipe_solver(model: Any, data: dict, **options: Any) -> Solver:
    """``model`` trained with every modern-training option on (AdamW, cosine with warmup, flips and crops,
    clipping), overridden by ``options``."""
    return make_solver(None, data, model=model, run=RECIPE_RUN, **options)


# -- models that honour the Solver's contract and show what happens to them ---------------------------------------


class RecordingSoftmax:
    """Softmax regression with the ``params`` / ``loss(X, y=None)`` contract the Solver documents.

    Every training call (``y`` given) appends the sample ids of its batch (column 0 of ``X``) to ``batches``.
    """

    def __init__(self, num_features: int, num_classes: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.params = {"W": 0.01 * rng.standard_normal((num_features, num_classes)), "b": np.zeros(num_classes)}
        self.batches: list[np.ndarray] = []

    def loss(self, X, y=None):
        scores, cache = affine_forward(X, self.params["W"], self.params["b"])
        if y is None:
            return scores
        self.batches.append(np.asarray(X[:, 0]).astype(np.int64))
        loss, dscores = softmax_loss(scores, y)
        _, dW, db = affine_backward(dscores, cache)
        return loss, {"W": dW, "b": db}


class DeclaredSoftmax(RecordingSoftmax):
    """A chapter model (no ``loss_and_grads``) that declares ``input_dim``, ``num_classes`` and ``reg``, and keeps a
    buffer ``calls`` counting its training calls; with ``zero_grads`` its parameters never change."""

    def __init__(self, num_features: int = 4, num_classes: int = 3, reg: float = 0.0, zero_grads: bool = False):
        super().__init__(num_features, num_classes)
        self.input_dim, self.num_classes, self.reg = num_features, num_classes, reg
        self.buffers = {"calls": np.zeros(())}
        self.zero_grads = zero_grads

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is None:
            return out
        self.buffers["calls"] = self.buffers["calls"] + 1.0
        if self.zero_grads:
            return out[0], {k: np.zeros_like(v) for k, v in self.params.items()}
        return out


class BlowsUpAt(RecordingSoftmax):
    """Reports ``value`` as its loss from training call ``at`` on (0-based), with zero gradients."""

    def __init__(self, at: int, value: float):
        super().__init__(4, 3)
        self.at, self.value, self.calls = at, value, 0

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is None:
            return out
        self.calls += 1
        if self.calls - 1 >= self.at:
            return np.asarray(self.value), {k: np.zeros_like(v) for k, v in self.params.items()}
        return out


class Scale(Layer):
    """A toy layer: ``out = x * s`` per feature, and a running mean of its input kept as a buffer."""

    def __init__(self, index, dim):
        self.s, self.seen = f"s{index}", f"seen{index}"
        self.params, self.buffers = (self.s,), (self.seen,)
        self.dim = dim

    def init_params(self, rng):
        return {self.s: 1.0 + 0.1 * rng.standard_normal(self.dim)}

    def init_buffers(self):
        return {self.seen: np.zeros(self.dim)}

    def forward(self, ops, x, params, buffers, train):
        if train:
            buffers[self.seen] = 0.9 * buffers[self.seen] + 0.1 * ops.xp.mean(x, axis=0)
        return x * params[self.s], (x, params[self.s])

    def backward(self, ops, dout, cache):
        x, s = cache
        return dout * s, {self.s: ops.xp.sum(dout * x, axis=0)}


class ScaledNet(FullyConnectedNet):
    """The chapter's net with a Scale layer after each hidden layer: one method, nothing else touched."""

    def build_layers(self):
        dims = [self.input_dim, *self.hidden_dims, self.num_classes]
        layers = []
        for i in range(1, self.num_layers):
            layers += [AffineReLU(i, dims[i - 1], dims[i], self.weight_scale), Scale(i, dims[i])]
        return layers + [Affine(self.num_layers, dims[-2], dims[-1], self.weight_scale)]


def heavy_ball(w, dw, config=None):
    """A user's rule with its own array state, returning a new array (not updating in place)."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("mu", 0.5)
    if "vel" not in config:
        config["vel"] = fcn.namespace_of(w).xp.zeros_like(w)
    config["vel"] = config["mu"] * config["vel"] - config["learning_rate"] * dw
    return w + config["vel"], config


# -- arrays --------------------------------------------------------------------------------------------------------


def host_copy(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """NumPy copies of a dict of arrays on any backend (a model's ``params`` or ``buffers``)."""
    return {name: fcn.to_host(value).copy() for name, value in arrays.items()}


def assert_same(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> None:
    """The same names and, bit for bit, the same arrays."""
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def capture_last_params(solver: Solver) -> list[dict[str, np.ndarray]]:
    """Record the parameters at every evaluation: the last one is the state training ended in."""
    seen: list[dict[str, np.ndarray]] = []
    solver.on_epoch_end = lambda s: seen.append(host_copy(s.model.params))
    return seen


def assert_grads_match_numeric(model, X, y, rtol=1e-6, atol=1e-8):
    """Analytic vs centred-difference gradients for every parameter.

    A mixed tolerance instead of the chapter's bare rel_error: entries whose true gradient is ~0 (dead
    ReLUs) make rel_error blow up on 1e-11 noise without anything being wrong.
    """
    _, grads = model.loss(X, y)
    assert sorted(grads) == sorted(model.params)
    for name in sorted(grads):
        num = fcn.to_host(eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False))
        np.testing.assert_allclose(fcn.to_host(grads[name]), num, rtol=rtol, atol=atol, err_msg=name)


# -- files ---------------------------------------------------------------------------------------------------------


def saved_meta(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A checkpoint's metadata (decoded) and its other arrays."""
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz["meta"])), {k: npz[k] for k in npz.files if k != "meta"}


def rewrite_npz(src: str | Path, change: Callable[[dict], Any], dst: str | Path | None = None) -> Path:
    """Copy an fcn file (model or checkpoint) to ``dst`` (default: over itself) with ``change(entries)`` applied to
    its entries, ``entries["meta"]`` decoded as a dict."""
    with np.load(src, allow_pickle=False) as npz:
        entries: dict[str, Any] = {k: npz[k] for k in npz.files}
    entries["meta"] = json.loads(str(entries["meta"]))
    change(entries)
    entries["meta"] = np.asarray(json.dumps(entries["meta"]))
    dst = Path(src if dst is None else dst)
    np.savez(dst, **entries)
    return dst


def rewrite_checkpoint(
    src: str | Path,
    dst: str | Path | None = None,
    *,
    drop: Iterable[str] = (),
    meta: Mapping[str, Any] | None = None,
    arrays: Mapping[str, Any] | None = None,
    drop_meta: Iterable[str] = (),
) -> Path:
    """Copy a checkpoint without the arrays whose names start with one of ``drop`` and the metadata keys
    ``drop_meta``, with ``meta`` and ``arrays`` updated."""
    drop, drop_meta = tuple(drop), tuple(drop_meta)

    def change(entries):
        for name in [k for k in entries if k != "meta" and k.startswith(drop)] if drop else []:
            del entries[name]
        for key in drop_meta:
            del entries["meta"][key]
        entries["meta"].update(meta or {})
        entries.update(arrays or {})

    return rewrite_npz(src, change, dst)


# -- the command line --------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def fcn_command(*args: str, env: dict[str, str] | None = None, prelude: str = "") -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run ``fcn ARGS`` from this checkout (see :func:`fcn_cli`)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("FCN_DEBUG", "FCN_DATA_DIR")}
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")])
    environ.update(env or {})
    if prelude:
        code = f"import sys, fcn.cli as cli\n{prelude}\nsys.exit(cli.main(sys.argv[1:]))"
        return [sys.executable, "-c", code, *args], environ
    return [sys.executable, "-m", "fcn.cli", *args], environ


def fcn_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, prelude: str = "") -> subprocess.CompletedProcess:
    """Run ``fcn ARGS`` from this checkout in a subprocess; ``prelude`` is Python run before ``main`` (to plant a
    fault, fix the clock, set the umask)."""
    command, environ = fcn_command(*args, env=env, prelude=prelude)
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess, command: str = "train") -> str:
    """The single line a failing command prints: ``fcn <command>: error: ...``, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fcn {command}: error: "), lines[0]
    return lines[0]


def tree(path: Path) -> list[str]:
    """The files and folders under ``path``, relative to it, sorted (empty when ``path`` does not exist)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []
