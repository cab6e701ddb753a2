"""Execute source notebooks with papermill into the book, tagged for a clean page.

Papermill's injected-parameters cell gets ``remove-cell`` (myst-nb does not know
papermill's own tag), so the page shows the story, not the plumbing.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill

from .errors import ConfigError


def _check_parameters_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ConfigError(f"{path} must have exactly one cell tagged 'parameters', found {len(tagged)}")


def _hide_injected(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)


def execute(source: Path, output: Path, parameters: dict[str, object], *, prepare_only: bool = False) -> Path:
    """Run ``source`` with ``parameters`` into ``output`` (or only inject them, for nbval)."""
    source, output = Path(source), Path(output)
    _check_parameters_cell(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp-{os.getpid()}.ipynb")
    try:
        papermill.execute_notebook(
            str(source),
            str(tmp),
            parameters=parameters,
            prepare_only=prepare_only,
            kernel_name="python3",
            progress_bar=False,
            cwd=str(source.parent),
        )
        _hide_injected(tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output
