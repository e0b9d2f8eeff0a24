"""Learning-rate schedules (fcn/training/schedules.py): the
chapter's per-epoch decay, cosine and linear decay, linear warmup, bad names."""

from __future__ import annotations

import math

import pytest
from helpers import image_data, recipe_net, recipe_solver

from fcn.training.schedules import (
    SCHEDULES,
    LearningRate,
    check_schedule,
    cosine_factor,
    linear_factor,
    lr_factor,
    make_schedule,
    step_factor,
    warmup_factor,
)


def test_step_is_the_chapters_per_epoch_decay():
    f = make_schedule("step", iterations_per_epoch=10, num_iters=50, decay=0.95)
    lr, expected = 1e-3, []
    for _ in range(5):  # the chapter's loop: multiply by the decay after every epoch
        expected += [lr] * 10
        lr *= 0.95
    assert [1e-3 * f(i) for i in range(50)] == pytest.approx(expected, rel=1e-14)
    assert f(9) == 1.0 and f(10) == 0.95
    rate = make_schedule("step", learning_rate=1e-3, iterations_per_epoch=10, num_iters=50, decay=0.95)
    assert [rate(i) for i in range(50)] == expected  # bit for bit: the same products in the same order


def test_step_factor_is_the_decay_per_completed_epoch():
    f = make_schedule("step", iterations_per_epoch=10, num_iters=50, decay=0.95)
    assert step_factor(0, 0.95) == 1.0 and step_factor(3, 0.5) == 0.125
    assert [step_factor(e, 0.95) for e in range(5)] == pytest.approx([f(10 * e) for e in range(5)], rel=1e-14)


def test_step_with_decay_one_is_constant():
    f = make_schedule("step", iterations_per_epoch=7, num_iters=70)
    assert {f(i) for i in range(70)} == {1.0}


@pytest.mark.parametrize(("schedule", "midpoint"), [("cosine", 0.5), ("linear", 0.5)])
def test_decays_from_one_to_the_final_factor(schedule, midpoint):
    f = make_schedule(schedule, iterations_per_epoch=10, num_iters=100)
    values = [f(i) for i in range(101)]
    assert values[0] == 1.0
    assert values[50] == pytest.approx(midpoint, abs=1e-12)
    assert values[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    g = make_schedule(schedule, iterations_per_epoch=10, num_iters=100, final_factor=0.1)
    assert g(100) == pytest.approx(0.1) and g(50) == pytest.approx(0.55)


@pytest.mark.parametrize(("schedule", "factor"), [("cosine", cosine_factor), ("linear", linear_factor)])
def test_past_the_end_of_the_run_the_rate_stays_at_the_final_factor(schedule, factor):
    """Steps beyond ``num_iters`` (a run evaluated further than planned) keep the last rate, never go below it."""
    f = make_schedule(schedule, iterations_per_epoch=10, num_iters=100, final_factor=0.1)
    assert [f(i) for i in range(100, 250, 10)] == pytest.approx([0.1] * 15)
    assert factor(1.5, 0.1) == pytest.approx(0.1) and factor(-0.5, 0.1) == 1.0  # progress clipped to [0, 1]


def test_cosine_shape():
    f = make_schedule("cosine", iterations_per_epoch=10, num_iters=100)
    assert f(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), abs=1e-12)
    assert f(75) == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)), abs=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_linear_warmup_then_the_schedule(schedule):
    f = make_schedule(schedule, iterations_per_epoch=10, num_iters=110, decay=0.5, warmup_epochs=1)
    assert [f(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)])
    if schedule == "step":
        assert f(10) == 0.5  # the per-epoch decay keeps counting from the first epoch
    else:
        assert f(10) == 1.0 and f(60) == pytest.approx(0.5)  # the decay spans the 100 steps after the warmup


def test_fractional_warmup_and_lr_factor_form():
    assert lr_factor("cosine", 0, iterations_per_epoch=98, num_iters=980, warmup_epochs=0.5) == pytest.approx(1 / 49)
    assert lr_factor("cosine", 48, iterations_per_epoch=98, num_iters=980, warmup_epochs=0.5) == 1.0


