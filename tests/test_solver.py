"""The training loop (fcn/solver.py): progress on data, batches and epochs, the best parameters, early stopping,
divergence, checks of the data up front, logs, and a Ctrl-C at any moment."""

import json
import signal
import sys

import numpy as np
import pytest
from helpers import (
    BlowsUpAt,
    RecordingSoftmax,
    ScaledNet,
    assert_same,
    capture_last_params,
    decaying_solver,
    host_copy,
    id_data,
    image_data,
    make_solver,
    model_solver,
    quiet,
    recipe_net,
    recipe_solver,
    separable,
    small_net_solver,
)

import fcn
from fcn import FullyConnectedNet, Solver

# -- training makes progress ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_solver_improves_loss(backend, rule):
    lr = {"sgd": 0.2, "sgd_momentum": 0.05, "rmsprop": 1e-2, "adam": 2e-2}[rule]
    solver = make_solver(backend, separable(), update_rule=rule, optim_config={"learning_rate": lr})
    solver.train()
    first, last = np.mean(solver.loss_history[:5]), np.mean(solver.loss_history[-5:])
    assert last < 0.6 * first
    assert solver.best_val_acc >= 0.8
    assert len(solver.val_acc_history) == 4


def test_overfit_50_samples(backend):
    """The chapter's experiment: a deep net drives training accuracy to 1.0 on 50 samples."""
    rng = np.random.default_rng(0)
    data = {"X_train": rng.standard_normal((50, 3, 32, 32)), "y_train": rng.integers(10, size=50)}
    data.update(X_val=data["X_train"][:10], y_val=data["y_train"][:10])
    # unit-variance inputs: lr 1e-2 here plays the part of the chapter's 1e-3 on raw mean-subtracted pixels
    model = FullyConnectedNet(3 * 32 * 32, [100, 100], 10, weight_scale=1e-1, seed=0, backend=backend, dtype="float32")
    solver = Solver(
        model,
        data,
        num_epochs=20,
        batch_size=25,
        update_rule="sgd",
        optim_config={"learning_rate": 1e-2},
        num_train_samples=None,
        verbose=False,
        progress=False,
        seed=0,
    )
    solver.train()
    assert solver.train_acc_history[-1] == 1.0


def test_all_options_train(backend):
    solver = recipe_solver(recipe_net(backend), image_data(), num_epochs=8)
    solver.train()
    assert solver.loss_history[-1] < solver.loss_history[0]
    assert solver.best_val_acc > 0.6  # chance is 1/3


def test_same_seed_same_training_on_every_backend(backend):
    ref = make_solver("numpy", separable())
    ref.train()
    other = make_solver(backend, separable())
    other.train()
    np.testing.assert_allclose(other.loss_history, ref.loss_history, rtol=1e-10)
    for name, value in ref.model.params.items():
        np.testing.assert_allclose(fcn.to_host(other.model.params[name]), value, rtol=1e-9, atol=1e-12)


def test_same_seed_same_run_on_every_backend(backend):
    ref = recipe_solver(recipe_net(), image_data(), num_epochs=2)
    ref.train()
    other = recipe_solver(recipe_net(backend), image_data(), num_epochs=2)
    other.train()
    np.testing.assert_allclose(other.loss_history, ref.loss_history, rtol=1e-9)
    for name, value in host_copy(ref.model.params).items():
        np.testing.assert_allclose(fcn.to_host(other.model.params[name]), value, rtol=1e-7, atol=1e-10)


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


def test_training_data_is_cast_to_the_models_dtype():
    data = separable(80, 6)
    net = FullyConnectedNet(6, [5], 3, seed=0, dtype="float32")
    solver = Solver(net, data, **quiet(batch_size=10, num_iters=2))
    assert solver.X_train.dtype == np.float32 and solver.X_val.dtype == np.float32
    solver.train()
    assert all(p.dtype == np.float32 for p in net.params.values())


