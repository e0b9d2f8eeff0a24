# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 3: feedforward networks on CIFAR-10
#
# This notebook walks the chapter's path with the `fcn` package instead of hand-written exercise code:
#
# 1. load CIFAR-10 (split and mean-subtracted);
# 2. check each layer (affine, ReLU, the affine-ReLU sandwich, softmax) against known values and
#    numerical gradients;
# 3. check and train the shallow network `ShallowLayerNet` (one hidden layer of 100 units);
# 4. gradient-check `FullyConnectedNet` at several depths and regularisation strengths;
# 5. overfit 50 training images with a three-layer net, the sanity check every new model should pass;
# 6. look at the first-layer weights of the trained shallow net;
# 7. compare a net with batch normalization to one without, on the same budget;
# 8. compare the same network on other array backends (array-api-strict's second device here, and
#    CuPy when a CUDA GPU is present).
#
# Every check prints the chapter's numbers and also `assert`s them, so a broken layer makes the notebook
# fail (CI runs it with `FCN_NOTEBOOK_FAST=1`).
#
# The source is `notebooks/chapter3_feedforward.py` (jupytext's percent format: edit it there, or pair it
# in Jupyter). This notebook and the figures in `notebooks/figures/` are generated from it, from the
# repository root, by:
#
# ```bash
# FCN_DATA_DIR=/path/to/cifar-10 python - <<'EOF'
# import jupytext, nbclient
# nb = jupytext.read("notebooks/chapter3_feedforward.py")
# for i, cell in enumerate(nb.cells):
#     cell.id = f"cell-{i:02d}"  # stable ids: a regenerated notebook differs only where the cells did
# nbclient.execute(nb, cwd="notebooks", record_timing=False, coalesce_streams=True)
# jupytext.write(nb, "notebooks/chapter3_feedforward.ipynb")
# EOF
# ```

# %% [markdown]
# ## Parameters
#
# * `FAST` (environment variable `FCN_NOTEBOOK_FAST=1`, set by CI): a 2000-image training set and a few
#   hundred iterations instead of the chapter's 49,000 images and 2000 iterations.
# * Data: the CIFAR-10 folder in the environment variable `FCN_DATA_DIR` (never downloaded here); without
#   it, random images of CIFAR-10's shape, so that the notebook still runs (accuracies on them mean nothing).

# %% tags=["parameters"]
import os
from pathlib import Path

FAST = os.environ.get("FCN_NOTEBOOK_FAST", "0") == "1"
DATA_DIR = os.environ.get("FCN_DATA_DIR", "").strip()  # a cifar-10-batches-py folder or its parent
SEED = 0
FIGURE_DIR = Path("figures")  # Jupyter runs a notebook in its own folder: this is notebooks/figures

# %%
# %matplotlib inline
import time

import numpy as np

import fcn
import fcn.plotting
from fcn import *

notebook_start = time.perf_counter()
rng = np.random.default_rng(SEED)  # the chapter uses np.random.randn; a seeded generator makes reruns equal
print(f"fcn {fcn.__version__}, NumPy {np.__version__}, FAST={FAST}, CUDA GPU: {fcn.has_gpu()}")

# %% [markdown]
# ## Data
#
# `get_CIFAR10_data` reads the pickled batches, takes the first `num_training` training images for
# training and the next `num_validation` for validation, the first `num_test` test images for testing,
# and subtracts the training split's mean image. The images stay in raw pixel units (0..255 minus the
# mean), as in the chapter.
#
# The outputs stored with this notebook come from a CIFAR-10 copy whose images were rebuilt from JPEG files
# (official labels), so its accuracies are close to, not equal to, those on the original files.

# %%
REAL_DATA = bool(DATA_DIR)
if FAST:
    num_training, num_validation, num_test = 2000, 500, 500
else:
    num_training, num_validation, num_test = 49000, 1000, 1000  # the chapter's split

t0 = time.perf_counter()
if REAL_DATA:
    DATA_LABEL = "real CIFAR-10 (from FCN_DATA_DIR)"
    data = get_CIFAR10_data(num_training, num_validation, num_test, root=DATA_DIR, download=False)
