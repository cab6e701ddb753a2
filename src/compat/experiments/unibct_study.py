"""The UniBCT study: how the prototype loss's strength decides the chapter's verdict, run before its main table.

Zhang et al., IJCAI 2022 (arXiv 2203.01583), read through the MixBCT re-implementation, whose prototypes are means
of the old model's *raw* features (their length scales the cosine logits). Per scenario and seed: {no refinement,
refinement} x every prototype setting (unit prototypes at each of ``scales``, and ``raw`` ones at s = 1), each a new
model of the UniBCT chapter's scenario against its old model, with the chapter's weight, tau, lambda and schedule.
Without refinement the term is BCT in prototype form (plain class means, the same loss, scale and schedule), so the
refinement row against it is the claim's only difference. One result file per (scenario, seed), so that each lands
on its own; the old and independent models are the UniBCT chapter's (shared through the store).

The rules, fixed before the runs and unit-tested on constructed results, are :data:`RULES` (the chapter prints
them): :func:`refinement_word` and :func:`main_setting`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError, check_choice, check_range, check_seeds
from ..intervals import Interval, difference_interval, mean_interval
from ..splits import SCENARIOS
from ..store import Store
from . import unibct
from .base import Case, Experiment, Job, Plan, case_values, register_experiment

VARIANTS = ("UniBCT (no refinement)", "UniBCT")  # the study's two methods, as the chapter names them
FLOOR_SHARE = 0.8  # a prototype loss "leaves its floor" below this share of ln C (see main_setting)
RULES = f"""- **Refinement, per scenario and setting**: it *helps* when the 95 % interval of (refined - plain) new/old
  top-1 lies above 0 and both seeds agree (one seed decides nothing), *hurts* when it lies below 0 and both seeds agree; otherwise the
  difference is inside the noise and decides nothing. Without refinement the term is BCT in prototype form
  (plain class means, the same loss, scale and schedule), so this is also "UniBCT above BCT (prototype form)".
- **The main table's setting**: the reference's own form, raw prototypes, when its loss leaves the floor (every
  UniBCT model's last-epoch prototype loss below {FLOOR_SHARE:.0%} of ln C, the loss of a uniform guess); else the
  smallest studied unit scale whose loss does; else the raw form, with the floor stated. Never the setting
  that makes the paper look best: the rule reads the loss, not the retrieval numbers."""


@dataclass(frozen=True)
class UniBCTStudyConfig:
    """The study's settings (the chapter's weight, tau, lambda and old fraction come from ``unibct``).

    :param scenarios: the splits the study runs, one result file per scenario and seed (none: not part of
        this profile).
    :param seeds: the study's seeds (every setting at each).
    :param scales: the logit scales s studied with unit prototypes.
    :param raw: also study the reference's raw prototypes (at s = 1: their length is the scale).
    """

    scenarios: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0, 1)
    scales: tuple[float, ...] = (1.0, 16.0)
    raw: bool = True

    def __post_init__(self) -> None:
        if len(set(self.scenarios)) != len(self.scenarios):
            raise ConfigError(f"unibct_study.scenarios must be distinct, got {self.scenarios!r}")
        for s in self.scenarios:
            check_choice("unibct_study.scenarios item", s, SCENARIOS)
        check_seeds("unibct_study.seeds", self.seeds)
        if len(set(self.scales)) != len(self.scales) or not (self.scales or self.raw):
            raise ConfigError(f"unibct_study.scales must be distinct, and with raw={self.raw} name at least one setting, got {self.scales!r}")
        for s in self.scales:
            check_range("unibct_study.scales item", s, 0, 1000, low_open=True)

    @property
    def settings(self) -> tuple[tuple[str, float], ...]:
        """(prototype form, scale) of every studied setting, in the figure's order."""
        return (*(("unit", float(s)) for s in sorted(self.scales)), *((("raw", 1.0),) if self.raw else ()))


def setting_label(form: str, scale: float) -> str:
    return f"raw (MixBCT), s={scale:g}" if form == "raw" else f"unit, s={scale:g}"


def _case(scenario: str, method: str, form: str, scale: float, pair: str) -> str:
    return f"{scenario}: {method} | {setting_label(form, scale)} {pair}"


def _with_sections(profile, **sections):
    return dataclasses.replace(profile, sections={**profile.sections, **sections})


@register_experiment("unibct_study")
class UniBCTStudy(Experiment):
    config_class = UniBCTStudyConfig
    tabulates = False  # a study inside the UniBCT chapter: its rules decide the chapter's setting, the chapter the verdict
    profile_configs = {"smoke": UniBCTStudyConfig(scenarios=("open-class",))}

    def plan(self, profile, seed: int, ablation: bool = False) -> Plan:
        cfg = profile.unibct_study
        specs, cases = {}, []
        for scenario in cfg.scenarios:
            old, independent = f"{scenario}/old", f"{scenario}/independent"
            cases += [
                Case(f"{scenario}: old/old", old, old),
                Case(f"{scenario}: independent new/new", independent, independent),
                Case(f"{scenario}: independent new/old", independent, old),
            ]
            for form, scale in cfg.settings:
                section = dataclasses.replace(profile.unibct, scenarios=(scenario,), methods=VARIANTS, ablation=False, prototypes=form, scale=scale)
                chapter = unibct.model_specs(_with_sections(profile, unibct=section), seed)
                specs[old], specs[independent] = chapter[old], chapter[independent]
                for method in VARIANTS:
                    name = f"{scenario}/{method} | {setting_label(form, scale)}"
                    specs[name] = chapter[f"{scenario}/{method}"]
                    cases += [
                        Case(_case(scenario, method, form, scale, "new/new"), name, name),
                        Case(_case(scenario, method, form, scale, "new/old"), name, old),
                    ]
        return Plan(specs, cases)

    def references(self, case: str) -> tuple[str, str]:
        scenario = case.split(":", 1)[0]
        return f"{scenario}: old/old", f"{scenario}: independent new/new"

    def one_scenario(self, profile, scenario: str):
        """The profile that names ``scenario`` alone: what one result file is computed from."""
        return _with_sections(profile, unibct_study=dataclasses.replace(profile.unibct_study, scenarios=(scenario,)))

    def jobs(self, profile) -> list[Job]:
        """One result file per (scenario, seed), every seed of a scenario before the next scenario, so that a
        scenario the rules can decide (all its seeds) lands first."""
        cfg = profile.unibct_study
        return [
            self._job(one, f"{scenario}, seed {seed}", self.plan(one, seed), lambda store, one=one, seed=seed: self.run_seed(one, seed, store))
            for scenario in cfg.scenarios
            for one in (self.one_scenario(profile, scenario),)
            for seed in cfg.seeds
        ]


