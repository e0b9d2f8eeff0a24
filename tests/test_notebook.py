"""The chapter notebook runs top to bottom in FAST mode, on whatever data it finds and on synthetic data.

Its cells assert the chapter's numbers (layer errors, known losses, gradient checks, overfitting 50 images),
so a passing run means the walkthrough still works with the current API. The committed file is not
modified: it is executed in memory. (``FCN_NOTEBOOK_FAST=1 pytest --nbmake notebooks/`` does the same.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "chapter3_feedforward.ipynb"


def _stdout(nb) -> str:
    return "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )


@pytest.mark.slow
@pytest.mark.parametrize("data", ["auto", "synthetic"])
def test_notebook_runs_fast(data, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if not NOTEBOOK.exists():
        pytest.skip(f"{NOTEBOOK} is missing")

    monkeypatch.setenv("FCN_NOTEBOOK_FAST", "1")  # the kernel inherits this process's environment
    if data == "synthetic":
        monkeypatch.delenv("FCN_DATA_DIR", raising=False)
        monkeypatch.setenv("FCN_NOTEBOOK_SYNTHETIC", "1")
    else:
        monkeypatch.delenv("FCN_NOTEBOOK_SYNTHETIC", raising=False)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails

    text = _stdout(nb)
    if data == "synthetic":
        assert "SYNTHETIC data: numbers below are not CIFAR-10 results" in text
    else:
        assert "real CIFAR-10" in text or "SYNTHETIC data" in text
    assert "FAST=True" in text
    assert "final train acc 1.000" in text
    assert "No CUDA GPU here: skipping the CuPy comparison" in text or "backend=cupy" in text
