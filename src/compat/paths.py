"""Where the project keeps its data cache, model cache and committed results.

Every location can be moved with an environment variable, so CI, users and tests
never write into each other's folders.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def _env_path(name: str, default: Path) -> Path:
    """The folder in environment variable ``name``, else ``default``; an empty value is an error, not the current directory."""
    value = os.environ.get(name)
    if value is None:
        return Path(default).resolve()
    if not value.strip():
        raise ConfigError(f"{name} is set but empty; unset it or name a folder")
    return Path(value).resolve()


def project_root() -> Path:
    """The repository root: ``COMPAT_HOME`` if set, else the checkout this package sits in."""
    if "COMPAT_HOME" in os.environ:
        return _env_path("COMPAT_HOME", Path.cwd())
    here = Path(__file__).resolve().parents[2]  # src/compat/paths.py -> repo root
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def cache_dir() -> Path:
    """Git-ignored cache of prepared data, trained models and embeddings (``COMPAT_CACHE``)."""
    return _env_path("COMPAT_CACHE", project_root() / ".cache")


def data_cache_dir() -> Path:
    """Prepared datasets live here, one folder per dataset (``COMPAT_DATA_DIR``)."""
    return _env_path("COMPAT_DATA_DIR", cache_dir() / "data")


def results_dir() -> Path:
    """Committed JSON result files (``COMPAT_RESULTS``)."""
    return _env_path("COMPAT_RESULTS", project_root() / "results")


def check_own_checkout(cwd: Path | None = None) -> None:
    """A command run inside a checkout of this project runs that checkout's code: a copied checkout whose virtual
    environment still imports the original's ``src`` (an editable install) would write the original's results
    under the original's revision. ``COMPAT_HOME`` turns the check off (its root is then the user's choice)."""
    if "COMPAT_HOME" in os.environ:
        return
    here = Path(cwd or Path.cwd()).resolve()
    checkout = next((p for p in (here, *here.parents) if (p / "src" / "compat" / "__init__.py").is_file()), None)
    code = Path(__file__).resolve().parents[2]
    if checkout is not None and checkout != code:
        raise ConfigError(
            f"this command runs in the checkout {checkout} but imports the code of {code} (its virtual environment was "
            f"made there): run `make venv` in {checkout}, which rebuilds .venv for it, or run the other checkout's commands there"
        )


def check_writable_folder(role: str, folder: Path, remedy: str) -> None:
    """``folder``, or the nearest folder above it that exists (where it will be made), is a folder that takes a
    new file; otherwise one error naming it. Nothing is left behind: the probe file goes, no folder is made."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"the {role} folder {folder} cannot be written ({exc.strerror or exc}): make it a writable folder, {remedy}") from None
