"""Checkpoints (fcn/training/checkpoint.py): what a file holds, atomic writes, files of earlier formats and releases
that load and continue, and loading that checks everything before it changes anything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_fixtures import HERE, fixture_data, fixture_net, fixture_solver
from helpers import (
    BlowsUpAt,
    RecordingSoftmax,
    ScaledNet,
    assert_same,
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
    rewrite_checkpoint,
    saved_meta,
    separable,
    small_net_solver,
)

import fcn
from fcn import FullyConnectedNet, Solver
from fcn.modules import Layer
from fcn.training.checkpoint import META_FIELDS

EXPECTED = json.loads((HERE / "expected.json").read_text())


def test_a_checkpoint_of_the_previous_release_continues_as_that_release_did():
    path = HERE / f"checkpoint-{EXPECTED['version']}.npz"
    resumed = fixture_solver(fixture_net(), num_iters=16).load_checkpoint(path)
    assert resumed.iteration == EXPECTED["checkpoint_iteration"]
    resumed.train()
    assert resumed.loss_history == pytest.approx(EXPECTED["resumed_loss_history"], rel=1e-12)
    assert resumed.val_acc_history == EXPECTED["resumed_val_acc_history"]
    assert float(fcn.to_host(resumed.model.params["W1"]).sum()) == pytest.approx(EXPECTED["resumed_W1_sum"], rel=1e-9)


def test_a_finished_cosine_run_can_be_extended(tmp_path: Path):
    """The saved rate of a cosine run's last step is 0: resuming must not take it for a bad base rate."""
    data = fixture_data()
    kwargs = dict(update_rule="adam", optim_config={"learning_rate": 1e-2}, lr_schedule="cosine", batch_size=12,
                  seed=0, verbose=False, progress=False)  # fmt: skip
    first = fcn.Solver(fixture_net(), data, num_iters=8, **kwargs)
    first.train()
    assert first.learning_rate == 0.0
    path = first.save_checkpoint(tmp_path / "ck.npz")
    longer = fcn.Solver(fixture_net(), data, num_iters=12, **kwargs).load_checkpoint(path)
    assert longer.iteration == 8 and longer.learning_rate > 0  # the longer schedule's rate at step 8
    longer.train()
    assert longer.iteration == 12 and np.isfinite(longer.loss_history).all()


@pytest.mark.parametrize("entry", ["params/W1", "best/b1", "buffers/running_var1", "optim/W2/m"])
def test_a_checkpoint_with_nan_values_is_refused_naming_the_file_and_entry(tmp_path: Path, entry):
    def solver():
        net = fcn.FullyConnectedNet(48, [16], 3, normalization="batchnorm", seed=0)
        return fcn.Solver(net, fixture_data(), update_rule="adam", batch_size=12, num_iters=4, verbose=False,
                          progress=False)  # fmt: skip

    first = solver()
    first.train()
    path = first.save_checkpoint(tmp_path / "ck.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[entry] = arrays[entry].copy()
    arrays[entry].flat[0] = np.nan
    np.savez(path, **arrays)
    fresh = solver()
    before = {k: fcn.to_host(v).copy() for k, v in fresh.model.params.items()}
    name = entry.split("/", 1)[1]
    with pytest.raises(fcn.CheckpointError, match=rf"ck\.npz: .*{name} holds NaN or infinite values"):
        fresh.load_checkpoint(path)
    for key, value in before.items():  # nothing was assigned
        np.testing.assert_array_equal(fcn.to_host(fresh.model.params[key]), value)


@pytest.mark.parametrize("meta", ["[" * 100_000 + "]" * 100_000, '["a list"]', '"a string"'])
def test_a_checkpoint_whose_meta_is_not_an_object_is_refused(tmp_path: Path, meta):
    path = tmp_path / "ck.npz"
    np.savez(path, meta=np.asarray(meta))
    solver = fcn.Solver(fixture_net(), fixture_data(), verbose=False, progress=False)
    with pytest.raises(fcn.CheckpointError, match=r"ck\.npz"):
        solver.load_checkpoint(path)


def _pcg64(state):
    return {"bit_generator": "PCG64", "state": {"state": state, "inc": 3}, "has_uint32": 0, "uinteger": 0}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("iteration", "30"), ("iteration", -1), ("iteration", 2.5), ("iteration", True), ("epoch", None),
        ("epoch", 10**6), ("epochs_without_improvement", "1"), ("stopped_early", "no"), ("best_val_acc", "0.5"),
        ("rng_state", "PCG64"), ("rng_state", _pcg64(-1)), ("rng_state", _pcg64(2**200)), ("rng_state", _pcg64(1.5)),
        ("model_rng_state", {"dropout_seed": "x"}), ("model_rng_state", {"seed": 1}), ("model_rng_state", [1]),
        ("optim_config", [0.05]), ("optim_hyper", {"W1": 1}), ("update_rule", ["sgd_momentum"]),
        ("settings", "all"), ("base_learning_rate", "0.05"), ("num_iters", -3), ("batch_size", 0), ("model", 3),
        ("best_val_acc", None), ("optim_config", {"learning_rate": -0.05, "momentum": 0.9}),
        ("optim_config", {"learning_rate": 0.05, "momentum": "0.9"}),
    ],
)  # fmt: skip
def test_a_corrupt_meta_field_is_refused_naming_the_file_and_changes_nothing(tmp_path: Path, field, value):
    """Every field is checked before anything is assigned: no half-restored solver, one error naming file and field."""
    data = separable()
    decaying_solver(data, num_iters=30, checkpoint=tmp_path / "ck.npz").train()
    bad = rewrite_checkpoint(tmp_path / "ck.npz", tmp_path / "bad.npz", meta={field: value})
    solver = decaying_solver(data, num_iters=36)
    solver.train()

    def state():
        return (host_copy(solver.model.params), list(solver.loss_history), solver.iteration, solver.epoch,
                solver.rng.bit_generator.state, solver.model.get_rng_state(), solver.stopped_early)  # fmt: skip

    before = state()
    with pytest.raises(fcn.CheckpointError, match=rf"bad\.npz.*{field}"):
        solver.load_checkpoint(bad)
    after = state()
    assert_same(after[0], before[0])
    assert after[1:] == before[1:]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("iteration", -1, "iteration must be a non-negative integer, got -1"),
        ("epochs_without_improvement", "1", "epochs_without_improvement must be an integer, got '1' (str)"),
        ("stopped_early", "no", "stopped_early must be true or false, got 'no'"),
        ("stopped_early", 0, "stopped_early must be true or false, got 0"),
    ],
)
def test_a_corrupt_meta_field_is_refused_saying_what_is_wrong_with_it(tmp_path: Path, field, value, reason):
    """The message names the file and the field, then the field again with what it must be and what it holds."""
    first = small_net_solver("numpy", separable(80, 6), num_iters=6)
    first.train()
    bad = rewrite_checkpoint(first.save_checkpoint(tmp_path / "ck.npz"), tmp_path / "bad.npz", meta={field: value})
    message = rf"bad\.npz: corrupt {field} in the checkpoint's meta \({re.escape(reason)}\)$"
    with pytest.raises(fcn.CheckpointError, match=message):
        small_net_solver("numpy", separable(80, 6)).load_checkpoint(bad)


