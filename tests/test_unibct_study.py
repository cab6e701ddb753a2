"""The UniBCT study's plan and its two rules, fixed before its runs: refinement's word and the main table's setting."""

import math

import numpy as np
import pytest
from helpers import TINY

from compat.config import get_profile
from compat.errors import ConfigError
from compat.experiments import get_experiment
from compat.experiments.unibct import model_specs
from compat.experiments.unibct_study import FLOOR_SHARE, main_setting, refinement_word, study_table
from compat.intervals import Interval

STUDY = get_experiment("unibct_study")


@pytest.mark.parametrize(
    ("interval", "word"),
    [
        (Interval(1.0, 0.2, 1.8, (0.9, 1.1)), "helps"),
        (Interval(-1.0, -1.8, -0.2, (-0.9, -1.1)), "hurts"),
        (Interval(1.0, 0.2, 1.8, (2.0, -0.1)), "inside the noise"),  # one seed disagrees
        (Interval(0.5, -0.1, 1.1, (0.4, 0.6)), "inside the noise"),  # the interval holds 0
        (Interval(-0.5, -1.1, 0.1, (-0.4, -0.6)), "inside the noise"),
    ],
)
def test_refinement_is_decided_by_the_interval_and_both_seeds(interval, word):
    assert refinement_word(interval) == word


def test_one_seed_decides_nothing_however_clear_its_interval():
    assert refinement_word(Interval(3.0, 2.0, 4.0, (3.0,))) == "undecided: 1 of 2 seeds"
    assert refinement_word(Interval(3.0, 2.0, 4.0, (3.0,)), seeds=1) == "helps"


def test_the_main_setting_is_the_references_raw_form_when_its_loss_leaves_the_floor():
    shares = {("unit", 1.0): [0.95, 0.96], ("unit", 16.0): [0.5, 0.6], ("raw", 1.0): [0.7, FLOOR_SHARE - 1e-6]}
    assert main_setting(shares)[0] == ("raw", 1.0)  # even though s=16 reaches further below ln C


def test_otherwise_the_smallest_unit_scale_that_leaves_the_floor():
    shares = {("unit", 1.0): [0.95], ("unit", 4.0): [0.7, 0.79], ("unit", 16.0): [0.5], ("raw", 1.0): [0.7, FLOOR_SHARE]}
    setting, reason = main_setting(shares)
    assert setting == ("unit", 4.0) and "s=4" in reason and "raw" in reason


def test_with_no_setting_off_the_floor_the_references_form_is_kept_and_said():
    shares = {("unit", 1.0): [0.95], ("unit", 16.0): [0.9, math.nan], ("raw", 1.0): [0.85]}
    setting, reason = main_setting(shares)
    assert setting == ("raw", 1.0) and "no studied setting" in reason
    assert main_setting({("unit", 16.0): [0.5, math.nan], ("unit", 1.0): [0.9]})[0] == ("unit", 1.0)  # NaN never counts as below
    with pytest.raises(ConfigError, match="no settings"):
        main_setting({})


def test_the_study_varies_only_the_prototype_setting_and_shares_the_chapters_models():
    profile = get_profile("smoke", {"unibct_study.scenarios": ["open-class", "extended-data"], "unibct_study.scales": [1, 16]})
    plan = STUDY.plan(profile, seed=0)
    chapter = model_specs(profile, seed=0)
    for scenario in ("open-class", "extended-data"):
        for role in ("old", "independent"):
            assert plan.models[f"{scenario}/{role}"].key == chapter[f"{scenario}/{role}"].key
        # the chapter's own setting (unit prototypes, s = 1) is the same model, not a retrain
        assert plan.models[f"{scenario}/UniBCT | unit, s=1"].key == chapter[f"{scenario}/UniBCT"].key
        variants = {n: s for n, s in plan.models.items() if n.startswith(f"{scenario}/UniBCT")}
        assert len(variants) == 6 and len({s.key for s in variants.values()}) == 6
        methods = {(s.method.refine, s.method.prototypes, s.method.scale) for s in variants.values()}
        assert methods == {(r, f, s) for r in (False, True) for f, s in (("unit", 1.0), ("unit", 16.0), ("raw", 1.0))}
        assert len({(s.method.weight, s.method.tau, s.method.diffusion, s.train, s.parent.key) for s in variants.values()}) == 1
    keys = STUDY.result_keys(profile)
    assert len(keys) == 4 and len(set(keys)) == 4  # one file per (scenario, seed)


def test_the_cpu_profile_asks_for_no_study_file_until_the_study_is_part_of_it():
    assert get_profile("cpu").unibct_study.scenarios == () and STUDY.result_keys(get_profile("cpu")) == []


def test_bad_study_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="unibct_study.scenarios item"):
        get_profile("smoke", {"unibct_study.scenarios": ["closed-class"]})
    with pytest.raises(ConfigError, match="at least one setting"):
        get_profile("smoke", {"unibct_study.scales": [], "unibct_study.raw": False})
    with pytest.raises(ConfigError, match="scales item"):
        get_profile("smoke", {"unibct_study.scales": [0]})


def test_the_study_runs_end_to_end_and_tabulates_every_setting(tmp_path):
    from compat.store import Store

    tiny = {**TINY, "data.synthetic_classes": "10", "old_train.epochs": "2", "new_train.epochs": "3", "unibct_study.seeds": "0"}
    store = Store(tmp_path / "c", tmp_path / "r")
    profile = get_profile("smoke", tiny)
    results = STUDY.run(profile, store)
    assert len(results) == 1 and results[0]["key"] == STUDY.result_keys(profile)[0]
    table = study_table(results, profile, "l2", store)
    assert len(table) == 6 and set(table["setting"]) == {"unit, s=1", "unit, s=16", "raw (MixBCT), s=1"}
    shares = table["final share of ln C"]
    assert np.all((shares > 0) & (shares < 3))
    refined = table[table["method"] == "UniBCT"].set_index("setting")["new/old"]
    plain = table[table["method"] == "UniBCT (no refinement)"].set_index("setting")["new/old"]
    assert np.allclose(table[table["method"] == "UniBCT"].set_index("setting")["refined - plain (new/old)"], refined - plain)
    assert STUDY.run(profile, store) == results  # loaded, not retrained