else:
    DATA_LABEL = "SYNTHETIC data: numbers below are not CIFAR-10 results (random images, FCN_DATA_DIR not set)"
    num_training, num_validation, num_test = min(num_training, 4000), 1000, 1000
    gen = np.random.default_rng(SEED)  # prepared as get_CIFAR10_data prepares the real images
    images = gen.integers(0, 256, (num_training + num_validation + num_test, 3, 32, 32)).astype(np.float32)
    images -= images[:num_training].mean(axis=0)
    labels = np.arange(len(images)) % 10
    bounds = [num_training, num_training + num_validation]
    data = {f"{x}_{split}": part for x, array in (("X", images), ("y", labels))
            for split, part in zip(("train", "val", "test"), np.split(array, bounds), strict=True)}
print(DATA_LABEL)
X_train, y_train = data["X_train"], data["y_train"]
X_val, y_val = data["X_val"], data["y_val"]
X_test, y_test = data["X_test"], data["y_test"]
for k, v in data.items():
    print(f"{k}: ", v.shape)
print(f"loaded in {time.perf_counter() - t0:.1f} s; dtype {X_train.dtype}; "
      f"pixel std after mean subtraction: {float(X_train.std()):.1f}")

# %% [markdown]
# ## Affine layer: forward
#
# `affine_forward(x, w, b)` flattens each input to a row of `D = d_1 * ... * d_k` features and returns
# `x @ w + b` and a cache for the backward pass. The chapter's check uses evenly spaced inputs and a known
# output; the relative error should be about 1e-9 (the expected values are given to 8 decimals).

# %%
num_inputs = 2
input_shape = (4, 5, 6)
output_dim = 3

input_size = num_inputs * np.prod(input_shape)
weight_size = output_dim * np.prod(input_shape)

x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
b = np.linspace(-0.3, 0.1, num=output_dim)

out, _ = affine_forward(x, w, b)
correct_out = np.array([[1.49834967, 1.70660132, 1.91485297],
                        [3.25553199, 3.5141327, 3.77273342]])

print("Testing affine_forward:")
print("error: ", rel_error(out, correct_out))
assert rel_error(out, correct_out) < 1e-8

# %% [markdown]
# ## Affine layer: backward
#
# The backward pass returns the gradients with respect to `x` (reshaped back to the input's shape), `w`
# and `b`. They are compared with centred finite differences from `eval_numerical_gradient_array`.

# %%
x = rng.standard_normal((10, 2, 3))
w = rng.standard_normal((6, 5))
b = rng.standard_normal(5)
dout = rng.standard_normal((10, 5))

dx_num = eval_numerical_gradient_array(lambda x: affine_forward(x, w, b)[0], x, dout)
dw_num = eval_numerical_gradient_array(lambda w: affine_forward(x, w, b)[0], w, dout)
db_num = eval_numerical_gradient_array(lambda b: affine_forward(x, w, b)[0], b, dout)

_, cache = affine_forward(x, w, b)
dx, dw, db = affine_backward(dout, cache)

print("Testing affine_backward:")
for name, num, ana in [("dx", dx_num, dx), ("dw", dw_num, dw), ("db", db_num, db)]:
    print(f"{name} error: ", rel_error(num, ana))
    assert rel_error(num, ana) < 1e-7, name

# %% [markdown]
# ## ReLU: forward and backward
#
# `relu_forward` is `max(0, x)`; `relu_backward` passes the upstream gradient where the input was positive.
# The forward error is about 5e-8 only because the expected values are rounded to 8 decimals.

# %%
x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)

out, _ = relu_forward(x)
correct_out = np.array([[0.0, 0.0, 0.0, 0.0],
                        [0.0, 0.0, 0.04545455, 0.13636364],
                        [0.22727273, 0.31818182, 0.40909091, 0.5]])

print("Testing relu_forward:")
print("error: ", rel_error(out, correct_out))
assert rel_error(out, correct_out) < 1e-7

# %%
x = rng.standard_normal((10, 10))
dout = rng.standard_normal(x.shape)

dx_num = eval_numerical_gradient_array(lambda x: relu_forward(x)[0], x, dout)

_, cache = relu_forward(x)
dx = relu_backward(dout, cache)

print("Testing relu_backward:")
print("dx error: ", rel_error(dx_num, dx))
assert rel_error(dx_num, dx) < 1e-7

# %% [markdown]
# ## A complete layer: affine + ReLU
#
# `affine_relu_forward` / `affine_relu_backward` chain the two; the gradients are checked the same way.

# %%
x = rng.standard_normal((2, 3, 4))
w = rng.standard_normal((12, 10))
b = rng.standard_normal(10)
dout = rng.standard_normal((2, 10))