# -- which samples each epoch sees ----------------------------------------------------------------------------------


def epochs_seen(model: RecordingSoftmax, per_epoch: int) -> list[list[np.ndarray]]:
    b = model.batches
    assert len(b) % per_epoch == 0
    return [b[i : i + per_epoch] for i in range(0, len(b), per_epoch)]


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


# -- steps, epochs and what happens at an epoch's end ---------------------------------------------------------------


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


def test_learning_rate_decays_per_epoch(backend):
    solver = make_solver(backend, separable(), lr_decay=0.5)
    solver.train()
    assert solver.learning_rate == pytest.approx(0.05 * 0.5**4)


def test_public_step_advances_one_batch(backend):
    solver = make_solver(backend, separable())
    before = fcn.to_host(solver.model.params["W1"]).copy()
    solver.step()
    assert solver.iteration == 1
    assert not np.array_equal(fcn.to_host(solver.model.params["W1"]), before)


def test_training_again_in_process_continues_from_the_last_parameters():
    data = separable()
    full = decaying_solver(data, num_epochs=6)
    full.train()
    solver = decaying_solver(data, num_epochs=3)
    solver.train()
    solver.num_iters = 6 * solver.iterations_per_epoch
    solver.train()
    assert solver.loss_history == full.loss_history
    assert_same(host_copy(solver.model.params), host_copy(full.model.params))


def test_on_epoch_end_sees_each_evaluation():
    seen = []
    solver = make_solver(
        "numpy", separable(), num_epochs=3, on_epoch_end=lambda s: seen.append((s.iteration, s.val_acc_history[-1]))
    )
    solver.train()
    assert [it for it, _ in seen] == [12, 24, 36]
    assert [acc for _, acc in seen] == solver.val_acc_history


def test_check_accuracy_scores_only_the_samples_of_the_subset():
    model = RecordingSoftmax(4, 3)
    data = id_data(30)
    solver = Solver(model, data, **quiet(batch_size=10))
    X = data["X_train"]
    predicted = np.argmax(model.loss(X), axis=1)
    subset = np.array([2, 5, 11, 17, 29])
    y = (predicted + 1) % 3  # every prediction wrong, but those of the subset
    y[subset] = predicted[subset]
    assert solver.check_accuracy(X, y, subset=subset) == 1.0
    assert solver.check_accuracy(X, y) == len(subset) / len(X)


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


# -- the best parameters --------------------------------------------------------------------------------------------


def test_train_restores_the_parameters_of_the_best_validation_epoch():
    data = separable(80, 6)
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


def test_the_best_snapshot_is_not_changed_by_later_steps():
    solver = small_net_solver("numpy", separable(80, 6), num_epochs=1)
    solver.train()
    best = {k: fcn.to_host(v).copy() for k, v in solver.best_params.items()}
    solver.step()
    for name, value in best.items():
        np.testing.assert_array_equal(fcn.to_host(solver.best_params[name]), value)


def test_best_snapshot_restores_buffers_with_parameters():
    snapshots = {}

    def remember(solver):
        snapshots[len(solver.val_acc_history)] = np.copy(solver.model.buffers["seen1"])

    solver = model_solver(ScaledNet(12, [16], 3, weight_scale=0.1, seed=0), on_epoch_end=remember, lr_decay=0.5)
    solver.train()
    best_epoch = 1 + int(np.argmax(solver.val_acc_history))
    np.testing.assert_array_equal(solver.model.buffers["seen1"], snapshots[best_epoch])


def _scripted_validation(monkeypatch, solver, accuracies):
    """Make ``solver``'s validation accuracies (the scoring without a subset) the given sequence, in turn."""
    scripted = iter(accuracies)
    score = solver.check_accuracy

    def check_accuracy(X, y, subset=None):
        return next(scripted) if subset is None else score(X, y, subset)

    monkeypatch.setattr(solver, "check_accuracy", check_accuracy)


