"""The checkpoint format (fcn/training/checkpoint.py): files written by earlier releases load and continue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_fixtures import HERE, fixture_data, fixture_net, fixture_solver

import fcn

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
