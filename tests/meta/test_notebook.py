"""The chapter notebook: its source runs top to bottom in FAST mode, and the committed .ipynb matches the source.

The source is ``notebooks/chapter3_feedforward.py`` (jupytext percent format); its cells assert the chapter's
numbers (layer errors, known losses, gradient checks, overfitting 50 images), so a passing run means the
walkthrough still works with the current API. It is executed in memory: nothing in the repository changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SOURCE, NOTEBOOK = NOTEBOOKS / "chapter3_feedforward.py", NOTEBOOKS / "chapter3_feedforward.ipynb"


def cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def test_committed_notebook_is_generated_from_the_source():
    jupytext = pytest.importorskip("jupytext")
    assert cells(jupytext.read(NOTEBOOK)) == cells(jupytext.read(SOURCE)), (
        "notebooks/chapter3_feedforward.ipynb is out of date: regenerate it from the .py (see its first cell)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("data", ["synthetic", "FCN_DATA_DIR"])
def test_notebook_runs_fast(data, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if data == "synthetic":
        monkeypatch.delenv("FCN_DATA_DIR", raising=False)
    elif not os.environ.get("FCN_DATA_DIR"):
        pytest.skip("FCN_DATA_DIR is not set: no real CIFAR-10 to run the notebook on")
    monkeypatch.setenv("FCN_NOTEBOOK_FAST", "1")  # the kernel inherits this process's environment

    nb = jupytext.read(SOURCE)
    nbclient.execute(nb, cwd=NOTEBOOKS, timeout=600, kernel_name="python3")  # a failing cell raises, with its traceback

    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    if data == "synthetic":
        assert "SYNTHETIC data: numbers below are not CIFAR-10 results" in text
    else:
        assert "real CIFAR-10" in text
    assert "FAST=True" in text and "final train acc 1.000" in text
    assert "No CUDA GPU here: skipping the CuPy comparison" in text or "backend=cupy" in text