def test_the_best_epoch_before_the_last_is_restored_with_its_buffers(monkeypatch):
    """The best epoch is the first: training ends with the parameters and the buffers (running statistics)
    of that epoch, not the last one's."""
    snapshots = []

    def remember(solver):
        snapshots.append((host_copy(solver.model.params), host_copy(solver.model.buffers)))

    solver = model_solver(ScaledNet(12, [16], 3, weight_scale=0.1, seed=0), on_epoch_end=remember)
    _scripted_validation(monkeypatch, solver, [0.9, 0.5, 0.6, 0.7])
    solver.train()
    assert solver.best_val_acc == 0.9 and not np.array_equal(snapshots[0][1]["seen1"], snapshots[-1][1]["seen1"])
    assert_same(host_copy(solver.model.params), snapshots[0][0])
    assert_same(host_copy(solver.model.buffers), snapshots[0][1])


def test_an_improvement_restarts_the_patience_count(monkeypatch):
    """patience=2 and accuracies 0.5, 0.4, 0.6 (better), 0.5, 0.4: two epochs without improvement only after the
    fifth, so training stops there and not after the fourth."""
    solver = model_solver(ScaledNet(12, [16], 3, weight_scale=0.1, seed=0), patience=2, num_epochs=8)
    _scripted_validation(monkeypatch, solver, [0.5, 0.4, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    solver.train()
    assert solver.stopped_early and solver.epoch == 5 and solver.best_val_acc == 0.6


def test_empty_validation_set_keeps_the_last_parameters(tmp_path):
    data = separable()
    with_val = decaying_solver(data)
    last = capture_last_params(with_val)
    with_val.train()

    no_val = decaying_solver(
        {**data, "X_val": data["X_val"][:0], "y_val": data["y_val"][:0]}, checkpoint=tmp_path / "c"
    )
    no_val.train()
    assert no_val.best_val_acc is None and no_val.val_acc_history == []
    assert_same(host_copy(no_val.model.params), last[-1])  # the training trajectory does not depend on val

    again = decaying_solver({**data, "X_val": data["X_val"][:0], "y_val": data["y_val"][:0]}, num_epochs=6)
    again.load_checkpoint(tmp_path / "c")  # the checkpoint of a run without validation loads
    again.train()
    assert again.iteration == 6 * 12 and again.best_val_acc is None


# -- early stopping -------------------------------------------------------------------------------------------------


def test_patience_stops_when_validation_accuracy_stalls(tmp_path):
    # a negligible learning rate (and no running statistics) never improves on the first evaluation: stop after
    # 1 + patience evaluations
    frozen = dict(optim_config={"learning_rate": 1e-12}, patience=2, num_epochs=10)
    solver = recipe_solver(recipe_net(normalization=None), image_data(), checkpoint=tmp_path / "c", **frozen)
    solver.train()
    assert solver.stopped_early and solver.epoch == 3 and len(solver.val_acc_history) == 3
    assert solver.iteration == 3 * solver.iterations_per_epoch
    meta = json.loads(str(np.load(tmp_path / "c", allow_pickle=False)["meta"]))
    assert meta["stopped_early"] and meta["epochs_without_improvement"] == 2
    resumed = recipe_solver(recipe_net(normalization=None), image_data(), **frozen)
    resumed.load_checkpoint(tmp_path / "c").train()  # nothing left to do
    assert resumed.iteration == solver.iteration and resumed.stopped_early


def test_no_patience_trains_to_the_end():
    solver = recipe_solver(
        recipe_net(normalization=None), image_data(), optim_config={"learning_rate": 1e-12}, num_epochs=4
    )
    solver.train()
    assert not solver.stopped_early and solver.epoch == 4


# -- divergence -----------------------------------------------------------------------------------------------------


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


def test_divergence_message_names_the_learning_rate():
    solver = Solver(BlowsUpAt(1, np.nan), id_data(20), **quiet(batch_size=10, optim_config={"learning_rate": 0.25}))
    with pytest.raises(fcn.TrainingDiverged, match=r"^the loss became nan at iteration 1, after 1 updates: training "
                       r"diverged; lower the learning rate \(now 0\.25\)"):  # fmt: skip
        solver.train()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_reported_not_hidden(backend):
    solver = make_solver(backend, separable(), update_rule="sgd", optim_config={"learning_rate": 1e6}, print_every=5)
    with pytest.raises(fcn.TrainingDiverged, match="lower the learning rate"):
        solver.train()
    assert solver.loss_history  # what was learned before the failure is kept


def test_divergence_after_updates_still_suggests_the_learning_rate():
    solver = decaying_solver(separable(), optim_config={"learning_rate": 1e6}, num_epochs=4)
    with pytest.raises(fcn.TrainingDiverged, match="learning rate"):
        solver.train()


def test_a_loss_that_is_not_finite_before_any_update_does_not_blame_the_learning_rate():
    # the L2 term overflows float32 at the very first step: no update has happened, the learning rate is innocent
    model = FullyConnectedNet(12, [16], 3, weight_scale=1e5, reg=1e30, seed=0, dtype="float32")
    solver = Solver(model, separable(), batch_size=25, num_epochs=1, verbose=False, progress=False)
    with pytest.raises(fcn.TrainingDiverged) as info:
        solver.train()
    message = str(info.value)
    assert "before any update" in message and "learning rate" not in message


def test_non_finite_parameters_after_the_last_step_are_an_error():
    solver = decaying_solver(separable(), dtype="float32", optim_config={"learning_rate": 1e300}, num_iters=1)
    with pytest.raises(fcn.TrainingDiverged, match=r"parameters .*(NaN|infinite)"):
        solver.train()


# -- the data is checked once, up front -----------------------------------------------------------------------------


def test_bad_training_data_is_caught_once_up_front(backend):
    data = separable()
    data["y_train"] = data["y_train"].copy()
    data["y_train"][7] = 3
    with pytest.raises(ValueError, match=r"y_train has labels outside \[0, 3\)"):
        make_solver(backend, data)
    data = separable()
    data["X_val"] = data["X_val"].copy()
    data["X_val"][0, 0] = np.nan
    with pytest.raises(ValueError, match="X_val contains NaN"):
        make_solver(backend, data)


def test_bad_validation_labels_are_named():
    data = id_data(20)
    data["y_val"] = data["y_val"].copy()
    data["y_val"][0] = 9
    with pytest.raises(ValueError, match=r"^y_val has labels outside \[0, 3\)"):
        Solver(RecordingSoftmax(4, 3), data, **quiet())


def test_missing_data_and_bad_batch_size_are_named():
    data = id_data(20)
    with pytest.raises(KeyError, match="data is missing X_val, y_val"):
        Solver(RecordingSoftmax(4, 3), {"X_train": data["X_train"], "y_train": data["y_train"]}, **quiet())
    with pytest.raises(ValueError, match="^batch_size must be a positive integer, got 0$"):
        Solver(RecordingSoftmax(4, 3), data, **quiet(batch_size=0))


def test_a_config_and_its_settings_as_keywords_together_are_refused():
    config = fcn.TrainConfig(**quiet())
    with pytest.raises(TypeError, match="^give a TrainConfig or its settings as keyword arguments, not both$"):
        Solver(RecordingSoftmax(4, 3), id_data(20), config, batch_size=5)


def test_data_with_the_wrong_feature_count_is_refused_up_front():
    data = separable(80, 6)
    data["X_train"] = np.hstack([data["X_train"], np.zeros((60, 1))])
    with pytest.raises(ValueError, match="^X_train has 7 features per sample .* but the model expects 6$"):
        Solver(FullyConnectedNet(6, [5], 3, seed=0), data, **quiet())


def test_empty_training_set_is_named():
    data = separable()
    with pytest.raises(ValueError, match="X_train has no samples"):
        decaying_solver({**data, "X_train": data["X_train"][:0], "y_train": data["y_train"][:0]})


def test_data_beyond_the_model_dtype_is_named():
    data = separable()
    data["X_train"] = data["X_train"].copy()
    data["X_train"][3, 4] = 1e39
    with pytest.raises(ValueError, match="X_train.*float32"):
        decaying_solver(data, dtype="float32")


# -- logs and the progress bar --------------------------------------------------------------------------------------


def test_progress_bar_and_log_lines(capsys):
    make_solver("numpy", separable(), verbose=True, progress=True, print_every=10).train()
    captured = capsys.readouterr()
    assert "(Iteration 10 /" in captured.out and "val acc" in captured.out
    assert "training" in captured.err  # the tqdm bar


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


def test_progress_bar_shows_loss_rate_and_accuracies(capsys):
    import re

    Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_epochs=2, progress=True)).train()
    segments = [s for s in re.split(r"[\r\n]", capsys.readouterr().err) if "val=" in s]
    assert segments, "no progress bar line with the accuracies"
    assert re.search(r"lr=1\.00e-03", segments[-1]) and "train=" in segments[-1] and "loss=" in segments[-1]


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


