"""The Solver's modern-training options: AdamW, learning-rate schedules with warmup, early stopping, gradient
clipping, flip/crop augmentation; each checkpointed so that interrupt + resume = uninterrupted, bit for bit."""

import json
import math

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, Solver


def images(n=120, seed=0):
    """A small image-shaped problem (N, 3, 8, 8): the class is which colour channel is brightest on the left."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3, 8, 8))
    y = rng.integers(3, size=n)
    X[np.arange(n), y, :, :4] += 1.5
    cut = n * 3 // 4
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


def make_net(backend="numpy", **kw):
    options = dict(weight_scale="he", dropout_keep_ratio=0.7, normalization="batchnorm", seed=0, backend=backend)
    options.update(kw)
    return FullyConnectedNet(3 * 8 * 8, [20, 16], 3, **options)


def make_solver(model, data, **kw):
    options = dict(
        update_rule="adamw",
        optim_config={"learning_rate": 1e-2, "weight_decay": 1e-2},
        lr_schedule="cosine",
        warmup_epochs=1.5,
        augment="flip,crop",
        clip_grad_norm=2.0,
        batch_size=15,
        num_epochs=5,
        verbose=False,
        progress=False,
        seed=3,
    )
    options.update(kw)
    return Solver(model, data, **options)


def host_params(model):
    return {name: fcn.to_host(value).copy() for name, value in model.params.items()}


# -- every option on: it learns, and an interruption changes nothing ------------------------------------


def test_all_options_train(backend):
    solver = make_solver(make_net(backend), images(), num_epochs=8)
    solver.train()
    assert solver.loss_history[-1] < solver.loss_history[0]
    assert solver.best_val_acc > 0.6  # chance is 1/3


def test_interrupt_and_resume_is_bit_identical(backend, tmp_path):
    """Augmentation, dropout, batchnorm buffers, AdamW state, a cosine schedule with warmup, clipping and the
    early-stopping counter all resume exactly: the same losses, parameters and buffers, bit for bit."""
    data = images()
    full = make_solver(make_net(backend), data, patience=50)
    full.train()

    class Interrupt(Exception):
        pass

    def stop_after_two(solver):
        if solver.epoch == 2:
            solver.save_checkpoint(tmp_path / "ck.npz")
            raise Interrupt

    first = make_solver(make_net(backend), data, patience=50, on_epoch_end=stop_after_two)
    with pytest.raises(Interrupt):
        first.train()
    first.step(), first.step()  # steps after the last checkpoint are lost, as in a crash
    resumed = make_solver(make_net(backend), data, patience=50)
    resumed.load_checkpoint(tmp_path / "ck.npz")
    assert resumed.iteration == 2 * resumed.iterations_per_epoch
    resumed.train()
    assert resumed.loss_history == full.loss_history
    assert resumed.val_acc_history == full.val_acc_history
    for group in ("params", "buffers"):
        for name, value in getattr(full.model, group).items():
            np.testing.assert_array_equal(fcn.to_host(getattr(resumed.model, group)[name]), fcn.to_host(value))


def test_mid_epoch_checkpoint_resumes_exactly(tmp_path):
    data = images()
    full = make_solver(make_net(), data, num_epochs=2)
    full.train()
    first = make_solver(make_net(), data, num_epochs=2)
    for _ in range(7):
        first.step()
    first.save_checkpoint(tmp_path / "ck.npz")
    resumed = make_solver(make_net(), data, num_epochs=2).load_checkpoint(tmp_path / "ck.npz")
    assert resumed.learning_rate == first.learning_rate
    resumed.train()
    assert resumed.loss_history == full.loss_history
    for name, value in host_params(full.model).items():
        np.testing.assert_array_equal(fcn.to_host(resumed.model.params[name]), value)


def test_same_seed_same_run_on_every_backend(backend):
    ref = make_solver(make_net(), images(), num_epochs=2)
    ref.train()
    other = make_solver(make_net(backend), images(), num_epochs=2)
    other.train()
    np.testing.assert_allclose(other.loss_history, ref.loss_history, rtol=1e-9)
    for name, value in host_params(ref.model).items():
        np.testing.assert_allclose(fcn.to_host(other.model.params[name]), value, rtol=1e-7, atol=1e-10)


# -- learning-rate schedules ------------------------------------------------------------------------------


def test_cosine_schedule_with_warmup_sets_each_steps_rate():
    solver = make_solver(make_net(), images(), augment=None, num_epochs=4, warmup_epochs=1)
    ipe, total = solver.iterations_per_epoch, solver.num_iters
    rates = []
    for _ in range(total):
        rates.append(solver.learning_rate)
        solver.step()
    expected = [
        1e-2 * (t + 1) / ipe if t < ipe else 1e-2 * 0.5 * (1 + math.cos(math.pi * (t - ipe) / (total - ipe)))
        for t in range(total)
    ]
    assert rates == pytest.approx(expected, rel=1e-12)


def test_step_schedule_is_the_chapters_per_epoch_decay():
    solver = make_solver(make_net(), images(), lr_schedule="step", lr_decay=0.9, warmup_epochs=0, num_epochs=3)
    solver.train()
    lr = 1e-2
    for _ in range(3):
        lr *= 0.9
    assert solver.learning_rate == lr  # bit for bit: the same products in the same order


def test_adamw_first_step_by_hand():
    """One full-batch step: decoupled decay ``w *= 1 - lr * wd``, then Adam's bias-corrected step."""
    data = images()
    net = make_net(dropout_keep_ratio=1.0, normalization=None)
    solver = make_solver(net, data, augment=None, clip_grad_norm=None, warmup_epochs=0, lr_schedule="step",
                         batch_size=len(data["X_train"]))  # fmt: skip
    before = host_params(net)
    _, grads = net.loss(data["X_train"], data["y_train"])  # the batch is all of it (in another order)
    solver.step()
    lr, wd = 1e-2, 1e-2
    for name, w in before.items():
        g = fcn.to_host(grads[name])
        m, v = 0.1 * g, 0.001 * g**2
        expected = w * (1 - lr * wd) - lr * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
        np.testing.assert_allclose(fcn.to_host(net.params[name]), expected, rtol=1e-9, atol=1e-12, err_msg=name)


