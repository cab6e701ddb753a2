"""The one verdict vocabulary (compat.verdicts) on constructed claims, and every paper chapter speaking it."""

import numpy as np
import pandas as pd
import pytest

from compat.errors import ConfigError
from compat.verdicts import LABELS, Outcome, claim_line, decide, headline, summary

CHECKED = pd.DataFrame(
    [
        {"claim": "A above B", "holds": True, "difference (points)": 1.25, "95% CI low": 0.5, "95% CI high": 2.0, "per seed": "+1.00, +1.50"},
        {"claim": "C above D", "holds": False, "difference (points)": -0.4, "95% CI low": -1.0, "95% CI high": 0.2, "per seed": "-0.40"},
    ]
)


def test_the_deciding_claim_carries_its_interval_and_an_untested_one_says_so():
    o = decide("X", "l2", "partly reproduced", "A holds, C does not.", CHECKED, "C above D", seeds=2)
    assert (o.difference, o.low, o.high) == (-0.4, -1.0, 0.2)
    missing = decide("X", "cosine", "not reproduced", "nothing ran.", CHECKED, "E above F", seeds=2)
    assert np.isnan(missing.difference)
    table = summary([o, missing])
    assert table.loc[("X", "l2"), "difference (points) [95% CI]"] == "-0.40 [-1.00, +0.20]"
    assert table.loc[("X", "cosine"), "difference (points) [95% CI]"] == "not tested"
    assert headline(o).startswith("**l2 distance: partly reproduced.** A holds, C does not. (top-1;") and "every one of 2 seeds" in headline(o)


def test_a_claim_line_says_holds_or_not_with_its_numbers():
    assert claim_line(CHECKED.iloc[0]) == "- holds: A above B (+1.25 points, 95 % CI +0.50 to +2.00; seeds +1.00, +1.50)"
    assert claim_line(CHECKED.iloc[1]).startswith("- does not hold: C above D (-0.40 points")


def test_only_the_three_labels_exist():
    assert LABELS == ("reproduced", "partly reproduced", "not reproduced")
    with pytest.raises(ConfigError, match="verdict label 'partially reproduced'"):
        Outcome("X", "l2", "partially reproduced", "", "", 0.0, 0.0, 0.0, 1)


def test_every_paper_chapter_leads_its_verdict_with_its_outcome_on_the_committed_results(tmp_path):
    from compat.compare import PAPERS
    from compat.config import get_profile
    from compat.experiments import get_experiment
    from compat.paths import project_root
    from compat.results import load_result_files
    from compat.store import Store

    profile, store = get_profile("cpu"), Store(tmp_path / "cache", project_root() / "results")
    for name in PAPERS:
        experiment = get_experiment(name)
        results = load_result_files(experiment, profile, store)
        for distance in profile.protocol.distances:
            outcome = experiment.outcome(results, distance, store)
            assert outcome.label in LABELS and outcome.claim in {c.text for c in experiment.claims(results)}
            assert experiment.verdict(results, distance, store).splitlines()[0] == headline(outcome)


def test_the_outcomes_markdown_names_each_paper_once_and_bolds_its_label():
    from compat.tables import outcome_markdown

    a = decide("X", "l2", "reproduced", "All hold.", CHECKED, "A above B", seeds=2)
    b = decide("X", "cosine", "partly reproduced", "A holds.", CHECKED, "A above B", seeds=2)
    lines = outcome_markdown(summary([a, b])).splitlines()
    assert lines[0].split("|")[1].strip() == "paper" and "why" not in lines[0]  # header, rule, two rows, then the reasons
    assert "| X " in lines[2] and "**reproduced**" in lines[2] and "| X " not in lines[3] and "**partly reproduced**" in lines[3]
    assert lines[4:] == ["", "- X, l2 (2 seeds): All hold.", "- X, cosine (2 seeds): A holds."]
