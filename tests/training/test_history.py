"""The record of a run (fcn/training/history.py): accuracy scored in chunks, on which samples, and the stats; the
best snapshot, early stopping, divergence at the first iteration, and what an epoch end reports."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    BlowsUpAt,
    DeclaredSoftmax,
    RecordingSoftmax,
    assert_same,
    capture_last_params,
    decaying_solver,
    host_copy,
    id_data,
    image_data,
    quiet,
    recipe_net,
    recipe_solver,
    separable,
    small_net_solver,
)

import fcn
from fcn import FullyConnectedNet, Solver
from fcn.training.history import check_accuracy


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


def test_accuracy_of_no_samples_is_nan_and_stats_are_copies():
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_epochs=1))
    assert np.isnan(solver.check_accuracy(np.zeros((0, 4)), np.zeros(0, dtype=np.int64)))
    solver.train()
    stats = solver.stats()
    assert set(stats) == {"loss_history", "train_acc_history", "val_acc_history", "best_val_acc"}
    assert stats["loss_history"] == solver.loss_history and stats["best_val_acc"] == solver.best_val_acc
    stats["loss_history"].append(0.0)
    assert len(solver.loss_history) == 2


def test_train_accuracy_is_scored_on_num_train_samples_samples():
    data = separable(80, 6)
    counted = []
    solver = small_net_solver("numpy", data, num_epochs=1, num_train_samples=7)
    original = solver.check_accuracy

    def spy(X, y, subset=None, batch_size=10_000):
        counted.append(X.shape[0] if subset is None else subset.shape[0])
        return original(X, y, subset=subset, batch_size=batch_size)

    solver.check_accuracy = spy
    solver.train()
    assert sorted(counted) == [7, 20]


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


def test_check_accuracy_refuses_labels_that_do_not_match():
    data = separable()
    solver = decaying_solver(data)
    with pytest.raises(ValueError, match=r"y must have shape \(100,\)"):
        solver.check_accuracy(data["X_val"], np.array([0]))
    with pytest.raises(ValueError, match="batch_size"):
        solver.check_accuracy(data["X_val"], data["y_val"], batch_size=0)


def test_check_accuracy_moves_host_data_to_a_device_model():
    strict = pytest.importorskip("array_api_strict")
    data = separable()
    device_solver = decaying_solver(data, backend=fcn.get_backend("array_api_strict", strict.Device("device1")))
    host_solver = decaying_solver(data)
    expected = host_solver.check_accuracy(data["X_val"], data["y_val"])
    assert device_solver.check_accuracy(data["X_val"], data["y_val"]) == expected
    manual = float(np.mean(np.argmax(host_solver.model.loss(data["X_val"]), axis=1) == data["y_val"]))
    assert expected == manual


def test_epochs_in_the_log_are_whole_numbers(capsys):
    # 60 samples in batches of 10: 6 iterations an epoch; 9 iterations end in the middle of the second
    Solver(RecordingSoftmax(4, 3), id_data(60), **quiet(batch_size=10, num_iters=9, verbose=True)).train()
    epochs = [line.split(")")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("(Epoch")]
    assert epochs == ["(Epoch 1 / 2", "(Epoch 2 / 2, iteration 9"]


def test_check_accuracy_scores_at_most_10_000_samples_a_pass_by_default():
    """The default chunk bounds the memory of one scoring pass (the scores of 10 000 samples)."""
    sizes = []

    class Counted(FullyConnectedNet):
        def loss(self, X, y=None):
            sizes.append(X.shape[0])
            return super().loss(X, y)

    net = Counted(4, [], 3, seed=0)
    X, y = np.zeros((10_001, 4)), np.zeros(10_001, dtype=np.int64)
    assert 0.0 <= check_accuracy(net, X, y) <= 1.0
    assert sizes == [10_000, 1]


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.zeros((5, 13)), np.zeros(5, dtype=np.int64), r"X has 13 features per sample .* the model expects 12"),
        (np.zeros((5, 12)), np.full(5, 3), r"y has labels outside \[0, 3\)"),
    ],
    ids=["features", "labels"],
)
@pytest.mark.parametrize("kind", ["net", "chapter-model"])
def test_check_accuracy_refuses_samples_and_labels_the_model_does_not_take(kind, X, y, message):
    """Against what the model declares; a chapter model's loss checks nothing itself, so the check is the Solver's."""
    data = separable()
    model = FullyConnectedNet(12, [8], 3, seed=0) if kind == "net" else DeclaredSoftmax(12, 3)
    solver = Solver(model, data, **quiet())
    with pytest.raises(ValueError, match=message):
        solver.check_accuracy(X, y)


def test_a_model_that_does_not_declare_its_classes_is_scored_on_all_of_them():
    # the chapter's contract has no num_classes: labels are only bounded by what the scores show
    model = RecordingSoftmax(4, 130)
    model.params["b"][129] = 1.0  # every sample is predicted as the last class
    data = id_data(20, c=130)
    solver = Solver(model, data, **quiet(batch_size=10))
    X, y = np.zeros((6, 4)), np.asarray([129, 129, 129, 0, 128, 129])
    assert solver.check_accuracy(X, y) == 4 / 6


def test_a_first_evaluation_of_zero_accuracy_is_the_best_so_far():
    """Patience counts from the first evaluation, whatever its accuracy, and the model gets that epoch's
    parameters back: here the validation accuracy stays 0 and patience 1 stops the run after two evaluations."""
    model = RecordingSoftmax(4, 3)
    model.params["b"][0] = 1.0  # always class 0 (the steps of 1e-3 do not change that) ...
    data = id_data(20)
    data["y_val"] = np.full(10, 2)  # ... and never the validation labels
    solver = Solver(model, data, **quiet(batch_size=10, num_epochs=5, patience=1))
    seen = capture_last_params(solver)
    solver.train()
    assert solver.val_acc_history == [0.0, 0.0] and solver.stopped_early
    assert solver.best_val_acc == 0.0
    assert_same(host_copy(model.params), seen[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_loss_that_overflows_before_any_update_names_the_model_s_dtype(dtype):
    model = BlowsUpAt(0, np.inf)
    for name, value in model.params.items():
        model.params[name] = value.astype(dtype)
    data = {k: v.astype(dtype) if k.startswith("X") else v for k, v in id_data(20).items()}
    solver = Solver(model, data, **quiet(batch_size=10, num_epochs=1))
    with pytest.raises(fcn.TrainingDiverged, match=rf"first iteration, before any update.*{np.dtype(dtype).name}"):
        solver.train()


def test_the_epoch_log_and_the_progress_bar_show_the_loss_and_both_accuracies(capsys):
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_epochs=1, verbose=True,
                                                               progress=True))  # fmt: skip
    solver.train()
    captured = capsys.readouterr()
    train, val = solver.train_acc_history[0], solver.val_acc_history[0]
    assert f"(Epoch 1 / 1) train acc: {train:.3f}; val acc: {val:.3f}" in captured.out
    loss = solver.loss_history[-1]
    assert f"loss={loss:.3f}, lr=1.00e-03, train={train:.3f}, val={val:.3f}" in captured.err


@pytest.mark.parametrize("arrays", ["params", "buffers"])
def test_the_restored_best_arrays_are_the_model_s_own(arrays):
    """Changing the model in place after training (fine-tuning it by hand) leaves the best snapshot as it was."""
    solver = recipe_solver(recipe_net(), image_data(60), num_epochs=2)
    solver.train()
    best = host_copy(solver.best_params if arrays == "params" else solver.best_buffers)
    assert best
    for value in (solver.model.params if arrays == "params" else solver.model.buffers).values():
        value[...] = 7.0
    assert_same(host_copy(solver.best_params if arrays == "params" else solver.best_buffers), best)


def test_a_float32_chapter_model_takes_float64_data_cast_to_its_dtype():
    model = RecordingSoftmax(4, 3)
    for name, value in model.params.items():
        model.params[name] = value.astype(np.float32)
    solver = Solver(model, id_data(20), **quiet(batch_size=10, num_epochs=1))
    assert solver.X_train.dtype == np.float32  # the number of classes was asked of the model in its own dtype
    solver.train()
    assert np.isfinite(solver.loss_history).all()


def test_a_fresh_run_holds_no_best_or_last_arrays():
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(batch_size=10, num_epochs=1))
    assert solver.best_params == {} and solver.best_buffers == {}
    assert solver.last_params is None and solver.last_buffers == {}
