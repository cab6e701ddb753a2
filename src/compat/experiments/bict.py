"""The BiCT tables: privacy-preserving sequential upgrades, backward-compatible new models and a stored
gallery upgraded forward without its images.

Su, Zhang et al., "Privacy-Preserving Model Upgrades with Bidirectional Compatible Training in Image
Retrieval", arXiv 2204.13919. Only the abstract is available: (1) each new model is trained
backward-compatible (BCT); (2) the stored gallery is upgraded by forward-compatible training towards
the new model's space, without raw gallery images; (3) over sequential upgrades this beats BCT alone,
whose gains are capped by the fixed old gallery; (4) the BCT loss weight matters for both directions.
Everything else is this book's design: generations on growing class prefixes (all images of their
classes); the forward transformation is FCT's h without side-information, trained on the new
generation's training set, where both models run; the gallery is embedded once, by generation 1.

Strategies per generation g: *BCT only* (phi_g BCT-trained against phi_{g-1}; the gallery keeps
phi_1's vectors), *BiCT* (the same models; the gallery upgraded by h_g from phi_{g-1}'s space into
phi_g's, generation after generation), *FCT alone* (independent models, the gallery upgraded the
same way) and *backfill* (every gallery image re-embedded by the independent phi_g: the upper bound).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..artefacts import ModelSpec, SubsetSpec, TransformationSpec, get_embeddings, get_transformation, upgrade_chain
from ..errors import ConfigError, check_choice, check_range, check_seeds
from ..methods import method_options
from ..store import Store
from ..transformations import TransformationConfig
from ..verdicts import Outcome, claim_line, decide, headline
from . import bct, common
from .base import Case, Claim, ComparisonEntry, Experiment, Plan, main_results, register_experiment
from .bict_reading import last_generation, main_variant, sweep_reading, thesis

VARIANT_SUFFIX = {"stepwise": "", "chain": " (chain-trained h)"}  # h's training variant -> its rows' suffix
ANCHORED = ", BCT to gen 1"  # the control's rows: phi_g BCT-trained against the gallery's own model phi_1
# a stored artefact's name: its chain ("bct" or "independent"), " h" for a transformation, the generation, a suffix
ARTEFACT_NAME = re.compile(r"(?P<chain>bct|independent)(?P<h> h)? (?P<g>\d+)(?P<rest>.*)")


@dataclass(frozen=True)
class BiCTConfig:
    """The BiCT chapter's settings.

    :param seeds: the seeds of this chapter's main table (empty: the protocol's).
    :param generations: share of the classes each generation trains on (growing; the last may be 1: all).
    :param weight: lambda of the BCT loss of each new generation against its predecessor.
    :param transformation: the forward transformation h (FCT's, without side-information).
    :param transformations: how each h_g is trained, the first the main table's (its claims, its sweep): ``stepwise``
        (on phi_{g-1}'s embeddings of generation g's training images) or ``chain`` (chain-consistent: on what the
        gallery will hold, phi_1's embeddings of those images passed through h_2 ... h_{g-1}).
    :param anchored: also train the BCT-only control against the gallery's own model: phi_g BCT-trained against
        phi_1, which the gallery keeps (beside the chained phi_g, trained against phi_{g-1}).
    :param ablation: also run the one-seed sweep over the BCT weight.
    :param sweep: BCT weights of the sweep.
    :param cost: measure the gallery upgrade's cost (the last generation's h on stored vectors against
        re-embedding images); a timing, so on a quiet machine: ``python -m compat bench upgrade bict``.
    :param cost_sizes: gallery sizes N of the cost measurement.
    """

    seeds: tuple[int, ...] = ()
    generations: tuple[float, ...] = (0.25, 0.5, 1.0)
    weight: float = 1.0
    transformation: TransformationConfig = field(
        default_factory=lambda: TransformationConfig(inner_dim=512, epochs=20, warmup_epochs=1.25, augmented_views=2)
    )
    transformations: tuple[str, ...] = ("stepwise",)
    anchored: bool = False
    ablation: bool = True
    sweep: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)
    cost: bool = True
    cost_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)

    def __post_init__(self) -> None:
        check_seeds("bict.seeds", self.seeds, allow_empty=True)
        g = self.generations
        if len(g) < 2 or any(b <= a for a, b in zip(g, g[1:])):
            raise ConfigError(f"bict.generations must be at least two strictly growing class shares, got {g!r}")
        for share in g:
            check_range("bict.generations item", share, 0, 1, low_open=True)
        check_range("bict.weight", self.weight, 0, 1000)
        if not self.transformations or len(set(self.transformations)) != len(self.transformations):
            raise ConfigError(f"bict.transformations must be distinct and non-empty, got {self.transformations!r}")
        for variant in self.transformations:
            check_choice("bict.transformations item", variant, tuple(VARIANT_SUFFIX))
        for w in self.sweep:
            check_range("bict.sweep item", w, 0, 1000)
        common.check_cost_sizes("bict", self.cost_sizes)


def _subset(profile, share: float) -> SubsetSpec:
    """A generation's training rows: the first ``share`` of the classes, all their images. The BCT chapter's
    old (first half) and new (all classes) training sets are the same spec, so those models are shared."""
    if share == 1.0:
        return SubsetSpec(profile.protocol.scenario, profile.protocol.old_fraction, "new")
    return SubsetSpec("extended-class", share, "old")


def generation_specs(profile, seed: int, weight: float, anchored: bool = False) -> dict[str, ModelSpec]:
    """``independent g`` and ``bct g`` for every generation g >= 1 (generation 1 is one model for both); with
    ``anchored``, every ``bct g`` is trained against generation 1 instead of generation g - 1."""
    cfg = profile.bict
    common = {"data": profile.data, "model": profile.model, "seed": seed}
    specs: dict[str, ModelSpec] = {}
    previous = None
    for g, share in enumerate(cfg.generations, 1):
        subset = _subset(profile, share)
        train = profile.old_train if subset.role == "old" else profile.new_train
        shared = bct.model_specs(profile, seed)
        independent = next((s for s in shared.values() if s.subset == subset and s.method.name == "plain"), None)
        # generation 1 gets its own initialization stream: it and the BCT chapter's old model are both "old" models
        specs[f"independent {g}"] = independent or ModelSpec(subset=subset, train=train, init_stream=g, **common)
        if g == 1:
            specs["bct 1"] = specs["independent 1"]
        else:
            specs[f"bct {g}"] = ModelSpec(subset=subset, train=train, method=method_options("bct", weight), parent=previous, **common)
        previous = specs["bct 1"] if anchored else specs[f"bct {g}"]
    return specs


def _transformations(profile, seed: int, specs: dict[str, ModelSpec], chain: str, variant: str = "stepwise") -> list[TransformationSpec]:
    """h_2 ... h_G of one chain (``bct`` or ``independent``): h_g maps the gallery's vectors after generation g-1 into
    generation g's space, trained on generation g's training set: ``stepwise`` from phi_{g-1}'s embeddings of those
    images, ``chain`` from phi_1's embeddings passed through h_2 ... h_{g-1}, what the gallery holds by then (the
    training images are embedded, never a gallery image). h_2 is the same transformation in both."""
    config = profile.bict.transformation
    steps: list[TransformationSpec] = []
    for g in range(2, len(profile.bict.generations) + 1):
        if variant == "chain":
            steps.append(
                TransformationSpec(old=specs[f"{chain} 1"], new=specs[f"{chain} {g}"], side=None, config=config, seed=seed, through=tuple(steps))
            )
        else:
            steps.append(TransformationSpec(old=specs[f"{chain} {g - 1}"], new=specs[f"{chain} {g}"], side=None, config=config, seed=seed))
    return steps


def _chain_gallery(base: ModelSpec, steps: list[TransformationSpec]):
    """The stored gallery after ``steps``: generation 1's val embeddings (the only time gallery images are read),
    then stored vectors only."""

    def make(store, flip: bool):
        stored = get_embeddings(base, store, flip=flip)
        return upgrade_chain([get_transformation(t, store) for t in steps], stored)

    return make


def _strategy_cases(
    plan: Plan,
    specs: dict[str, ModelSpec],
    steps: list[TransformationSpec],
    n: int,
    chain: str,
    strategy: str,
    suffix: str = "",
    variant: str = "stepwise",
    model_cases: bool = True,
    marked: bool = True,
) -> None:
    """Add one chain's models, its upgraded galleries and its cases (generations 2..n) to ``plan``.

    :param chain: ``bct`` (BCT-trained models: backward, BiCT forward, new/new) or ``independent``
        (FCT alone forward, backfill).
    :param suffix: appended to every name (the sweep's ``(λ=w)``).
    :param variant: how the h's of ``steps`` were trained; its :data:`VARIANT_SUFFIX` marks the forward rows.
    :param model_cases: also add the cases of the models alone (backward, new/new): once per chain.
    :param marked: name the variant in the forward rows (not where a plan has one variant only: the sweep's).
    """
    forward = suffix + (VARIANT_SUFFIX[variant] if marked else "")
    for g in range(2, n + 1):
        model, gallery = f"{chain} {g}{suffix}", f"{strategy} gallery {g}{forward}"
        plan.models[model] = specs[f"{chain} {g}"]
        plan.galleries[gallery] = _chain_gallery(specs["bct 1"], steps[: g - 1])
        plan.artefacts[f"{chain} h {g}{forward}"] = steps[g - 2]
        plan.key_extra["chains"][gallery] = [t.key for t in steps[: g - 1]]
        plan.targets[gallery] = model  # what the upgraded vectors stand in for: generation g's own embeddings
        if chain == "bct":
            plan.cases += [Case(f"gen {g}: BiCT forward{forward}", model, gallery)]
            if model_cases:
                plan.cases += [Case(f"gen {g}: BCT only backward{suffix}", model, "bct 1"), Case(f"gen {g}: BCT new/new{suffix}", model, model)]
        else:
            plan.cases += [Case(f"gen {g}: FCT alone forward{forward}", model, gallery)]
            if model_cases:
                plan.cases += [Case(f"gen {g}: backfill new/new{suffix}", model, model)]


def _main_plan(profile, seed: int) -> Plan:
    """Every strategy at every generation, and the generation x generation matrices of both model chains."""
    cfg = profile.bict
    n = len(cfg.generations)
    specs = generation_specs(profile, seed, cfg.weight)
    plan = Plan(
        {"bct 1": specs["bct 1"], "independent 1": specs["independent 1"]},
        [Case(OLD_CASE, "bct 1", "bct 1")],
        key_extra={"weight": cfg.weight, "chains": {}},
    )
    for i, variant in enumerate(cfg.transformations):
        for chain, strategy in (("bct", "bict"), ("independent", "fct")):
            _strategy_cases(
                plan, specs, _transformations(profile, seed, specs, chain, variant), n, chain, strategy, variant=variant, model_cases=i == 0
            )
    if cfg.anchored:  # phi_g against phi_1 (generation 2 is the chained model itself)
        anchored = generation_specs(profile, seed, cfg.weight, anchored=True)
        for g in range(3, n + 1):
            plan.models[f"bct {g}{ANCHORED}"] = anchored[f"bct {g}"]
            plan.cases += [
                Case(f"gen {g}: BCT only backward{ANCHORED}", f"bct {g}{ANCHORED}", "bct 1"),
                Case(f"gen {g}: BCT new/new{ANCHORED}", f"bct {g}{ANCHORED}", f"bct {g}{ANCHORED}"),
            ]
    for chain in ("bct", "independent"):
        for i in range(2, n + 1):
            for j in range(1, i):
                plan.cases.append(Case(f"{chain} chain: gen {i} queries, gen {j} gallery", f"{chain} {i}", f"{chain} {j}"))
    return plan


def _sweep_plan(profile, seed: int) -> Plan:
    """BCT-only and BiCT retrieval at every generation for each BCT weight of the sweep (backfill as the reference)."""
    n = len(profile.bict.generations)
    main = generation_specs(profile, seed, profile.bict.weight)
    variant = profile.bict.transformations[0]
    plan = Plan({"bct 1": main["bct 1"]}, [Case(OLD_CASE, "bct 1", "bct 1")], key_extra={"sweep": list(profile.bict.sweep), "chains": {}})
    for weight in profile.bict.sweep:
        specs = generation_specs(profile, seed, weight)
        _strategy_cases(
            plan, specs, _transformations(profile, seed, specs, "bct", variant), n, "bct", "bict", f" (λ={weight:g})", variant, marked=False
        )
    for g in range(2, n + 1):
        plan.models[f"independent {g}"] = main[f"independent {g}"]
        plan.cases.append(Case(f"gen {g}: backfill new/new", f"independent {g}", f"independent {g}"))
    return plan


OLD_CASE = "gen 1: old/old"


COMPARISON = tuple(  # the chapter's rows in the comparison chapter, at its last generation, against its own baselines
    ComparisonEntry(
        label, f"gen {{last}}: {case}", "d old floats", upgrade, uses, ceiling="gen {last}: backfill new/new", floor="gen 1: old/old", chain=chain
    )
    for label, case, upgrade, uses, chain in (
        ("BCT only, every upgrade (BiCT chapter)", "BCT only backward", "nothing", ("bct",), False),
        ("FCT alone, every upgrade (BiCT chapter)", "FCT alone forward", "transformation", ("plain", "fct"), True),
        ("BiCT, every upgrade", "BiCT forward", "transformation", ("bct", "fct"), True),
    )
)


@register_experiment("bict")
class BiCT(Experiment):
    comparison = COMPARISON
    config_class = BiCTConfig
    profile_configs = {
        "smoke": BiCTConfig(
            generations=(0.5, 1.0),
            sweep=(0.0, 1.0),
            cost_sizes=(100, 400),
            transformations=("chain", "stepwise"),
            anchored=True,
            transformation=TransformationConfig(inner_dim=64, epochs=4, batch_size=128, warmup_epochs=1, augmented_views=2),
        ),
        # the committed results: the main table on seeds 0 and 1, the weight sweep on seed 0, the upgrade cost
        "cpu": BiCTConfig(seeds=(0, 1)),
    }
    old_case = OLD_CASE

    def artefact_label(self, name: str, result: dict) -> str:
        """The glossary's words: "bct 2" is the BCT model of generation 2, "bct h 2" the h that BiCT forward applies
        at generation 2 ("independent h 2": FCT alone's); the suffixes (weight, h's training, control) stay."""
        m = ARTEFACT_NAME.fullmatch(name)
        if m is None:
            return name
        if m["h"]:
            return f"h of {'BiCT forward' if m['chain'] == 'bct' else 'FCT alone'}, gen {m['g']}{m['rest']}"
        model = "old model" if m["g"] == "1" else ("BCT model" if m["chain"] == "bct" else "independent model")
        return f"{model}, gen {m['g']}{m['rest']}"

    def references(self, case: str) -> tuple[str, str]:
        """Generation g's gains: against generation 1's old/old and generation g's backfill."""
        g = case.split(":", 1)[0].removeprefix("gen ")
        return self.old_case, f"gen {g}: backfill new/new"

    def plan(self, profile, seed: int, ablation: bool = False) -> Plan:
        return _sweep_plan(profile, seed) if ablation else _main_plan(profile, seed)

    def claims(self, results: list[dict] | None = None) -> list[Claim]:
        """The abstract's claims as paired comparisons: the upgraded gallery against the stored one at every
        generation, and, at the last generation, against the old system, FCT alone and backfilling."""
        last = last_generation(results or [])
        h = VARIANT_SUFFIX[main_variant(results or [])]
        return [
            *(
                Claim(
                    f"gen {g}: the upgraded gallery beats the stored one (BiCT forward above BCT only backward)",
                    f"gen {g}: BiCT forward{h}",
                    f"gen {g}: BCT only backward",
                )
                for g in range(2, last + 1)
            ),
            Claim(
                f"gen {last}: the BCT-trained model is backward compatible (BCT only backward above old/old)",
                f"gen {last}: BCT only backward",
                OLD_CASE,
            ),
            Claim(
                f"gen {last}: a BCT-trained new model helps the forward upgrade (BiCT forward above FCT alone)",
                f"gen {last}: BiCT forward{h}",
                f"gen {last}: FCT alone forward{h}",
            ),
            Claim(
                f"gen {last}: the BCT half costs the forward upgrade (FCT alone above BiCT forward)",
                f"gen {last}: FCT alone forward{h}",
                f"gen {last}: BiCT forward{h}",
            ),
            Claim(
                f"gen {last}: backfilling is still the ceiling (backfill above BiCT forward)",
                f"gen {last}: backfill new/new",
                f"gen {last}: BiCT forward{h}",
            ),
        ]

    def verdict(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> str:
        """Markdown: the paper's thesis as one label (:func:`thesis`), then the abstract's statements (2)-(4) read
        against our intervals (statement (1) is the design), then every claim.

        (2) reproduced when the upgraded gallery beats the stored one at the first upgrade; (3) when it does at
        every generation; (4) when the sweep's best and worst BCT weights differ beyond the interval for
        backward or forward retrieval (one seed).
        """
        checked = self.check_claims(results, distance, store).set_index("claim")
        last = last_generation(results)
        upgraded = [bool(checked.loc[c, "holds"]) for c in checked.index if "upgraded gallery beats" in c]
        lines = [headline(self.outcome(results, distance, store))]
        lines.append(
            f"- (2) forward upgrade without images: {'reproduced' if upgraded[0] else 'not reproduced'} "
            f"(generation 2: BiCT forward against BCT only backward)"
        )
        lines.append(
            f"- (3) sequential upgrades beat BCT alone: {'reproduced' if all(upgraded) else 'not reproduced'} "
            f"(the upgraded gallery wins at {sum(upgraded)} of {len(upgraded)} generations)"
        )
        sweep = sweep_reading(results, distance, store)
        if sweep is None:
            lines.append("- (4) the BCT weight matters: not tested (the sweep was not run)")
        else:
            matters = [r for r in sweep if r["interval"].above(0)]
            lines.append(
                f"- (4) the BCT weight matters: {'reproduced' if matters else 'not reproduced'} at generation {last} "
                "(best against worst weight, one seed): "
                + "; ".join(
                    f"{r['retrieval']}: best λ={r['best']:g}, worst λ={r['worst']:g}, {r['interval'].value:+.2f} points "
                    f"(95 % CI {r['interval'].low:+.2f} to {r['interval'].high:+.2f})"
                    for r in sweep
                )
                + "".join(
                    f"; {r['retrieval']} is best without the BCT term (λ=0), so what the weight does there is cost it"
                    for r in sweep
                    if r["best"] == 0 and r["interval"].above(0)
                )
            )
        lines.extend(claim_line(c) for _, c in checked.reset_index().iterrows())
        return "\n".join(lines)

    def outcome(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> Outcome:
        """The thesis by :data:`~compat.experiments.bict_reading.THESIS_RULE`; the deciding claim is BiCT's forward upgrade against FCT's alone."""
        checked = self.check_claims(results, distance, store)
        holds = checked.set_index("claim")["holds"]
        last = last_generation(results)
        upgraded = [bool(holds[c]) for c in holds.index if "upgraded gallery beats" in c]
        helps = f"gen {last}: a BCT-trained new model helps the forward upgrade (BiCT forward above FCT alone)"
        costs = f"gen {last}: the BCT half costs the forward upgrade (FCT alone above BiCT forward)"
        label, reading = thesis(upgraded, bool(holds.get(helps, False)), bool(holds.get(costs, False)))
        return decide("BiCT", distance, label, reading, checked, helps, len(main_results(results)))


def upgrade_cost(profile, store: Store | None = None) -> dict:
    """The upgrade cost of the BiCT chain's last h (the ablation seed) at the profile's ``cost_sizes``."""
    n, seed = len(profile.bict.generations), profile.protocol.ablation_seed
    spec = _transformations(profile, seed, generation_specs(profile, seed, profile.bict.weight), "bct", profile.bict.transformations[0])[n - 2]
    return common.upgrade_cost("bict", "bict-cost", profile, spec, profile.bict.cost_sizes, store or Store())
