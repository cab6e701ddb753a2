"""Where the project keeps its data cache, model cache and committed results.

Every location can be moved with an environment variable, so CI, users and tests
never write into each other's folders.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root: ``COMPAT_HOME`` if set, else the checkout this package sits in."""
    if "COMPAT_HOME" in os.environ:
        return Path(os.environ["COMPAT_HOME"]).resolve()
    here = Path(__file__).resolve().parents[2]  # src/compat/paths.py -> repo root
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def cache_dir() -> Path:
    """Git-ignored cache of prepared data, trained models and embeddings (``COMPAT_CACHE``)."""
    return Path(os.environ.get("COMPAT_CACHE", project_root() / ".cache")).resolve()


def data_cache_dir() -> Path:
    """Prepared datasets live here, one folder per dataset (``COMPAT_DATA_DIR``)."""
    return Path(os.environ.get("COMPAT_DATA_DIR", cache_dir() / "data")).resolve()


def results_dir() -> Path:
    """Committed JSON result files (``COMPAT_RESULTS``)."""
    return Path(os.environ.get("COMPAT_RESULTS", project_root() / "results")).resolve()
