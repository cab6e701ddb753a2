"""The UniBCT table: backward compatibility in all four old/new data splits, with structural
prototype refinement.

Zhang et al., "Towards Universal Backward-Compatible Representation Learning", IJCAI 2022
(arXiv 2203.01583). No code by the authors; the splits (30/70) and the refinement's schedule
follow the MixBCT re-implementation (``BCT_Methods/UniBCT``), everything else is this book's
protocol. Per scenario: the old model on 30 % of the classes (class scenarios) or of each
class's images (data scenarios); new models (independent, L2, BCT, UniBCT with plain class-mean
prototypes, UniBCT with refined prototypes) on the scenario's new data. Retrieval metrics as in
every chapter, plus 1:1 verification TAR at a FAR (the papers' face metric, on val pairs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..artefacts import ModelSpec, SubsetSpec
from ..errors import ConfigError, check_choice, check_range, check_seeds
from ..evaluate import far_threshold, per_query_tar, tar_at_far, verification_scores
from ..intervals import mean_interval
from ..losses import PROTOTYPE_FORMS
from ..methods import method_options
from ..splits import SCENARIOS, make_split
from ..store import Store
from ..verdicts import Outcome, decide, headline
from . import bct
from .base import Case, Claim, ComparisonEntry, Experiment, Plan, main_results, register_experiment

METHODS = ("independent", "L2", "BCT", "UniBCT (no refinement)", "UniBCT")
FROM_START = " from epoch 0"  # the schedule control's rows: "UniBCT (no refinement) from epoch 0", "UniBCT from epoch 0"
SHARED_OLD = {
    "extended-class": "extended-class",
    "open-class": "extended-class",
    "extended-data": "extended-data",
    "open-data": "extended-data",
}  # the same old data, one old model


@dataclass(frozen=True)
class UniBCTConfig:
    """The UniBCT chapter's settings.

    :param seeds: the seeds of this chapter's main table (empty: the protocol's).
    :param old_fraction: share of classes (class scenarios) or of each class's images (data scenarios)
        the old model sees (0.3 in the MixBCT re-implementation's split script).
    :param scenarios: the data splits to run.
    :param methods: the compatible methods of the main table (besides ``independent``, always run);
        any of ``L2``, ``BCT``, ``UniBCT (no refinement)``, ``UniBCT``.
    :param weight: lambda of the prototype (compatibility) loss, and of BCT's influence loss.
    :param l2_weight: weight of the L2 baseline.
    :param prototypes: ``unit`` (class means of L2-normalized old embeddings) or ``raw`` (MixBCT: of the raw ones).
    :param scale: s of the prototype loss's cosine logits (1: none).
    :param tau: temperature of the refinement's affinities (0.05).
    :param diffusion: lambda of the refinement (0.9).
    :param far: false accept rate of the verification metric.
    :param ablation: also run the one-seed ablation over tau and the diffusion lambda.
    :param ablation_scenario: the scenario of the ablation.
    :param ablation_taus: taus of the ablation (at the default diffusion).
    :param ablation_diffusions: diffusion lambdas of the ablation (at the default tau).
    :param schedule_control: scenarios that also train both UniBCT variants with the prototype term on from
        epoch 0 (where they are among ``scenarios``), so that the re-implementation's late start is not what
        separates them.
    """

    seeds: tuple[int, ...] = ()
    old_fraction: float = 0.3
    scenarios: tuple[str, ...] = SCENARIOS
    methods: tuple[str, ...] = METHODS[1:]
    weight: float = 1.0
    l2_weight: float = 1.0
    prototypes: str = "unit"
    scale: float = 1.0
    tau: float = 0.05
    diffusion: float = 0.9
    far: float = 1e-3
    ablation: bool = True
    ablation_scenario: str = "open-class"
    ablation_taus: tuple[float, ...] = (0.01, 0.05, 0.2)
    ablation_diffusions: tuple[float, ...] = (0.5, 0.9, 0.99)
    schedule_control: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_seeds("unibct.seeds", self.seeds, allow_empty=True)
        check_range("unibct.old_fraction", self.old_fraction, 0, 1, low_open=True, high_open=True)
        if not self.scenarios or len(set(self.scenarios)) != len(self.scenarios):
            raise ConfigError(f"unibct.scenarios must be distinct and non-empty, got {self.scenarios!r}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"unibct.methods must be distinct and non-empty, got {self.methods!r}")
        for method in self.methods:
            check_choice("unibct.methods item", method, METHODS[1:])
        for s in (*self.scenarios, self.ablation_scenario):
            check_choice("unibct scenario", s, SCENARIOS)
        if len(set(self.schedule_control)) != len(self.schedule_control):
            raise ConfigError(f"unibct.schedule_control must be distinct, got {self.schedule_control!r}")
        for s in self.schedule_control:
            check_choice("unibct.schedule_control item", s, SCENARIOS)
        check_range("unibct.weight", self.weight, 0, 1000)
        check_range("unibct.l2_weight", self.l2_weight, 0, 1000)
        check_choice("unibct.prototypes", self.prototypes, PROTOTYPE_FORMS)
        check_range("unibct.scale", self.scale, 0, 1000, low_open=True)
        for t in (self.tau, *self.ablation_taus):
            check_range("unibct tau", t, 0, 100, low_open=True)
        for d in (self.diffusion, *self.ablation_diffusions):
            check_range("unibct diffusion", d, 0, 1, high_open=True)
        check_range("unibct.far", self.far, 0, 1, low_open=True, high_open=True)


def _name(scenario: str, method: str) -> str:
    return f"{scenario}/{method}"


def model_specs(profile, seed: int, ablation: bool = False) -> dict[str, ModelSpec]:
    """Every model of one seed, named ``scenario/method`` (``scenario/old`` for the old models).

    The old model of both class scenarios is one artefact (the same first classes), and so is that of
    both data scenarios; the independent new model of the extended scenarios (all training data) is
    the BCT chapter's own independent model, shared through the store.
    """
    cfg = profile.unibct
    common = {"data": profile.data, "model": profile.model, "seed": seed}
    specs: dict[str, ModelSpec] = {}
    scenarios = (cfg.ablation_scenario,) if ablation else cfg.scenarios
    for scenario in scenarios:
        old = ModelSpec(subset=SubsetSpec(SHARED_OLD[scenario], cfg.old_fraction, "old"), train=profile.old_train, **common)
        new = {"subset": SubsetSpec(scenario, cfg.old_fraction, "new"), "train": profile.new_train, **common}
        form = {"weight": cfg.weight, "prototypes": cfg.prototypes, "scale": cfg.scale}
        uni = {**form, "tau": cfg.tau, "diffusion": cfg.diffusion}
        specs[_name(scenario, "old")] = old
        extended = scenario.startswith("extended")
        specs[_name(scenario, "independent")] = bct.model_specs(profile, seed)["independent"] if extended else ModelSpec(**new)
        methods = {
            "L2": method_options("l2", cfg.l2_weight),
            "BCT": method_options("bct", cfg.weight),
            "UniBCT (no refinement)": method_options("unibct", **form),
            "UniBCT": method_options("unibct", refine=True, **uni),
        }
        # the ablation varies the refinement; its baselines are the two UniBCT variants
        for method in ("UniBCT (no refinement)", "UniBCT") if ablation else cfg.methods:
            specs[_name(scenario, method)] = ModelSpec(**new, method=methods[method], parent=old)
        if scenario in cfg.schedule_control and not ablation:
            for method in ("UniBCT (no refinement)", "UniBCT"):
                early = dataclasses.replace(methods[method], from_start=True)
                specs[_name(scenario, method + FROM_START)] = ModelSpec(**new, method=early, parent=old)
        if ablation:  # the main table's models above are shared; each variant changes one of tau, lambda
            for tau in (t for t in cfg.ablation_taus if t != cfg.tau):
                specs[_name(scenario, f"UniBCT tau={tau:g}")] = ModelSpec(
                    **new, method=method_options("unibct", refine=True, **{**uni, "tau": tau}), parent=old
                )
            for lam in (d for d in cfg.ablation_diffusions if d != cfg.diffusion):
                specs[_name(scenario, f"UniBCT lambda={lam:g}")] = ModelSpec(
                    **new, method=method_options("unibct", refine=True, **{**uni, "diffusion": lam}), parent=old
                )
    return specs


COMPARISON = tuple(  # the chapter's rows in the comparison chapter, each against its own scenario's baselines
    ComparisonEntry(
        label, f"{scenario}: {case}", "d old floats", "nothing", uses, ceiling=f"{scenario}: independent new/new", floor=f"{scenario}: old/old"
    )
    for label, scenario, case, uses in (
        ("BCT, open classes (UniBCT chapter)", "open-class", "BCT new/old", ("bct",)),
        ("UniBCT, open classes", "open-class", "UniBCT new/old", ("unibct",)),
        ("UniBCT, open data", "open-data", "UniBCT new/old", ("unibct",)),
    )
)


@register_experiment("unibct")
class UniBCT(Experiment):
    comparison = COMPARISON
    config_class = UniBCTConfig
    profile_configs = {
        "smoke": UniBCTConfig(ablation_taus=(0.05, 0.2), ablation_diffusions=(0.5, 0.9), schedule_control=("open-class",)),
        "cpu": UniBCTConfig(seeds=(0, 1)),
    }

    def plan(self, profile, seed: int, ablation: bool = False) -> Plan:
        specs = model_specs(profile, seed, ablation)
        cases = []
        for name in specs:
            scenario, method = name.split("/", 1)
            old = _name(scenario, "old")
            if method == "old":
                cases.append(Case(f"{scenario}: old/old", old, old))
                continue
            cases.append(Case(f"{scenario}: {method} new/new", name, name))
            cases.append(Case(f"{scenario}: {method} new/old", name, old))
        return Plan(specs, cases, key_extra={"far": profile.unibct.far})

    def references(self, case: str) -> tuple[str, str]:
        scenario = case.split(":", 1)[0]
        return f"{scenario}: old/old", f"{scenario}: independent new/new"

    def extra(self, profile, seed, ablation, plan, embeddings, labels) -> dict:
        """1:1 verification TAR at the configured FAR of every case (cosine scores of val pairs)."""
        far, out, per_query = profile.unibct.far, {}, {}
        for case in plan.cases:
            query, gallery = embeddings[case.query], embeddings[case.gallery]
            genuine, impostor = verification_scores(query, gallery, labels, seed=seed)
            out[case.label] = 100.0 * tar_at_far(genuine, impostor, far)
            per_query[f"tar|{case.label}"] = per_query_tar(query, gallery, labels, far_threshold(impostor, far)).astype(np.float32)
        return {"verification": {"far": far, "tar": out}, "per_query": per_query}

    def claims(self, results: list[dict] | None = None) -> list[Claim]:
        return [
            claim
            for scenario in SCENARIOS
            for claim in (
                Claim(f"{scenario}: UniBCT new/old above BCT new/old", f"{scenario}: UniBCT new/old", f"{scenario}: BCT new/old"),
                Claim(f"{scenario}: UniBCT new/old above old/old (compatible)", f"{scenario}: UniBCT new/old", f"{scenario}: old/old"),
                Claim(f"{scenario}: BCT new/old above old/old (compatible)", f"{scenario}: BCT new/old", f"{scenario}: old/old"),
                Claim(
                    f"{scenario}: refinement helps: UniBCT above UniBCT without refinement (new/old)",
                    f"{scenario}: UniBCT new/old",
                    f"{scenario}: UniBCT (no refinement) new/old",
                ),
                Claim(
                    f"{scenario}: refinement helps with the term on from epoch 0 (schedule control, new/old)",
                    f"{scenario}: UniBCT{FROM_START} new/old",
                    f"{scenario}: UniBCT (no refinement){FROM_START} new/old",
                ),
            )
        ]

    def _readings(self, results, distance, store):
        table = self.check_claims(results, distance, store)
        checked = table.set_index("claim")["holds"]
        scenarios = [s for s in SCENARIOS if f"{s}: UniBCT new/old above BCT new/old" in checked.index]
        bct_ok = {s: bool(checked[f"{s}: BCT new/old above old/old (compatible)"]) for s in scenarios}
        uni_ok = {s: bool(checked[f"{s}: UniBCT new/old above old/old (compatible)"]) for s in scenarios}
        uni_wins = {s: bool(checked[f"{s}: UniBCT new/old above BCT new/old"]) for s in scenarios}
        return table, checked, scenarios, bct_ok, uni_ok, uni_wins

    def outcome(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> Outcome:
        """Reproduced: BCT's compatibility (new/old above old/old) fails in at least one scenario other than
        extended-class, and UniBCT's holds in every scenario; partly: UniBCT beats BCT on new/old in at least
        one scenario (the central comparison); not reproduced otherwise. The deciding claim shown is UniBCT
        against BCT in the scenario where it is largest."""
        table, checked, scenarios, bct_ok, uni_ok, uni_wins = self._readings(results, distance, store)
        bct_breaks = [s for s in scenarios if s != "extended-class" and not bct_ok[s]]
        if bct_breaks and all(uni_ok.values()):
            label, reason = "reproduced", f"BCT breaks in {_listed(bct_breaks)} and UniBCT stays compatible in every scenario."
        elif any(uni_wins.values()):
            label, reason = (
                "partly reproduced",
                f"UniBCT beats BCT on new/old in {_listed([s for s in scenarios if uni_wins[s]])}, not everything else holds.",
            )
        else:
            label, reason = "not reproduced", "UniBCT does not beat BCT on new/old in any scenario."
        wins = table[table["claim"].str.endswith("UniBCT new/old above BCT new/old")]
        deciding = wins.loc[wins["difference (points)"].idxmax(), "claim"] if wins["difference (points)"].notna().any() else wins["claim"].iloc[0]
        return decide("UniBCT", distance, label, reason, table, deciding, len(main_results(results)))

    def verdict(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> str:
        """Markdown: the :meth:`outcome`, then the paper's two claims read against our intervals, scenario by scenario."""
        _, checked, scenarios, bct_ok, uni_ok, uni_wins = self._readings(results, distance, store)
        bct_breaks = [s for s in scenarios if s != "extended-class" and not bct_ok[s]]
        refined = [s for s in scenarios if checked[f"{s}: refinement helps: UniBCT above UniBCT without refinement (new/old)"]]
        lines = [
            headline(self.outcome(results, distance, store)),
            "- claim 1, BCT's compatibility breaks outside the closed set: "
            + (f"yes, in {_listed(bct_breaks)}" if bct_breaks else "no, not in any scenario but extended-class"),
            f"- claim 2, UniBCT compatible in every scenario: {'yes' if all(uni_ok.values()) else 'no'} "
            f"(compatible in {_listed([s for s in scenarios if uni_ok[s]])}; above BCT in {_listed([s for s in scenarios if uni_wins[s]])}; "
            f"refined prototypes above plain class means in {_listed(refined)})",
            "",
            "Scenario by scenario:",
            "",
        ]
        for s in scenarios:
            control = checked.get(f"{s}: refinement helps with the term on from epoch 0 (schedule control, new/old)")
            lines.append(
                f"- {s}: BCT compatible: {'yes' if bct_ok[s] else 'no'}; UniBCT compatible: {'yes' if uni_ok[s] else 'no'}; "
                f"UniBCT above BCT: {'yes' if uni_wins[s] else 'no'}; refinement helps: "
                f"{'yes' if checked[f'{s}: refinement helps: UniBCT above UniBCT without refinement (new/old)'] else 'no'}"
                + ("" if control is None else f"; with the term on from epoch 0: {'yes' if control else 'no'}")
            )
        return "\n".join(lines)


def _listed(scenarios: list[str]) -> str:
    return ", ".join(scenarios) if scenarios else "none"


def verification_table(results: list[dict], store: Store | None = None) -> pd.DataFrame:
    """TAR (%) at the configured FAR per case, the mean over the main seeds, with its 95 % interval over queries and
    seeds (:func:`compat.intervals.mean_interval`) where every main file holds each query's share of its genuine pairs
    accepted (``tar|case``, :func:`compat.evaluate.per_query_tar`: with equal class sizes they average to the TAR);
    files written before those shares give the seeds' spread instead, where there are two or more."""
    main = main_results(results)
    frame = pd.DataFrame([r["verification"]["tar"] for r in main])
    shares = _tar_shares(main, list(frame.columns), store)
    if shares is not None:
        intervals = {case: mean_interval(values) for case, values in shares.items()}
        return pd.DataFrame(
            {"TAR (%)": frame.mean(), "low": {c: iv.low for c, iv in intervals.items()}, "high": {c: iv.high for c, iv in intervals.items()}}
        )
    table = pd.DataFrame({"TAR (%)": frame.mean()})
    if len(main) > 1:
        table["sd over seeds"] = frame.std(ddof=1)
    return table


def _tar_shares(main: list[dict], cases: list[str], store: Store | None) -> dict[str, np.ndarray] | None:
    """Case -> seeds x queries per-query TAR shares of the main files, or None where a file lacks them (or any is NaN)."""
    if not main or any("key" not in r for r in main):
        return None
    store = store or Store()
    files = [store.read_per_query("unibct", r["profile"], r["key"]) for r in main]
    if not all(f"tar|{c}" in f for f in files for c in cases):
        return None
    shares = {c: np.stack([np.asarray(f[f"tar|{c}"], np.float64) for f in files]) for c in cases}
    return shares if all(np.isfinite(v).all() for v in shares.values()) else None


def ablation_curve(profile, ablation: pd.DataFrame, parameter: str, case: str = "new/old") -> pd.DataFrame:
    """The ablation's rows along ``parameter`` (``tau`` or ``lambda``, the other at its default), the main
    UniBCT row at the default value included, indexed and sorted by the value."""
    check_choice("unibct ablation parameter", parameter, ("tau", "lambda"))
    cfg = profile.unibct
    default = cfg.tau if parameter == "tau" else cfg.diffusion
    values = cfg.ablation_taus if parameter == "tau" else cfg.ablation_diffusions
    scenario = cfg.ablation_scenario
    names = {
        v: (f"{scenario}: UniBCT {case}" if v == default else f"{scenario}: UniBCT {parameter}={v:g} {case}") for v in sorted({*values, default})
    }
    return ablation.loc[list(names.values())].set_axis(list(names), axis=0).rename_axis(parameter)


def new_class_count(scenario: str, num_classes: int, old_fraction: float) -> int:
    """Classes of a scenario's new training set: the prototypes the UniBCT loss chooses among."""
    one_pair_per_class = np.repeat(np.arange(num_classes), 2)
    return len(make_split(scenario, one_pair_per_class, old_fraction, num_classes=num_classes).new.classes)


def prototype_losses(results: list[dict], num_classes: int, old_fraction: float) -> pd.DataFrame:
    """Per model trained with the prototype loss (main table): its value in the first epoch it is on and in
    the last (mean over seeds), next to ln C, its value when the softmax over the C prototypes is uniform.

    With unit prototypes at scale 1 the logits are cosines in [-1, 1], so the loss cannot fall far below ln C:
    by about one nat when each embedding sits on its own of C orthogonal prototypes (the MixBCT
    re-implementation's raw prototypes scale the logits by their length).
    """
    records: dict[str, list[tuple[float, float]]] = {}
    for res in main_results(results):
        for name, model in res["models"].items():
            on = [e["loss_prototype"] for e in model.get("epochs", []) if e.get("loss_prototype")]
            if on:
                records.setdefault(name, []).append((on[0], on[-1]))
    rows = {}
    for name, pairs in records.items():
        scenario, method = name.split("/", 1)
        classes = new_class_count(scenario, num_classes, old_fraction)
        first, last = np.mean(pairs, axis=0)
        rows[(scenario, method)] = {
            "classes C": classes,
            "ln C (uniform)": np.log(classes),
            "first epoch on": first,
            "last epoch": last,
            "seeds": len(pairs),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["scenario", "method"])


def scenario_pivot(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """The main table pivoted for reading (issue 24): rows the methods, columns the scenarios, each cell the
    cross-test (new/old) ``metric`` with its 95 % interval and the update gain G with its interval; the old
    models' old/old and the independent models' new/new in their own rows, the references of G."""
    cells: dict[str, dict[str, str]] = {}
    for case, row in table.iterrows():
        scenario, what = case.split(": ", 1)
        if pd.isna(row.get(metric)):
            continue
        value = f"{row[metric]:.1f} [{row[f'{metric} low']:.1f}, {row[f'{metric} high']:.1f}]"
        if what == "old/old" or what == "independent new/new":
            cells.setdefault(what, {})[scenario] = value
        elif what.endswith(" new/old"):
            gain = row.get(f"G {metric}")
            g = "" if pd.isna(gain) else f"; G {gain:.2f} [{row[f'G {metric} low']:.2f}, {row[f'G {metric} high']:.2f}]"
            cells.setdefault(what.removesuffix(" new/old") + " (new/old)", {})[scenario] = value + g
    order = [s for s in SCENARIOS if any(s in c for c in cells.values())]
    return pd.DataFrame(cells).T.reindex(columns=order).fillna("").rename_axis(f"{metric} (%) [95% CI]")


def gain_matrix(table: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Scenario x method update gains of the cross-test (new/old) cases, from an interval table."""
    records = {}
    for case, row in table.iterrows():
        if not case.endswith("new/old") or f"G {metric}" not in row:
            continue
        scenario, method = case.split(": ", 1)
        records.setdefault(scenario, {})[method.removesuffix(" new/old")] = row[f"G {metric}"]
    return pd.DataFrame(records).T
