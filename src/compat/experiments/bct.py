"""The BCT table: old model on the first half of the classes, new models on all of them.

Shen et al., "Towards Backward-Compatible Representation Learning", CVPR 2020, under the
protocol of FCT's CIFAR-100 experiments (apple/ml-fct): rows old/old, independent new/new,
independent new/old, BCT new/old and new/new, L2 new/old and new/new; CMC top-1/5, mAP and
the update gain, each with a 95 % interval. Each seed trains its own old and new models; one
seed adds the ablations: influence weight 10 (BT-2), normalized embedding and classifier with
label smoothing (BT-2's cosine logits), both together, and openBCT's L2 without cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..artefacts import ModelSpec, SubsetSpec
from ..errors import check_range
from ..intervals import difference_interval
from ..methods import method_options
from ..store import Store
from ..verdicts import Outcome, claim_line, decide, headline
from .base import Case, Claim, ComparisonEntry, Experiment, Plan, case_values, main_results, register_experiment, row
from .common import old_model

CASES = [
    Case("old/old", "old", "old"),
    Case("independent new/new", "independent", "independent"),
    Case("independent new/old", "independent", "old"),
    Case("BCT new/old", "bct", "old"),
    Case("BCT new/new", "bct", "bct"),
    Case("L2 new/old", "l2", "old"),
    Case("L2 new/new", "l2", "l2"),
]
# the stored names of the chapter's models -> the reader's (the case labels' and the glossary's words)
ARTEFACT_NAMES = {
    "old": "old model",
    "independent": "independent model",
    "bct": "BCT",
    "l2": "L2 baseline",
    "bct_heavy": "BCT λ=10",
    "bct_normalized": "BCT normalized",
    "bct_heavy_normalized": "BCT λ=10 normalized",
    "l2_openbct": "L2 without CE (openBCT)",
}
# each ablation model against the old gallery and against its own, named as the reader meets it
ABLATION_CASES = [
    Case(f"{ARTEFACT_NAMES[model]} {pair}", model, gallery)
    for model in ("bct_heavy", "bct_normalized", "bct_heavy_normalized", "l2_openbct")
    for pair, gallery in (("new/old", "old"), ("new/new", model))
]


@dataclass(frozen=True)
class BCTConfig:
    """The BCT chapter's settings.

    :param influence_weight: lambda of the influence loss (1 in openBCT and OpenCompatible).
    :param l2_weight: weight of the L2 compatibility loss (1 in both).
    :param ablation: also run the one-seed ablation (influence weight, normalization, openBCT's L2).
    :param ablation_weight: the larger influence weight of the ablation (10 in the BT-2 code).
    :param normalized_smoothing: label smoothing of the normalized (BT-2) influence term (0.1 in BT-2).
    """

    influence_weight: float = 1.0
    l2_weight: float = 1.0
    ablation: bool = True
    ablation_weight: float = 10.0
    normalized_smoothing: float = 0.1

    def __post_init__(self) -> None:
        check_range("bct.influence_weight", self.influence_weight, 0, 1000)
        check_range("bct.l2_weight", self.l2_weight, 0, 1000)
        check_range("bct.ablation_weight", self.ablation_weight, 0, 1000)
        check_range("bct.normalized_smoothing", self.normalized_smoothing, 0, 1, high_open=True)


def model_specs(profile, seed: int, ablation: bool = False) -> dict[str, ModelSpec]:
    """The models of one seed by canonical name: old, independent (new), bct, l2 (+ the ablation's)."""
    cfg, protocol = profile.bct, profile.protocol
    common = {"data": profile.data, "model": profile.model, "seed": seed}
    old = old_model(profile, seed)
    new = {"subset": SubsetSpec(protocol.scenario, protocol.old_fraction, "new"), "train": profile.new_train, **common}
    specs = {
        "old": old,
        "independent": ModelSpec(**new),
        "bct": ModelSpec(**new, method=method_options("bct", cfg.influence_weight), parent=old),
        "l2": ModelSpec(**new, method=method_options("l2", cfg.l2_weight), parent=old),
    }
    if ablation:
        normalized = {"normalize": True, "label_smoothing": cfg.normalized_smoothing}
        specs["bct_heavy"] = ModelSpec(**new, method=method_options("bct", cfg.ablation_weight), parent=old)
        specs["bct_normalized"] = ModelSpec(**new, method=method_options("bct", cfg.influence_weight, **normalized), parent=old)
        specs["bct_heavy_normalized"] = ModelSpec(**new, method=method_options("bct", cfg.ablation_weight, **normalized), parent=old)
        specs["l2_openbct"] = ModelSpec(**new, method=method_options("l2", cfg.l2_weight, keep_ce=False), parent=old)
    return specs


COMPARISON = (  # the chapter's rows in the comparison chapter
    ComparisonEntry("no upgrade (old model on both sides)", "old/old", "d old floats", "nothing", ("plain",)),
    ComparisonEntry("backfill (independent new model)", "independent new/new", "the images (re-embedded)", "re-embedding", ("plain",)),
    ComparisonEntry("independent new model, old gallery", "independent new/old", "d old floats", "nothing", ("plain",)),
    ComparisonEntry("L2 (OpenCompatible)", "L2 new/old", "d old floats", "nothing", ("l2",)),
    ComparisonEntry("BCT", "BCT new/old", "d old floats", "nothing", ("bct",)),
)


@register_experiment("bct")
class BCT(Experiment):
    comparison = COMPARISON
    artefact_names = ARTEFACT_NAMES
    config_class = BCTConfig
    profile_configs = {"smoke": BCTConfig(), "cpu": BCTConfig(), "gpu": BCTConfig()}

    def plan(self, profile, seed: int, ablation: bool = False) -> Plan:
        return Plan(models=model_specs(profile, seed, ablation), cases=CASES + (ABLATION_CASES if ablation else []))

    def claims(self, results: list[dict] | None = None) -> list[Claim]:
        return [
            Claim("compatibility is learned: BCT new/old above independent new/old", "BCT new/old", "independent new/old"),
            Claim("empirical criterion: BCT new/old above old/old", "BCT new/old", "old/old"),
            Claim("BCT beats the L2 baseline on new/old", "BCT new/old", "L2 new/old"),
            Claim("the upgrade still pays: BCT new/new above old/old", "BCT new/new", "old/old"),
        ]

    def outcome(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> Outcome:
        """Reproduced: every claim holds; partly: the central one (the first, compatibility: BCT new/old above
        old/old) holds but not every other; not reproduced: the central one does not hold."""
        checked = self.check_claims(results, distance, store)
        holds = checked["holds"].tolist()
        label = "reproduced" if all(holds) else ("partly reproduced" if holds[0] else "not reproduced")
        reason = {
            "reproduced": "Every claim holds.",
            "partly reproduced": "Compatibility is learned, but not every claim holds.",
            "not reproduced": "The BCT model's queries do not beat the old model against the old gallery.",
        }[label]
        return decide("BCT", distance, label, reason, checked, checked["claim"].iloc[0], len(main_results(results)))

    def verdict(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> str:
        """Markdown: the :meth:`outcome`, each claim with its interval, and the one-seed ablation."""
        checked = self.check_claims(results, distance, store)
        lines = [headline(self.outcome(results, distance, store)), *(claim_line(c) for _, c in checked.iterrows())]
        return "\n".join(lines + self._ablation_lines(results, distance, store))

    def _ablation_lines(self, results: list[dict], distance: str, store) -> list[str]:
        """The one-seed ablation against the empirical criterion (new/old above old/old, interval over queries)."""
        ablation = [r for r in results if r["kind"] == "ablation"]
        if not ablation:
            return []
        lines = []
        for case in (c.label for c in ABLATION_CASES if c.gallery == "old"):
            why = row(ablation[0], distance, case).get("diverged")
            if why:
                lines.append(f"- ablation (seed {ablation[0]['seed']}), {case.removesuffix(' new/old')}: diverged ({why}); no number is reported")
                continue
            d = difference_interval(case_values(ablation, case, distance, "top1", store), case_values(ablation, "old/old", distance, "top1", store))
            lines.append(
                f"- ablation (seed {ablation[0]['seed']}), {case.removesuffix(' new/old')}: new/old minus old/old "
                f"{d.value:+.2f} points (95 % CI {d.low:+.2f} to {d.high:+.2f}): criterion "
                f"{'met' if d.above(0) else 'not met'}"
            )
        return lines
