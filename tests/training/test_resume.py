"""The resume property, once for every kind of run: a run cut and resumed equals the uninterrupted run, bit for bit.

Option sets cover what a checkpoint must carry (optimiser state of built-in and user rules, buffers, the
schedule's position, augmentation's RNG, clipping, early stopping's counter, a run without validation); cut
points are an epoch end, the middle of an epoch, and a Ctrl-C arriving inside an update.

The tests after it check the same property where more is at stake than one NumPy run: every backend, the rest of
an interrupted epoch's sample order, a user's rule with array state, every option on at once, a custom layer's
buffers, and a finished run extended by more epochs.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from fixtures.make_fixtures import fixture_data
from helpers import (
    RecordingSoftmax,
    ScaledNet,
    assert_same,
    capture_last_params,
    decaying_solver,
    heavy_ball,
    host_copy,
    id_data,
    image_data,
    make_solver,
    model_solver,
    quiet,
    recipe_net,
    recipe_solver,
    saved_meta,
    separable,
    small_net_solver,
)

import fcn
from fcn import Solver

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
    # the update is the optimizer's step, or the model's backward pass where plain SGD is folded into it
    owner, name = (solver.model, "loss_and_sgd") if solver.train_step.folded_sgd_rate() else (solver.optimizer, "step")
    update = getattr(owner, name)

    def step_inside_update(*args):
        calls["n"] += 1
        if calls["n"] == 7:  # inside step 7's update: held back until the step is complete
            os.kill(os.getpid(), signal.SIGINT)
        return update(*args)

    setattr(owner, name, step_inside_update)


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
    for got, want in ((host_copy(resumed.model.params), host_copy(reference.model.params)),
                      (host_copy(resumed.model.buffers), host_copy(reference.model.buffers))):  # fmt: skip
        assert got.keys() == want.keys()
        for key in got:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


# -- on every backend, and with what else a resume must get right ---------------------------------------------------


def test_checkpoint_resume_takes_the_same_steps(backend, tmp_path):
    data = separable()
    full = make_solver(backend, data, update_rule="adam", optim_config={"learning_rate": 1e-2})
    full.train()

    first = make_solver(
        backend,
        data,
        update_rule="adam",
        optim_config={"learning_rate": 1e-2},
        num_epochs=2,
        checkpoint=tmp_path / "ck.npz",
    )
    first.train()
    resumed = make_solver(backend, data, update_rule="adam", optim_config={"learning_rate": 1e-2})
    resumed.load_checkpoint(tmp_path / "ck.npz")
    assert resumed.iteration == first.iteration and resumed.epoch == 2
    resumed.train()
    np.testing.assert_allclose(resumed.loss_history, full.loss_history, rtol=1e-10)
    for name, value in full.model.params.items():
        np.testing.assert_allclose(fcn.to_host(resumed.model.params[name]), fcn.to_host(value), rtol=1e-9)


def test_a_checkpoint_written_mid_epoch_resumes_bit_for_bit(backend, tmp_path):
    data = separable(80, 6)
    full = small_net_solver(backend, data)
    full.train()  # 3 epochs of 6 steps

    part = small_net_solver(backend, data, num_iters=6)  # exactly one epoch (evaluated, lr decayed) ...
    part.train()
    for _ in range(4):  # ... then 4 steps into the second epoch
        part.step()
    part.save_checkpoint(tmp_path / "mid.npz")

    resumed = small_net_solver(backend, data)
    resumed.load_checkpoint(tmp_path / "mid.npz")
    assert resumed.iteration == 10 and resumed.epoch == 1
    resumed.train()

    np.testing.assert_array_equal(np.asarray(resumed.loss_history), np.asarray(full.loss_history))
    assert resumed.train_acc_history == full.train_acc_history
    assert resumed.val_acc_history == full.val_acc_history
    assert resumed.best_val_acc == full.best_val_acc
    assert resumed.learning_rate == full.learning_rate
    for name, value in full.model.params.items():
        np.testing.assert_array_equal(fcn.to_host(resumed.model.params[name]), fcn.to_host(value), err_msg=name)


def test_mid_epoch_resume_sees_the_rest_of_that_epochs_order(tmp_path):
    """After resuming mid-epoch the steps finish the interrupted epoch: every sample once, none repeated."""
    data = id_data(60)
    first = RecordingSoftmax(4, 3)
    solver = Solver(first, data, **quiet(batch_size=10, num_epochs=2))
    for _ in range(4):
        solver.step()
    solver.save_checkpoint(tmp_path / "mid.npz")

    second = RecordingSoftmax(4, 3)
    resumed = Solver(second, data, **quiet(batch_size=10, num_epochs=2))
    resumed.load_checkpoint(tmp_path / "mid.npz")
    resumed.train()
    assert len(second.batches) == 8
    epoch1 = np.concatenate(first.batches + second.batches[:2])
    np.testing.assert_array_equal(np.sort(epoch1), np.arange(60))
    np.testing.assert_array_equal(np.sort(np.concatenate(second.batches[2:])), np.arange(60))


def test_a_users_update_rule_trains_and_its_state_resumes_bit_for_bit(backend, tmp_path):
    data = separable(80, 6)
    kw = dict(update_rule=heavy_ball, optim_config={"learning_rate": 0.05, "mu": 0.8})
    full = small_net_solver(backend, data, **kw)
    full.train()
    assert np.mean(full.loss_history[-3:]) < np.mean(full.loss_history[:3])

    part = small_net_solver(backend, data, num_iters=6, **kw)
    part.train()
    for _ in range(3):
        part.step()
    part.save_checkpoint(tmp_path / "mid.npz")
    resumed = small_net_solver(backend, data, **kw).load_checkpoint(tmp_path / "mid.npz")
    resumed.train()
    np.testing.assert_array_equal(np.asarray(resumed.loss_history), np.asarray(full.loss_history))
    assert resumed.learning_rate == full.learning_rate
    for name, value in full.model.params.items():
        np.testing.assert_array_equal(fcn.to_host(resumed.model.params[name]), fcn.to_host(value), err_msg=name)


def test_interrupt_and_resume_is_bit_identical(backend, tmp_path):
    """Augmentation, dropout, batchnorm buffers, AdamW state, a cosine schedule with warmup, clipping and the
    early-stopping counter all resume exactly: the same losses, parameters and buffers, bit for bit."""
    data = image_data()
    full = recipe_solver(recipe_net(backend), data, patience=50)
    full.train()

    class Interrupt(Exception):
        pass

    def stop_after_two(solver):
        if solver.epoch == 2:
            solver.save_checkpoint(tmp_path / "ck.npz")
            raise Interrupt

    first = recipe_solver(recipe_net(backend), data, patience=50, on_epoch_end=stop_after_two)
    with pytest.raises(Interrupt):
        first.train()
    first.step(), first.step()  # steps after the last checkpoint are lost, as in a crash
    resumed = recipe_solver(recipe_net(backend), data, patience=50)
    resumed.load_checkpoint(tmp_path / "ck.npz")
    assert resumed.iteration == 2 * resumed.iterations_per_epoch
    resumed.train()
    assert resumed.loss_history == full.loss_history
    assert resumed.val_acc_history == full.val_acc_history
    for group in ("params", "buffers"):
        for name, value in getattr(full.model, group).items():
            np.testing.assert_array_equal(fcn.to_host(getattr(resumed.model, group)[name]), fcn.to_host(value))


def test_mid_epoch_checkpoint_resumes_exactly(tmp_path):
    data = image_data()
    full = recipe_solver(recipe_net(), data, num_epochs=2)
    full.train()
    first = recipe_solver(recipe_net(), data, num_epochs=2)
    for _ in range(7):
        first.step()
    first.save_checkpoint(tmp_path / "ck.npz")
    resumed = recipe_solver(recipe_net(), data, num_epochs=2).load_checkpoint(tmp_path / "ck.npz")
    assert resumed.learning_rate == first.learning_rate
    resumed.train()
    assert resumed.loss_history == full.loss_history
    for name, value in host_copy(full.model.params).items():
        np.testing.assert_array_equal(fcn.to_host(resumed.model.params[name]), value)


def test_buffers_survive_checkpoint_resume(backend, tmp_path):
    full = model_solver(ScaledNet(12, [16], 3, weight_scale=0.1, seed=0, backend=backend))
    full.train()
    first = model_solver(
        ScaledNet(12, [16], 3, weight_scale=0.1, seed=0, backend=backend), num_epochs=2, checkpoint=tmp_path / "c.npz"
    )
    first.train()
    resumed = model_solver(ScaledNet(12, [16], 3, weight_scale=0.1, seed=0, backend=backend))
    resumed.load_checkpoint(tmp_path / "c.npz")
    resumed.train()
    np.testing.assert_allclose(resumed.loss_history, full.loss_history, rtol=1e-10)
    for name in ("seen1", "s1", "W1"):
        store = resumed.model.buffers if name in resumed.model.buffers else resumed.model.params
        other = full.model.buffers if name in full.model.buffers else full.model.params
        np.testing.assert_allclose(fcn.to_host(store[name]), fcn.to_host(other[name]), rtol=1e-9, err_msg=name)


def test_extending_a_finished_run_continues_from_its_last_parameters(tmp_path):
    data = separable()
    full = decaying_solver(data, num_epochs=6)
    full_last = capture_last_params(full)
    full.train()

    first = decaying_solver(data, num_epochs=3, checkpoint=tmp_path / "ck.npz")
    first.train()
    best_before = host_copy(first.model.params)  # train() restores the best parameters into the model
    first.save_checkpoint(tmp_path / "ck.npz")  # what fcn train does at the end
    meta, arrays = saved_meta(tmp_path / "ck.npz")
    assert_same({k[len("best/") :]: v for k, v in arrays.items() if k.startswith("best/")}, best_before)

    extended = decaying_solver(data, num_epochs=6)
    extended_last = capture_last_params(extended)
    extended.load_checkpoint(tmp_path / "ck.npz")
    extended.train()
    assert extended.loss_history == full.loss_history
    assert extended.val_acc_history == full.val_acc_history
    assert_same(extended_last[-1], full_last[-1])
    assert_same(host_copy(extended.model.params), host_copy(full.model.params))