out, cache = affine_relu_forward(x, w, b)
dx, dw, db = affine_relu_backward(dout, cache)

dx_num = eval_numerical_gradient_array(lambda x: affine_relu_forward(x, w, b)[0], x, dout)
dw_num = eval_numerical_gradient_array(lambda w: affine_relu_forward(x, w, b)[0], w, dout)
db_num = eval_numerical_gradient_array(lambda b: affine_relu_forward(x, w, b)[0], b, dout)

print("Testing affine_relu_forward / affine_relu_backward:")
for name, num, ana in [("dx", dx_num, dx), ("dw", dw_num, dw), ("db", db_num, db)]:
    print(f"{name} error: ", rel_error(num, ana))
    assert rel_error(num, ana) < 1e-7, name

# %% [markdown]
# ## Output layer: softmax loss
#
# With tiny random scores every class is about equally likely, so the loss should be close to
# `ln 10 ≈ 2.3026`. The loss comes back as a 0-d array (it stays on the device on a GPU); `float(loss)`
# reads it.

# %%
num_classes, num_inputs = 10, 50
x = 0.001 * rng.standard_normal((num_inputs, num_classes))
y = rng.integers(num_classes, size=num_inputs)

dx_num = eval_numerical_gradient(lambda x: softmax_loss(x, y)[0], x, verbose=False)
loss, dx = softmax_loss(x, y)

print("Testing softmax_loss:")
print("loss: ", float(loss))
print("dx error: ", rel_error(dx_num, dx))
assert abs(float(loss) - np.log(10)) < 0.01
assert rel_error(dx_num, dx) < 1e-7

# %% [markdown]
# ## Shallow network
#
# `ShallowLayerNet` is `affine - relu - affine - softmax`. The checks below follow the chapter: the initial
# weights have the requested standard deviation and zero biases; with hand-set parameters the scores and
# losses match known values; and the gradients match numerical ones, without and with regularisation.
#
# (The chapter writes these checks as `assert(condition, message)`, which asserts a non-empty tuple and so
# never fails; here they are real assertions.) The loss adds `0.5 * reg * sum(W**2)` for each weight matrix.

# %%
N, D, H, C = 3, 5, 50, 7
std = 1e-2
model = ShallowLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=std, seed=SEED)

print("Testing initialization ...")
W1_std = abs(model.params["W1"].std() - std)
W2_std = abs(model.params["W2"].std() - std)
assert W1_std < std / 10, "first layer weights do not seem right"
assert np.all(model.params["b1"] == 0), "first layer biases do not seem right"
assert W2_std < std / 10, "second layer weights do not seem right"
assert np.all(model.params["b2"] == 0), "second layer biases do not seem right"

