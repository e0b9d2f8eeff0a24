"""One training step (fcn/training/step.py): train mode for the step's pass, eval mode for scoring, and gradient
clipping."""

from __future__ import annotations

import math

import numpy as np
from helpers import host_copy, id_data, image_data, quiet, recipe_net, recipe_solver

import fcn
from fcn import FullyConnectedNet, Solver
from fcn.modules import Layer


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