def test_the_progress_bar_is_cleared_when_training_ends(capsys):
    """The bar is a live display, not a record: it leaves no line behind (the epoch lines are the record)."""
    Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_epochs=2, progress=True)).train()
    err = capsys.readouterr().err
    assert "training" in err  # the bar was shown
    assert "\n" not in err and err.split("\r")[-1].strip() == ""  # and erased: the terminal line is blank again


# -- CUDA graphs: requested (cuda_graph=True or FCN_CUDA_GRAPH=1) where possible, else eager with a warning ----------


@pytest.mark.parametrize(
    ("cuda_graph", "env", "warns"),
    [(None, None, False), (False, "1", False), (None, "0", False), (True, None, True), (None, "1", True)],
)
def test_numpy_trains_eagerly_and_warns_only_when_cuda_graphs_are_requested(
    monkeypatch, recwarn, cuda_graph, env, warns
):
    """An explicit ``cuda_graph`` wins over the environment; on NumPy a request cannot be met, and says so."""
    if env is None:
        monkeypatch.delenv("FCN_CUDA_GRAPH", raising=False)
    else:
        monkeypatch.setenv("FCN_CUDA_GRAPH", env)
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_iters=3, cuda_graph=cuda_graph))
    messages = [str(w.message) for w in recwarn if "CUDA" in str(w.message)]
    if warns:
        assert messages == [
            "CUDA graphs requested but not used: CUDA graphs need the CuPy backend, not numpy; training eagerly"
        ]
    else:
        assert messages == []  # nothing requested, nothing to say
    assert solver.run_step is solver.train_step
    solver.train()
    assert solver.iteration == 3 and len(solver.loss_history) == 3


