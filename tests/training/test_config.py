"""The training settings (fcn/training/config.py): bad values are refused naming themselves, defaults, the names
recorded for an update rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import (
    RecordingSoftmax,
    decaying_solver,
    heavy_ball,
    id_data,
    image_data,
    quiet,
    recipe_net,
    recipe_solver,
    separable,
    small_net_solver,
)

from fcn import Solver
from fcn.factory import model_fields
from fcn.training import TrainConfig
from fcn.training.config import RESUME_SETTINGS, RUN_SETTINGS, setting_differences, setting_fields


@pytest.mark.parametrize(
    "options, error, name",
    [
        ({"num_iters": -5}, ValueError, "num_iters"),
        ({"num_epochs": -1}, ValueError, "num_epochs"),
        ({"num_epochs": 2.5}, TypeError, "num_epochs"),
        ({"lr_decay": -1.0}, ValueError, "lr_decay"),
        ({"lr_decay": 0.0}, ValueError, "lr_decay"),
        ({"lr_decay": "0.9"}, TypeError, "lr_decay"),
        ({"optim_config": {"learning_rate": -1e-3}}, ValueError, "learning_rate"),
        ({"optim_config": {"learning_rate": float("inf")}}, ValueError, "learning_rate"),
        ({"optim_config": {"learning_rate": 1e-3, "momentum": -0.5}}, ValueError, "momentum"),
        ({"optim_config": {"learning_rate": 1e-3, "mometum": 0.9}}, ValueError, "mometum"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.7}, TypeError, "batch_size"),
        ({"print_every": 0}, ValueError, "print_every"),
        ({"num_train_samples": 0}, ValueError, "num_train_samples"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_settings_are_refused_naming_themselves(options, error, name):
    with pytest.raises(error, match=name):
        decaying_solver(separable(), **options)


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
        recipe_solver(recipe_net(), image_data(), **kwargs)


def test_an_unknown_optim_config_key_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown optim_config key.*'momentum'.*learning_rate"):
        small_net_solver("numpy", separable(80, 6), update_rule="adam", optim_config={"momentum": 0.9})


def test_solver_defaults_and_recorded_names(tmp_path):
    data = id_data(60)
    solver = Solver(RecordingSoftmax(4, 3), data, batch_size=10, verbose=False, progress=False)
    assert solver.num_iters == 10 * 6  # num_epochs defaults to 10

    def named(rule, expected):
        s = Solver(RecordingSoftmax(4, 3), data, **quiet(update_rule=rule, batch_size=10, num_iters=1))
        s.train()
        with np.load(s.save_checkpoint(tmp_path / "ck.npz"), allow_pickle=False) as npz:
            assert json.loads(str(npz["meta"]))["update_rule"] == expected

    named("adam", "adam")
    named(heavy_ball, "heavy_ball")


def test_a_rule_without_a_name_is_accepted(tmp_path):
    import functools

    rule = functools.partial(heavy_ball)  # a callable with no __name__
    solver = Solver(RecordingSoftmax(4, 3), id_data(20), **quiet(update_rule=rule, batch_size=10, num_iters=2))
    solver.train()
    with np.load(solver.save_checkpoint(tmp_path / "ck.npz"), allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"]))["update_rule"] == ""


def test_augmentation_off_keeps_the_chapters_run():
    """No new option on: the same steps as a Solver that never heard of them."""
    data = image_data()
    net_a, net_b = (
        recipe_net(dropout_keep_ratio=1.0, normalization=None),
        recipe_net(dropout_keep_ratio=1.0, normalization=None),
    )
    base = dict(update_rule="sgd", optim_config={"learning_rate": 0.05}, lr_decay=0.9, batch_size=15, num_epochs=3)
    a = Solver(net_a, data, verbose=False, progress=False, seed=1, **base)
    b = Solver(net_b, data, verbose=False, progress=False, seed=1, augment=None, lr_schedule="step",
               warmup_epochs=0, patience=None, clip_grad_norm=None, **base)  # fmt: skip
    a.train(), b.train()
    assert a.loss_history == b.loss_history


def test_a_checkpoint_records_every_compared_setting_and_each_model_setting_is_decided():
    """The compared settings are TrainConfig's resume-marked fields plus RUN_SETTINGS, and a Solver records all
    of them. A model setting is compared unless the saved arrays decide it (sizes, normalization layers) or it
    cannot change a resumed run (the initialisation, the backend): a new ModelConfig field fails here until
    that is decided."""
    solver = decaying_solver(separable())
    assert list(solver.settings()) == list(RESUME_SETTINGS)
    resume_fields = {f.name for f in setting_fields() if f.metadata["resume"]}
    assert set(RESUME_SETTINGS) == resume_fields | set(RUN_SETTINGS)
    assert {f.name for f in model_fields()} - set(RESUME_SETTINGS) == {"hidden_dims", "normalization",
                                                                       "weight_scale", "backend"}  # fmt: skip


@pytest.mark.parametrize("options", [{"num_epochs": 0}, {"num_train_samples": 1}, {"lr_decay": 1.5}])
def test_boundary_settings_are_accepted(options):
    config = TrainConfig(**options)
    assert all(getattr(config, k) == v for k, v in options.items())


def test_a_bad_seed_names_the_seed_setting():
    with pytest.raises(ValueError, match=r"^seed must"):
        TrainConfig(seed=-1)


def test_to_json_writes_the_checkpoint_path_as_text_and_from_json_reads_it_back(tmp_path):
    config = TrainConfig(checkpoint=tmp_path / "run.npz", optim_config={"learning_rate": 0.5})
    values = config.to_json()
    assert values["checkpoint"] == str(tmp_path / "run.npz")
    assert values["optim_config"]["learning_rate"] == 0.5
    assert TrainConfig.from_json(json.loads(json.dumps(values))).to_json() == values


def test_from_json_refuses_unknown_keys_naming_them():
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) 'bogus', 'zeta'"):
        TrainConfig.from_json({"batch_size": 5, "zeta": 1, "bogus": 2})


def test_replace_applies_and_checks_the_changes():
    assert TrainConfig().replace(batch_size=7).batch_size == 7
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig().replace(batch_size=0)


def test_a_built_in_rule_is_completed_with_its_defaults():
    assert TrainConfig(update_rule="sgd_momentum", optim_config={"learning_rate": 0.1}).optim_config["momentum"] == 0.9


@pytest.mark.parametrize(
    "given, expected",
    [
        (
            {"update_rule": "sgd", "optim_config": {"learning_rate": 0.2, "momentum": 0.9}},
            ["learning_rate 0.1 in the checkpoint, 0.2 here"],
        ),
        (
            {"update_rule": "adam", "optim_config": {"learning_rate": 0.2}},
            ["update_rule 'sgd' in the checkpoint, 'adam' here"],
        ),
    ],
)
def test_setting_differences_name_each_hyperparameter_only_under_the_same_rule(given, expected):
    saved = {"update_rule": "sgd", "optim_config": {"learning_rate": 0.1, "momentum": 0.9}}
    assert setting_differences(saved, given) == expected


def test_the_training_length_is_not_a_resume_setting_and_every_setting_has_help():
    assert {"num_epochs", "num_iters", "checkpoint", "verbose"}.isdisjoint(RESUME_SETTINGS)
    assert {"update_rule", "optim_config", "batch_size", "seed"} <= set(RESUME_SETTINGS)
    assert all(f.metadata["help"] for f in setting_fields())
