"""What the training loop promises, checked from the outside.

Every test here uses only the public surface (``Solver`` and its attributes, the models, ``step``,
``save_checkpoint`` / ``load_checkpoint``), so it holds whatever the loop looks like inside. Each one was
seen to fail with the corresponding mistake injected into the loop (see docs/contributing-mutation.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, ShallowLayerNet, Solver, affine_backward, affine_forward, softmax_loss

# -- a model that honours the Solver's contract and records what it is trained on ----------------------


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


def quiet(**kw):
    options = dict(verbose=False, progress=False, update_rule="sgd", optim_config={"learning_rate": 1e-3}, seed=5)
    options.update(kw)
    return options


def epochs_seen(model: RecordingSoftmax, per_epoch: int) -> list[list[np.ndarray]]:
    b = model.batches
    assert len(b) % per_epoch == 0
    return [b[i : i + per_epoch] for i in range(0, len(b), per_epoch)]


# -- which samples each epoch sees ------------------------------------------------------------------------


def test_every_epoch_visits_every_sample_once_in_full_batches():
    n, batch, epochs = 60, 10, 3
    model = RecordingSoftmax(4, 3)
    solver = Solver(model, id_data(n), **quiet(batch_size=batch, num_epochs=epochs))
    solver.train()
    assert solver.iterations_per_epoch == n // batch
    assert len(model.batches) == epochs * (n // batch)
    for epoch in epochs_seen(model, n // batch):
        assert [len(b) for b in epoch] == [batch] * (n // batch)
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(n))


def test_sizes_that_do_not_divide_give_full_batches_of_distinct_samples():
    """65 samples, batches of 10: 6 full batches per epoch, no sample twice within an epoch."""
    n, batch = 65, 10
    model = RecordingSoftmax(4, 3)
    solver = Solver(model, id_data(n), **quiet(batch_size=batch, num_epochs=3))
    solver.train()
    assert solver.iterations_per_epoch == 6
    for epoch in epochs_seen(model, 6):
        assert [len(b) for b in epoch] == [batch] * 6
        ids = np.concatenate(epoch)
        assert len(np.unique(ids)) == len(ids)
        assert ids.min() >= 0 and ids.max() < n


def test_batch_larger_than_the_data_gives_one_step_per_epoch_over_all_samples():
    model = RecordingSoftmax(4, 3)
    solver = Solver(model, id_data(7), **quiet(batch_size=50, num_epochs=2))
    solver.train()
    assert solver.iterations_per_epoch == 1 and solver.num_iters == 2
    assert len(model.batches) == 2
    for b in model.batches:
        np.testing.assert_array_equal(np.sort(b), np.arange(7))


def test_the_order_changes_between_epochs_and_is_shuffled():
    n, batch = 60, 10
    model = RecordingSoftmax(4, 3)
    Solver(model, id_data(n), **quiet(batch_size=batch, num_epochs=3)).train()
    orders = [np.concatenate(epoch) for epoch in epochs_seen(model, n // batch)]
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.arange(n))  # shuffled, not the data's own order


def test_the_seed_fixes_the_order_and_another_seed_changes_it():
    def order(seed):
        model = RecordingSoftmax(4, 3)
        Solver(model, id_data(40), **quiet(batch_size=10, num_epochs=2, seed=seed)).train()
        return np.concatenate(model.batches)

    np.testing.assert_array_equal(order(1), order(1))
    assert not np.array_equal(order(1), order(2))


def test_num_iters_overrides_num_epochs_and_counts_steps():
    model = RecordingSoftmax(4, 3)
    solver = Solver(model, id_data(60), **quiet(batch_size=10, num_epochs=50, num_iters=9))
    solver.train()
    assert len(model.batches) == 9 and solver.iteration == 9
    assert len(solver.loss_history) == 9
    # epoch ends at step 6, plus a final evaluation at step 9
    assert len(solver.val_acc_history) == 2 and solver.epoch == 1


def test_one_evaluation_per_epoch_and_learning_rate_decay_per_epoch():
    model = RecordingSoftmax(4, 3)
    solver = Solver(model, id_data(60), **quiet(batch_size=10, num_epochs=3, lr_decay=0.5))
    solver.train()
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 3
    assert solver.epoch == 3
    assert solver.learning_rate == pytest.approx(1e-3 * 0.5**3)


def test_learning_rate_without_decay_stays_put():
    solver = Solver(RecordingSoftmax(4, 3), id_data(60), **quiet(batch_size=10, num_epochs=3))
    solver.train()
    assert solver.learning_rate == 1e-3


# -- resuming ----------------------------------------------------------------------------------------------


def small_net_solver(backend, data, **kw):
    model = FullyConnectedNet(data["X_train"].shape[1], [9], 3, weight_scale=0.1, seed=0, backend=backend)
    options = dict(
        update_rule="adam",
        optim_config={"learning_rate": 1e-2},
        batch_size=10,
        num_epochs=3,
        lr_decay=0.9,
        verbose=False,
        progress=False,
        seed=11,
    )
    options.update(kw)
    return Solver(model, data, **options)


def separable(n=80, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ rng.standard_normal((d, c)), axis=1)
    return {"X_train": X[:60], "y_train": y[:60], "X_val": X[60:], "y_val": y[60:]}


def test_a_checkpoint_written_mid_epoch_resumes_bit_for_bit(backend, tmp_path):
    data = separable()
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


def test_training_continues_after_a_checkpoint_is_saved(tmp_path):
    """Saving is not a side effect on the run: the same steps follow whether or not a checkpoint was written."""
    data = separable()
    plain = small_net_solver("numpy", data)
    plain.train()
    saving = small_net_solver("numpy", data, checkpoint=tmp_path / "ck.npz")
    saving.train()
    np.testing.assert_array_equal(saving.loss_history, plain.loss_history)
    assert (tmp_path / "ck.npz").exists()
    reloaded = small_net_solver("numpy", data).load_checkpoint(tmp_path / "ck.npz")
    assert reloaded.iteration == plain.iteration and reloaded.epoch == 3
    np.testing.assert_array_equal(reloaded.loss_history, plain.loss_history)
    assert reloaded.val_acc_history == plain.val_acc_history


def test_load_checkpoint_refuses_another_batch_size(tmp_path):
    data = separable()
    solver = small_net_solver("numpy", data, num_iters=3)
    solver.train()
    solver.save_checkpoint(tmp_path / "ck.npz")
    with pytest.raises(fcn.CheckpointError, match="batch_size"):
        small_net_solver("numpy", data, batch_size=20).load_checkpoint(tmp_path / "ck.npz")


# -- the best parameters --------------------------------------------------------------------------------------


def test_train_restores_the_parameters_of_the_best_validation_epoch():
    data = separable()
    snapshots = []

    def snapshot(s):
        snapshots.append(({k: fcn.to_host(v).copy() for k, v in s.model.params.items()}, s.val_acc_history[-1]))

    solver = small_net_solver("numpy", data, num_epochs=4, on_epoch_end=snapshot)
    solver.train()
    accs = [acc for _, acc in snapshots]
    assert solver.best_val_acc == max(accs)
    best = snapshots[accs.index(max(accs))][0]  # the first epoch that reached the best accuracy
    for name, value in best.items():
        np.testing.assert_array_equal(fcn.to_host(solver.model.params[name]), value)


# -- divergence ----------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("print_every", [1, 1000])
def test_a_non_finite_loss_stops_training(value, print_every):
    solver = Solver(BlowsUpAt(3, value), id_data(60), **quiet(batch_size=10, num_epochs=5, print_every=print_every))
    with pytest.raises(fcn.TrainingDiverged) as info:
        solver.train()
    assert "iteration 3" in str(info.value)
    # caught at the next read-back: at the latest by the end of the first epoch, never later
    assert solver.iteration <= solver.iterations_per_epoch
    assert solver.val_acc_history == []
    finite = np.asarray(solver.loss_history[:3])
    assert np.all(np.isfinite(finite))


def test_a_finite_loss_never_counts_as_divergence():
    # huge but finite: the check is about NaN and infinity, not size
    solver = Solver(BlowsUpAt(0, 1e300), id_data(60), **quiet(batch_size=10, num_epochs=2))
    solver.train()
    assert solver.loss_history == [1e300] * 12


def test_divergence_found_when_saving_a_checkpoint(tmp_path):
    solver = Solver(BlowsUpAt(1, np.inf), id_data(60), **quiet(batch_size=10, num_epochs=2))
    solver.step()
    solver.step()
    with pytest.raises(fcn.TrainingDiverged):
        solver.save_checkpoint(tmp_path / "ck.npz")


# -- accuracy --------------------------------------------------------------------------------------------------


def test_check_accuracy_counts_correct_predictions_across_chunks():
    model = RecordingSoftmax(4, 3)
    model.params["W"] = np.zeros((4, 3))
    model.params["W"][1] = [1.0, 0.0, -1.0]  # feature 1 > 0 -> class 0, < 0 -> class 2
    X = np.zeros((10, 4))
    X[:, 1] = [1, 1, 1, -1, -1, -1, -1, 1, 1, 1]
    y = np.asarray([0, 0, 2, 2, 2, 0, 2, 0, 1, 0])
    solver = Solver(model, {"X_train": X, "y_train": y, "X_val": X, "y_val": y}, **quiet(batch_size=5))
    assert solver.check_accuracy(X, y) == 0.7
    assert solver.check_accuracy(X, y, batch_size=3) == 0.7
    assert solver.check_accuracy(X, y, batch_size=1) == 0.7


def test_train_accuracy_is_scored_on_num_train_samples_samples():
    data = separable()
    counted = []
    solver = small_net_solver("numpy", data, num_epochs=1, num_train_samples=7)
    original = solver.check_accuracy

    def spy(X, y, subset=None, batch_size=10_000):
        counted.append(X.shape[0] if subset is None else subset.shape[0])
        return original(X, y, subset=subset, batch_size=batch_size)

    solver.check_accuracy = spy
    solver.train()
    assert sorted(counted) == [7, 20]


# -- ShallowLayerNet.train: every argument takes effect ----------------------------------------------------------


def shallow_data(seed=0, n=100):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 8))
    y = np.argmax(X @ rng.standard_normal((8, 3)), axis=1)
    return X[:80], y[:80], X[80:], y[80:]


BASE = dict(learning_rate=5e-2, learning_rate_decay=0.5, reg=0.0, num_iters=12, batch_size=20, verbose=False)


def shallow_train(data=None, **changes):
    X, y, X_val, y_val = shallow_data() if data is None else data
    net = ShallowLayerNet(8, 10, 3, weight_scale=0.1, seed=0)
    kw = dict(BASE, **changes)
    stats = net.train(X, y, X_val, y_val, seed=4, progress=False, **kw)
    return net, stats


def test_shallow_train_defaults_to_its_documented_shape():
    net, stats = shallow_train()
    assert len(stats["loss_history"]) == 12
    assert len(stats["train_acc_history"]) == 3 and len(stats["val_acc_history"]) == 3  # 80 / 20 = 4 steps/epoch
    assert stats["best_val_acc"] == max(stats["val_acc_history"])


def test_shallow_train_uses_its_training_data():
    _, base = shallow_train()
    X, y, X_val, y_val = shallow_data()
    _, other = shallow_train(data=(X[::-1].copy(), (y[::-1] + 1) % 3, X_val, y_val))
    assert other["loss_history"] != base["loss_history"]


def test_shallow_train_scores_on_its_validation_data():
    _, base = shallow_train()
    X, y, X_val, y_val = shallow_data()
    _, other = shallow_train(data=(X, y, X_val, (y_val + 1) % 3))
    assert other["loss_history"] == base["loss_history"]  # same training ...
    assert other["val_acc_history"] != base["val_acc_history"]  # ... scored against other labels


def test_shallow_train_learning_rate_takes_effect():
    _, base = shallow_train()
    _, other = shallow_train(learning_rate=1e-3)
    assert other["loss_history"][0] == base["loss_history"][0]  # same start
    assert other["loss_history"][1:] != base["loss_history"][1:]


def test_shallow_train_learning_rate_decay_takes_effect():
    _, base = shallow_train()
    _, other = shallow_train(learning_rate_decay=1.0)
    n = 4  # steps per epoch: the first epoch is identical, the decay shows from the second on
    assert other["loss_history"][:n] == base["loss_history"][:n]
    assert other["loss_history"][n:] != base["loss_history"][n:]


def test_shallow_train_reg_takes_effect():
    _, base = shallow_train()
    net, other = shallow_train(reg=0.5)
    assert net.reg == 0.5
    assert other["loss_history"][0] > base["loss_history"][0]


def test_shallow_train_num_iters_takes_effect():
    _, stats = shallow_train(num_iters=5)
    assert len(stats["loss_history"]) == 5


def test_shallow_train_batch_size_takes_effect():
    _, stats = shallow_train(batch_size=40)  # 2 steps per epoch: 6 epochs in 12 steps
    assert len(stats["loss_history"]) == 12
    assert len(stats["val_acc_history"]) == 6


def test_shallow_train_verbose_takes_effect(capsys):
    shallow_train(verbose=False)
    assert capsys.readouterr().out == ""
    shallow_train(verbose=True)
    out = capsys.readouterr().out
    assert "loss" in out and "val acc" in out


def test_shallow_train_passes_solver_options_through():
    _, sgd = shallow_train()
    _, adam = shallow_train(update_rule="adam", optim_config={"beta1": 0.5})
    _, adam2 = shallow_train(update_rule="adam")
    assert adam["loss_history"][1:] != sgd["loss_history"][1:]
    assert adam["loss_history"][1:] != adam2["loss_history"][1:]


# -- update rules: built-in and the user's own ---------------------------------------------------------------------


def heavy_ball(w, dw, config=None):
    """A user's rule with its own array state, returning a new array (not updating in place)."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("mu", 0.5)
    if "vel" not in config:
        config["vel"] = fcn.namespace_of(w).xp.zeros_like(w)
    config["vel"] = config["mu"] * config["vel"] - config["learning_rate"] * dw
    return w + config["vel"], config