print("Testing test-time forward pass ...")
model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
model.params["b1"] = np.linspace(-0.1, 0.9, num=H)
model.params["W2"] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
scores = model.loss(X)
correct_scores = np.asarray(
    [[11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
     [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
     [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319]])
scores_diff = np.abs(scores - correct_scores).sum()
print("scores difference: ", scores_diff)
assert scores_diff < 1e-6, "problem with the test-time forward pass"

print("Testing training loss (no regularization)")
y = np.asarray([0, 5, 1])
loss, grads = model.loss(X, y)
correct_loss = 3.4702243556
print(f"loss: {float(loss):.10f} (expected {correct_loss})")
assert abs(float(loss) - correct_loss) < 1e-10, "problem with the training-time loss"

print("Testing training loss (regularization 1.0)")
model.reg = 1.0
loss, grads = model.loss(X, y)
correct_loss = 26.5948426952
print(f"loss: {float(loss):.10f} (expected {correct_loss})")
assert abs(float(loss) - correct_loss) < 1e-10, "problem with the regularization loss"


# %%
def loss_of(model, X, y):
    """The chapter's `f = lambda _: model.loss(X, y)[0]`: eval_numerical_gradient changes the parameter
    array in place, so the function ignores its argument and just recomputes the model's loss."""
    return lambda _: model.loss(X, y)[0]


for reg in [0.0, 0.7]:
    print("Running numeric gradient check with reg = ", reg)
    model.reg = reg
    loss, grads = model.loss(X, y)

    for name in sorted(grads):
        grad_num = eval_numerical_gradient(loss_of(model, X, y), model.params[name], verbose=False)
        err = rel_error(grad_num, grads[name])
        print(f"{name} relative error: {err:.2e}")
        assert err < 1e-5, name

# %% [markdown]
# ## Training the shallow network
#
# The chapter's settings: 100 hidden units, minibatch SGD for 2000 iterations of 500 images (about 20
# epochs of 49,000 images), learning rate 1e-3 decayed by 0.95 after each epoch, L2 strength 0.6. The
# network is built in float32, which halves the memory traffic of every matrix product at no cost in
# accuracy. `train` keeps the parameters with the best validation accuracy.
#
# The chapter reports a validation accuracy of 0.512.

# %%
input_size = 32 * 32 * 3
hidden_size = 100
num_classes = 10
net = ShallowLayerNet(input_size, hidden_size, num_classes, dtype="float32", seed=SEED)
num_iters, batch_size = (200, 200) if FAST else (2000, 500)

t0 = time.perf_counter()
stats = net.train(X_train, y_train, X_val, y_val,
                  num_iters=num_iters, batch_size=batch_size,
                  learning_rate=1e-3, learning_rate_decay=0.95,
                  reg=0.6, verbose=True, seed=SEED)
train_seconds = time.perf_counter() - t0

val_acc = (net.predict(X_val) == y_val).mean()
test_acc = (net.predict(X_test) == y_test).mean()
print(f"trained {num_iters} iterations in {train_seconds:.1f} s")
print("Validation accuracy: ", val_acc)
print("Best validation accuracy: ", stats["best_val_acc"])
print("Test accuracy: ", test_acc)
assert np.all(np.isfinite(stats["loss_history"]))
if REAL_DATA:
    assert stats["best_val_acc"] > (0.25 if FAST else 0.45), "the shallow net learned far less than expected"

# %% [markdown]
# Loss per iteration, and training/validation accuracy per epoch (the dashed line marks 50%). The
# training accuracy is measured on a fixed random subset of 1000 training images.

# %%
if not FAST:
    FIGURE_DIR.mkdir(exist_ok=True)
title = f"ShallowLayerNet, {num_iters} iterations (best val acc {stats['best_val_acc']:.3f})"
fig = fcn.plotting.plot_stats(stats, path=None if FAST else FIGURE_DIR / "shallow_curves.png", title=title)
fig

# %% [markdown]
# ## Deep fully connected networks
#
# `FullyConnectedNet` generalises the shallow net to any number of hidden layers:
# `{affine - relu} x L - affine - softmax`. The gradient check below is the chapter's (N, D, H1, H2, H3,
# C = 2, 15, 20, 30, 20, 10, weight scale 5e-2, float64), run for one, two and three hidden layers and
# three regularisation strengths. At initialisation the loss without regularisation is close to `ln 10`.
#
# Relative errors up to a few times 1e-5 on the weight matrices are expected with this protocol: with two
# samples and small weights many gradient entries are tiny, and for those the finite-difference error
# dominates. A wrong gradient gives errors near 1, so the check asserts below 1e-4.

# %%
N, D, H1, H2, H3, C = 2, 15, 20, 30, 20, 10
X = rng.standard_normal((N, D))
y = rng.integers(C, size=(N,))

for hidden_dims in ([H1], [H1, H2], [H1, H2, H3]):
    print(f"hidden layers {hidden_dims}:")
    for reg in [0, 0.11, 3.14]:
        model = FullyConnectedNet(input_dim=D, hidden_dims=hidden_dims, num_classes=C, reg=reg,
                                  weight_scale=5e-2, dtype="float64", seed=SEED)
        loss, grads = model.loss(X, y)
        errors = {}
        for name in sorted(grads):
            grad_num = eval_numerical_gradient(loss_of(model, X, y), model.params[name], verbose=False, h=1e-5)
            errors[name] = rel_error(grad_num, grads[name])
        print(f"  reg = {reg:<4}  initial loss {float(loss):.6f}  relative errors: "
              + "  ".join(f"{name} {err:.2e}" for name, err in errors.items()))
        assert max(errors.values()) < 1e-4, errors
        if reg == 0:
            assert abs(float(loss) - np.log(C)) < 0.1

# %% [markdown]
# ## Overfitting a small data set
#
# A network that can learn should be able to memorise 50 images. The chapter's setting: two hidden layers
# of 100 units, weight scale 1e-1, learning rate 1e-3, 20 epochs of batches of 25, with the `Solver`.
#
# With inputs in raw pixel units (standard deviation about 63 after mean subtraction), a weight scale of
# 1e-1 makes the initial scores huge, so the first losses are in the hundreds rather than `ln 10`; the
# training accuracy still reaches 100% while the validation accuracy stays low. (A weight scale of 1e-2
# with a learning rate of 1e-2 overfits too, from a normal initial loss.) The loss axis is logarithmic.

# %%
num_train = 50
small_data = {
    "X_train": X_train[:num_train],
    "y_train": y_train[:num_train],
    "X_val": X_val,
    "y_val": y_val,
}

weight_scale = 1e-1
learning_rate = 1e-3
overfit_net = FullyConnectedNet(input_size, [100, 100], num_classes, weight_scale=weight_scale,
                                dtype="float64", seed=SEED)
solver = Solver(overfit_net, small_data, print_every=10, num_epochs=20, batch_size=25,
                update_rule="sgd", optim_config={"learning_rate": learning_rate}, seed=SEED)
solver.train()

overfit_train_acc = solver.train_acc_history[-1]
print("final training accuracy: ", overfit_train_acc)
print("final validation accuracy: ", solver.val_acc_history[-1])
assert overfit_train_acc == 1.0, "the network could not overfit 50 images"

fig = fcn.plotting.plot_stats(solver.stats(), title="FullyConnectedNet [100, 100] on 50 training images")
fig.axes[0].set_yscale("log")
fig

# %% [markdown]
# ## First-layer weights
#
# Each column of `W1` of the trained shallow net, reshaped to a 32x32 colour image and rescaled to the full
# grey range. Trained on real images, many show colour blobs and edge-like templates; on random data they
# stay noise.

# %%
fig = fcn.plotting.plot_weights(net.params["W1"], path=None if FAST else FIGURE_DIR / "shallow_weights.png")
fig

# %% [markdown]
# ## Batch normalization
#
# `FullyConnectedNet(..., normalization="batchnorm")` puts a batch-normalization layer between each hidden
# affine layer and its ReLU: every feature is standardised over the batch, then scaled and shifted by the
# learned `gamma` and `beta`; running averages of the batch statistics (buffers `running_mean{i}`,
# `running_var{i}`) replace them at evaluation time (`predict`, accuracies). `dropout_keep_ratio=` adds
# inverted dropout after each ReLU in the same way, and `normalization="layernorm"` normalises each sample
# instead.
#
# Two nets with the same architecture, initial weights (`weight_scale="he"`, `sqrt(2 / fan_in)` per
# layer), optimiser (Adam, learning rate 1e-3), batches and number of steps; one with batch normalization.
# The inputs are raw pixel values (standard deviation about 63), so without normalization the first
# scores are huge and the initial loss is far above `ln 10`; with it, every layer sees standardised
# inputs from the first step on.

# %%
bn_hidden, bn_epochs, bn_batch = ([100, 100], 3, 100) if FAST else ([512, 256], 5, 200)
bn_data = {"X_train": X_train, "y_train": y_train, "X_val": X_val, "y_val": y_val}
bn_runs = {}
for normalization in (None, "batchnorm"):
    model = FullyConnectedNet(input_size, bn_hidden, num_classes, weight_scale="he",
                              normalization=normalization, dtype="float32", seed=SEED)
    bn_solver = Solver(model, bn_data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                       num_epochs=bn_epochs, batch_size=bn_batch, verbose=False, seed=SEED)
    t0 = time.perf_counter()
    bn_solver.train()
    label = normalization or "no normalization"
    bn_runs[label] = bn_solver
    print(f"{label:>16}: first loss {bn_solver.loss_history[0]:9.3f}, last loss "
          f"{np.mean(bn_solver.loss_history[-20:]):.3f}, best val acc {bn_solver.best_val_acc:.3f}, "
          f"test acc {(model.predict(X_test) == y_test).mean():.3f} ({time.perf_counter() - t0:.0f} s)")
    assert np.all(np.isfinite(bn_solver.loss_history))
print(f"{bn_hidden} hidden units, {bn_epochs} epochs of batches of {bn_batch} on {num_training} images")

# %%
import matplotlib.pyplot as plt

fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4))
for i, (label, run) in enumerate(bn_runs.items()):
    color = f"C{i}"  # one colour per net in both panels
    ax_loss.plot(run.loss_history, color=color, alpha=0.7, label=label)
    epochs = np.arange(1, len(run.val_acc_history) + 1)
    ax_acc.plot(epochs, run.val_acc_history, "o-", color=color, label=f"{label}, validation")
    ax_acc.plot(epochs, run.train_acc_history, "x--", color=color, alpha=0.6, label=f"{label}, training")
