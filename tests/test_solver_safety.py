"""The Solver and the models under bad input and faults: clear errors, exact resumes, no half-restored state.

Each test reproduces something that went wrong in practice: an empty validation set, a net that blew up,
bad lengths and signs, a resume with other settings, a Ctrl-C at the worst moment, a checkpoint that does
not fit, advice that pointed at the wrong cause, and public helpers that accepted anything.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

import fcn
from fcn import FullyConnectedNet, Solver


def separable(n=400, d=12, c=3, seed=0, n_val=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.argmax(X @ rng.standard_normal((d, c)), axis=1)
    cut = n * 3 // 4 if n_val is None else n - n_val
    return {"X_train": X[:cut], "y_train": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


def make_solver(data, backend="numpy", dtype="float64", **kw):
    model = FullyConnectedNet(data["X_train"].shape[1], [16], 3, weight_scale=0.1, seed=0, backend=backend, dtype=dtype)
    options = dict(
        update_rule="sgd_momentum",
        optim_config={"learning_rate": 0.05},
        lr_decay=0.9,
        batch_size=25,
        num_epochs=4,
        verbose=False,
        progress=False,
        seed=3,
    )
    options.update(kw)
    return Solver(model, data, **options)


def host_params(params):
    return {k: fcn.to_host(v).copy() for k, v in params.items()}


def capture_last_params(solver):
    """Record the parameters at every evaluation: the last one is the state training ended in."""
    seen = []
    solver.on_epoch_end = lambda s: seen.append(host_params(s.model.params))
    return seen


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def saved_meta(path):
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz["meta"])), {k: npz[k] for k in npz.files if k != "meta"}


# -- 1. no validation set ---------------------------------------------------------------------------------------


def test_empty_validation_set_keeps_the_last_parameters(tmp_path):
    data = separable()
    with_val = make_solver(data)
    last = capture_last_params(with_val)
    with_val.train()

    no_val = make_solver({**data, "X_val": data["X_val"][:0], "y_val": data["y_val"][:0]}, checkpoint=tmp_path / "c")
    no_val.train()
    assert no_val.best_val_acc is None and no_val.val_acc_history == []
    assert_same(host_params(no_val.model.params), last[-1])  # the training trajectory does not depend on val

    again = make_solver({**data, "X_val": data["X_val"][:0], "y_val": data["y_val"][:0]}, num_epochs=6)
    again.load_checkpoint(tmp_path / "c")  # the checkpoint of a run without validation loads
    again.train()
    assert again.iteration == 6 * 12 and again.best_val_acc is None


# -- 3. a net that blew up --------------------------------------------------------------------------------------


def test_non_finite_parameters_after_the_last_step_are_an_error():
    solver = make_solver(separable(), dtype="float32", optim_config={"learning_rate": 1e300}, num_iters=1)
    with pytest.raises(fcn.TrainingDiverged, match=r"parameters .*(NaN|infinite)"):
        solver.train()


def test_predict_with_non_finite_parameters_raises():
    net = FullyConnectedNet(12, [5], 3, seed=0)
    W1 = fcn.to_host(net.params["W1"]).copy()
    W1[0, 0] = np.nan
    net.params["W1"] = W1
    with pytest.raises(ValueError, match="W1.*(NaN|infinite)"):
        net.predict(np.zeros((4, 12)))


# -- 4. lengths and signs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, name",
    [
        ({"num_iters": -5}, "num_iters"),
        ({"num_epochs": -1}, "num_epochs"),
        ({"lr_decay": -1.0}, "lr_decay"),
        ({"lr_decay": 0.0}, "lr_decay"),
        ({"optim_config": {"learning_rate": -1e-3}}, "learning_rate"),
        ({"optim_config": {"learning_rate": float("inf")}}, "learning_rate"),
        ({"optim_config": {"learning_rate": 1e-3, "momentum": -0.5}}, "momentum"),
        ({"batch_size": 0}, "batch_size"),
        ({"print_every": 0}, "print_every"),
        ({"num_train_samples": 0}, "num_train_samples"),
    ],
)
def test_solver_rejects_bad_lengths_and_signs(options, name):
    with pytest.raises(ValueError, match=name):
        make_solver(separable(), **options)


@pytest.mark.parametrize("reg", [-5.0, float("nan"), float("inf")])
def test_chapter_train_rejects_a_bad_reg(reg):
    data = separable()
    net = FullyConnectedNet(12, [5], 3, seed=0)
    with pytest.raises(ValueError, match="reg"):
        net.train(data["X_train"], data["y_train"], data["X_val"], data["y_val"], reg=reg, num_iters=2)
    assert net.reg == 0.0


# -- 5. resume ----------------------------------------------------------------------------------------------------


def test_extending_a_finished_run_continues_from_its_last_parameters(tmp_path):
    data = separable()
    full = make_solver(data, num_epochs=6)
    full_last = capture_last_params(full)
    full.train()

    first = make_solver(data, num_epochs=3, checkpoint=tmp_path / "ck.npz")
    first.train()
    best_before = host_params(first.model.params)  # train() restores the best parameters into the model
    first.save_checkpoint(tmp_path / "ck.npz")  # what fcn train does at the end
    meta, arrays = saved_meta(tmp_path / "ck.npz")
    assert_same({k[len("best/") :]: v for k, v in arrays.items() if k.startswith("best/")}, best_before)

    extended = make_solver(data, num_epochs=6)
    extended_last = capture_last_params(extended)
    extended.load_checkpoint(tmp_path / "ck.npz")
    extended.train()
    assert extended.loss_history == full.loss_history
    assert extended.val_acc_history == full.val_acc_history
    assert_same(extended_last[-1], full_last[-1])
    assert_same(host_params(extended.model.params), host_params(full.model.params))


def test_training_again_in_process_continues_from_the_last_parameters():
    data = separable()
    full = make_solver(data, num_epochs=6)
    full.train()
    solver = make_solver(data, num_epochs=3)
    solver.train()
    solver.num_iters = 6 * solver.iterations_per_epoch
    solver.train()
    assert solver.loss_history == full.loss_history
    assert_same(host_params(solver.model.params), host_params(full.model.params))


@pytest.mark.parametrize(
    "changed, words",
    [
        ({"optim_config": {"learning_rate": 0.01}}, ["learning_rate", "0.05", "0.01"]),
        ({"update_rule": "adam", "optim_config": {"learning_rate": 0.05}}, ["update_rule", "sgd_momentum", "adam"]),
        ({"lr_decay": 0.5}, ["lr_decay", "0.9", "0.5"]),
    ],
)
def test_resume_with_other_settings_names_them(tmp_path, changed, words):
    data = separable()
    make_solver(data, num_epochs=1, checkpoint=tmp_path / "ck.npz").train()
    other = make_solver(data, **changed)
    before = host_params(other.model.params)
    with pytest.raises(fcn.CheckpointError) as info:
        other.load_checkpoint(tmp_path / "ck.npz")
    for word in words:
        assert word in str(info.value)
    assert_same(host_params(other.model.params), before)


def test_resume_with_another_training_set_size_says_so(tmp_path):
    data = separable()
    make_solver(data, num_epochs=1, checkpoint=tmp_path / "ck.npz").train()
    smaller = make_solver({**data, "X_train": data["X_train"][:200], "y_train": data["y_train"][:200]})
    with pytest.raises(fcn.CheckpointError, match=r"300 training samples.*200"):
        smaller.load_checkpoint(tmp_path / "ck.npz")


# -- 6. Ctrl-C at the worst moment --------------------------------------------------------------------------------


def run_interrupted(tmp_path, monkeypatch, target, attribute, when, *, how="raise"):
    """Train with an interrupt injected once into ``target.attribute`` at call number ``when``, then resume.

    Mirrors ``fcn train``: on KeyboardInterrupt the state is saved if the solver says it is consistent;
    the run is then resumed from the checkpoint by a fresh solver. Returns that solver after training.
    """
    data = separable()
    path = tmp_path / "ck.npz"
    solver = make_solver(data, checkpoint=path)
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
    resumed = make_solver(data)
    if path.exists():
        resumed.load_checkpoint(path)
    last = capture_last_params(resumed)
    resumed.train()
    return resumed, last


@pytest.fixture(scope="module")
def uninterrupted():
    solver = make_solver(separable())
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
    assert_same(host_params(resumed.model.params), host_params(reference.model.params))


# -- 7. checkpoints that do not fit leave everything as it was ------------------------------------------------------


def rewrite_checkpoint(path, *, meta_update=None, arrays_update=None):
    meta, arrays = saved_meta(path)
    meta.update(meta_update or {})
    arrays.update(arrays_update or {})
    np.savez(path, meta=np.asarray(json.dumps(meta)), **arrays)


@pytest.mark.parametrize(
    "breakage",
    [
        {"meta_update": {"rng_state": {"bit_generator": "PCG64", "state": "garbage"}}},
        {"arrays_update": {"order": np.arange(5)}},
        {"arrays_update": {"best/W1": np.zeros((2, 2))}},
        {"arrays_update": {"loss_history": np.zeros((2, 2))}},
    ],
)
def test_a_checkpoint_that_does_not_fit_changes_nothing(tmp_path, breakage):
    data = separable()
    make_solver(data, num_iters=30, checkpoint=tmp_path / "ck.npz").train()
    rewrite_checkpoint(tmp_path / "ck.npz", **breakage)
    solver = make_solver(data)
    solver.train()
    before = (
        host_params(solver.model.params),
        list(solver.loss_history),
        solver.iteration,
        solver.rng.bit_generator.state,
    )
    with pytest.raises(fcn.CheckpointError):
        solver.load_checkpoint(tmp_path / "ck.npz")
    after = (
        host_params(solver.model.params),
        list(solver.loss_history),
        solver.iteration,
        solver.rng.bit_generator.state,
    )
    assert_same(after[0], before[0])
    assert after[1:] == before[1:]


# -- 9. advice that points at the actual cause ------------------------------------------------------------------


def test_empty_training_set_is_named():
    data = separable()
    with pytest.raises(ValueError, match="X_train has no samples"):
        make_solver({**data, "X_train": data["X_train"][:0], "y_train": data["y_train"][:0]})


def test_huge_weight_scale_is_named():
    with pytest.raises(ValueError, match=r"weight_scale=1e\+300.*float32"):
        FullyConnectedNet(12, [5], 3, weight_scale=1e300, dtype="float32")


def test_data_beyond_the_model_dtype_is_named():
    data = separable()
    data["X_train"] = data["X_train"].copy()
    data["X_train"][3, 4] = 1e39
    with pytest.raises(ValueError, match="X_train.*float32"):
        make_solver(data, dtype="float32")


def test_a_loss_that_is_not_finite_before_any_update_does_not_blame_the_learning_rate():
    # the L2 term overflows float32 at the very first step: no update has happened, the learning rate is innocent
    model = FullyConnectedNet(12, [16], 3, weight_scale=1e5, reg=1e30, seed=0, dtype="float32")
    solver = Solver(model, separable(), batch_size=25, num_epochs=1, verbose=False, progress=False)
    with pytest.raises(fcn.TrainingDiverged) as info:
        solver.train()
    message = str(info.value)
    assert "before any update" in message and "learning rate" not in message


def test_divergence_after_updates_still_suggests_the_learning_rate():
    solver = make_solver(separable(), optim_config={"learning_rate": 1e6}, num_epochs=4)
    with pytest.raises(fcn.TrainingDiverged, match="learning rate"):
        solver.train()


# -- 10. public helpers check their arguments ---------------------------------------------------------------------


def test_check_accuracy_refuses_labels_that_do_not_match():
    data = separable()
    solver = make_solver(data)
    with pytest.raises(ValueError, match=r"y must have shape \(100,\)"):
        solver.check_accuracy(data["X_val"], np.array([0]))
    with pytest.raises(ValueError, match="batch_size"):
        solver.check_accuracy(data["X_val"], data["y_val"], batch_size=0)


def test_check_accuracy_moves_host_data_to_a_device_model():
    strict = pytest.importorskip("array_api_strict")
    data = separable()
    device_solver = make_solver(data, backend=fcn.get_backend("array_api_strict", strict.Device("device1")))
    host_solver = make_solver(data)
    expected = host_solver.check_accuracy(data["X_val"], data["y_val"])
    assert device_solver.check_accuracy(data["X_val"], data["y_val"]) == expected
    manual = float(np.mean(np.argmax(host_solver.model.loss(data["X_val"]), axis=1) == data["y_val"]))
    assert expected == manual


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5])
def test_predict_batch_size_is_checked(batch_size):
    net = FullyConnectedNet(12, [5], 3, seed=0)
    with pytest.raises((TypeError, ValueError), match="batch_size"):
        net.predict(np.zeros((4, 12)), batch_size=batch_size)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"hidden_dims": None}, TypeError, "hidden_dims"),
        ({"hidden_dims": [5, 2.5]}, TypeError, "hidden_dims"),
        ({"reg": "0.1"}, TypeError, "reg"),
        ({"weight_scale": None}, TypeError, "weight_scale"),
        ({"dtype": None}, TypeError, "dtype"),
        ({"dtype": "int32"}, TypeError, "dtype"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_model_arguments_are_checked(kwargs, error, name):
    args = {"input_dim": 12, "hidden_dims": [5], "num_classes": 3, **kwargs}
    with pytest.raises(error, match=name):
        FullyConnectedNet(**args)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"batch_size": 2.7}, TypeError, "batch_size"),
        ({"num_epochs": 2.5}, TypeError, "num_epochs"),
        ({"seed": -1}, ValueError, "seed"),
        ({"lr_decay": "0.9"}, TypeError, "lr_decay"),
        ({"optim_config": {"learning_rate": 1e-3, "mometum": 0.9}}, ValueError, "mometum"),
    ],
)
def test_solver_arguments_are_checked(kwargs, error, name):
    with pytest.raises(error, match=name):
        make_solver(separable(), **kwargs)


def test_an_inconsistent_state_is_neither_saved_nor_trained_on(tmp_path, monkeypatch):
    solver = make_solver(separable(), checkpoint=tmp_path / "ck.npz")
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
    with pytest.raises(fcn.CheckpointError, match="middle of a step"):
        solver.save_checkpoint(tmp_path / "ck.npz")
    with pytest.raises(fcn.CheckpointError, match="load the last checkpoint"):
        solver.train()
    assert (tmp_path / "ck.npz").read_bytes() == before
    solver.load_checkpoint(tmp_path / "ck.npz")
    assert solver.consistent and solver.iteration == 12
    solver.train()


def test_loose_loading_applies_this_solvers_settings(tmp_path):
    data = separable()
    make_solver(data, num_epochs=2, checkpoint=tmp_path / "ck.npz").train()
    other = make_solver(data, optim_config={"learning_rate": 0.01}, num_epochs=1)
    with pytest.warns(UserWarning, match=r"learning_rate 0\.05 in the checkpoint, 0\.01 here"):
        other.load_checkpoint(tmp_path / "ck.npz", strict=False)
    assert other.iteration == 24 and other.epoch == 2
    assert other.learning_rate == 0.01 * 0.9**2  # this solver's rate, on the saved run's schedule
    other.num_iters = 36
    other.train()
    assert other.iteration == 36
