"""The tutorial notebooks in docs/notebooks/ run top to bottom in a real Jupyter kernel (nbclient +
ipykernel): a cell error fails the test.  The training ones must show the live progress as a display
object (HTML) and the result as HTML; every ``plot_*`` cell must show a picture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

import cnnkit  # noqa: E402 - after the skips: the kernel must import this same copy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "docs" / "notebooks"
SHARED = next((p / "shared" / "datasets" for p in ROOT.parents if (p / "shared" / "datasets").is_dir()), None)

# packaged data, a few epochs: run in the default suite; the others read ../shared/datasets
QUICK = ("01-mnist-mlp", "02-lenet5", "07-sobel-filters-feature-maps")
TRAINS = ("01", "02", "03", "04", "05", "06", "07", "08")  # every notebook trains a model


class RecordingClient(nbclient.NotebookClient):
    """A NotebookClient that keeps every display update the kernel sends (the live progress redraws)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.updates: list[str] = []  # text/html of each update_display_data, in order

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] == "update_display_data":
            self.updates.append(msg["content"]["data"].get("text/html", ""))
        return super().process_message(msg, cell, cell_index)


def run_notebook(name: str, folder: Path, monkeypatch) -> "nbformat.NotebookNode":
    """Execute docs/notebooks/<name>.ipynb with ``folder`` as the working folder; the kernel imports
    the cnnkit these tests import and finds the shared datasets through CNNKIT_DATA_DIR."""
    src = str(Path(cnnkit.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    if SHARED is not None:
        monkeypatch.setenv("CNNKIT_DATA_DIR", str(SHARED))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    # generous limits: a kernel on a busy machine takes long to start and to import torch
    client = RecordingClient(nb, timeout=600, startup_timeout=300, kernel_name="python3",
                             resources={"metadata": {"path": str(folder)}})
    client.execute()  # a cell error raises CellExecutionError naming the cell
    nb.metadata["updates"] = client.updates
    return nb


def outputs(nb, cell_text: str) -> list:
    """The outputs of every code cell whose source contains ``cell_text``."""
    return [o for c in nb.cells if c.cell_type == "code" and cell_text in c.source for o in c.outputs]


def check_rich_outputs(nb) -> None:
    training = outputs(nb, "train_model(")
    progress = [o for o in training if o.output_type == "display_data" and "cnnkit-progress" in
                o.data.get("text/html", "")]
    assert progress, "the training cell shows no progress display"
    html = progress[-1].data["text/html"]
    assert "<th>epoch</th>" in html and "<td>1</td>" in html  # the table filled in epoch by epoch
    assert "text/plain" in progress[-1].data
    live = [u for u in nb.metadata["updates"] if "cnnkit-progress" in u]
    assert any("<progress value=" in u for u in live), "no bar while an epoch runs"
    assert any("left" in u for u in live), "no time left shown"
    shown = [o for o in training if o.output_type == "execute_result"]
    if shown:  # the cell ends with `result`
        assert "cnnkit-result" in shown[0].data["text/html"] and "accuracy" in shown[0].data["text/html"]
    pictures = ("plot_curves", "plot_confusion", "plot_top_losses", "plot_gradcam")
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.strip().split("(")[0].endswith(pictures):
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source


def test_every_tutorial_is_a_notebook_that_validates():
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert len(names) >= 7 and all(n[:2] in TRAINS for n in names)
    for name in names:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        text = "\n".join(c.source for c in nb.cells)
        assert "/work/" not in text and "/home/" not in text and "C:\\" not in text  # no machine paths
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored without outputs


@pytest.mark.parametrize("name", QUICK)
def test_a_quick_notebook_runs_in_a_kernel(name, tmp_path, monkeypatch):
    nb = run_notebook(name, tmp_path, monkeypatch)
    check_rich_outputs(nb)
    if name == "01-mnist-mlp":
        summary = outputs(nb, "cnnkit.summary(")[0]
        assert "cnnkit-summary" in summary.data["text/html"] and "Dense" in summary.data["text/html"]
        assert (tmp_path / "runs" / "mnist-mlp" / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.skipif(SHARED is None, reason="needs ../shared/datasets")
@pytest.mark.parametrize("name", sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if p.stem not in QUICK))
def test_a_notebook_on_the_shared_datasets_runs_in_a_kernel(name, tmp_path, monkeypatch):
    check_rich_outputs(run_notebook(name, tmp_path, monkeypatch))