def test_a_users_update_rule_trains_and_its_state_resumes_bit_for_bit(backend, tmp_path):
    data = separable()
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


def test_a_users_rule_without_momentum_state_differs_from_one_with_it():
    data = separable()
    with_mu = small_net_solver("numpy", data, update_rule=heavy_ball, optim_config={"mu": 0.8})
    without = small_net_solver("numpy", data, update_rule=heavy_ball, optim_config={"mu": 0.0})
    with_mu.train()
    without.train()
    assert with_mu.loss_history[2:] != without.loss_history[2:]


def test_adamw_without_weight_decay_is_adam_and_with_it_differs():
    data = separable()
    adam = small_net_solver("numpy", data, update_rule="adam")
    adamw0 = small_net_solver(
        "numpy", data, update_rule="adamw", optim_config={"learning_rate": 1e-2, "weight_decay": 0}
    )
    adamw = small_net_solver(
        "numpy", data, update_rule="adamw", optim_config={"learning_rate": 1e-2, "weight_decay": 0.5}
    )
    for s in (adam, adamw0, adamw):
        s.train()
    np.testing.assert_array_equal(adamw0.loss_history, adam.loss_history)
    assert adamw.loss_history[1:] != adam.loss_history[1:]


def test_adamw_decays_the_weights_before_the_adam_step():
    w = np.full((2, 3), 2.0)
    next_w, config = fcn.adamw(w, np.zeros((2, 3)), {"learning_rate": 0.1, "weight_decay": 0.5})
    # zero gradient: the Adam step is zero, only the decoupled decay w *= 1 - lr * wd acts
    np.testing.assert_allclose(next_w, np.full((2, 3), 2.0 * (1 - 0.1 * 0.5)), rtol=1e-12)
    assert config["t"] == 1


