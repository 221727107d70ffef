"""Execute every notebook under notebooks/ with tiny settings (NSF_NOTEBOOK_TINY=1) via nbclient.

The notebooks are committed with their outputs stripped; this test also checks that.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is a dev extra")
nbclient = pytest.importorskip("nbclient", reason="nbclient is a dev extra")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: A line each notebook prints when it ran to its end.
EXPECTED = {
    "00_neural_ode": "max |grad(adjoint) - grad(backprop)|",
    "01_quickstart": "max put-call parity error",
    "02_sdegan": "sdegan",
    "03_pricing_and_risk": "10-day 99%: VaR",
}


def test_the_three_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"00_neural_ode", "01_quickstart", "02_sdegan", "03_pricing_and_risk"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_tiny(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs"
    monkeypatch.setenv("NSF_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name=NATIVE_KERNEL_NAME,
        resources={"metadata": {"path": str(path.parent)}},
    )
    # The native kernel runs this interpreter (ipykernel); PYTHONPATH puts this checkout first.
    client.execute()  # raises CellExecutionError on the first failing cell
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "| tiny" in text
    assert EXPECTED[path.stem] in text, text[-2000:]
