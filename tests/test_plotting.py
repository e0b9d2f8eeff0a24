"""The figures (fcn/plotting.py) render headless and show what they claim."""

import numpy as np
import pytest

from fcn.plotting import plot_stats, plot_weights, visualize_grid


def test_plot_stats_has_the_chapters_two_panels(tmp_path):
    stats = {
        "loss_history": list(np.linspace(2.3, 1.4, 50)),
        "train_acc_history": [0.3, 0.4],
        "val_acc_history": [0.28, 0.35],
    }
    fig = plot_stats(stats, tmp_path / "c.png")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_title() == "Loss history" and len(loss_ax.lines[0].get_xdata()) == 50
    assert [line.get_label() for line in acc_ax.lines[:2]] == ["train", "val"]
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_visualize_grid_tiles_and_rescales():
    images = np.stack([np.full((2, 2, 3), v) for v in (0.0, 1.0, 2.0)]) + np.arange(4.0).reshape(1, 2, 2, 1)
    grid = visualize_grid(images, padding=1)
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 3)
    assert grid.max() == 255.0 and grid[1, 1, 0] == 0.0  # each tile spans [0, 255]


def test_plot_weights_shape_check(tmp_path):
    fig = plot_weights(np.random.default_rng(0).standard_normal((3072, 10)), path=tmp_path / "w.png")
    assert (tmp_path / "w.png").exists() and "10 hidden units" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match=r"\(3072, hidden\)"):
        plot_weights(np.zeros((100, 10)))