def test_an_unknown_optim_config_key_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown optim_config key.*'momentum'.*learning_rate"):
        small_net_solver("numpy", separable(), update_rule="adam", optim_config={"momentum": 0.9})


def test_builtin_rules_use_their_documented_defaults():
    """Leaving out a hyperparameter means its documented default, not zero or anything else."""
    data = separable()
    for rule, defaults in [
        ("sgd_momentum", {"learning_rate": 1e-2, "momentum": 0.9}),
        ("rmsprop", {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}),
        ("adam", {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}),
    ]:
        implicit = small_net_solver("numpy", data, update_rule=rule, optim_config={}, num_iters=5)
        explicit = small_net_solver("numpy", data, update_rule=rule, optim_config=defaults, num_iters=5)
        implicit.train()
        explicit.train()
        np.testing.assert_array_equal(implicit.loss_history, explicit.loss_history, err_msg=rule)
        assert implicit.learning_rate == defaults["learning_rate"] * 0.9**0  # no epoch end within 5 steps


# -- loading checks everything before it changes anything ----------------------------------------------------------


def test_a_checkpoint_that_does_not_fit_leaves_the_solver_as_it_was(tmp_path):
    data = separable()
    other = small_net_solver("numpy", data, num_iters=8)
    other.train()
    other.save_checkpoint(tmp_path / "ck.npz")

    solver = small_net_solver("numpy", data, batch_size=20, num_iters=2)
    solver.train()
    before = {k: fcn.to_host(v).copy() for k, v in solver.model.params.items()}
    state = (solver.iteration, solver.epoch, list(solver.loss_history), solver.learning_rate)
    with pytest.raises(fcn.CheckpointError, match="batch_size"):
        solver.load_checkpoint(tmp_path / "ck.npz")
    assert (solver.iteration, solver.epoch, list(solver.loss_history), solver.learning_rate) == state
    for name, value in before.items():
        np.testing.assert_array_equal(fcn.to_host(solver.model.params[name]), value)


