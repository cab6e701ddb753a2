"""The shape every experiment shares: a registry by name, a per-seed plan of models, galleries and
cases, one runner, and claims decided by intervals.

An experiment is one module in this package: a subclass of :class:`Experiment` registered with
``@register_experiment("name")``, with its own config section (``config_class`` and per-profile
values in ``profile_configs``). The runner asks the store for every model and gallery of a
seed's :class:`Plan` (training what is missing), evaluates each :class:`Case`, and writes one
result file per seed (plus one for the one-seed ablation) keyed by everything that made it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..artefacts import ModelSpec, TransformationSpec, get_embeddings, get_upgraded_gallery, read_intact_result, training_policy
from ..errors import check_choice
from ..intervals import Interval, difference_interval, gain_interval, mean_interval, per_query_metric
from ..store import Store, config_key
from ..verdicts import Outcome
from .common import METRICS, diverged_models, evaluate_cases, model_record, write_seed_result


@dataclass(frozen=True)
class Case:
    """One row of a table: queries embedded by model ``query`` against gallery ``gallery`` (a model,
    or a stored gallery upgraded by a transformation)."""

    label: str
    query: str
    gallery: str


@dataclass
class Plan:
    """What one result file needs: models and gallery transformations by canonical name, and the cases.

    :param galleries: further galleries made from stored vectors only (e.g. BiCT's gallery upgraded
        generation after generation): name -> ``make(store, flip)``; whatever identifies them belongs
        in ``key_extra``.
    :param artefacts: the transformations those galleries use, by name: recorded in the result file's models.
    :param targets: upgraded gallery -> the model whose own embeddings of the same images it stands in for: the
        result file records each gallery item's squared error against them (``mse|GALLERY`` per query, the
        mean over dimensions) and their mean (``upgrade_mse``).
    """

    models: dict[str, ModelSpec]
    cases: list[Case]
    transformations: dict[str, TransformationSpec] = field(default_factory=dict)
    key_extra: dict = field(default_factory=dict)
    galleries: dict[str, Callable[[Store, bool], np.ndarray]] = field(default_factory=dict)
    artefacts: dict[str, TransformationSpec] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)

    def names(self) -> tuple[str, ...]:
        """Every embedding the plan makes, in the order it makes them (models first: they train what is missing)."""
        return (*self.models, *self.transformations, *self.galleries)

    def embedding(self, name: str, store: Store, flip: bool) -> np.ndarray:
        """The val embeddings of ``name``: a model's, a stored gallery upgraded by a transformation, or a gallery
        made from stored vectors."""
        if name in self.models:
            return get_embeddings(self.models[name], store, flip=flip)
        if name in self.transformations:
            return get_upgraded_gallery(self.transformations[name], store, flip=flip)
        check_choice("embedding", name, self.galleries)
        return self.galleries[name](store, flip)


@dataclass(frozen=True)
class Job:
    """One result file a chapter reads: its key, the models and transformations it needs, and how to make it.

    :param label: which run it is, for a reader (``seed 0``, ``ablation, seed 0``, ``open-class, seed 1``).
    :param run: loads the result file from ``store``, or trains and embeds what is missing and writes it.
    """

    experiment: str
    label: str
    key: str
    models: tuple[ModelSpec, ...]
    transformations: tuple[TransformationSpec, ...]
    run: Callable[[Store], dict]


@dataclass(frozen=True)
class Claim:
    """A qualitative claim: M(``better``) - M(``worse``) > ``margin`` (percentage points) at ``metric``.

    It holds only when the 95 % interval of the difference lies above the margin and every seed agrees.
    """

    text: str
    better: str
    worse: str
    metric: str = "top1"
    margin: float = 0.0


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str):
    """Class decorator: register one instance of the experiment under ``name`` (the CLI, papermill and the
    results loader find it there)."""

    def wrap(cls):
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        cls.name = name
        EXPERIMENTS[name] = cls()
        return cls

    return wrap


@dataclass(frozen=True)
class ComparisonEntry:
    """One row an experiment gives the comparison chapter (:func:`compat.compare.comparison_table`): the case that
    measures it, what it stores per gallery item, what its upgrade computes, and its own protocol's baselines: the
    backfill it is measured against (``ceiling``) and the old model on both sides (``floor``). ``{last}`` in a case
    stands for the BiCT chapter's last generation; a ``chain`` upgrade runs once per generation after the first.

    :param uses: the registered methods (:data:`compat.methods.METHODS`) and transformations
        (:data:`compat.transformations.TRANSFORMATIONS`) the row's models and upgrade are made with.
    """

    method: str
    case: str
    stores: str
    upgrade: str  # "nothing", "transformation" or "re-embedding"
    uses: tuple[str, ...]
    side_dim: int = 0
    ceiling: str = "independent new/new"
    floor: str = "old/old"
    chain: bool = False


def get_experiment(name: str) -> Experiment:
    """The experiment registered as ``name`` (an unknown name fails with the known ones)."""
    check_choice("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name]


class Experiment:
    """Base of every registered experiment: override :meth:`plan` (and optionally :meth:`extra`, :meth:`claims`)."""

    name = ""
    config_class: type | None = None
    profile_configs: dict[str, object] = {}
    old_case = "old/old"  # the update gain's references (see :meth:`references`)
    new_case = "independent new/new"
    tabulates = True  # its result files hold (query, gallery) case rows for the results loader
    comparison: tuple[ComparisonEntry, ...] = ()  # its rows in the comparison chapter
    artefact_names: dict[str, str] = {}  # stored artefact name -> the name the reader meets (the glossary's words)

    # configuration -------------------------------------------------------------------------------
    def section_config(self, profile_name: str):
        """This experiment's config section for a named profile (its class defaults where not listed)."""
        return self.profile_configs.get(profile_name) or self.config_class()

    def config(self, profile):
        return profile.sections[self.name]

    def seeds(self, profile) -> tuple[int, ...]:
        """The main table's seeds, by the one seed rule: the experiment section's own ``seeds`` where it names
        any (UniBCT's and BiCT's costlier tables name theirs), else ``protocol.seeds``."""
        own = tuple(getattr(self.config(profile), "seeds", ()) or ()) if self.config_class else ()
        return own or profile.protocol.seeds

    def runs_ablation(self, profile) -> bool:
        return bool(getattr(self.config(profile), "ablation", False)) if self.config_class else False

    # what to compute -----------------------------------------------------------------------------
    def plan(self, profile, seed: int, ablation: bool = False) -> Plan:
        raise NotImplementedError

    def extra(self, profile, seed: int, ablation: bool, plan: Plan, embeddings: dict, labels: np.ndarray) -> dict:
        """Anything else a result file holds (e.g. a retrieval picture); nothing by default. Arrays of one value
        per query under ``"per_query"`` (name -> array) go to the per-query file, not the JSON."""
        return {}

    def claims(self, results: list[dict] | None = None) -> list[Claim]:
        return []

    def verdict(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> str:
        """Markdown: the paper's claims read against the intervals of ``distance``, ending in a computed verdict
        (every tabulating experiment answers it with this signature; the chapter asks once per distance)."""
        raise NotImplementedError(f"experiment {self.name!r} states no verdict")

    def outcome(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> Outcome:
        """The verdict's label at ``distance`` with its reason and deciding claim (:mod:`compat.verdicts`); every
        chapter that reproduces a paper decides it by the rule its docstring states."""
        raise NotImplementedError(f"experiment {self.name!r} states no verdict")

    def artefact_label(self, name: str, result: dict) -> str:
        """The reader's name of the model or transformation stored as ``name`` in ``result`` (the store's names are
        part of the result keys, so they stay as they are): :attr:`artefact_names`, else the stored name."""
        return self.artefact_names.get(name, name)

    def references(self, case: str) -> tuple[str, str]:
        """The (old/old, independent new/new) cases whose metrics define ``case``'s update gain."""
        return self.old_case, self.new_case

    def result_key(self, profile, seed: int, ablation: bool = False) -> str:
        """The key of one result file: every model's and transformation's key plus the evaluation settings."""
        return self._key(profile, self.plan(profile, seed, ablation))

    def _key(self, profile, plan: Plan) -> str:
        payload = {"experiment": self.name, "models": {n: s.key for n, s in plan.models.items()}}
        if plan.transformations:
            payload["transformations"] = {n: t.key for n, t in plan.transformations.items()}
        payload["distances"] = profile.protocol.distances
        if profile.protocol.test_flip:
            payload["test_flip"] = True
        return config_key({**payload, **plan.key_extra})

    def jobs(self, profile) -> list[Job]:
        """Every result file the chapter reads for ``profile``, in the order :meth:`run` makes them: every main
        seed, then the one-seed ablation if the section asks for it (so on a tight budget the main seeds land first)."""
        runs = [(seed, False) for seed in self.seeds(profile)]
        if self.runs_ablation(profile):
            runs.append((profile.protocol.ablation_seed, True))
        return [
            self._job(
                profile,
                f"{'ablation, ' if ablation else ''}seed {seed}",
                self.plan(profile, seed, ablation),
                lambda store, seed=seed, ablation=ablation: self.run_seed(profile, seed, store, ablation),
            )
            for seed, ablation in runs
        ]

    def _job(self, profile, label: str, plan: Plan, run: Callable[[Store], dict]) -> Job:
        return Job(
            self.name, label, self._key(profile, plan), tuple(plan.models.values()), (*plan.transformations.values(), *plan.artefacts.values()), run
        )

    def result_keys(self, profile) -> list[str]:
        """The keys of every result file the chapter reads for ``profile`` (what must be committed for the book)."""
        return [job.key for job in self.jobs(profile)]

    # the one runner ------------------------------------------------------------------------------
    def run_seed(self, profile, seed: int, store: Store, ablation: bool = False) -> dict:
        """Load the result file of ``seed``, or train/embed what is missing, evaluate every case and write it."""
        key = self.result_key(profile, seed, ablation)
        cached = read_intact_result(store, self.name, profile.name, key)
        if cached is not None:
            return cached
        store.check_result_writable()  # before training, not after
        training_policy()  # a bad COMPAT_TRAIN fails here, not half-way
        plan = self.plan(profile, seed, ablation)
        started = time.perf_counter()
        flip = profile.protocol.test_flip
        embeddings = {name: plan.embedding(name, store, flip) for name in plan.names()}  # trains what is missing
        train_done = time.perf_counter()
        labels = profile.data.load().val.labels
        diverged = diverged_models(store, {name: spec.key for name, spec in plan.models.items()})
        cases = [(c.label, c.query, c.gallery) for c in plan.cases]
        rows, per_query = evaluate_cases(embeddings, labels, cases, profile.protocol.distances, self.references, diverged)
        errors = {g: np.mean((np.asarray(embeddings[g], np.float64) - embeddings[t]) ** 2, axis=1) for g, t in plan.targets.items()}
        per_query.update({f"mse|{g}": e.astype(np.float32) for g, e in errors.items()})
        models = {name: model_record(store, spec.key) for name, spec in plan.models.items()}
        for name, t in plan.transformations.items():
            if t.side is not None:
                models[f"side-info {t.side_dim()}-d"] = model_record(store, t.side.key)
            models[name] = model_record(store, t.key)
        models.update({name: model_record(store, t.key) for name, t in plan.artefacts.items()})
        extra = self.extra(profile, seed, ablation, plan, embeddings, labels)
        per_query.update(extra.pop("per_query", {}))  # an experiment's own per-query figures, stored beside the ranks
        if errors:
            extra["upgrade_mse"] = {g: float(e.mean()) for g, e in errors.items()}
        wall = {"train_and_embed": train_done - started, "evaluate": time.perf_counter() - train_done}
        return write_seed_result(store, profile, seed, ablation, key, rows, models, wall, experiment=self.name, per_query=per_query, **extra)

    def run(self, profile, store: Store | None = None) -> list[dict]:
        """Every result file of :meth:`jobs`, in its order; loaded where it exists, else made."""
        store = store or Store()
        return [job.run(store) for job in self.jobs(profile)]

    # reading results -----------------------------------------------------------------------------
    def summary_table(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> pd.DataFrame:
        """Cases x metrics of the main seeds: mean over seeds with 95 % bootstrap intervals (see :mod:`compat.intervals`)."""
        return interval_table(main_results(results), distance, store, self.references)

    def point_table(self, results: list[dict], distance: str = "l2") -> pd.DataFrame:
        """Cases x metrics of the main seeds, the mean over seeds of the stored numbers, with no resampling (what the
        command line prints after a run; the chapters add the intervals)."""
        rows = [
            {"case": r["case"], **{m: r.get(m) for m in METRICS}} for res in main_results(results) for r in res["rows"] if r["distance"] == distance
        ]
        return pd.DataFrame.from_records(rows).groupby("case", sort=False).mean() if rows else pd.DataFrame()

    def ablation_table(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> pd.DataFrame:
        """The one-seed ablation's cases with 95 % bootstrap intervals over queries (empty if it was not run)."""
        ablation = [r for r in results if r["kind"] == "ablation"]
        return interval_table(ablation, distance, store, self.references) if ablation else pd.DataFrame()

    def check_claims(self, results: list[dict], distance: str = "l2", store: Store | None = None) -> pd.DataFrame:
        """Each claim: the difference with its interval, per-seed values, and whether it holds."""
        records = []
        main = main_results(results)
        present = {r["case"] for res in main for r in res["rows"]}
        for claim in (c for c in self.claims(results) if {c.better, c.worse} <= present):  # claims of cases that ran
            diverged = [row(res, distance, case).get("diverged") for res in main for case in (claim.better, claim.worse)]
            if any(diverged):  # a diverged run decides nothing
                records.append(
                    {
                        "claim": claim.text,
                        "metric": claim.metric,
                        "difference (points)": np.nan,
                        "95% CI low": np.nan,
                        "95% CI high": np.nan,
                        "per seed": "diverged: " + next(d for d in diverged if d),
                        "holds": False,
                    }
                )
                continue
            diff = difference_interval(
                case_values(main, claim.better, distance, claim.metric, store), case_values(main, claim.worse, distance, claim.metric, store)
            )
            records.append(
                {
                    "claim": claim.text,
                    "metric": claim.metric,
                    "difference (points)": diff.value,
                    "95% CI low": diff.low,
                    "95% CI high": diff.high,
                    "per seed": ", ".join(f"{v:+.2f}" for v in diff.per_seed),
                    "holds": diff.above(claim.margin),
                }
            )
        return pd.DataFrame.from_records(records)


def provenance_table(results: list[dict]) -> pd.DataFrame:
    """Per stored model or transformation (once, however many result files name it): seed, training minutes,
    speed (images/s, whole), final training accuracy or MSE, precision, device, divergence, and the revision that
    trained it; a column no artefact fills (no transformation: no MSE) is left out."""
    records, seen = [], set()
    for res in results:
        for name, m in res["models"].items():
            if m["key"] in seen:
                continue
            seen.add(m["key"])
            records.append(
                {
                    "seed": res["seed"],
                    "artefact": get_experiment(res["experiment"]).artefact_label(name, res),
                    "train min": m["train_seconds"] / 60,
                    "img/s": f"{m['images_per_s']:.0f}" if m["images_per_s"] is not None else "",
                    "final train acc (%)": 100 * m["final_train_acc"] if m["final_train_acc"] is not None else "",
                    "final MSE": m["final_mse"] if m["final_mse"] is not None else "",
                    "precision": m["precision"],
                    "device": m["device"],
                    "diverged": m.get("diverged") or "no",
                    "trained at": m["trained_at_revision"][:12],
                }
            )
    table = pd.DataFrame.from_records(records).set_index(["seed", "artefact"])
    return table.loc[:, [c for c in table.columns if (table[c] != "").any()]]


def main_results(results: list[dict]) -> list[dict]:
    return [r for r in results if r["kind"] == "main"]


def row(res: dict, distance: str, case: str) -> dict:
    return next(r for r in res["rows"] if r["distance"] == distance and r["case"] == case)


def upgrade_errors(results: list[dict], store: Store | None = None) -> pd.DataFrame:
    """Per upgraded gallery recorded in every one of ``results``: its mean squared error against the embeddings it
    stands in for (mean over seeds, 95 % bootstrap interval over gallery items); empty where none was recorded."""
    store = store or Store()
    recorded = [set(r.get("upgrade_mse", {})) for r in results]
    names = [g for g in (results[0].get("upgrade_mse", {}) if results else {}) if all(g in r for r in recorded)]
    records = []
    for gallery in names:
        values = np.stack([store.read_per_query(r["experiment"], r["profile"], r["key"])[f"mse|{gallery}"] for r in results])
        iv = mean_interval(values.astype(np.float64))
        records.append({"gallery": gallery, "MSE": iv.value, "MSE low": iv.low, "MSE high": iv.high, "seeds": len(results)})
    return pd.DataFrame.from_records(records).set_index("gallery") if records else pd.DataFrame()


def case_values(results: list[dict], case: str, distance: str, metric: str, store: Store | None = None) -> np.ndarray:
    """Seeds x queries array of per-query values (%) of ``case`` from the results' stored per-query files."""
    store = store or Store()
    out = []
    for res in results:
        per_query = store.read_per_query(res["experiment"], res["profile"], res["key"])
        out.append(per_query_metric({"rank": per_query[f"{distance}|{case}|rank"], "ap": per_query[f"{distance}|{case}|ap"]}, metric))
    return np.stack(out)


def interval_table(results: list[dict], distance: str, store: Store | None, references) -> pd.DataFrame:
    """Numbers of every case: per metric the mean over seeds, its 95 % interval, the seed spread, and for
    ``... new/old`` cases the update gain with its interval. A case with a diverged model is marked, not tabulated."""
    records = []
    for case in dict.fromkeys(r["case"] for res in results for r in res["rows"] if r["distance"] == distance):
        diverged = [row(res, distance, case).get("diverged") for res in results]
        record: dict[str, object] = {"case": case, "seeds": len(results)}
        if any(diverged):
            record["diverged"] = next(d for d in diverged if d)
            records.append(record)
            continue
        for m in METRICS:
            iv: Interval = mean_interval(case_values(results, case, distance, m, store))
            record.update(
                {
                    m: iv.value,
                    f"{m} low": iv.low,
                    f"{m} high": iv.high,
                    f"{m} seed sd": float(np.std(iv.per_seed, ddof=1)) if len(iv.per_seed) > 1 else np.nan,
                }
            )
            if case.endswith("new/old"):
                g = gain_interval(*(case_values(results, c, distance, m, store) for c in (case, *references(case))))
                record.update({f"G {m}": g.value, f"G {m} low": g.low, f"G {m} high": g.high})
        records.append(record)
    return pd.DataFrame.from_records(records).set_index("case")


def training_curves(results: list[dict]) -> pd.DataFrame:
    """Every image model's per-epoch training log from the result files (the cache is not committed): one row per
    (model, seed, epoch) with its loss (the sum of its terms) and training accuracy (%); transformations, which
    log an error instead, are left out. Long form, for :func:`compat.plots.interval_lines`-style figures."""
    records = []
    for res in main_results(results):
        for name, model in res["models"].items():
            for entry in model.get("epochs", []):
                if entry.get("train_acc") is None:
                    continue
                records.append(
                    {
                        "model": get_experiment(res["experiment"]).artefact_label(name, res),
                        "seed": res["seed"],
                        "epoch": entry["epoch"],
                        "loss": sum(v for k, v in entry.items() if k.startswith("loss_")),
                        "train accuracy (%)": 100 * entry["train_acc"],
                    }
                )
    return pd.DataFrame.from_records(records)
