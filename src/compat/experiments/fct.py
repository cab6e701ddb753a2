"""The FCT tables: forward-compatible upgrades of a stored gallery through a learned transformation.

Ramanujan et al., "Forward Compatible Training for Large-Scale Embedding Retrieval Systems",
CVPR 2022, under the protocol of its CIFAR-100 experiments (apple/ml-fct). The old model and the
(independently trained) new model are the BCT table's own artefacts, shared through the store;
this experiment adds a SimCLR side-information model trained on the old training data and the
transformation h, trained on stored embeddings of augmented views of the new training set.
Rows: old/old, new/new, BCT new/old, FCT new/old without and with side-information; one seed
adds the ablations (side-information size, BatchNorm freezing); the upgrade cost is measured once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..artefacts import ModelSpec, SubsetSpec, TransformationSpec
from ..errors import check_range
from ..methods import method_options
from ..published import FASTFILL_CIFAR100, FASTFILL_IMAGENET, reference_table
from ..store import Store
from ..train import TrainConfig
from ..transformations import TransformationConfig
from ..verdicts import Outcome, claim_line, decide, headline
from . import bct, common
from .base import Case, Claim, ComparisonEntry, Experiment, Plan, main_results, register_experiment

NO_SIDE = "FCT (no side-info) new/old"
SIDE = "FCT (side-info) new/old"
# galleries named h_* are the old gallery upgraded by a transformation
CASES = [
    Case("old/old", "old", "old"),
    Case("independent new/new", "independent", "independent"),
    Case("BCT new/old", "bct", "old"),
    Case(NO_SIDE, "independent", "h_none"),
    Case(SIDE, "independent", "h_side"),
]
PICTURE_CASES = ["old/old", SIDE, "independent new/new"]


@dataclass(frozen=True)
class FCTConfig:
    """The FCT chapter's settings.

    :param side_dim: side-information size of the main table (128 in the paper).
    :param ablation_side_dims: further sizes for the one-seed ablation (0 and ``side_dim`` come from the main table).
    :param side_train: the SimCLR model's recipe (two views per image; the old model's backbone, a projection head).
    :param temperature: of SimCLR's NT-Xent loss.
    :param transformation: h's architecture and recipe.
    :param ablation: also run the one-seed ablations (side-information size, BatchNorm freezing).
    :param cost: measure the upgrade cost (h on stored vectors vs re-embedding images); a timing, so on a quiet
        machine: ``python -m compat bench upgrade``.
    :param cost_sizes: gallery sizes N at which the upgrade cost is measured.
    :param picture_queries: val queries shown with their top-5 in the retrieval picture.
    """

    side_dim: int = 128
    ablation_side_dims: tuple[int, ...] = (8, 32)
    side_train: TrainConfig = field(default_factory=TrainConfig)
    temperature: float = 0.2
    transformation: TransformationConfig = field(default_factory=TransformationConfig)
    ablation: bool = True
    cost: bool = True
    cost_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    picture_queries: int = 6

    def __post_init__(self) -> None:
        for d in (self.side_dim, *self.ablation_side_dims):
            check_range("fct side-information size", d, 1, 4096)
        check_range("fct.temperature", self.temperature, 0, 10, low_open=True)
        common.check_cost_sizes("fct", self.cost_sizes)
        check_range("fct.picture_queries", self.picture_queries, 1, 50)


def side_spec(profile, seed: int, dim: int) -> ModelSpec:
    """The SimCLR side-information model: the old model's backbone, a ``dim``-d output, the old training data."""
    protocol = profile.protocol
    return ModelSpec(
        data=profile.data,
        subset=SubsetSpec(protocol.scenario, protocol.old_fraction, "old"),
        model=dataclasses.replace(profile.model, embedding_dim=dim),
        train=profile.fct.side_train,
        seed=seed,
        method=method_options("simclr", temperature=profile.fct.temperature),
    )


def transformation_spec(profile, seed: int, side_dim: int, freeze_bn: bool = True) -> TransformationSpec:
    """h from the BCT table's old model to its independent new model, with ``side_dim``-d side-information (0: none)."""
    models = bct.model_specs(profile, seed)
    config = dataclasses.replace(profile.fct.transformation, freeze_bn=freeze_bn)
    side = side_spec(profile, seed, side_dim) if side_dim else None
    return TransformationSpec(old=models["old"], new=models["independent"], side=side, config=config, seed=seed)


