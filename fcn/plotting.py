"""The chapter's figures: training curves, first-layer weights and confusion matrices as images.

Figures are built with :class:`matplotlib.figure.Figure` directly, not through ``pyplot``: no global state,
no GUI backend needed, so saving works headless (CI, servers). Figures are saved through
:func:`fcn.atomic.write_atomic`, in the format the file name's suffix says (PNG without one). In a notebook,
run ``%matplotlib inline`` once (it registers the display hook) and the returned figure shows when it is a
cell's last value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy
from matplotlib.figure import Figure

from .atomic import write_atomic
from .backend import to_host

__all__ = ["plot_stats", "visualize_grid", "plot_weights", "plot_confusion_matrix"]


def _save(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save ``fig`` to ``path`` whole or not at all, replacing (never following) a symlink there."""
    kind = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    write_atomic(path, lambda f: fig.savefig(f, format=kind, dpi=dpi))


def plot_stats(stats: Mapping[str, Any], path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """Loss per iteration (top) and train/val accuracy per epoch (bottom), as in the chapter.

    ``stats`` has ``loss_history``, ``train_acc_history`` and ``val_acc_history`` (a Solver's
    :meth:`~fcn.solver.Solver.stats` or ``ShallowLayerNet.train``'s result). Saved to ``path`` if given.
    """
    fig = Figure(figsize=(10, 8), layout="tight")
    ax_loss, ax_acc = fig.subplots(2, 1)
    ax_loss.plot(stats["loss_history"], linewidth=0.8)
    ax_loss.set(title="Loss history", xlabel="Iteration", ylabel="Loss")
    epochs = numpy.arange(1, len(stats["train_acc_history"]) + 1)
    ax_acc.plot(epochs, stats["train_acc_history"], "o-", label="train")
    if len(stats["val_acc_history"]):  # empty when trained without a validation set
        ax_acc.plot(epochs[: len(stats["val_acc_history"])], stats["val_acc_history"], "o-", label="val")
    ax_acc.axhline(0.5, color="k", linestyle="--", linewidth=0.8)
    ax_acc.set(title="Classification accuracy history", xlabel="Epoch", ylabel="Classification accuracy")
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    if path is not None:
        _save(fig, path)
    return fig


def visualize_grid(images: numpy.ndarray, padding: int = 1, ubound: float = 255.0) -> numpy.ndarray:
    """Tile ``images (N, H, W, C)`` into one ``(G*H + pad, G*W + pad, C)`` image, each rescaled to [0, ubound]."""
    n, h, w, c = images.shape
    size = int(numpy.ceil(numpy.sqrt(n)))
    grid = numpy.zeros((size * (h + padding) + padding, size * (w + padding) + padding, c))
    for i, img in enumerate(images):
        row, col = divmod(i, size)
        lo, hi = img.min(), img.max()
        y0, x0 = padding + row * (h + padding), padding + col * (w + padding)
        grid[y0 : y0 + h, x0 : x0 + w] = ubound * (img - lo) / (hi - lo if hi > lo else 1.0)
    return grid


def plot_weights(
    W1: Any, path: str | os.PathLike | None = None, *, image_shape: tuple[int, int, int] = (3, 32, 32)
) -> Figure:
    """First-layer weights ``W1 (C*H*W, hidden)`` shown as one ``H x W`` colour image per hidden unit.

    ``W1`` may live on any backend (it is copied to the host). Saved to ``path`` if given.
    """
    W = to_host(W1)
    if W.ndim != 2 or W.shape[0] != numpy.prod(image_shape):
        raise ValueError(f"W1 must have shape ({numpy.prod(image_shape)}, hidden), got {W.shape}")
    images = W.T.reshape(-1, *image_shape).transpose(0, 2, 3, 1)  # (hidden, H, W, C)
    fig = Figure(figsize=(8, 8), layout="tight")
    ax = fig.subplots()
    ax.imshow(visualize_grid(images, padding=3).astype("uint8"), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"First-layer weights ({W.shape[1]} hidden units)")
    if path is not None:
        _save(fig, path)
    return fig


def plot_confusion_matrix(
    confusion: Any,
    class_names: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Figure:
    """A confusion matrix ``confusion (C, C)`` (row: true class, column: predicted class) as a heat map.

    Each cell shows its count; colours are the fraction of the row (so classes of different sizes compare),
    and the diagonal is each class's accuracy. ``class_names`` label the axes (default ``0 .. C-1``).
    Saved to ``path`` if given.
    """
    counts = numpy.asarray(to_host(confusion))
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {counts.shape}")
    c = counts.shape[0]
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}x{c} confusion matrix")
    totals = counts.sum(axis=1, keepdims=True)
    share = numpy.divide(counts, totals, out=numpy.zeros(counts.shape), where=totals > 0)
    fig = Figure(figsize=(1.0 + 0.75 * c, 0.6 + 0.7 * c), layout="tight")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    ax.set_xticks(range(c), names, rotation=45, ha="right")
    ax.set_yticks(range(c), names)
    ax.set(xlabel="predicted class", ylabel="true class")
    for i in range(c):
        for j in range(c):
            ax.text(
                j,
                i,
                str(int(counts[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    total = int(counts.sum())
    correct = int(numpy.trace(counts))
    ax.set_title(title or f"Confusion matrix: {correct} of {total} correct ({correct / max(total, 1):.1%})")
    if path is not None:
        _save(fig, path)
    return fig
