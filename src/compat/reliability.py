"""The reliability table, generated from the test suite: every test marked ``@pytest.mark.reliability(fault=...,
behaviour=...)`` is a row (the fault or bad input, what the program does, the test that proves it), so the
book's page and the tests cannot drift apart."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pandas as pd

from .errors import CompatError
from .paths import project_root


class _Collector:
    """A pytest plugin that keeps the reliability marker of every collected test."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict] = {}

    def pytest_collection_modifyitems(self, items) -> None:
        for item in items:
            marker = item.get_closest_marker("reliability")
            if marker is None:
                continue
            path = Path(str(item.fspath)).relative_to(project_root())
            name = getattr(item, "originalname", item.name)
            self.rows.setdefault(
                (str(path), name),
                {
                    "fault or bad input": marker.kwargs["fault"],
                    "what the program does": marker.kwargs["behaviour"],
                    "test": f"{path}::{name}",
                    "cases": 0,
                },
            )
            self.rows[(str(path), name)]["cases"] += 1  # parametrized variants of one test


def reliability_table(tests: Path | None = None) -> pd.DataFrame:
    """Collect (without running) the marked tests under ``tests`` (default: the project's ``tests/``)."""
    import pytest

    folder = Path(tests) if tests else project_root() / "tests"
    collector = _Collector()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = pytest.main(["--collect-only", "-qq", "-p", "no:cacheprovider", str(folder)], plugins=[collector])
    if code != 0:
        raise CompatError(f"collecting the tests under {folder} failed (pytest exit {code}):\n{out.getvalue()[-2000:]}")
    return pd.DataFrame(list(collector.rows.values()))
