"""One module per reproduced table, each a registered :class:`~compat.experiments.base.Experiment`.

Importing this package registers every experiment; :func:`get_experiment` finds one by name.
Adding an experiment is one new module here (listed below), one notebook and one line in ``_toc.yml``.
"""

from __future__ import annotations

# the base first, then the experiments in the book's order: importing registers them in that order
# isort: off
from .base import EXPERIMENTS, Case, Claim, Experiment, Plan, get_experiment, register_experiment
from . import recipe, bct, fct, unibct, unibct_study, bict  # noqa: F401
# isort: on

__all__ = ["EXPERIMENTS", "Case", "Claim", "Experiment", "Plan", "get_experiment", "register_experiment"]
