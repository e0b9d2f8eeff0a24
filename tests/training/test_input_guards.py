"""Runs that would train without complaint but silently wrong are refused up front or at the first step."""

from __future__ import annotations

import pytest
from fixtures.make_fixtures import fixture_data

import fcn


def quiet(**kw):
    return dict(verbose=False, progress=False, **kw)


def test_augmentation_refuses_channels_last_images():
    data = fixture_data()
    for key in ("X_train", "X_val"):  # 8 x 2 pixels of 3 channels, channels last
        data[key] = data[key].reshape(len(data[key]), 8, 2, 3)
    net = fcn.FullyConnectedNet(48, [8], 3, seed=0)
    with pytest.raises(ValueError, match=r"channels-first images .* channels-last shape \(48, 8, 2, 3\)"):
        fcn.Solver(net, data, augment="flip", **quiet())
    fcn.Solver(net, data, augment=None, **quiet())  # without augmentation the layout does not matter


def test_batchnorm_refuses_batches_of_one_sample():
    net = fcn.FullyConnectedNet(48, [8], 3, normalization="batchnorm", seed=0)
    solver = fcn.Solver(net, fixture_data(), batch_size=1, num_iters=2, **quiet())
    with pytest.raises(ValueError, match="batch normalization needs at least 2 samples per training batch, got 1"):
        solver.train()
    assert solver.iteration == 0  # not a single step with zero gradients


def test_patience_without_a_validation_set_is_refused():
    data = fixture_data()
    data["X_val"], data["y_val"] = data["X_val"][:0], data["y_val"][:0]
    net = fcn.FullyConnectedNet(48, [8], 3, seed=0)
    with pytest.raises(
        ValueError, match="^patience needs a validation set: early stopping watches the validation accuracy$"
    ):
        fcn.Solver(net, data, patience=1, **quiet())