@pytest.mark.parametrize("t", ["6", -1])
def test_a_corrupt_step_count_is_refused_when_loading_with_other_settings(tmp_path: Path, t):
    """strict=False keeps Adam's step count ``t`` of the same rule: it is checked as a count (an integer >= 0)."""
    first = small_net_solver("numpy", separable(80, 6), num_iters=6)
    first.train()
    path = first.save_checkpoint(tmp_path / "ck.npz")
    config = {"learning_rate": 1e-2, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": t}
    bad = rewrite_checkpoint(path, tmp_path / "bad.npz", meta={"optim_config": config})
    other = small_net_solver("numpy", separable(80, 6), lr_decay=0.5)
    with pytest.warns(UserWarning, match="lr_decay"), pytest.raises(fcn.CheckpointError, match=r"bad\.npz.*\bt\b"):
        other.load_checkpoint(bad, strict=False)
    assert other.iteration == 0 and other.optim_config.get("t", 0) == 0


# -- what a checkpoint holds ----------------------------------------------------------------------------------------


def test_checkpoint_has_no_pickle(tmp_path):
    solver = make_solver("numpy", separable(), num_epochs=1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        assert "params/W1" in npz.files and "optim/W1/velocity" in npz.files
    assert meta["iteration"] == solver.iteration


def test_a_checkpoints_meta_holds_every_documented_field(tmp_path: Path):
    """Tools read the meta without fcn: every field of META_FIELDS is written, under its own name."""
    solver = small_net_solver("numpy", separable(80, 6), num_iters=7)
    solver.train()
    meta, _ = saved_meta(solver.save_checkpoint(tmp_path / "ck.npz"))
    assert set(meta) == set(META_FIELDS)
    assert (meta["iteration"], meta["epoch"], meta["num_iters"], meta["batch_size"]) == (7, 1, 7, 10)
    assert (meta["update_rule"], meta["base_learning_rate"]) == ("adam", 1e-2)


def test_whole_number_accuracies_are_saved_as_floats_and_resume(tmp_path: Path, monkeypatch):
    """A Solver's own accuracy (here a perfect score, the int 1) goes into the file as a float history."""
    solver = small_net_solver("numpy", separable(80, 6), num_iters=6)
    monkeypatch.setattr(solver, "check_accuracy", lambda X, y, subset=None: 1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    _, arrays = saved_meta(path)
    assert {arrays[key].dtype for key in ("loss_history", "train_acc_history", "val_acc_history")} == {np.dtype(float)}
    resumed = small_net_solver("numpy", separable(80, 6)).load_checkpoint(path)
    assert resumed.train_acc_history == resumed.val_acc_history == [1.0] and resumed.best_val_acc == 1.0


def test_numpy_scalars_in_a_users_config_are_saved_as_numbers(tmp_path):
    def rule(w, dw, config=None):
        config = {} if config is None else config
        config.setdefault("learning_rate", np.float32(0.01))
        config.setdefault("steps", np.int64(0))
        config["steps"] += 1
        return w - float(config["learning_rate"]) * dw, config

    solver = small_net_solver("numpy", separable(80, 6), update_rule=rule, num_iters=3)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    resumed = small_net_solver("numpy", separable(80, 6), update_rule=rule).load_checkpoint(path)
    config = resumed.optim_configs["W1"]
    assert config["steps"] == 3 and config["learning_rate"] == pytest.approx(0.01)


def clipped_sgd(w, dw, config=None):
    """A user's rule with array state of its own: SGD on gradients clipped to a running RMS."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 0.05)
    xp = fcn.namespace_of(w).xp
    if "rms" not in config:
        config["rms"] = xp.ones_like(w)
    config["rms"] = 0.9 * config["rms"] + 0.1 * xp.abs(dw)
    config["steps"] = config.get("steps", 0) + 1
    w -= config["learning_rate"] * xp.clip(dw, -config["rms"], config["rms"])
    return w, config


def test_custom_rule_with_array_state_survives_checkpoint(backend, tmp_path):
    def make(**kw):
        net = FullyConnectedNet(12, [16], 3, weight_scale=0.1, seed=0, backend=backend)
        return model_solver(net, update_rule=clipped_sgd, **kw)

    full = make()
    full.train()
    first = make(num_epochs=2, checkpoint=tmp_path / "c.npz")
    first.train()
    with np.load(tmp_path / "c.npz") as npz:
        assert "optim/W1/rms" in npz.files  # the array went in as state, not into the JSON
    resumed = make()
    resumed.load_checkpoint(tmp_path / "c.npz")
    assert resumed.optim_configs["W1"]["steps"] == first.iteration
    assert fcn.namespace_of(resumed.optim_configs["W1"]["rms"]).name == backend.name
    resumed.train()
    np.testing.assert_allclose(resumed.loss_history, full.loss_history, rtol=1e-10)
    for name, value in full.model.params.items():
        np.testing.assert_allclose(fcn.to_host(resumed.model.params[name]), fcn.to_host(value), rtol=1e-9)


def buffered_net(name="steps1", seed=0):

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
    data = separable(80, 6)
    solver = Solver(buffered_net(), data, **quiet(update_rule="adam", optim_config={"learning_rate": 1e-2},
                                                  batch_size=10, num_epochs=3, lr_decay=0.5))  # fmt: skip
    solver.train()
    best_epoch = 1 + int(np.argmax(solver.val_acc_history))
    assert float(solver.model.buffers["steps1"][0]) == 6 * best_epoch  # restored with the best parameters
    best = {k: np.copy(v) for k, v in solver.best_buffers.items()}
    solver.step()
    assert {k: float(v[0]) for k, v in solver.best_buffers.items()} == {k: float(v[0]) for k, v in best.items()}

    path = solver.save_checkpoint(tmp_path / "ck.npz")
    same = quiet(update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=10, num_epochs=4, lr_decay=0.5)
    resumed = Solver(buffered_net(), data, **same).load_checkpoint(path)
    assert float(resumed.model.buffers["steps1"][0]) == float(solver.model.buffers["steps1"][0])
    assert float(resumed.best_buffers["steps1"][0]) == float(best["steps1"][0])


def test_unseeded_dropout_state_survives_a_checkpoint(tmp_path, rng):
    data = {"X_train": rng.standard_normal((40, 8)), "y_train": rng.integers(3, size=40)}
    data.update(X_val=data["X_train"][:10], y_val=data["y_train"][:10])
    net = FullyConnectedNet(8, [6], 3, dropout_keep_ratio=0.5)
    solver = Solver(net, data, batch_size=10, num_epochs=1, verbose=False, progress=False)
    solver.train()
    solver.save_checkpoint(tmp_path / "ck.npz")
    other = FullyConnectedNet(8, [6], 3, dropout_keep_ratio=0.5)
    assert other.dropout_seed != net.dropout_seed  # fresh entropy each time ...
    Solver(other, data, batch_size=10, num_epochs=1, verbose=False, progress=False).load_checkpoint(tmp_path / "ck.npz")
    assert other.dropout_seed == net.dropout_seed  # ... until restored
    X, y = rng.standard_normal((5, 8)), rng.integers(3, size=5)
    net.set_step(9), other.set_step(9)
    assert float(other.loss(X, y)[0]) == float(net.loss(X, y)[0])


def test_checkpoint_moves_between_backends(backend, tmp_path):
    src = make_solver("numpy", separable(), num_epochs=1)
    src.train()
    src.save_checkpoint(tmp_path / "ck.npz")
    dst = make_solver(backend, separable(), num_epochs=1)
    dst.load_checkpoint(tmp_path / "ck.npz")
    for name, value in src.model.params.items():
        assert fcn.namespace_of(dst.model.params[name]).name == backend.name
        np.testing.assert_array_equal(fcn.to_host(dst.model.params[name]), value)


def test_training_continues_after_a_checkpoint_is_saved(tmp_path):
    """Saving is not a side effect on the run: the same steps follow whether or not a checkpoint was written."""
    data = separable(80, 6)
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


# -- writing --------------------------------------------------------------------------------------------------------


KILLED_MID_WRITE = """
import os, signal, sys, numpy
sys.path[:0] = sys.argv[2:]
from helpers import make_solver, separable
solver = make_solver("numpy", separable(), num_epochs=1)
solver.train()
numpy.savez = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # killed halfway through the write
solver.save_checkpoint(sys.argv[1])
"""


def test_a_checkpoint_write_removes_what_a_writer_killed_mid_write_left(tmp_path: Path):
    """SIGKILL cannot be caught: the killed writer's temporary file stays until the checkpoint is next written."""
    path = tmp_path / "ck.npz"
    tests = Path(__file__).resolve().parents[1]
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(path), str(tests), str(tests.parent)])
    assert killed.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and re.fullmatch(r"\.ck\.npz\.\w{8}\.tmp", left[0])
    not_ours = [".ck.npz.tmp", ".ck.npz.abc.tmp", "ck.npz.abcd1234.tmp", ".ck2.npz.abcd1234.tmp",
                ".ck.npz.abcd1234.tmp.bak", ".other.npz.abcd1234.tmp"]  # fmt: skip
    for name in not_ours:
        (tmp_path / name).write_bytes(b"someone else's")
    (tmp_path / ".ck.npz.folder12.tmp").mkdir()

    solver = make_solver("numpy", separable(), num_epochs=1)
    solver.save_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ck.npz", ".ck.npz.folder12.tmp", *not_ours])
    solver.load_checkpoint(path)


def test_a_leftover_temporary_file_that_cannot_be_removed_does_not_stop_the_write(tmp_path: Path, monkeypatch):
    """Tidying up is best effort: a killed writer's file that the system will not let us remove (another user's,
    in a sticky folder) stays, and the checkpoint is still written."""
    leftover = tmp_path / ".ck.npz.abcd1234.tmp"
    leftover.write_bytes(b"a killed writer's")
    unlink = Path.unlink

    def refuse(self, missing_ok=False):
        if self.name == leftover.name:
            raise PermissionError(1, "Operation not permitted", str(self))
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    solver = make_solver("numpy", separable(), num_epochs=1)
    solver.save_checkpoint(tmp_path / "ck.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [leftover.name, "ck.npz"]
    assert make_solver("numpy", separable(), num_epochs=1).load_checkpoint(tmp_path / "ck.npz").iteration == 0


def test_a_checkpoint_write_leaves_a_temporary_file_that_is_being_written(tmp_path: Path):
    """Another writer of the same file holds a lock on its temporary file while it writes: not a leftover."""
    fcntl = pytest.importorskip("fcntl")
    live = tmp_path / ".ck.npz.abcd1234.tmp"
    with open(live, "wb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        make_solver("numpy", separable(), num_epochs=1).save_checkpoint(tmp_path / "ck.npz")
        assert live.exists()
    make_solver("numpy", separable(), num_epochs=1).save_checkpoint(tmp_path / "ck.npz")
    assert not live.exists()


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


def test_checkpoint_into_new_folders_written_next_to_its_target(tmp_path, monkeypatch):

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


def test_a_config_that_json_cannot_hold_is_refused_without_writing(tmp_path):
    def rule(w, dw, config=None):
        config = {} if config is None else config
        config.setdefault("schedule", object())  # neither an array nor a number or string
        return w - 1e-3 * dw, config

    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(update_rule=rule, batch_size=10, num_iters=1))
    solver.train()
    with pytest.raises(fcn.CheckpointError, match=r"cannot save the optimiser's configuration \(.*\): an update "
                       r"rule's config may hold arrays \(saved as state\) and numbers or strings \(saved as "
                       r"hyperparameters\), nothing else$"):  # fmt: skip
        solver.save_checkpoint(tmp_path / "ck.npz")
    assert list(tmp_path.iterdir()) == []


def test_divergence_found_when_saving_a_checkpoint(tmp_path):
    solver = Solver(BlowsUpAt(1, np.inf), id_data(60), **quiet(batch_size=10, num_epochs=2))
    solver.step()
    solver.step()
    with pytest.raises(fcn.TrainingDiverged):
        solver.save_checkpoint(tmp_path / "ck.npz")


# -- files of earlier formats ---------------------------------------------------------------------------------------


def test_a_checkpoint_in_the_first_format_still_loads(tmp_path):
    solver = small_net_solver("numpy", separable(80, 6), num_iters=6)
    solver.train()
    path = rewrite_checkpoint(
        solver.save_checkpoint(tmp_path / "ck.npz"), tmp_path / "v1.npz", meta={"format": "fcn-checkpoint-1"}
    )
    resumed = small_net_solver("numpy", separable(80, 6)).load_checkpoint(path)
    assert resumed.iteration == 6 and resumed.loss_history == solver.loss_history


def test_a_first_format_checkpoint_of_a_builtin_rule_keeps_its_hyperparameters(tmp_path):
    solver = small_net_solver("numpy", separable(80, 6), num_iters=6)
    solver.train()
    old_hyper = {
        n: {"learning_rate": 0.5, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 6} for n in solver.model.params
    }
    path = rewrite_checkpoint(
        solver.save_checkpoint(tmp_path / "ck.npz"),
        tmp_path / "v1.npz",
        meta={"format": "fcn-checkpoint-1", "optim_config": None, "optim_hyper": old_hyper},
    )
    resumed = small_net_solver("numpy", separable(80, 6)).load_checkpoint(path)
    assert resumed.learning_rate == 0.5


def test_a_checkpoint_from_before_schedules_continues_its_decayed_rate(tmp_path):
    """Checkpoints of format 1 and 2 kept only the current, already decayed rate: the decay continues from it."""
    kwargs = dict(update_rule="sgd", optim_config={"learning_rate": 0.4}, lr_schedule="step", lr_decay=0.5,
                  warmup_epochs=0, augment=None, clip_grad_norm=None)  # fmt: skip
    solver = recipe_solver(recipe_net(normalization=None, dropout_keep_ratio=1.0), image_data(), num_epochs=2, **kwargs)
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
    resumed = recipe_solver(
        recipe_net(normalization=None, dropout_keep_ratio=1.0), image_data(), num_epochs=3, **kwargs
    )
    resumed.load_checkpoint(tmp_path / "old.npz")
    assert resumed.learning_rate == 0.3
    assert resumed.stopped_early is False and resumed.epochs_without_improvement == 0  # not recorded then
    resumed.train()
    assert resumed.learning_rate == 0.3 * 0.5  # one more epoch, one more decay


def test_a_checkpoint_names_the_models_class_and_a_meta_that_is_not_json_names_the_error(tmp_path: Path):
    solver = make_solver("numpy", separable(), num_iters=2)
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    with np.load(path, allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"]))["model"] == "FullyConnectedNet"
    np.savez(tmp_path / "bad.npz", meta=np.asarray("{not json"))
    with pytest.raises(fcn.CheckpointError, match=r"bad\.npz is not a readable fcn checkpoint \(JSONDecodeError: "):
        solver.load_checkpoint(tmp_path / "bad.npz")


def test_a_first_format_checkpoint_without_settings_still_refuses_another_training_set(tmp_path: Path):
    """The first format recorded no settings: the training set's size is read from the saved batch order."""
    data = separable()
    decaying_solver(data, num_epochs=1, checkpoint=tmp_path / "ck.npz").train()
    path = rewrite_checkpoint(tmp_path / "ck.npz", tmp_path / "v1.npz", drop_meta=["settings"])
    smaller = decaying_solver({**data, "X_train": data["X_train"][:200], "y_train": data["y_train"][:200]})
    with pytest.raises(fcn.CheckpointError, match=r"\(300 training samples in the checkpoint, 200 here\)"):
        smaller.load_checkpoint(path)


def test_a_checkpoint_past_the_runs_length_says_how_to_continue(tmp_path: Path):
    data = separable()
    decaying_solver(data, num_iters=30, checkpoint=tmp_path / "ck.npz").train()
    with pytest.raises(fcn.CheckpointError, match=r"ck\.npz is at iteration 30, past this run's length of 12 "
                       r"iterations; ask for more iterations \(or epochs\) to continue it$"):  # fmt: skip
        decaying_solver(data, num_iters=12).load_checkpoint(tmp_path / "ck.npz")


def test_a_checkpoint_without_saved_hyperparameters_is_refused(tmp_path: Path):
    first = small_net_solver("numpy", separable(80, 6), num_iters=6)
    first.train()
    path = rewrite_checkpoint(first.save_checkpoint(tmp_path / "ck.npz"), tmp_path / "bad.npz",
                              meta={"optim_config": None}, drop_meta=["optim_hyper"])  # fmt: skip
    with pytest.raises(fcn.CheckpointError, match=r"bad\.npz: no saved hyperparameters of update rule adam"):
        small_net_solver("numpy", separable(80, 6)).load_checkpoint(path)


def test_the_saved_rate_is_not_needed_the_schedule_gives_the_rate_of_the_saved_step(tmp_path: Path):
    first = small_net_solver("numpy", separable(80, 6), num_iters=12)
    first.train()
    meta_config = {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 12}  # no learning_rate
    path = rewrite_checkpoint(first.save_checkpoint(tmp_path / "ck.npz"), tmp_path / "v.npz",
                              meta={"optim_config": meta_config})  # fmt: skip
    resumed = small_net_solver("numpy", separable(80, 6)).load_checkpoint(path)
    assert resumed.learning_rate == first.learning_rate == 1e-2 * 0.9 * 0.9


# -- loading a checkpoint of other settings (strict=False) ----------------------------------------------------------


def test_loose_loading_of_the_same_rule_continues_its_state_with_this_solvers_hyperparameters(tmp_path: Path):
    data = separable(80, 6)
    first = small_net_solver("numpy", data, num_iters=6)
    first.train()
    path = first.save_checkpoint(tmp_path / "ck.npz")
    other = small_net_solver("numpy", data, optim_config={"learning_rate": 1e-2, "beta1": 0.5})
    with pytest.warns(UserWarning, match=r"beta1 0\.9 in the checkpoint, 0\.5 here"):
        other.load_checkpoint(path, strict=False)
    assert other.optim_config["beta1"] == 0.5 and other.optim_config["t"] == 6  # Adam's step count continues
    for name, state in first.optim_state.items():
        assert_same(host_copy(other.optim_state[name]), host_copy(state))


def test_loose_loading_of_another_rule_starts_this_rules_state_afresh(tmp_path: Path):
    data = separable()
    decaying_solver(data, num_epochs=1, checkpoint=tmp_path / "ck.npz").train()  # momentum SGD: a velocity each
    adam = decaying_solver(data, update_rule="adam", optim_config={"learning_rate": 1e-3}, num_epochs=2)
    with pytest.warns(UserWarning, match="update_rule 'sgd_momentum' in the checkpoint, 'adam' here"):
        adam.load_checkpoint(tmp_path / "ck.npz", strict=False)
    assert adam.optim_state == {} and adam.optim_config["t"] == 0
    adam.train()
    assert set(adam.optim_state["W1"]) == {"m", "v"} and adam.optim_config["t"] == 12


@pytest.mark.parametrize("saved_rule", ["sgd_momentum", clipped_sgd], ids=["builtin", "users"])
def test_loose_loading_of_another_rules_checkpoint_gives_a_users_rule_its_own_config(tmp_path: Path, saved_rule):
    """What the other rule kept in its config (clipped_sgd's ``steps`` and ``rms``) is not handed to this one."""
    data = separable()
    decaying_solver(data, update_rule=saved_rule, num_epochs=1, checkpoint=tmp_path / "ck.npz").train()
    users = decaying_solver(data, update_rule=heavy_ball, optim_config={"learning_rate": 0.02, "mu": 0.3},
                            num_epochs=2)  # fmt: skip
    with pytest.warns(UserWarning, match="update_rule"):
        users.load_checkpoint(tmp_path / "ck.npz", strict=False)
    rate = 0.02 * 0.9  # one epoch's decay, from this solver's rate
    assert users.optim_configs == {name: {"learning_rate": rate, "mu": 0.3} for name in users.model.params}


@pytest.mark.parametrize("saved_val, resumed_val", [(20, 0), (0, 20)])
def test_loose_loading_across_a_validation_set_starts_the_best_accuracy_as_a_new_run_does(
    tmp_path: Path, saved_val, resumed_val
):
    """A best accuracy means nothing for another validation set: 0.0 with one, None without one, as for a fresh
    solver; training then continues and the next evaluation sets it."""
    data = separable(80, 6)  # 60 training samples, 20 for validation

    def solver(num_val, **options):
        return small_net_solver("numpy", {**data, "X_val": data["X_val"][:num_val], "y_val": data["y_val"][:num_val]},
                                **options)  # fmt: skip

    first = solver(saved_val, num_iters=6)
    first.train()
    path = first.save_checkpoint(tmp_path / "ck.npz")
    other = solver(resumed_val, num_iters=12)
    fresh = other.best_val_acc
    with pytest.warns(UserWarning, match=rf"other settings \({saved_val} validation samples in the checkpoint, "
                      rf"{resumed_val} here\)"):  # fmt: skip
        other.load_checkpoint(path, strict=False)
    assert other.best_val_acc == fresh and (fresh is None) == (resumed_val == 0)
    other.train()
    assert other.best_val_acc == (max(other.val_acc_history) if resumed_val else None)


def test_a_checkpoint_that_does_not_name_its_rule_is_taken_for_this_solvers(tmp_path: Path):
    data = separable(80, 6)
    first = small_net_solver("numpy", data, num_iters=6)
    first.train()
    path = rewrite_checkpoint(first.save_checkpoint(tmp_path / "ck.npz"), tmp_path / "old.npz",
                              drop_meta=["update_rule"])  # fmt: skip
    resumed = small_net_solver("numpy", data).load_checkpoint(path)
    for name, state in first.optim_state.items():
        assert_same(host_copy(resumed.optim_state[name]), host_copy(state))


def test_loose_loading_into_another_dtype_converts_the_optimiser_state_too(tmp_path: Path):
    data = separable(80, 6)
    first = small_net_solver("numpy", data, num_iters=6)
    first.train()
    path = first.save_checkpoint(tmp_path / "ck.npz")
    single = small_net_solver("numpy", data, dtype="float32")
    with pytest.warns(UserWarning, match="dtype 'float64' in the checkpoint, 'float32' here"):
        single.load_checkpoint(path, strict=False)
    assert {str(a.dtype) for s in single.optim_state.values() for a in s.values()} == {"float32"}
    assert {str(p.dtype) for p in single.model.params.values()} == {"float32"}


def test_loose_loading_names_every_difference_in_one_warning(tmp_path: Path):
    data = separable()
    decaying_solver(data, num_epochs=1, checkpoint=tmp_path / "ck.npz").train()
    other = decaying_solver(data, lr_decay=0.5, seed=4)
    with pytest.warns(UserWarning, match=r"other settings \(lr_decay 0\.9 in the checkpoint, 0\.5 here; seed "):
        other.load_checkpoint(tmp_path / "ck.npz", strict=False)


# -- loading checks everything before it changes anything -----------------------------------------------------------


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


def test_damaged_checkpoints_are_refused_with_the_reason(tmp_path):
    solver = small_net_solver("numpy", separable(80, 6), num_iters=6)
    solver.train()
    good = solver.save_checkpoint(tmp_path / "ck.npz")
    fresh = small_net_solver("numpy", separable(80, 6))
    cases = [
        ({"drop": ["loss_history"]}, r"is not a complete fcn checkpoint \(KeyError"),
        ({"meta": {"format": "other-format"}}, r"unknown checkpoint format 'other-format'"),
        ({"meta": {"best_val_acc": float("nan")}}, r"corrupt best_val_acc"),
        ({"arrays": {"optim/W9/m": np.zeros(3)}}, r"optimiser state for unknown parameter 'W9'"),
    ]
    for i, (change, message) in enumerate(cases):
        bad = rewrite_checkpoint(good, tmp_path / f"bad{i}.npz", **change)
        with pytest.raises(fcn.CheckpointError, match=message):
            fresh.load_checkpoint(bad)
        assert fresh.iteration == 0 and fresh.loss_history == []


@pytest.mark.parametrize("drop", ["params/", "best/W1"])
def test_a_checkpoint_missing_parameters_is_refused(tmp_path, drop):
    solver = small_net_solver("numpy", separable(80, 6), num_iters=6)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith(drop)}
    np.savez(tmp_path / "cut.npz", **arrays)
    fresh = small_net_solver("numpy", separable(80, 6))
    before = {k: v.copy() for k, v in fresh.model.params.items()}
    with pytest.raises(fcn.CheckpointError, match="holds .*parameters"):
        fresh.load_checkpoint(tmp_path / "cut.npz")
    for name, value in before.items():
        np.testing.assert_array_equal(fresh.model.params[name], value)


def test_a_checkpoint_with_other_buffers_is_refused(tmp_path):
    data = separable(80, 6)
    solver = Solver(buffered_net(), data, **quiet(batch_size=10, num_iters=2))
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    other = Solver(buffered_net(name="seen1"), data, **quiet(batch_size=10))
    with pytest.raises(fcn.CheckpointError, match=r"holds buffers \['steps1'\], but the model has \['seen1'\]"):
        other.load_checkpoint(path)


def test_batch_size_mismatch_message_in_full(tmp_path):
    solver = small_net_solver("numpy", separable(80, 6), num_iters=2)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "ck.npz")
    with pytest.raises(fcn.CheckpointError, match=r"\(batch_size 10 in the checkpoint, 20 here\)\. Resume with the "
                       r"saved settings, or start a new run$"):  # fmt: skip
        small_net_solver("numpy", separable(80, 6), batch_size=20).load_checkpoint(path)


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
    decaying_solver(data, num_epochs=1, checkpoint=tmp_path / "ck.npz").train()
    other = decaying_solver(data, **changed)
    before = host_copy(other.model.params)
    with pytest.raises(fcn.CheckpointError) as info:
        other.load_checkpoint(tmp_path / "ck.npz")
    for word in words:
        assert word in str(info.value)
    assert_same(host_copy(other.model.params), before)


@pytest.mark.parametrize(
    ("saved", "resumed", "message"),
    [
        ({}, {"dtype": "float32"}, "dtype 'float64' in the checkpoint, 'float32' here"),
        ({}, {"dropout_keep_ratio": 0.5}, "dropout_keep_ratio 1.0 in the checkpoint, 0.5 here"),
        ({}, {"reg": 0.1}, "reg 0.0 in the checkpoint, 0.1 here"),
        ({}, {"model": fcn.ShallowLayerNet}, "model 'FullyConnectedNet' in the checkpoint, 'ShallowLayerNet' here"),
    ],
)
def test_resume_with_another_model_setting_names_it(tmp_path: Path, saved, resumed, message):
    def solver(model=FullyConnectedNet, **options):
        dims = {"hidden_dim": 8} if model is fcn.ShallowLayerNet else {"hidden_dims": [8]}
        net = model(12, num_classes=3, weight_scale=0.1, seed=0, **dims, **options)
        return make_solver(None, separable(), model=net, num_iters=6)

    first = solver(**saved)
    first.train()
    path = first.save_checkpoint(tmp_path / "ck.npz")
    other = solver(**resumed)
    before = host_copy(other.model.params)
    with pytest.raises(fcn.CheckpointError, match=rf"ck\.npz.*\({re.escape(message)}\)"):
        other.load_checkpoint(path)
    assert_same(host_copy(other.model.params), before)


def test_resume_with_another_training_set_size_says_so(tmp_path):
    data = separable()
    decaying_solver(data, num_epochs=1, checkpoint=tmp_path / "ck.npz").train()
    smaller = decaying_solver({**data, "X_train": data["X_train"][:200], "y_train": data["y_train"][:200]})
    with pytest.raises(fcn.CheckpointError, match=r"300 training samples.*200"):
        smaller.load_checkpoint(tmp_path / "ck.npz")


def test_a_checkpoint_that_does_not_fit_leaves_the_solver_as_it_was(tmp_path):
    data = separable(80, 6)
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


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ({"meta": {"rng_state": {"bit_generator": "PCG64", "state": "garbage"}}},
         "corrupt rng_state, not a state of the batch generator"),
        ({"arrays": {"order": np.arange(5)}},
         "the saved batch order is not a permutation of this run's 300 training samples"),
        ({"arrays": {"best/W1": np.zeros((2, 2))}}, "best parameter W1 has shape (2, 2), the model's is (12, 16)"),
        ({"arrays": {"loss_history": np.zeros((2, 2))}}, "loss_history must be a 1-D float array, got float64 (2, 2)"),
    ],
)  # fmt: skip
def test_a_checkpoint_that_does_not_fit_changes_nothing(tmp_path, breakage, message):
    data = separable()
    decaying_solver(data, num_iters=30, checkpoint=tmp_path / "ck.npz").train()
    rewrite_checkpoint(tmp_path / "ck.npz", **breakage)
    solver = decaying_solver(data)
    solver.train()
    before = (
        host_copy(solver.model.params),
        list(solver.loss_history),
        solver.iteration,
        solver.rng.bit_generator.state,
    )
    with pytest.raises(fcn.CheckpointError, match=rf"ck\.npz: {re.escape(message)}"):
        solver.load_checkpoint(tmp_path / "ck.npz")
    after = (
        host_copy(solver.model.params),
        list(solver.loss_history),
        solver.iteration,
        solver.rng.bit_generator.state,
    )
    assert_same(after[0], before[0])
    assert after[1:] == before[1:]


