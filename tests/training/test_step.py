"""One training step (fcn/training/step.py): train mode for the step's pass, eval mode for scoring, gradient
clipping, the model's backend, and what a chapter model (``params`` and ``loss`` only) declares beyond that."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import DeclaredSoftmax, RecordingSoftmax, host_copy, id_data, image_data, quiet, recipe_net, recipe_solver

import fcn
from fcn import FullyConnectedNet, Solver
from fcn.modules import Layer
from fcn.training.step import model_backend


def test_layers_see_train_mode_in_training_steps_and_eval_mode_when_scored():

    class Spy(Layer):
        def __init__(self, log):
            self.log = log

        def forward(self, ops, x, params, buffers, train):
            self.log.append((bool(train), x.shape[0]))
            return x, None

    log: list = []

    class SpiedNet(FullyConnectedNet):
        def build_layers(self):
            return [Spy(log), *super().build_layers()]

    data = id_data(40)
    solver = Solver(SpiedNet(4, [5], 3, seed=0), data, **quiet(batch_size=10, num_epochs=1))
    log.clear()
    solver.train()
    steps = [n for train, n in log if train]
    scored = [n for train, n in log if not train]
    assert steps == [10, 10, 10, 10]  # every training step in train mode ...
    assert sorted(scored) == [10, 40]  # ... and the train and validation accuracy in eval mode
    log.clear()
    solver.model.predict(data["X_val"])
    assert log == [(False, 10)]


def test_clipping_bounds_the_step_and_a_loose_bound_changes_nothing():
    data = image_data()

    def first_step(clip):
        net = recipe_net(dropout_keep_ratio=1.0, normalization=None)
        solver = recipe_solver(net, data, update_rule="sgd", optim_config={"learning_rate": 1.0}, augment=None,
                             warmup_epochs=0, lr_schedule="step", clip_grad_norm=clip)  # fmt: skip
        before = host_copy(net.params)
        solver.step()
        return {k: fcn.to_host(v) - before[k] for k, v in net.params.items()}

    unclipped = first_step(None)
    norm = math.sqrt(sum(float(np.sum(d**2)) for d in unclipped.values()))
    assert norm > 0.05
    clipped = first_step(0.01)
    for name, d in clipped.items():  # the same direction, scaled to norm 0.01
        np.testing.assert_allclose(d, unclipped[name] * 0.01 / (norm + 1e-6), rtol=1e-6, atol=1e-12)
    loose = first_step(1e6)
    for name, d in loose.items():
        np.testing.assert_array_equal(d, unclipped[name])


@pytest.mark.parametrize("fused", [True, False])
def test_a_model_s_own_backend_is_used_with_its_kernel_choice(fused):
    # Backends compare equal whatever their kernel choice: only the model's own object keeps ``fused``
    backend = fcn.get_backend("numpy", fused=fused)
    net = FullyConnectedNet(4, [5], 3, seed=0, backend=backend)
    assert model_backend(net) is backend and model_backend(net).fused is fused


def test_a_model_without_a_backend_attribute_gets_the_one_of_its_parameters():
    assert model_backend(RecordingSoftmax(4, 3)) == fcn.get_backend("numpy")


def test_a_chapter_model_s_reg_is_a_setting_a_resumed_run_must_share(tmp_path):
    first = Solver(DeclaredSoftmax(reg=0.1), id_data(20), **quiet(batch_size=10, num_epochs=1))
    first.train()
    path = first.save_checkpoint(tmp_path / "ck.npz")
    other = Solver(DeclaredSoftmax(reg=0.2), id_data(20), **quiet(batch_size=10, num_epochs=1))
    with pytest.raises(fcn.CheckpointError, match=r"reg 0\.1 in the checkpoint, 0\.2 here"):
        other.load_checkpoint(path)


def test_a_chapter_model_s_buffers_come_back_from_the_best_epoch_with_its_parameters():
    # the parameters never change, so the validation accuracy is the same every epoch: the first one is the best
    model = DeclaredSoftmax(zero_grads=True)
    Solver(model, id_data(20), **quiet(batch_size=10, num_epochs=3)).train()
    assert float(model.buffers["calls"]) == 2.0  # two steps an epoch: the count at the end of epoch 1, not 6


class TinyGradients(RecordingSoftmax):
    """Softmax regression whose gradient is 1e-8 in every entry: a norm far below the clipping bound's epsilon."""

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is None:
            return out
        return out[0], {name: np.full_like(value, 1e-8) for name, value in self.params.items()}


def test_a_gradient_below_the_clipping_bound_however_small_is_applied_as_it_is():
    model = TinyGradients(4, 3)
    before = host_copy(model.params)
    solver = Solver(model, id_data(20), **quiet(batch_size=10, optim_config={"learning_rate": 1.0}, clip_grad_norm=1.0))
    solver.step()
    for name, value in model.params.items():
        np.testing.assert_allclose(fcn.to_host(value), before[name] - 1e-8, rtol=0, atol=1e-15)


def test_on_the_host_every_batch_is_a_new_array_that_later_batches_leave_alone():
    """A model may keep its batch (a cache for its backward pass): NumPy gathers into fresh arrays every step."""
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10))
    step = solver.train_step
    X_first, y_first = step.gather(step.indices(np.arange(0, 10)))
    kept = X_first.copy(), y_first.copy()
    X_second, y_second = step.gather(step.indices(np.arange(10, 20)))
    assert X_second is not X_first and y_second is not y_first
    np.testing.assert_array_equal(X_first, kept[0])
    np.testing.assert_array_equal(y_first, kept[1])