@pytest.mark.parametrize("name", ["cos", "Cosine", "", None, 3])
def test_unknown_schedule_names_the_argument(name):
    with pytest.raises(ValueError, match=r"lr_schedule must be one of 'step', 'cosine', 'linear'"):
        check_schedule(name)
    with pytest.raises(ValueError, match="lr_schedule"):
        make_schedule(name, iterations_per_epoch=10, num_iters=100)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warmup_epochs": -1}, r"warmup_epochs must be in \[0, inf\], got -1\.0"),
        ({"warmup_epochs": float("nan")}, "warmup_epochs must be a finite number"),
        ({"decay": 0}, r"lr_decay must be in \(0, inf\], got 0\.0"),  # ( : the bound itself is refused
        ({"final_factor": 2}, r"final_factor must be in \[0, 1\], got 2\.0"),
        ({"iterations_per_epoch": 0}, r"iterations_per_epoch must be in \(0, inf\], got 0\.0"),
    ],
)
def test_bad_schedule_arguments_name_themselves(kwargs, match):
    args = {"iterations_per_epoch": 10, "num_iters": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_schedule("step", **args)


@pytest.mark.parametrize(("schedule", "warmup_epochs"), [("cosine", 0), ("linear", 0), ("step", 1), ("cosine", 0.5)])
def test_a_schedule_that_scales_the_rate_needs_a_base_rate(schedule, warmup_epochs):
    """An update rule without a learning rate allows only the plain per-epoch decay, which then sets nothing."""
    message = (
        rf"^lr_schedule={schedule!r} with warmup_epochs={warmup_epochs!r} needs a learning rate to scale: "
        r"put one in optim_config\['learning_rate'\]$"
    )
    with pytest.raises(ValueError, match=message):
        LearningRate(schedule, None, iterations_per_epoch=10, num_iters=100, warmup_epochs=warmup_epochs)
    rate = LearningRate("step", None, iterations_per_epoch=10, num_iters=100, decay=0.5)
    assert [rate(i) for i in (0, 10, 99)] == [None, None, None]


# -- the schedule in a training run ---------------------------------------------------------------------------------


def test_cosine_schedule_with_warmup_sets_each_steps_rate():
    solver = recipe_solver(recipe_net(), image_data(), augment=None, num_epochs=4, warmup_epochs=1)
    ipe, total = solver.iterations_per_epoch, solver.num_iters
    rates = []
    for _ in range(total):
        rates.append(solver.learning_rate)
        solver.step()
    expected = [
        1e-2 * (t + 1) / ipe if t < ipe else 1e-2 * 0.5 * (1 + math.cos(math.pi * (t - ipe) / (total - ipe)))
        for t in range(total)
    ]
    assert rates == pytest.approx(expected, rel=1e-12)


def test_step_schedule_is_the_chapters_per_epoch_decay():
    solver = recipe_solver(recipe_net(), image_data(), lr_schedule="step", lr_decay=0.9, warmup_epochs=0, num_epochs=3)
    solver.train()
    lr = 1e-2
    for _ in range(3):
        lr *= 0.9
    assert solver.learning_rate == lr  # bit for bit: the same products in the same order


@pytest.mark.parametrize("warmup_iters", [1, 4])
def test_warmup_factor_rises_to_one_over_exactly_warmup_iters_steps(warmup_iters):
    """Steps 0 .. warmup_iters - 1 scale by 1/w, 2/w, ..., 1; every later step (from index warmup_iters on) by 1."""
    w = warmup_iters
    assert [warmup_factor(i, w) for i in range(w)] == pytest.approx([(i + 1) / w for i in range(w)])
    assert [warmup_factor(i, w) for i in range(w, 3 * w)] == [1.0] * (2 * w)
    assert warmup_factor(0, 0) == 1.0


@pytest.mark.parametrize("schedule, expected", [("linear", 0.75), ("cosine", (1 + math.cos(math.pi / 4)) / 2)])
def test_a_quarter_through_the_run(schedule, expected):
    assert lr_factor(schedule, 25, iterations_per_epoch=10, num_iters=100) == pytest.approx(expected)


def test_a_bad_length_names_num_iters():
    with pytest.raises(ValueError, match="^num_iters"):
        lr_factor("linear", 0, iterations_per_epoch=10, num_iters=-1)