def scenario_results(results: list[dict], scenario: str) -> list[dict]:
    """The study's result files of one scenario (one per seed)."""
    return [r for r in results if any(row["case"] == f"{scenario}: old/old" for row in r["rows"])]


def final_shares(results: list[dict], scenario: str, method: str, form: str, scale: float) -> list[float]:
    """The prototype loss's share of ln C in the last epoch, per seed, of one studied model."""
    name = f"{scenario}/{method} | {setting_label(form, scale)}"
    return [r["models"][name]["epochs"][-1].get("prototype_share_of_ln_c", np.nan) for r in scenario_results(results, scenario)]


def refinement_word(diff: Interval, seeds: int = 2) -> str:
    """The refinement rule on (refined - plain) new/old top-1: helps, hurts, or inside the noise; with fewer than
    ``seeds`` seeds it decides nothing yet (the rule asks every one of them to agree)."""
    if len(diff.per_seed) < seeds:
        return f"undecided: {len(diff.per_seed)} of {seeds} seeds"
    if diff.above(0.0):
        return "helps"
    if diff.high < 0 and all(v < 0 for v in diff.per_seed):
        return "hurts"
    return "inside the noise"


def main_setting(shares: dict[tuple[str, float], list[float]]) -> tuple[tuple[str, float], str]:
    """The main table's (prototype form, scale) by the rule fixed before the study, and the reason in words.

    :param shares: per studied setting, the final prototype-loss shares of ln C of all its UniBCT models
        (both variants, every scenario and seed); NaN counts as not below the floor.
    """
    if not shares:
        raise ConfigError("the study has no settings to choose from")

    def leaves(setting) -> bool:
        values = np.asarray(shares[setting], dtype=float)
        return len(values) > 0 and bool(np.all(values < FLOOR_SHARE))

    raw = next((s for s in shares if s[0] == "raw"), None)
    if raw is not None and leaves(raw):
        return raw, f"the reference's raw prototypes leave the floor: every final share of ln C is below {FLOOR_SHARE:g}"
    units = sorted((s for s in shares if s[0] == "unit" and leaves(s)), key=lambda s: s[1])
    if units:
        return units[0], (
            f"the raw prototypes' loss stays at its floor; s={units[0][1]:g} is the smallest unit scale whose "
            f"final shares of ln C are all below {FLOOR_SHARE:g}"
        )
    fallback = raw or min(shares, key=lambda s: s[1])
    return fallback, f"no studied setting's loss leaves its floor, a final share of ln C below {FLOOR_SHARE:g}: the reference's form is kept"


def study_table(results: list[dict], profile, distance: str = "l2", store: Store | None = None) -> pd.DataFrame:
    """Per scenario, setting and variant: new/old and new/new top-1 (mean over seeds, 95 % interval), the update
    gain's point value, the final share of ln C; per setting the refinement difference on new/old and its word."""
    store = store or Store()
    cfg = profile.unibct_study
    records = []
    for scenario in cfg.scenarios:
        res = scenario_results(results, scenario)
        if not res:
            continue
        old = mean_interval(case_values(res, f"{scenario}: old/old", distance, "top1", store))
        for form, scale in cfg.settings:
            values = {
                m: {p: case_values(res, _case(scenario, m, form, scale, p), distance, "top1", store) for p in ("new/old", "new/new")}
                for m in VARIANTS
            }
            diff = difference_interval(values["UniBCT"]["new/old"], values["UniBCT (no refinement)"]["new/old"])
            for method in VARIANTS:
                cross, own = (mean_interval(values[method][p]) for p in ("new/old", "new/new"))
                records.append(
                    {
                        "scenario": scenario,
                        "setting": setting_label(form, scale),
                        "method": method,
                        "new/old": cross.value,
                        "new/old low": cross.low,
                        "new/old high": cross.high,
                        "new/new": own.value,
                        "new/new low": own.low,
                        "new/new high": own.high,
                        "new/old - old/old": cross.value - old.value,
                        "final share of ln C": float(np.nanmean(final_shares(results, scenario, method, form, scale))),
                        "refined - plain (new/old)": diff.value,
                        "refined - plain low": diff.low,
                        "refined - plain high": diff.high,
                        "refinement": refinement_word(diff, len(cfg.seeds)),
                        "seeds": len(res),
                    }
                )
    return pd.DataFrame.from_records(records)


def chosen_setting(results: list[dict], profile) -> tuple[tuple[str, float], str]:
    """:func:`main_setting` over the study's result files."""
    cfg = profile.unibct_study
    shares = {setting: [v for s in cfg.scenarios for m in VARIANTS for v in final_shares(results, s, m, *setting)] for setting in cfg.settings}
    return main_setting(shares)