@pytest.mark.skipif("mutmut" in sys.modules, reason="mutation testing wraps fcn's functions in frames of its own")
def test_the_cuda_graph_warning_points_at_the_line_that_built_the_solver():
    """Like every warning of fcn: the user sees the line of their own code to change."""

    def build():
        return Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, cuda_graph=True))

    with pytest.warns(UserWarning, match="CUDA graphs requested but not used") as caught:
        build()
    line = build.__code__.co_firstlineno + 1
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]


# -- a Ctrl-C at the worst moment: a consistent state is saved, and the resumed run is the uninterrupted one --------


def run_interrupted(tmp_path, monkeypatch, target, attribute, when, *, how="raise"):
    """Train with an interrupt injected once into ``target.attribute`` at call number ``when``, then resume.

    Mirrors ``fcn train``: on KeyboardInterrupt the state is saved if the solver says it is consistent;
    the run is then resumed from the checkpoint by a fresh solver. Returns that solver after training.
    """
    data = separable()
    path = tmp_path / "ck.npz"
    solver = decaying_solver(data, checkpoint=path)
    real = getattr(target, attribute)
    calls = {"n": 0}

    def injected(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == when:
            if how == "raise":
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, delivered in the middle of the call
        return real(*args, **kwargs)

    monkeypatch.setattr(target, attribute, injected)
    with pytest.raises(KeyboardInterrupt):
        solver.train()
    monkeypatch.setattr(target, attribute, real)
    if getattr(solver, "consistent", True):
        solver.save_checkpoint(path)
    resumed = decaying_solver(data)
    if path.exists():
        resumed.load_checkpoint(path)
    last = capture_last_params(resumed)
    resumed.train()
    return resumed, last


@pytest.fixture(scope="module")
def uninterrupted():
    solver = decaying_solver(separable())
    last = capture_last_params(solver)
    solver.train()
    return solver, last


@pytest.mark.parametrize("how", ["raise", "signal"])
@pytest.mark.parametrize(
    "where, attribute, when",
    [
        ("ops", "sgd_momentum", 4 * 17 + 2),  # inside the update of step 18 (W1, b1, W2, b2), after W1
        ("ops", "sgd_momentum", 4 * 12 + 4),  # the last parameter of the first step of epoch 2
        ("solver", "check_accuracy", 4),  # the validation accuracy at the end of epoch 2
        ("ops", "sgd_momentum", 4 * 24),  # the last parameter of the last step of epoch 2, just before its end
        ("solver", "apply_schedule", 24),  # setting the learning rate after the last step of epoch 2
        ("solver", "read_losses", 4),  # reading the losses back at epoch 2's end
    ],
)
def test_interrupt_then_resume_is_exact(tmp_path, monkeypatch, uninterrupted, where, attribute, when, how):
    reference, reference_last = uninterrupted
    target = type(fcn.get_backend("numpy").ops) if where == "ops" else Solver
    resumed, last = run_interrupted(tmp_path, monkeypatch, target, attribute, when, how=how)
    assert resumed.loss_history == reference.loss_history
    assert resumed.train_acc_history == reference.train_acc_history
    assert resumed.val_acc_history == reference.val_acc_history
    assert resumed.learning_rate == reference.learning_rate
    assert_same(last[-1], reference_last[-1])
    assert_same(host_copy(resumed.model.params), host_copy(reference.model.params))


def test_an_inconsistent_state_is_neither_saved_nor_trained_on(tmp_path, monkeypatch):
    solver = decaying_solver(separable(), checkpoint=tmp_path / "ck.npz")
    ops_class = type(solver.backend.ops)
    real, calls = ops_class.sgd_momentum, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4 * 14 + 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ops_class, "sgd_momentum", interrupted)
    with pytest.raises(KeyboardInterrupt):
        solver.train()
    monkeypatch.setattr(ops_class, "sgd_momentum", real)
    before = (tmp_path / "ck.npz").read_bytes()
    assert not solver.consistent
    with pytest.raises(
        fcn.CheckpointError,
        match=r"^not saving a checkpoint at iteration 14: training stopped in the middle of a step or an epoch end, "
        r"so parameters, optimiser state and history may disagree; the last checkpoint written at an epoch end "
        r"is intact$",
    ):
        solver.save_checkpoint(tmp_path / "ck.npz")
    with pytest.raises(
        fcn.CheckpointError,
        match=r"^training stopped in the middle of a step or an epoch end at iteration 14, so the parameters, "
        r"optimiser state and history may disagree: load the last checkpoint to continue exactly \(or set "
        r"solver\.consistent = True to go on from this state anyway\)$",
    ):
        solver.train()
    assert (tmp_path / "ck.npz").read_bytes() == before
    solver.load_checkpoint(tmp_path / "ck.npz")
    assert solver.consistent and solver.iteration == 12
    solver.train()
