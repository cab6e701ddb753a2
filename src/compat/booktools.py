"""Execute source notebooks with papermill into the book, tagged for a clean page.

The page shows the parameters that ran: papermill's injected cell stays, headed by a comment
saying so, and the notebook's own defaults cell gets ``remove-cell`` (myst-nb's tag), so a chapter
executed with other values never displays the defaults as if they had run. Code cells longer than
a few lines (plumbing) show their output with their input behind a toggle.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import papermill

from .errors import ConfigError
from .paths import check_writable_folder


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path``, or one error naming the path: missing, not a ``.ipynb`` file, unreadable, or not a
    valid notebook."""
    if path.suffix != ".ipynb" or not path.is_file():
        raise ConfigError(
            f"{path} is not a notebook file (.ipynb){'' if path.exists() else ': it does not exist'}; the chapters are notebooks/*.ipynb"
        )
    try:
        return nbformat.read(path, as_version=4)
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # nbformat's NotJSONError, jsonschema's ValidationError, UnicodeDecodeError
        raise ConfigError(f"{path} is not a valid notebook ({' '.join(str(exc).split())[:200]})") from None


def _check_parameters_cell(path: Path) -> None:
    nb = read_notebook(path)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ConfigError(f"{path} must have exactly one cell tagged 'parameters', found {len(tagged)}")


RAN_HEADER = "# The parameters of this run (papermill); the defaults are in the source notebook\n"


STORY_LINES = 3  # a code cell of at most this many lines is part of the story (a call, a table, a figure): shown


def _hide_plumbing(cell) -> None:
    """A longer code cell is plumbing (building a table, formatting): its input goes behind a toggle (myst-nb's
    ``hide-input``), its output stays; a cell already tagged for the page keeps its tags."""
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    shown = not any(t.startswith(("remove-", "hide-")) or t in ("parameters", "injected-parameters") for t in tags)
    if cell.cell_type == "code" and shown and len(cell.source.strip().splitlines()) > STORY_LINES:
        tags.append("hide-input")


SMOKE_BANNER = (
    "> **Smoke profile.** Synthetic images and tiny models, trained in seconds: this page tests that the code "
    "runs end to end. Its numbers and verdicts say nothing about the papers; the book's pages use the `cpu` profile."
)


def _show_parameters_that_ran(path: Path, profile: object) -> None:
    """The injected parameters headed as the run's, the defaults cell removed from the page, plumbing code behind
    toggles (:func:`_hide_plumbing`), and on the smoke profile a banner under the title saying what its numbers are."""
    nb = nbformat.read(path, as_version=4)
    if profile == "smoke" and not any(c.source == SMOKE_BANNER for c in nb.cells):
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(SMOKE_BANNER))
    for cell in nb.cells:
        _hide_plumbing(cell)
    injected = [c for c in nb.cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells if injected else ():
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if "injected-parameters" in tags and not cell.source.startswith(RAN_HEADER):
            cell.source = RAN_HEADER + cell.source.removeprefix("# Parameters\n")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)


def execute(source: Path, output: Path, parameters: dict[str, object], *, prepare_only: bool = False) -> Path:
    """Run ``source`` with ``parameters`` into ``output`` (or only inject them, for nbval)."""
    source, output = Path(source), Path(output)
    _check_parameters_cell(source)
    check_writable_folder("output", output.parent, "or pass --output inside one")
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
        _show_parameters_that_ran(tmp, parameters.get("profile"))
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


REPOSITORY_URL = re.compile(r"https://[A-Za-z0-9.-]+/[A-Za-z0-9._/-]+")


def with_repository(config_text: str, url: str, branch: str = "main") -> str:
    """``_config.yml``'s text with the theme's repository and issues buttons on, pointing at ``url`` (the publishing
    workflow passes its own repository, so the deployed book links to where it is built from; a local build has
    no URL and no buttons). Launch buttons stay off: the pages are papermill's executed copies under ``book/``,
    which git ignores, so a Binder or Colab launch would open a file the repository does not hold."""
    if not REPOSITORY_URL.fullmatch(url):
        raise ConfigError(f"repository URL {url!r} is not of the form https://HOST/OWNER/REPO")
    if "\nrepository:" in config_text:
        raise ConfigError("the book's config already names a repository: edit _config.yml's repository section instead")
    lines = []
    for line in config_text.splitlines():
        if line.strip() in ("use_repository_button: false", "use_issues_button: false"):
            line = line.replace("false", "true")
        lines.append(line)
    section = [
        "",
        "# written by `python -m compat book repository URL` (the publishing workflow)",
        "repository:",
        f"  url: {url}",
        f"  branch: {branch}",
    ]
    return "\n".join([*lines, *section]) + "\n"


def set_repository(config: Path, url: str) -> None:
    """Write :func:`with_repository` into the book's config file ``config`` (in the workflow's throwaway checkout)."""
    config.write_text(with_repository(config.read_text(), url))