ax_loss.set(yscale="log", xlabel="iteration", ylabel="training loss (log scale)", title="Loss")
ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
ax_loss.legend()
ax_acc.legend()
fig.tight_layout()
if not FAST:
    fig.savefig(FIGURE_DIR / "batchnorm_curves.png", dpi=100)
plt.close(fig)
fig

# %% [markdown]
# ## Same network, other backends
#
# `fcn` writes every layer once against an array namespace, so the same model runs on NumPy, on CuPy
# (`backend="cupy"`) or on any Array-API library. The initial weights come from a host RNG, so one seed
# gives the same network everywhere, and the gradients on one batch should agree to rounding.
#
# The comparison runs on the chapter's gradient-check net (float64; the largest elementwise relative
# error must be below 1e-10) and on a batch of 64 real images through a `[100, 100]` net (elementwise
# errors can be larger where a gradient entry nearly cancels to zero, so that case is checked with a
# norm-wise error, below 1e-12).
#
# On a CPU-only machine the second device of `array_api_strict` stands in for a GPU: like CuPy it refuses
# implicit conversion to NumPy and mixing with other devices, so it exercises the same code path.

# %%
backend_cases = [
    # (what, network arguments, batch, bound on the largest elementwise relative error or None)
    ("chapter's gradient-check net", dict(input_dim=D, hidden_dims=[H1, H2, H3], num_classes=C, reg=0.11,
                                          weight_scale=5e-2), X, y, 1e-10),  # X, y: the batch used above
    ("3072-100-100-10 net, 64 training images", dict(input_dim=input_size, hidden_dims=[100, 100],
                                                     num_classes=num_classes, reg=0.1, weight_scale=1e-2),
     X_train[:64], y_train[:64], None),
]


