"""The record of a run (fcn/training/history.py): accuracy scored in chunks, on which samples, and the stats."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import RecordingSoftmax, decaying_solver, id_data, quiet, separable, small_net_solver

import fcn
from fcn import Solver


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
