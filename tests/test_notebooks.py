"""The notebooks run top to bottom (nbclient), with small settings, on a copy of the corpus data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import copy_data_dir

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture
def notebook_home(corpus_bot, tmp_path, monkeypatch) -> Path:
    home = copy_data_dir(corpus_bot, tmp_path / "home")
    monkeypatch.setenv("RAGBOT_HOME", str(home))
    monkeypatch.setenv("RAGBOT_NOTEBOOK_SMALL", "1")
    return home


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["evaluation.ipynb", "quickstart.ipynb", "tuning.ipynb"]


# The tuning notebook trains for a minute or more: CI runs it (`make heavy`).
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.heavy) if p.stem == "tuning" else p
                                  for p in NOTEBOOKS], ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, notebook_home):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    if path.stem == "quickstart":
        assert "keys: ['completion', 'prompt']" in text
    elif path.stem == "evaluation":
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) >= 3  # the report's plots and the rank histogram
    else:
        assert "adapter v1" in text and (notebook_home / "adapters" / "v1" / "adapter_model.safetensors").is_file()
