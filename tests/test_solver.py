"""The training loop: progress on data, overfitting, checkpoints, resume, divergence."""

import json
import zipfile

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, Solver


def separable(n=400, d=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ rng.standard_normal((d, c)), axis=1)
    cut = n * 3 // 4
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


def make_solver(backend, data, **kw):
    model = FullyConnectedNet(data["X_train"].shape[1], [16], 3, weight_scale=0.1, seed=0, backend=backend)
    options = dict(
        update_rule="sgd_momentum",
        optim_config={"learning_rate": 0.05},
        batch_size=25,
        num_epochs=4,
        verbose=False,
        progress=False,
        seed=3,
    )
    options.update(kw)
    return Solver(model, data, **options)


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_solver_improves_loss(backend, rule):
    lr = {"sgd": 0.2, "sgd_momentum": 0.05, "rmsprop": 1e-2, "adam": 2e-2}[rule]
    solver = make_solver(backend, separable(), update_rule=rule, optim_config={"learning_rate": lr})
    solver.train()
    first, last = np.mean(solver.loss_history[:5]), np.mean(solver.loss_history[-5:])
    assert last < 0.6 * first
    assert solver.best_val_acc >= 0.8
    assert len(solver.val_acc_history) == 4


def test_learning_rate_decays_per_epoch(backend):
    solver = make_solver(backend, separable(), lr_decay=0.5)
    solver.train()
    assert solver.learning_rate == pytest.approx(0.05 * 0.5**4)


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


def test_same_seed_same_training_on_every_backend(backend):
    ref = make_solver("numpy", separable())
    ref.train()
    other = make_solver(backend, separable())
    other.train()
    np.testing.assert_allclose(other.loss_history, ref.loss_history, rtol=1e-10)
    for name, value in ref.model.params.items():
        np.testing.assert_allclose(fcn.to_host(other.model.params[name]), value, rtol=1e-9, atol=1e-12)


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


def test_checkpoint_moves_between_backends(backend, tmp_path):
    src = make_solver("numpy", separable(), num_epochs=1)
    src.train()
    src.save_checkpoint(tmp_path / "ck.npz")
    dst = make_solver(backend, separable(), num_epochs=1)
    dst.load_checkpoint(tmp_path / "ck.npz")
    for name, value in src.model.params.items():
        assert fcn.namespace_of(dst.model.params[name]).name == backend.name
        np.testing.assert_array_equal(fcn.to_host(dst.model.params[name]), value)


def test_checkpoint_has_no_pickle(tmp_path):
    solver = make_solver("numpy", separable(), num_epochs=1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        assert "params/W1" in npz.files and "optim/W1/velocity" in npz.files
    assert meta["iteration"] == solver.iteration


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    solver = make_solver("numpy", separable(), num_epochs=1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        solver.save_checkpoint(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary file left behind


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    solver = make_solver("numpy", separable(), num_epochs=1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(fcn.CheckpointError, match="not a readable fcn checkpoint"):
        solver.load_checkpoint(truncated)
    with pytest.raises(fcn.CheckpointError, match="does not exist"):
        solver.load_checkpoint(tmp_path / "missing.npz")

    other = Solver(FullyConnectedNet(12, [8], 3, seed=0), separable(), verbose=False, progress=False, batch_size=25)
    with pytest.raises(fcn.CheckpointError, match="parameter W1 has shape"):
        other.load_checkpoint(path)
    deeper = Solver(
        FullyConnectedNet(12, [16, 4], 3, seed=0), separable(), verbose=False, progress=False, batch_size=25
    )
    with pytest.raises(fcn.CheckpointError, match="holds parameters"):
        deeper.load_checkpoint(path)
    not_ours = tmp_path / "other.npz"
    np.savez(not_ours, x=np.zeros(3))
    with pytest.raises(fcn.CheckpointError):
        solver.load_checkpoint(not_ours)
    assert zipfile.is_zipfile(path)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_reported_not_hidden(backend):
    solver = make_solver(backend, separable(), update_rule="sgd", optim_config={"learning_rate": 1e6}, print_every=5)
    with pytest.raises(fcn.TrainingDiverged, match="lower the learning rate"):
        solver.train()
    assert solver.loss_history  # what was learned before the failure is kept


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


def test_progress_bar_and_log_lines(capsys):
    make_solver("numpy", separable(), verbose=True, progress=True, print_every=10).train()
    captured = capsys.readouterr()
    assert "(Iteration 10 /" in captured.out and "val acc" in captured.out
    assert "training" in captured.err  # the tqdm bar


def test_on_epoch_end_sees_each_evaluation():
    seen = []
    solver = make_solver(
        "numpy", separable(), num_epochs=3, on_epoch_end=lambda s: seen.append((s.iteration, s.val_acc_history[-1]))
    )
    solver.train()
    assert [it for it, _ in seen] == [12, 24, 36]
    assert [acc for _, acc in seen] == solver.val_acc_history


def test_public_step_advances_one_batch(backend):
    solver = make_solver(backend, separable())
    before = fcn.to_host(solver.model.params["W1"]).copy()
    solver.step()
    assert solver.iteration == 1
    assert not np.array_equal(fcn.to_host(solver.model.params["W1"]), before)
