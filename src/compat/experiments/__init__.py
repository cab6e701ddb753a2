"""One module per reproduced table, each a registered :class:`~compat.experiments.base.Experiment`.

Importing this package registers every experiment; :func:`get_experiment` finds one by name.
Adding an experiment is one new module here (listed below), one notebook and one line in ``_toc.yml``.
"""

from __future__ import annotations

from .base import EXPERIMENTS, Case, Claim, Experiment, Plan, get_experiment, register_experiment

from . import recipe, bct, fct, unibct, bict  # noqa: E402,F401  (registers them, in the book's order)

__all__ = ["EXPERIMENTS", "Case", "Claim", "Experiment", "Plan", "get_experiment", "register_experiment"]
