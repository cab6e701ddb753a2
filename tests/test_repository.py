"""Repository invariants: one source of versions, clean source notebooks with one parameters cell."""

import json
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_environment_yml_defers_to_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-r requirements.txt" in pip_section
    # nothing pinned twice: every other conda entry is python or pip, every pip entry a reference
    assert all(d in ("python=3.11", "pip") for d in deps if not isinstance(d, dict))
    assert all(p.startswith("-r ") or p.startswith("-e ") for p in pip_section)


def test_requirements_are_exact_pins():
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines and all("==" in line for line in lines), [line for line in lines if "==" not in line]


def test_there_are_source_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebook_is_clean_with_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs: nbstripout " + path.name
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "profile" in tagged[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_has_its_own_id(path):
    """nbformat fills missing ids silently when reading (a warning now, an error in later versions): read the JSON."""
    ids = [cell.get("id") for cell in json.loads(path.read_text())["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), [i for i, x in enumerate(ids) if x is None]
