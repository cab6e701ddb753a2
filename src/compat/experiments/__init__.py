"""One module per reproduced table. Each has ``run(profile, store=None) -> list[dict]`` (trains what
is missing, writes and returns result files) and ``summary_table(results, distance)``."""

from __future__ import annotations

from types import ModuleType

from ..errors import check_choice
from . import bct, fct, recipe

EXPERIMENTS: dict[str, ModuleType] = {"bct": bct, "fct": fct, "recipe": recipe}


def get(name: str) -> ModuleType:
    """The experiment module registered as ``name``."""
    check_choice("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name]