def compare_with_numpy(backend, device=None):
    """Build each case's net on `backend` and on NumPy from one seed; compare loss and gradients."""
    for what, kwargs, Xb, yb, bound in backend_cases:
        ref = FullyConnectedNet(**kwargs, dtype="float64", seed=SEED)
        other = FullyConnectedNet(**kwargs, dtype="float64", seed=SEED, backend=backend, device=device)
        loss_ref, grads_ref = ref.loss(Xb, yb)
        loss_other, grads_other = other.loss(Xb, yb)  # host batches are copied to the model's device
        print(f"{what}: {other} vs NumPy")
        print(f"  loss {float(loss_other):.12f} vs {float(loss_ref):.12f}, "
              f"relative error {rel_error(loss_other, loss_ref):.1e}")
        for name in sorted(grads_ref):
            got, want = to_host(grads_other[name]), grads_ref[name]
            err = rel_error(got, want)
            normwise = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300)
            print(f"  {name} relative error {err:.1e} (norm-wise {normwise:.1e})")
            assert normwise < 1e-12, (what, name)
            assert bound is None or err < bound, (what, name)


try:
    import array_api_strict
except ImportError:
    print("array_api_strict is not installed: skipping that comparison (pip install array-api-strict)")
else:
    compare_with_numpy("array_api_strict", array_api_strict.Device("device1"))

# %%
if fcn.has_gpu():
    compare_with_numpy("cupy")
else:
    print("No CUDA GPU here: skipping the CuPy comparison")

# %% [markdown]
# ## Summary

# %%
print(f"data: {DATA_LABEL}; {num_training} training images; FAST={FAST}")
print(f"ShallowLayerNet ({num_iters} iterations): final val acc {val_acc:.3f}, "
      f"best val acc {stats['best_val_acc']:.3f}, test acc {test_acc:.3f}")
print(f"FullyConnectedNet [100, 100] on 50 images: final train acc {overfit_train_acc:.3f}")
for label, run in bn_runs.items():
    print(f"FullyConnectedNet {bn_hidden}, {label}: best val acc {run.best_val_acc:.3f}")
if not FAST:
    print(f"figures: {FIGURE_DIR / 'shallow_curves.png'}, {FIGURE_DIR / 'shallow_weights.png'}, "
          f"{FIGURE_DIR / 'batchnorm_curves.png'}")
print(f"notebook ran in {time.perf_counter() - notebook_start:.0f} s")