# -- the model's side of the contract ---------------------------------------------------------------------------------


def test_training_on_image_shaped_data_equals_training_on_flat_rows():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2, 3, 2))
    y = np.argmax(X.reshape(60, -1) @ rng.standard_normal((12, 3)), axis=1)

    def run(X):
        data = {"X_train": X[:40], "y_train": y[:40], "X_val": X[40:], "y_val": y[40:]}
        model = FullyConnectedNet(12, [8], 3, weight_scale=0.1, seed=0)
        solver = Solver(
            model,
            data,
            update_rule="sgd",
            optim_config={"learning_rate": 0.1},
            batch_size=10,
            num_epochs=2,
            verbose=False,
            progress=False,
            seed=1,
        )
        return solver.train()

    shaped, flat = run(X), run(X.reshape(60, 12))
    np.testing.assert_array_equal(shaped.loss_history, flat.loss_history)
    assert shaped.val_acc_history == flat.val_acc_history


def test_loss_mode_is_checked():
    net = FullyConnectedNet(4, [3], 2, seed=0)
    with pytest.raises(ValueError, match="mode must be 'train' or 'eval'"):
        net.loss(np.ones((2, 4)), mode="test")
    scores_eval = net.loss(np.ones((2, 4)), mode="eval")
    np.testing.assert_array_equal(scores_eval, net.loss(np.ones((2, 4))))


def test_get_config_rebuilds_the_same_network():
    import json

    net = FullyConnectedNet(6, [5, 4], 3, reg=0.25, weight_scale=0.3, dtype="float32", seed=9)
    config = json.loads(json.dumps(net.get_config()))
    assert config == {
        "input_dim": 6,
        "hidden_dims": [5, 4],
        "num_classes": 3,
        "reg": 0.25,
        "weight_scale": 0.3,
        "dtype": "float32",
        "seed": 9,
        "dropout_keep_ratio": 1.0,
        "normalization": None,
    }
    twin = FullyConnectedNet(**config)
    assert sorted(twin.params) == sorted(net.params)
    for name, value in net.params.items():
        np.testing.assert_array_equal(twin.params[name], value)
        assert twin.params[name].dtype == np.float32


# -- models: constructor checks, predict, parameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_dim": 0}, r"^input_dim must be a positive integer, got 0$"),
        ({"input_dim": True}, r"^input_dim must be an integer, got True \(bool\)$"),
        ({"input_dim": 6.0}, r"^input_dim must be an integer, got 6\.0 \(float\)$"),
        ({"hidden_dims": [5, -1]}, r"^hidden_dims entries must be a positive integer, got -1$"),
        ({"num_classes": 0}, r"^num_classes must be a positive integer, got 0$"),
        ({"reg": -0.5}, r"^reg must be >= 0, got -0\.5$"),
        ({"reg": float("nan")}, r"^reg must be a finite number, got nan$"),
        ({"weight_scale": -1.0}, r"^weight_scale must be >= 0, got -1$"),
        ({"weight_scale": float("inf")}, r"^weight_scale must be a finite number, got inf$"),
    ],
)
def test_constructor_arguments_are_checked_with_a_clear_message(kwargs, message):
    args = {"input_dim": 6, "hidden_dims": [5], "num_classes": 3, **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):  # TypeError for a non-integer size
        FullyConnectedNet(**args)


def test_constructor_edge_values_are_accepted():
    net = FullyConnectedNet(1, np.int64(2), 1, reg=0.0, weight_scale=0.0, seed=0)
    assert net.hidden_dims == [2] and net.num_layers == 2
    assert all(not np.any(v) for v in net.params.values())  # weight_scale 0: all zeros
    assert FullyConnectedNet(6, 4, 3).hidden_dims == [4]
    assert FullyConnectedNet(6, [], 3).num_layers == 1  # softmax regression


def test_repr_names_the_shape_and_the_settings():
    net = FullyConnectedNet(6, [5, 4], 3, reg=0.5, dtype="float32")
    assert repr(net) == "FullyConnectedNet(6-5-4-3, reg=0.5, backend=numpy, dtype=float32)"
    assert repr(ShallowLayerNet(8, 10, 2)) == "ShallowLayerNet(8-10-2, reg=0.0, backend=numpy, dtype=float64)"


def test_shallow_net_constructor_defaults():
    net = ShallowLayerNet(seed=0)
    assert (net.input_dim, net.hidden_dim, net.num_classes, net.reg) == (3072, 100, 10, 0.0)
    assert net.weight_scale == 1e-3 and net.dtype == np.float64
    assert 0.8e-3 < np.std(net.params["W1"]) < 1.2e-3
    other = ShallowLayerNet(4, 3, 2, 0.5, 0.25, seed=1)
    assert (other.weight_scale, other.reg) == (0.5, 0.25)
    np.testing.assert_allclose(other.params["W1"], 0.5 * np.random.default_rng(1).standard_normal((4, 3)))