def test_failed_load_leaves_the_solver_as_it_was(tmp_path):
    solver = model_solver(ScaledNet(12, [16], 3, seed=0), num_epochs=1)
    solver.train()
    path = solver.save_checkpoint(tmp_path / "c.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["best_buffers/seen1"] = np.zeros(5)  # a wrong shape, after the parameters in the file
    np.savez(tmp_path / "bad.npz", **arrays)
    other = model_solver(ScaledNet(12, [16], 3, seed=1), num_epochs=1)
    before = {k: np.copy(v) for k, v in other.model.params.items()}
    with pytest.raises(fcn.CheckpointError, match="best buffer seen1 has shape"):
        other.load_checkpoint(tmp_path / "bad.npz")
    for name, value in before.items():
        np.testing.assert_array_equal(other.model.params[name], value)
    assert other.iteration == 0


def test_loose_loading_applies_this_solvers_settings(tmp_path):
    data = separable()
    decaying_solver(data, num_epochs=2, checkpoint=tmp_path / "ck.npz").train()
    other = decaying_solver(data, optim_config={"learning_rate": 0.01}, num_epochs=1)
    with pytest.warns(UserWarning, match=r"learning_rate 0\.05 in the checkpoint, 0\.01 here"):
        other.load_checkpoint(tmp_path / "ck.npz", strict=False)
    assert other.iteration == 24 and other.epoch == 2
    assert other.learning_rate == 0.01 * 0.9**2  # this solver's rate, on the saved run's schedule
    other.num_iters = 36
    other.train()
    assert other.iteration == 36


def _edit(path: Path, change) -> Path:
    """Rewrite a checkpoint with ``change(arrays, meta)`` applied (meta as a dict)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(arrays, meta)
    np.savez(path, meta=np.asarray(json.dumps(meta)), **arrays)
    return path


def _bn_solver(**kw):
    net = fcn.FullyConnectedNet(48, [16], 3, normalization="batchnorm", seed=0)
    options = dict(update_rule="adam", batch_size=12, num_iters=4, verbose=False, progress=False)
    return fcn.Solver(net, fixture_data(), **{**options, **kw})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, m: [a.pop(k) for k in list(a) if k.startswith("buffers/")],
         r"holds buffers \[\], but the model has \['running_mean1', 'running_var1'\]"),
        (lambda a, m: a.update(loss_history=a["loss_history"][:-1]), r"3 losses recorded for 4 iterations"),
        (lambda a, m: a.update({"params/W1": np.full(a["params/W1"].shape, "x")}), r"parameter W1 has dtype <U1"),
    ],
    ids=["buffers-missing", "history-length", "text-array"],
)  # fmt: skip
def test_a_damaged_checkpoint_is_refused_with_what_is_wrong(tmp_path: Path, change, message):
    first = _bn_solver()
    first.train()
    path = _edit(first.save_checkpoint(tmp_path / "ck.npz"), change)
    with pytest.raises(fcn.CheckpointError, match=rf"ck\.npz.*{message}"):
        _bn_solver().load_checkpoint(path)


def _drop(prefix):
    return lambda a, m: [a.pop(k) for k in list(a) if k.startswith(prefix)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, m: a.update({"optim/W1/m": np.zeros(3)}),
         r"optimiser state W1/m of shape \(3,\), but parameter W1 has shape \(48, 16\)"),
        (lambda a, m: a.update({"optim/b1/m": np.zeros((16, 1))}), r"optimiser state b1/m of shape \(16, 1\)"),
        (_drop("optim/W1/v"), r"optimiser state \['m'\] for parameter 'W1', but adam keeps \['m', 'v'\]"),
        (_drop("optim/b2/"), r"optimiser state \[\] for parameter 'b2'"),
        (_drop("optim/"), r"optimiser state \[\] for parameter"),
        (lambda a, m: a.update({"optim/W1/velocity": np.zeros((48, 16))}), r"\['m', 'v', 'velocity'\]"),
        (lambda a, m: a.update({"optim/W2/v": np.full(a["optim/W2/v"].shape, np.inf)}),
         r"optimiser state W2/v holds NaN or infinite values"),
        (lambda a, m: a.update({"params/gamma1": np.full(a["params/gamma1"].shape, -np.inf)}),
         r"parameter gamma1 holds NaN or infinite values"),
    ],
    ids=["shape", "shape-2d", "key-missing", "parameter-missing", "all-missing", "extra-key", "inf-state", "inf-param"],
)  # fmt: skip
def test_optimiser_state_that_does_not_fit_the_parameters_is_refused(tmp_path: Path, change, message):
    """A built-in rule's state must be there for every parameter, with the rule's arrays of the parameter's
    shape, all finite: else the rule would fail or restart its moments in the middle of the run."""
    first = _bn_solver()
    first.train()
    path = _edit(first.save_checkpoint(tmp_path / "ck.npz"), change)
    fresh = _bn_solver()
    before = host_copy(fresh.model.params)
    with pytest.raises(fcn.CheckpointError, match=rf"ck\.npz.*{message}"):
        fresh.load_checkpoint(path)
    assert_same(host_copy(fresh.model.params), before)
    assert fresh.iteration == 0 and fresh.optim_state == {}


def test_a_checkpoint_from_before_the_first_step_has_no_optimiser_state_and_loads(tmp_path: Path):
    path = _bn_solver(num_iters=0).save_checkpoint(tmp_path / "ck.npz")
    resumed = _bn_solver().load_checkpoint(path)
    resumed.train()
    assert resumed.iteration == 4 and set(resumed.optim_state["W1"]) == {"m", "v"}


def test_a_checkpoint_without_recorded_settings_still_refuses_another_batch_size(tmp_path: Path):
    """The first format recorded no settings, only the batch size and the order: both are still compared."""
    first = _bn_solver()
    first.train()
    path = _edit(first.save_checkpoint(tmp_path / "ck.npz"), lambda a, m: m.pop("settings"))
    with pytest.raises(fcn.CheckpointError, match=r"batch_size 12 in the checkpoint, 6 here"):
        _bn_solver(batch_size=6).load_checkpoint(path)
    _bn_solver().load_checkpoint(path)  # the same batch size resumes


def test_dropout_masks_continue_when_the_models_seed_was_drawn_fresh(tmp_path: Path):
    """A net built without a seed draws its dropout seed from fresh entropy; the checkpoint carries it."""

    def solver():
        net = fcn.FullyConnectedNet(48, [16], 3, dropout_keep_ratio=0.5, weight_scale="he", seed=None)
        net.params.update({k: np.full(v.shape, 0.05) for k, v in net.params.items()})  # same weights, other masks
        return fcn.Solver(net, fixture_data(), update_rule="sgd", batch_size=12, num_iters=8, seed=0,
                          verbose=False, progress=False)  # fmt: skip

    reference = solver()
    reference.train()
    cut = solver()
    cut.model.set_rng_state(reference.model.get_rng_state())  # the reference run's masks up to the cut
    cut.num_iters = 4
    cut.train()
    path = cut.save_checkpoint(tmp_path / "ck.npz")
    resumed = solver().load_checkpoint(path)
    resumed.train()
    assert resumed.loss_history == reference.loss_history