# -- early stopping ---------------------------------------------------------------------------------------


def test_patience_stops_when_validation_accuracy_stalls(tmp_path):
    # a negligible learning rate (and no running statistics) never improves on the first evaluation: stop after
    # 1 + patience evaluations
    frozen = dict(optim_config={"learning_rate": 1e-12}, patience=2, num_epochs=10)
    solver = make_solver(make_net(normalization=None), images(), checkpoint=tmp_path / "c", **frozen)
    solver.train()
    assert solver.stopped_early and solver.epoch == 3 and len(solver.val_acc_history) == 3
    assert solver.iteration == 3 * solver.iterations_per_epoch
    meta = json.loads(str(np.load(tmp_path / "c", allow_pickle=False)["meta"]))
    assert meta["stopped_early"] and meta["epochs_without_improvement"] == 2
    resumed = make_solver(make_net(normalization=None), images(), **frozen)
    resumed.load_checkpoint(tmp_path / "c").train()  # nothing left to do
    assert resumed.iteration == solver.iteration and resumed.stopped_early


def test_no_patience_trains_to_the_end():
    solver = make_solver(make_net(normalization=None), images(), optim_config={"learning_rate": 1e-12}, num_epochs=4)
    solver.train()
    assert not solver.stopped_early and solver.epoch == 4


# -- gradient clipping ------------------------------------------------------------------------------------