def ablation_variants(profile) -> dict[str, tuple[int, bool]]:
    """Ablation case name -> (side-information size, BatchNorm frozen)."""
    fct = profile.fct
    variants = {f"FCT side-info {d} new/old": (d, True) for d in sorted({0, *fct.ablation_side_dims, fct.side_dim})}
    variants[f"FCT side-info {fct.side_dim}, BatchNorm not frozen new/old"] = (fct.side_dim, False)
    return variants


def _picture(embeddings: dict[str, np.ndarray], labels: np.ndarray, cases: list, count: int, seed: int) -> dict:
    """Top-5 gallery indices (L2, leave-one-out) of ``count`` val queries from distinct classes, per picture case."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(np.unique(labels), size=min(count, len(np.unique(labels))), replace=False)
    queries = [int(rng.choice(np.flatnonzero(labels == c))) for c in classes]
    top = {}
    by_case = {case: (query, gallery) for case, query, gallery in cases}
    for case in PICTURE_CASES:
        query, gallery = by_case[case]
        q = embeddings[query][queries]
        d2 = ((q[:, None, :] - embeddings[gallery][None, :, :]) ** 2).sum(-1)  # K x N, K small
        d2[np.arange(len(queries)), queries] = np.inf  # leave-one-out
        top[case] = np.argsort(d2, axis=1, kind="stable")[:, :5].tolist()
    return {"queries": queries, "top5": top}


COMPARISON = (  # the chapter's rows in the comparison chapter
    ComparisonEntry("FCT, no side-information", NO_SIDE, "d old floats", "transformation", ("plain", "fct")),
    ComparisonEntry("FCT, side-information", SIDE, "d old + d_side floats", "transformation", ("plain", "simclr", "fct"), side_dim=-1),
)


@register_experiment("fct")
class FCT(Experiment):
    comparison = COMPARISON
    artefact_names = {**bct.ARTEFACT_NAMES, "h_none": "h, no side-info", "h_side": "h, side-info"}
    config_class = FCTConfig
    profile_configs = {
        "smoke": FCTConfig(
            side_dim=16,
            ablation_side_dims=(8,),
            side_train=TrainConfig(epochs=2, batch_size=64, lr=0.1, warmup_epochs=1),
            transformation=TransformationConfig(inner_dim=64, epochs=4, batch_size=128, warmup_epochs=1, augmented_views=2),
            cost_sizes=(100, 400),
            picture_queries=3,
        ),
        "cpu": FCTConfig(
            side_train=TrainConfig(epochs=6, batch_size=256, lr=0.3, warmup_epochs=0.5),
            transformation=TransformationConfig(inner_dim=512, epochs=20, warmup_epochs=1.25, augmented_views=2),
        ),
        "gpu": FCTConfig(
            side_train=TrainConfig(epochs=200, batch_size=512, lr=0.6, warmup_epochs=10), transformation=TransformationConfig(augmented_views=16)
        ),
    }

    def plan(self, profile, seed: int, ablation: bool = False) -> Plan:
        models = bct.model_specs(profile, seed)
        specs = {"old": models["old"], "independent": models["independent"], "bct": models["bct"]}
        key_extra = {"picture_queries": profile.fct.picture_queries}
        if not ablation:
            transforms = {"h_none": transformation_spec(profile, seed, 0), "h_side": transformation_spec(profile, seed, profile.fct.side_dim)}
            return Plan(specs, CASES, transforms, key_extra)
        transforms, cases = {}, CASES[:2]
        for i, (case, (dim, freeze)) in enumerate(ablation_variants(profile).items()):
            transforms[f"h_{i}"] = transformation_spec(profile, seed, dim, freeze)
            cases.append(Case(case, "independent", f"h_{i}"))
        return Plan(specs, cases, transforms, key_extra)

    def artefact_label(self, name: str, result: dict) -> str:
        """The ablation's transformations (stored as ``h_<i>``) by the row that reads them: "h, side-info 8"."""
        if name in self.artefact_names:
            return self.artefact_names[name]
        case = next((r["case"] for r in result["rows"] if r["gallery"] == name), None)
        return "h, " + case.removeprefix("FCT ").removesuffix(" new/old") if case else name

    def extra(self, profile, seed, ablation, plan, embeddings, labels) -> dict:
        cases = [(c.label, c.query, c.gallery) for c in plan.cases]
        return {
            "transformations": {
                n: {"side_dim": t.side_dim() if t.side else 0, "freeze_bn": t.config.freeze_bn} for n, t in plan.transformations.items()
            },
            "picture": None if ablation else _picture(embeddings, labels, cases, profile.fct.picture_queries, seed),
        }

    def claims(self, results: list[dict] | None = None) -> list[Claim]:
        return [
            Claim("the transformed gallery beats the old one: FCT new/old above old/old", SIDE, "old/old"),
            Claim("FCT beats BCT: FCT new/old above BCT new/old", SIDE, "BCT new/old"),
            Claim("side-information helps: FCT with side-info above FCT without", SIDE, NO_SIDE),
            Claim("backfilling is still the ceiling: new/new above FCT new/old", "independent new/new", SIDE),
        ]

    def outcome(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> Outcome:
        """Reproduced: every claim holds and no update-gain interval lies below the published range; partly: the
        central claim (the first: the transformed gallery beats the old one) holds, not everything else; not
        reproduced: the central claim does not hold."""
        checked = self.check_claims(results, distance, store)
        table = self.summary_table(results, distance, store)
        published = published_gains()
        # our gain interval against the published range: below it, or consistent with (or above) it
        short = [case.removesuffix(" new/old") for case in (NO_SIDE, SIDE) if table.loc[case, "G top1 high"] < published.loc[case].min()]
        holds = checked["holds"].tolist()
        label = "reproduced" if all(holds) and not short else ("partly reproduced" if holds[0] else "not reproduced")
        if label == "reproduced":
            reason = "Every claim holds and both update gains reach the published range."
        elif label == "partly reproduced":
            failed = [c for c, h in zip(checked["claim"], holds) if not h]
            reason = (
                "The transformed gallery beats the old one; "
                + "; ".join(
                    ([f"{len(failed)} of {len(holds)} claims do not hold"] if failed else [])
                    + ([f"the update gain of {' and '.join(short)} lies below the published range"] if short else [])
                )
                + "."
            )
        else:
            reason = "The transformed gallery does not beat the old one."
        return decide("FCT", distance, label, reason, checked, checked["claim"].iloc[0], len(main_results(results)))

    def verdict(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> str:
        """Markdown: the :meth:`outcome`, the claims with intervals, and our update gains against the published ones."""
        checked = self.check_claims(results, distance, store)
        table = self.summary_table(results, distance, store)
        published = published_gains()
        lines = [headline(self.outcome(results, distance, store)), *(claim_line(c) for _, c in checked.iterrows())]
        for case in (NO_SIDE, SIDE):
            low, high = published.loc[case].min(), published.loc[case].max()
            g = table.loc[case]
            where = "below" if g["G top1 high"] < low else "above" if g["G top1 low"] > high else "overlapping"
            lines.append(
                f"- update gain of {case.removesuffix(' new/old')} (top-1): {g['G top1']:.2f} "
                f"(95 % CI {g['G top1 low']:.2f} to {g['G top1 high']:.2f}); {low:.2f}-{high:.2f} in the published "
                f"tables: our interval lies {where} that range"
            )
        return "\n".join(lines)


def examples(results: list[dict]) -> dict:
    """The retrieval picture's queries and top-5 lists of the first main seed."""
    return main_results(results)[0]["picture"]


def published_gains(metric: str = "top1") -> pd.DataFrame:
    """Update gains of the FCT rows in the published tables that report both variants (FastFill README)."""
    return pd.DataFrame(
        {
            name: reference_table(ref)[f"G ({metric})"][[NO_SIDE, SIDE]]
            for name, ref in (("CIFAR-100", FASTFILL_CIFAR100), ("ImageNet-1k", FASTFILL_IMAGENET))
        }
    )


def upgrade_cost(profile, store: Store | None = None) -> dict:
    """The upgrade cost of the main table's h (side-information ``side_dim``) at the profile's ``cost_sizes``."""
    spec = transformation_spec(profile, profile.protocol.ablation_seed, profile.fct.side_dim)
    return common.upgrade_cost("fct", "fct-cost", profile, spec, profile.fct.cost_sizes, store or Store())