def test_shallow_train_defaults_match_the_chapter():
    """Defaults: lr 1e-3, decay 0.95 per epoch, 100 iterations, batches of 200, quiet."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((400, 8)), rng.integers(3, size=400)
    net = ShallowLayerNet(8, 10, 3, weight_scale=0.1, seed=0)
    stats = net.train(X, y, X[:50], y[:50], seed=0, progress=False)
    assert len(stats["loss_history"]) == 100
    assert len(stats["val_acc_history"]) == 50  # 400 / 200 = 2 steps per epoch
    twin = ShallowLayerNet(8, 10, 3, weight_scale=0.1, seed=0)
    explicit = twin.train(
        X, y, X[:50], y[:50], 1e-3, 0.95, None, 100, 200, False, seed=0, progress=False, update_rule="sgd"
    )
    assert explicit["loss_history"] == stats["loss_history"]
    assert net.reg == 0.0  # reg=None keeps the model's own


def test_predict_in_chunks_equals_predict_at_once(backend, rng):
    net = FullyConnectedNet(5, [30], 4, weight_scale=1.0, seed=2, backend=backend)
    X = 5 * rng.standard_normal((11, 5))
    whole = fcn.to_host(net.predict(X))
    expected = np.argmax(fcn.to_host(net.loss(X)), axis=1)
    np.testing.assert_array_equal(whole, expected)
    for size in (1, 3, 11, 50):
        np.testing.assert_array_equal(fcn.to_host(net.predict(X, batch_size=size)), expected)
    assert len(np.unique(expected)) > 1  # the check means something
    # host input gives host labels; device input keeps the device
    assert type(net.predict(X)) is np.ndarray
    on_device = net.predict(backend.asarray(X))
    assert fcn.namespace_of(on_device).name == backend.name
    empty = net.predict(np.zeros((0, 5)))
    assert tuple(empty.shape) == (0,)


def test_params_dict_casts_and_moves_every_way_of_setting(backend):
    net = FullyConnectedNet(3, [2], 2, seed=0, backend=backend, dtype="float32")
    net.params.update({"b1": np.ones(2)}, b2=np.full(2, 2.0))
    assert net.params["b1"].dtype == backend.xp.float32 and net.params["b2"].dtype == backend.xp.float32
    np.testing.assert_array_equal(fcn.to_host(net.params["b2"]), [2.0, 2.0])
    assert fcn.namespace_of(net.params["b1"]).name == backend.name
    got = net.params.setdefault("extra", np.zeros(3))
    assert got.dtype == backend.xp.float32 and fcn.namespace_of(got).name == backend.name
    kept = net.params.setdefault("b2", np.zeros(2))
    np.testing.assert_array_equal(fcn.to_host(kept), [2.0, 2.0])


# -- the Solver's own checks, logs and files ---------------------------------------------------------------------------


def test_missing_data_and_bad_batch_size_are_named():
    data = id_data(20)
    with pytest.raises(KeyError, match="data is missing X_val, y_val"):
        Solver(RecordingSoftmax(4, 3), {"X_train": data["X_train"], "y_train": data["y_train"]}, **quiet())
    with pytest.raises(ValueError, match="^batch_size must be a positive integer, got 0$"):
        Solver(RecordingSoftmax(4, 3), data, **quiet(batch_size=0))


def test_accuracy_of_no_samples_is_nan_and_stats_are_copies():
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_epochs=1))
    assert np.isnan(solver.check_accuracy(np.zeros((0, 4)), np.zeros(0, dtype=np.int64)))
    solver.train()
    stats = solver.stats()
    assert set(stats) == {"loss_history", "train_acc_history", "val_acc_history", "best_val_acc"}
    assert stats["loss_history"] == solver.loss_history and stats["best_val_acc"] == solver.best_val_acc
    stats["loss_history"].append(0.0)
    assert len(solver.loss_history) == 2


def test_log_lines_at_the_first_step_every_print_every_steps_and_each_epoch(capsys):
    Solver(
        RecordingSoftmax(4, 3), id_data(60), **quiet(batch_size=10, num_epochs=2, print_every=4, verbose=True)
    ).train()
    out = capsys.readouterr().out.splitlines()
    iterations = [line.split(")")[0] for line in out if line.startswith("(Iteration")]
    assert iterations == ["(Iteration 1 / 12", "(Iteration 4 / 12", "(Iteration 8 / 12", "(Iteration 12 / 12"]
    epochs = [line for line in out if line.startswith("(Epoch")]
    assert [e.split(")")[0] for e in epochs] == ["(Epoch 1 / 2", "(Epoch 2 / 2"]
    assert all("train acc: " in e and "; val acc: " in e for e in epochs)
    assert all(" loss: " in line for line in out if line.startswith("(Iteration"))


def test_quiet_training_prints_nothing(capsys):
    Solver(RecordingSoftmax(4, 3), id_data(60), **quiet(batch_size=10, num_epochs=2, print_every=1)).train()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_a_checkpoint_is_written_at_every_epoch_end(tmp_path):
    path = tmp_path / "ck.npz"
    seen = []

    def look(solver):
        seen.append(Solver(RecordingSoftmax(4, 3), id_data(60), **quiet(batch_size=10)).load_checkpoint(path).iteration
                    if path.exists() else None)  # fmt: skip

    Solver(
        RecordingSoftmax(4, 3), id_data(60), **quiet(batch_size=10, num_epochs=3, checkpoint=path, on_epoch_end=look)
    ).train()
    # on_epoch_end runs before that epoch's checkpoint is written: it sees the previous epoch's file
    assert seen == [None, 6, 12]
    final = Solver(RecordingSoftmax(4, 3), id_data(60), **quiet(batch_size=10)).load_checkpoint(path)
    assert final.iteration == 18 and final.epoch == 3


def test_a_config_that_json_cannot_hold_is_refused_without_writing(tmp_path):
    def rule(w, dw, config=None):
        config = {} if config is None else config
        config.setdefault("schedule", object())  # neither an array nor a number or string
        return w - 1e-3 * dw, config

    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(update_rule=rule, batch_size=10, num_iters=1))
    solver.train()
    with pytest.raises(fcn.CheckpointError, match="cannot save the optimiser's configuration"):
        solver.save_checkpoint(tmp_path / "ck.npz")
    assert list(tmp_path.iterdir()) == []


def test_divergence_message_names_the_learning_rate():
    solver = Solver(BlowsUpAt(1, np.nan), id_data(20), **quiet(batch_size=10, optim_config={"learning_rate": 0.25}))
    with pytest.raises(fcn.TrainingDiverged, match=r"^the loss became nan at iteration 1, after 1 updates: training "
                       r"diverged; lower the learning rate \(now 0\.25\)"):  # fmt: skip
        solver.train()


def test_every_training_sample_is_scored_when_num_train_samples_is_none():
    sizes = []
    solver = Solver(RecordingSoftmax(4, 3), id_data(30), **quiet(batch_size=10, num_epochs=1, num_train_samples=None))
    original = solver.check_accuracy

    def spy(X, y, subset=None, batch_size=10_000):
        sizes.append(X.shape[0] if subset is None else subset.shape[0])
        return original(X, y, subset=subset, batch_size=batch_size)

    solver.check_accuracy = spy
    solver.train()
    assert sorted(sizes) == [10, 30]


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam", "adamw"])
def test_builtin_rules_in_the_solver_equal_the_chapters_functions(backend, rule):
    """The Solver applies a built-in rule to all parameters at once; the same training must come out as with the
    chapter's per-parameter function (passed as the user's own callable), decay and all."""
    fn = fcn.optim.UPDATE_RULES[rule]
    config = {"learning_rate": 2e-2}
    fused = small_net_solver(backend, separable(), update_rule=rule, optim_config=config, num_epochs=2)
    per_param = small_net_solver(
        backend, separable(), update_rule=lambda w, dw, c: fn(w, dw, c), optim_config=config, num_epochs=2
    )
    fused.train()
    per_param.train()
    np.testing.assert_allclose(fused.loss_history, per_param.loss_history, rtol=1e-12)
    assert fused.learning_rate == pytest.approx(per_param.learning_rate, rel=1e-15)
    for name, value in per_param.model.params.items():
        np.testing.assert_allclose(fcn.to_host(fused.model.params[name]), fcn.to_host(value), rtol=1e-11, atol=1e-13)


def test_three_dimensional_inputs_are_flattened_like_any_other(backend, rng):
    net = FullyConnectedNet(12, [5], 3, weight_scale=0.5, seed=0, backend=backend)
    X, y = rng.standard_normal((4, 3, 4)), rng.integers(3, size=4)
    np.testing.assert_allclose(fcn.to_host(net.loss(X)), fcn.to_host(net.loss(X.reshape(4, 12))), rtol=1e-13)
    loss3, grads3 = net.loss(X, y)
    loss2, grads2 = net.loss(X.reshape(4, 12), y)
    assert float(loss3) == float(loss2)
    np.testing.assert_array_equal(fcn.to_host(net.predict(X)), fcn.to_host(net.predict(X.reshape(4, 12))))


def test_shallow_net_passes_backend_device_and_dtype_on():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    net = ShallowLayerNet(4, 3, 2, backend="array_api_strict", device=dev, dtype="float32", seed=0)
    assert net.backend.name == "array_api_strict" and net.backend.device == dev
    assert net.params["W1"].dtype == strict.float32 and net.params["W1"].device == dev


# -- train and eval modes, what is scored, what a checkpoint must hold ------------------------------------------------


def test_layers_see_train_mode_in_training_steps_and_eval_mode_when_scored():
    from fcn.modules import Layer

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


def test_the_train_accuracy_sample_has_no_repeats():
    seen_ids: list = []

    class Scorer(RecordingSoftmax):
        def loss(self, X, y=None):
            if y is None:
                seen_ids.append(np.asarray(X[:, 0]).astype(np.int64))
            return super().loss(X, y)

    data = id_data(30)
    data["X_val"] = data["X_val"] - 1000.0  # validation ids are negative: tell the two apart
    solver = Solver(Scorer(4, 3), data, **quiet(batch_size=10, num_epochs=1, num_train_samples=30))
    seen_ids.clear()
    solver.train()
    train_scored = [ids for ids in seen_ids if ids.min() >= 0]
    assert len(train_scored) == 1
    np.testing.assert_array_equal(np.sort(train_scored[0]), np.arange(30))


def test_data_with_the_wrong_feature_count_is_refused_up_front():
    data = separable()
    data["X_train"] = np.hstack([data["X_train"], np.zeros((60, 1))])
    with pytest.raises(ValueError, match="^X_train has 7 features per sample .* but the model expects 6$"):
        Solver(FullyConnectedNet(6, [5], 3, seed=0), data, **quiet())


@pytest.mark.parametrize("drop", ["params/", "best/W1"])
def test_a_checkpoint_missing_parameters_is_refused(tmp_path, drop):
    solver = small_net_solver("numpy", separable(), num_iters=6)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith(drop)}
    np.savez(tmp_path / "cut.npz", **arrays)
    fresh = small_net_solver("numpy", separable())
    before = {k: v.copy() for k, v in fresh.model.params.items()}
    with pytest.raises(fcn.CheckpointError, match="holds .*parameters"):
        fresh.load_checkpoint(tmp_path / "cut.npz")
    for name, value in before.items():
        np.testing.assert_array_equal(fresh.model.params[name], value)


def _rewrite_checkpoint(src, dst, drop=(), meta_changes=None, extra=None):
    import json

    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if not any(k.startswith(d) for d in drop)}
    meta = json.loads(str(arrays["meta"]))
    meta.update(meta_changes or {})
    arrays["meta"] = np.asarray(json.dumps(meta))
    arrays.update(extra or {})
    np.savez(dst, **arrays)
    return dst


def test_damaged_checkpoints_are_refused_with_the_reason(tmp_path):
    solver = small_net_solver("numpy", separable(), num_iters=6)
    solver.train()
    good = solver.save_checkpoint(tmp_path / "ck.npz")
    fresh = small_net_solver("numpy", separable())
    cases = [
        ({"drop": ["loss_history"]}, r"is not a complete fcn checkpoint \(KeyError"),
        ({"meta_changes": {"format": "other-format"}}, r"unknown checkpoint format 'other-format'"),
        ({"meta_changes": {"best_val_acc": float("nan")}}, r"corrupt best_val_acc"),
        ({"extra": {"optim/W9/m": np.zeros(3)}}, r"optimiser state for unknown parameter 'W9'"),
    ]
    for i, (change, message) in enumerate(cases):
        bad = _rewrite_checkpoint(good, tmp_path / f"bad{i}.npz", **change)
        with pytest.raises(fcn.CheckpointError, match=message):
            fresh.load_checkpoint(bad)
        assert fresh.iteration == 0 and fresh.loss_history == []


def test_a_checkpoint_in_the_first_format_still_loads(tmp_path):
    solver = small_net_solver("numpy", separable(), num_iters=6)
    solver.train()
    path = _rewrite_checkpoint(
        solver.save_checkpoint(tmp_path / "ck.npz"), tmp_path / "v1.npz", meta_changes={"format": "fcn-checkpoint-1"}
    )
    resumed = small_net_solver("numpy", separable()).load_checkpoint(path)
    assert resumed.iteration == 6 and resumed.loss_history == solver.loss_history


def test_numpy_scalars_in_a_users_config_are_saved_as_numbers(tmp_path):
    def rule(w, dw, config=None):
        config = {} if config is None else config
        config.setdefault("learning_rate", np.float32(0.01))
        config.setdefault("steps", np.int64(0))
        config["steps"] += 1
        return w - float(config["learning_rate"]) * dw, config

    solver = small_net_solver("numpy", separable(), update_rule=rule, num_iters=3)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    resumed = small_net_solver("numpy", separable(), update_rule=rule).load_checkpoint(path)
    config = resumed.optim_configs["W1"]
    assert config["steps"] == 3 and config["learning_rate"] == pytest.approx(0.01)


def test_learning_rate_of_a_rule_without_one_is_nan():
    def rule(w, dw, config=None):
        return w - 1e-3 * dw, {} if config is None else config

    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(update_rule=rule, optim_config={}))
    assert np.isnan(solver.learning_rate)


def test_loss_modes_reach_the_layers():
    from fcn.modules import Layer

    seen: list = []

    class Spy(Layer):
        def forward(self, ops, x, params, buffers, train):
            seen.append(train)
            return x, None

    class SpiedNet(FullyConnectedNet):
        def build_layers(self):
            return [Spy(), *super().build_layers()]

    net = SpiedNet(4, [3], 2, seed=0)
    X, y = np.ones((2, 4)), np.asarray([0, 1])
    net.loss(X)
    net.loss(X, y)
    net.loss(X, mode="train")
    net.loss(X, y, mode="eval")
    net.loss(X, y, mode="train")
    assert seen == [False, True, True, False, True]


def test_predict_of_no_samples_stays_on_the_device(backend):
    net = FullyConnectedNet(3, [2], 2, seed=0, backend=backend)
    empty = net.predict(backend.asarray(np.zeros((0, 3))))
    assert tuple(empty.shape) == (0,)
    assert fcn.namespace_of(empty).name == backend.name
    if backend.device is not None:
        assert empty.device == backend.device


def test_solver_defaults_and_recorded_names(tmp_path):
    data = id_data(60)
    solver = Solver(RecordingSoftmax(4, 3), data, batch_size=10, verbose=False, progress=False)
    assert solver.num_iters == 10 * 6  # num_epochs defaults to 10
    import json

    def named(rule, expected):
        s = Solver(RecordingSoftmax(4, 3), data, **quiet(update_rule=rule, batch_size=10, num_iters=1))
        s.train()
        with np.load(s.save_checkpoint(tmp_path / "ck.npz"), allow_pickle=False) as npz:
            assert json.loads(str(npz["meta"]))["update_rule"] == expected

    named("adam", "adam")
    named(heavy_ball, "heavy_ball")


def test_bad_validation_labels_are_named():
    data = id_data(20)
    data["y_val"] = data["y_val"].copy()
    data["y_val"][0] = 9
    with pytest.raises(ValueError, match=r"^y_val has labels outside \[0, 3\)"):
        Solver(RecordingSoftmax(4, 3), data, **quiet())


def test_a_users_rule_without_learning_rate_survives_the_epoch_end():
    def rule(w, dw, config=None):
        return w - 1e-3 * dw, {} if config is None else config

    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(update_rule=rule, optim_config={}, batch_size=10))
    solver.train()  # no learning rate to schedule: the rule's config is left as the user gave it
    assert math.isnan(solver.learning_rate)
    assert all("learning_rate" not in config for config in solver.optim_configs.values())


def test_training_data_is_cast_to_the_models_dtype():
    data = separable()
    net = FullyConnectedNet(6, [5], 3, seed=0, dtype="float32")
    solver = Solver(net, data, **quiet(batch_size=10, num_iters=2))
    assert solver.X_train.dtype == np.float32 and solver.X_val.dtype == np.float32
    solver.train()
    assert all(p.dtype == np.float32 for p in net.params.values())


def test_progress_bar_shows_loss_rate_and_accuracies(capsys):
    import re

    Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_epochs=2, progress=True)).train()
    segments = [s for s in re.split(r"[\r\n]", capsys.readouterr().err) if "val=" in s]
    assert segments, "no progress bar line with the accuracies"
    assert re.search(r"lr=1\.00e-03", segments[-1]) and "train=" in segments[-1] and "loss=" in segments[-1]


def test_checkpoint_into_new_folders_written_next_to_its_target(tmp_path, monkeypatch):
    import os

    import fcn.solver as solver_module

    moves = []
    real_replace = os.replace

    def spy(src, dst):
        moves.append((os.path.dirname(src), os.path.dirname(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(solver_module.os, "replace", spy)
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_iters=1))
    solver.train()
    target = tmp_path / "a" / "b" / "ck.npz"
    solver.save_checkpoint(target)
    assert target.exists()
    assert moves == [(str(target.parent), str(target.parent))]  # same folder: the rename is atomic


def test_the_best_snapshot_is_not_changed_by_later_steps():
    solver = small_net_solver("numpy", separable(), num_epochs=1)
    solver.train()
    best = {k: fcn.to_host(v).copy() for k, v in solver.best_params.items()}
    solver.step()
    for name, value in best.items():
        np.testing.assert_array_equal(fcn.to_host(solver.best_params[name]), value)


def test_a_first_format_checkpoint_of_a_builtin_rule_keeps_its_hyperparameters(tmp_path):
    solver = small_net_solver("numpy", separable(), num_iters=6)
    solver.train()
    old_hyper = {
        n: {"learning_rate": 0.5, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 6} for n in solver.model.params
    }
    path = _rewrite_checkpoint(
        solver.save_checkpoint(tmp_path / "ck.npz"),
        tmp_path / "v1.npz",
        meta_changes={"format": "fcn-checkpoint-1", "optim_config": None, "optim_hyper": old_hyper},
    )
    resumed = small_net_solver("numpy", separable()).load_checkpoint(path)
    assert resumed.learning_rate == 0.5


def test_batch_size_mismatch_message_in_full(tmp_path):
    solver = small_net_solver("numpy", separable(), num_iters=2)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    with pytest.raises(fcn.CheckpointError, match=r"\(batch_size 10 in the checkpoint, 20 here\)\. Resume with the "
                       r"saved settings, or start a new run$"):  # fmt: skip
        small_net_solver("numpy", separable(), batch_size=20).load_checkpoint(path)


def test_a_rule_without_a_name_is_accepted(tmp_path):
    import functools
    import json

    rule = functools.partial(heavy_ball)  # a callable with no __name__
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(update_rule=rule, batch_size=10, num_iters=2))
    solver.train()
    with np.load(solver.save_checkpoint(tmp_path / "ck.npz"), allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"]))["update_rule"] == ""


def test_progress_bar_counts_steps_and_shows_the_rate_between_epochs(capsys, tmp_path):
    import re

    def bar_lines():
        return [s for s in re.split(r"[\r\n]", capsys.readouterr().err) if "training" in s]

    solver = Solver(RecordingSoftmax(4, 3), id_data(40), **quiet(batch_size=10, num_epochs=2, print_every=2))
    solver.progress = True
    solver.train()
    lines = bar_lines()
    assert "8/8" in lines[-1] and not any(re.search(r"\b(9|1\d)/8\b", s) for s in lines)
    between = [s for s in lines if "loss=" in s and "val=" not in s]
    assert between and all("lr=" in s for s in between)

    part = Solver(RecordingSoftmax(4, 3), id_data(40), **quiet(batch_size=10, num_epochs=1))
    part.train()
    part.save_checkpoint(tmp_path / "ck.npz")
    resumed = Solver(RecordingSoftmax(4, 3), id_data(40), **quiet(batch_size=10, num_epochs=2, progress=True))
    resumed.load_checkpoint(tmp_path / "ck.npz")
    capsys.readouterr()
    resumed.train()
    assert "8/8" in bar_lines()[-1]  # the bar starts at the resumed step


# -- buffers: non-trainable state saved, snapshotted and restored with the parameters ---------------------------------


def _buffered_net(name="steps1", seed=0):
    from fcn.modules import Layer

    class StepCounter(Layer):
        """Counts the training batches it has seen, in place (a buffer, not a parameter)."""

        buffers = (name,)

        def init_buffers(self):
            return {name: np.zeros(1)}

        def forward(self, ops, x, params, buffers, train):
            if train:
                buffers[name] += 1
            return x, None

    class Net(FullyConnectedNet):
        def build_layers(self):
            return [StepCounter(), *super().build_layers()]

    return Net(6, [5], 3, weight_scale=0.1, seed=seed)


def test_the_best_buffers_are_saved_restored_and_not_aliased(tmp_path):
    data = separable()
    solver = Solver(_buffered_net(), data, **quiet(update_rule="adam", optim_config={"learning_rate": 1e-2},
                                                  batch_size=10, num_epochs=3, lr_decay=0.5))  # fmt: skip
    solver.train()
    best_epoch = 1 + int(np.argmax(solver.val_acc_history))
    assert float(solver.model.buffers["steps1"][0]) == 6 * best_epoch  # restored with the best parameters
    best = {k: np.copy(v) for k, v in solver.best_buffers.items()}
    solver.step()
    assert {k: float(v[0]) for k, v in solver.best_buffers.items()} == {k: float(v[0]) for k, v in best.items()}

    path = solver.save_checkpoint(tmp_path / "ck.npz")
    same = quiet(update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=10, num_epochs=4, lr_decay=0.5)
    resumed = Solver(_buffered_net(), data, **same).load_checkpoint(path)
    assert float(resumed.model.buffers["steps1"][0]) == float(solver.model.buffers["steps1"][0])
    assert float(resumed.best_buffers["steps1"][0]) == float(best["steps1"][0])


def test_a_checkpoint_with_other_buffers_is_refused(tmp_path):
    data = separable()
    solver = Solver(_buffered_net(), data, **quiet(batch_size=10, num_iters=2))
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    other = Solver(_buffered_net(name="seen1"), data, **quiet(batch_size=10))
    with pytest.raises(fcn.CheckpointError, match=r"holds buffers \['steps1'\], but the model has \['seen1'\]"):
        other.load_checkpoint(path)