def test_clipping_bounds_the_step_and_a_loose_bound_changes_nothing():
    data = images()

    def first_step(clip):
        net = make_net(dropout_keep_ratio=1.0, normalization=None)
        solver = make_solver(net, data, update_rule="sgd", optim_config={"learning_rate": 1.0}, augment=None,
                             warmup_epochs=0, lr_schedule="step", clip_grad_norm=clip)  # fmt: skip
        before = host_params(net)
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


# -- augmentation -----------------------------------------------------------------------------------------


def test_augmentation_changes_the_batches_and_repeats_from_the_seed():
    data = images()
    plain = make_solver(make_net(), data, augment=None, num_epochs=1)
    plain.train()
    aug = make_solver(make_net(), data, augment="flip", num_epochs=1)
    aug.train()
    again = make_solver(make_net(), data, augment="flip", num_epochs=1)
    again.train()
    assert aug.loss_history != plain.loss_history
    assert again.loss_history == aug.loss_history


def test_augmentation_off_keeps_the_chapters_run():
    """No new option on: the same steps as a Solver that never heard of them."""
    data = images()
    net_a, net_b = (
        make_net(dropout_keep_ratio=1.0, normalization=None),
        make_net(dropout_keep_ratio=1.0, normalization=None),
    )
    base = dict(update_rule="sgd", optim_config={"learning_rate": 0.05}, lr_decay=0.9, batch_size=15, num_epochs=3)
    a = Solver(net_a, data, verbose=False, progress=False, seed=1, **base)
    b = Solver(net_b, data, verbose=False, progress=False, seed=1, augment=None, lr_schedule="step",
               warmup_epochs=0, patience=None, clip_grad_norm=None, **base)  # fmt: skip
    a.train(), b.train()
    assert a.loss_history == b.loss_history


# -- bad arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr_schedule": "cos"}, "lr_schedule must be one of 'step', 'cosine', 'linear'"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"augment": "rotate"}, "augment: unknown augmentation 'rotate'"),
        ({"patience": 0}, "patience must be a positive integer"),
        ({"patience": 1.5}, "patience must be an integer"),
        ({"clip_grad_norm": -1.0}, "clip_grad_norm must be positive"),
        ({"clip_grad_norm": float("nan")}, "clip_grad_norm must be a finite number"),
        ({"optim_config": {"learning_rate": 1e-3, "weight_decay": 1e-2}, "update_rule": "adam"}, "weight_decay"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make_solver(make_net(), images(), **kwargs)


def test_augmentation_needs_image_shaped_data():
    data = images()
    flat = {k: v.reshape(len(v), -1) if k.startswith("X") else v for k, v in data.items()}
    with pytest.raises(ValueError, match=r"augment: flips and crops need image-shaped data \(N, C, H, W\)"):
        make_solver(make_net(), flat, augment="crop")
    make_solver(make_net(), flat, augment=None).train()  # flat data is fine without augmentation


def test_a_checkpoint_from_before_schedules_continues_its_decayed_rate(tmp_path):
    """Checkpoints of format 1 and 2 kept only the current, already decayed rate: the decay continues from it."""
    kwargs = dict(update_rule="sgd", optim_config={"learning_rate": 0.4}, lr_schedule="step", lr_decay=0.5,
                  warmup_epochs=0, augment=None, clip_grad_norm=None)  # fmt: skip
    solver = make_solver(make_net(normalization=None, dropout_keep_ratio=1.0), images(), num_epochs=2, **kwargs)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(format="fcn-checkpoint-2", optim_config={**meta["optim_config"], "learning_rate": 0.3})
    for key in ("base_learning_rate", "epochs_without_improvement", "stopped_early", "model_rng_state"):
        del meta[key]
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    resumed = make_solver(make_net(normalization=None, dropout_keep_ratio=1.0), images(), num_epochs=3, **kwargs)
    resumed.load_checkpoint(tmp_path / "old.npz")
    assert resumed.learning_rate == 0.3
    resumed.train()
    assert resumed.learning_rate == 0.3 * 0.5  # one more epoch, one more decay
