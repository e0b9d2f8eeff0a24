"""The resume property, once for every kind of run: a run cut and resumed equals the uninterrupted run, bit for bit.

Option sets cover what a checkpoint must carry (optimiser state of built-in and user rules, buffers, the
schedule's position, augmentation's RNG, clipping, early stopping's counter, a run without validation); cut
points are an epoch end, the middle of an epoch, and a Ctrl-C arriving inside an update.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from fixtures.make_fixtures import fixture_data

import fcn

STEPS = 12  # 4 steps per epoch: 3 epochs


def momentum_rule(w, dw, config=None):
    """A user's rule with an array in its state."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    velocity = config.get("velocity")
    velocity = 0.9 * velocity - config["learning_rate"] * dw if velocity is not None else -config["learning_rate"] * dw
    config["velocity"] = velocity
    return w + velocity, config


LR = {"learning_rate": 5e-2}
OPTION_SETS = {
    "sgd": dict(update_rule="sgd", optim_config=LR),
    "adam": dict(update_rule="adam", optim_config={"learning_rate": 1e-2}),
    "user-rule": dict(update_rule=momentum_rule),
    "batchnorm": dict(update_rule="sgd_momentum", optim_config=LR, net={"normalization": "batchnorm"}),
    "recipe": dict(update_rule="adamw", optim_config={**LR, "weight_decay": 1e-2}, lr_schedule="cosine",
                   warmup_epochs=1, augment="flip,crop", clip_grad_norm=1.0, net={"dropout_keep_ratio": 0.8}),
    "early-stopping": dict(update_rule="adam", optim_config=LR, patience=1),
    "no-validation": dict(update_rule="adam", optim_config={"learning_rate": 1e-2}, no_val=True),
}  # fmt: skip


def build(options: dict) -> fcn.Solver:
    options = dict(options)
    net_options = options.pop("net", {})
    data = fixture_data()
    if options.pop("no_val", False):
        data["X_val"], data["y_val"] = data["X_val"][:0], data["y_val"][:0]
    net = fcn.FullyConnectedNet(48, [16], 3, reg=1e-3, weight_scale="he", seed=1, **net_options)
    return fcn.Solver(net, data, batch_size=12, num_iters=STEPS, seed=5, verbose=False, progress=False, **options)


def interrupt_at(solver: fcn.Solver, where: str) -> None:
    """Arrange for a SIGINT (a Ctrl-C) during ``solver.train()`` at the cut point ``where``."""
    if where == "epoch-end":
        solver.on_epoch_end = lambda s: s.epoch == 1 and os.kill(os.getpid(), signal.SIGINT)
        return
    calls = {"n": 0}
    if where == "mid-epoch":
        step = solver.run_step

        def run_step():
            step()
            calls["n"] += 1
            if calls["n"] == 6:  # between steps 6 and 7: the middle of epoch 2
                os.kill(os.getpid(), signal.SIGINT)

        solver.run_step = run_step
        return
    update = solver.optimizer.step

    def step_inside_update(params, grads):
        calls["n"] += 1
        if calls["n"] == 7:  # inside step 7's update: held back until the step is complete
            os.kill(os.getpid(), signal.SIGINT)
        update(params, grads)

    solver.optimizer.step = step_inside_update


def host(params: dict) -> dict:
    return {k: fcn.to_host(v).copy() for k, v in params.items()}


@pytest.fixture(scope="module")
def uninterrupted():
    runs = {}
    for name, options in OPTION_SETS.items():
        solver = build(options)
        solver.train()
        runs[name] = solver
    return runs


@pytest.mark.parametrize("where", ["epoch-end", "mid-epoch", "inside-update"])
@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_a_resumed_run_equals_the_uninterrupted_run(tmp_path, uninterrupted, name, where):
    reference = uninterrupted[name]
    cut = build(OPTION_SETS[name])
    interrupt_at(cut, where)
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    if reference.iteration <= cut.iteration:  # early stopping ended the run before the cut
        pytest.skip("the run stopped before the cut point")
    assert cut.consistent and 0 < cut.iteration < STEPS
    path = cut.save_checkpoint(tmp_path / "ck.npz")
    resumed = build(OPTION_SETS[name]).load_checkpoint(path)
    resumed.train()
    assert resumed.loss_history == reference.loss_history
    assert resumed.train_acc_history == reference.train_acc_history
    assert resumed.val_acc_history == reference.val_acc_history
    assert resumed.best_val_acc == reference.best_val_acc
    assert resumed.stopped_early == reference.stopped_early
    assert resumed.learning_rate == reference.learning_rate
    for got, want in ((host(resumed.model.params), host(reference.model.params)),
                      (host(resumed.model.buffers), host(reference.model.buffers))):  # fmt: skip
        assert got.keys() == want.keys()
        for key in got:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
