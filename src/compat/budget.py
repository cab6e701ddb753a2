"""What a profile's book costs before it runs: every result file the chapters read, every distinct model and
transformation they need (each once, however many tables name it), which of them the store already holds, and
the training minutes the rest will take at the speeds the profile's committed runs measured.

An estimate, not a measurement: image models at the median images/s of the committed image models, each
transformation at the median training time of the committed ones; embedding and evaluation are not counted
(the queue's log and the result files record them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from .artefacts import ModelSpec, TransformationSpec, branch_epoch, plain_twin
from .experiments import EXPERIMENTS
from .experiments.base import Job
from .methods import get_method
from .store import Store

AIM_HOURS = 6.0  # the brief: the whole cpu book on these 2 cores
CONTESTED_SHARE = 0.8  # an epoch whose process had less of its cores than this shared them with other work


def book_jobs(profile, experiments: Iterable[str] | None = None) -> list[Job]:
    """The result files of every chapter (or of ``experiments``, in that order), each chapter's in its run order."""
    names = list(experiments) if experiments else list(EXPERIMENTS)
    return [job for name in names for job in EXPERIMENTS[name].jobs(profile)]


def _needed(job: Job) -> Iterator[ModelSpec | TransformationSpec]:
    """Everything ``job`` trains, dependencies first: each model's parent, each transformation's models and the
    transformations its inputs pass through."""

    def model(spec: ModelSpec | None):
        if spec is not None:
            yield from model(spec.parent)
            yield spec

    def transformation(spec: TransformationSpec):
        for earlier in spec.through:
            yield from transformation(earlier)
        for part in (spec.old, spec.new, spec.side):
            yield from model(part)
        yield spec

    for spec in job.models:
        yield from model(spec)
    for spec in job.transformations:
        yield from transformation(spec)


def _shared_epochs(spec: ModelSpec, keys: set[str]) -> int:
    """The epochs ``spec`` takes from its plain twin's kept checkpoint, where the book trains that twin too."""
    epochs = branch_epoch(spec)
    return epochs if epochs and plain_twin(spec).key in keys else 0


def artefact_table(profile, store: Store, jobs: list[Job]) -> pd.DataFrame:
    """One row per distinct model or transformation ``jobs`` train, at the first job that needs it: its kind, the
    images it trains on, its epochs (and those it branches from its plain twin, where the book trains the twin),
    the samples it sees in its own epochs (images x epochs x views), whether it is stored, and
    whether it is to train (not stored, and needed by a result file that is not stored either)."""
    labels = profile.data.load().train.labels
    every = {spec.key for job in jobs for spec in _needed(job)}
    rows, seen = {}, set()
    for job in jobs:
        missing = store.read_result(job.experiment, profile.name, job.key) is None
        for spec in _needed(job):
            if spec.key in seen:
                rows[spec.key]["to train"] |= missing and not rows[spec.key]["stored"]
                continue
            seen.add(spec.key)
            stored = store.has_model(spec.key)
            row = {"experiment": job.experiment, "result file": job.label, "key": spec.key, "stored": stored, "to train": missing and not stored}
            if isinstance(spec, ModelSpec):
                images = len(spec.subset.select(labels).indices)
                shared = _shared_epochs(spec, every)
                samples = images * (spec.train.epochs - shared) * get_method(spec.method.name).num_views
                row.update(
                    kind="model",
                    what=f"{spec.method.name} {spec.subset.role}, seed {spec.seed}",
                    images=images,
                    epochs=spec.train.epochs,
                    **{"epochs branched from its plain twin": shared},
                    samples=samples,
                )
            else:
                row.update(kind="transformation", what=f"h, seed {spec.seed}", images=np.nan, epochs=spec.config.epochs, samples=np.nan)
            rows[spec.key] = row
    return pd.DataFrame.from_records(list(rows.values()))


def measured_speeds(profile_name: str, store: Store) -> tuple[float | None, float | None]:
    """(median images/s of the committed image models, median training seconds of the committed transformations)
    of a profile's result files; None where it has none. A model whose epochs had on average less than
    :data:`CONTESTED_SHARE` of their cores (it shared them) is left out: the plan counts a quiet machine."""
    speeds, seconds, seen = [], [], set()
    for path in sorted(store.results.glob(f"*/{profile_name}/*.json")):
        res = store.read_result(path.parts[-3], profile_name, path.stem)
        for record in res.get("models", {}).values():
            if record["key"] in seen:
                continue
            seen.add(record["key"])
            if record.get("final_mse") is not None:
                seconds.append(record["train_seconds"])
            elif record.get("images_per_s") and not _contested(record):
                speeds.append(record["images_per_s"])
    return (float(np.median(speeds)) if speeds else None, float(np.median(seconds)) if seconds else None)


def budget_table(artefacts: pd.DataFrame, images_per_s: float | None, transformation_seconds: float | None) -> pd.DataFrame:
    """Per experiment (and the book): the models and transformations it is the first chapter to need, their
    estimated training minutes, how many are still to train (for result files not yet stored) and their minutes
    (NaN where no speed was measured)."""
    todo = artefacts[artefacts["to train"]]

    def at(amount: pd.Series, per_minute: float | None) -> pd.Series:
        """``amount`` (per experiment) over a speed; NaN where there is work but no measured speed, 0 where none."""
        amount = amount.reindex(order, fill_value=0).astype(float)
        return amount / per_minute if per_minute else amount.where(amount == 0, np.nan)

    def minutes(part: pd.DataFrame) -> pd.Series:
        models, transformations = part[part["kind"] == "model"], part[part["kind"] == "transformation"]
        return at(models.groupby("experiment")["samples"].sum(), images_per_s and images_per_s * 60) + at(
            transformations.groupby("experiment").size(), transformation_seconds and 60 / transformation_seconds
        )

    def count(part: pd.DataFrame, kind: str) -> pd.Series:
        return part[part["kind"] == kind].groupby("experiment").size().reindex(order, fill_value=0)

    order = list(artefacts["experiment"].unique())
    table = pd.DataFrame(
        {
            "models": count(artefacts, "model"),
            "transformations": count(artefacts, "transformation"),
            "training minutes, whole chapter": minutes(artefacts),
            "models to train": count(todo, "model"),
            "transformations to train": count(todo, "transformation"),
            "training minutes to do": minutes(todo),
        }
    ).reindex(order)
    table.loc["book"] = table.sum(min_count=1)
    return table.astype({c: int for c in ("models", "transformations", "models to train", "transformations to train")})


def _own_epochs(record: dict) -> list[dict]:
    """The epochs a model trained itself: a branch's log starts with its plain twin's epochs, which its
    ``train_seconds`` leaves out (train.fit), so they are the shortest suffix whose seconds add up to it."""
    epochs = record.get("epochs") or []
    if not all("seconds" in e for e in epochs):  # a transformation's log times only the whole fit
        return []
    for start in range(len(epochs) + 1):
        if np.isclose(sum(e["seconds"] for e in epochs[start:]), record["train_seconds"], rtol=1e-9, atol=1e-6):
            return epochs[start:]
    return epochs


def _contested(record: dict) -> bool:
    """The model's own epochs had on average less than :data:`CONTESTED_SHARE` of their cores (False where unrecorded)."""
    shares = [e["cpu_share"] for e in _own_epochs(record) if "cpu_share" in e]
    return bool(shares) and float(np.mean(shares)) < CONTESTED_SHARE


def _quiet_seconds(epochs: list[dict], quiet_share: float) -> float:
    """The epochs' seconds on a quiet machine: a contested epoch's seconds scaled by its share of the cores over
    a quiet epoch's (``quiet_share``); a quiet one, or one that did not record its share, as recorded."""
    return sum(e["seconds"] * min(1.0, e["cpu_share"] / quiet_share) if e.get("cpu_share", 1.0) < CONTESTED_SHARE else e["seconds"] for e in epochs)


def measured_budget(results: list[dict]) -> pd.DataFrame:
    """What result files (:func:`shown_results`, those made) cost, per chapter and for the book, in minutes.

    Each model and transformation is counted once, in the first chapter (in the book's order) whose file names it,
    and only where it was trained at the revision that wrote that file (one reused from an earlier run is not
    in that file's wall time). *training*: its recorded seconds; *training, quiet estimate*: contested epochs
    (``cpu_share`` below :data:`CONTESTED_SHARE`) scaled to the median share of the quiet ones; *embedding and
    other*: each file's recorded train-and-embed wall time less the training counted for it; *evaluation*: its
    recorded evaluation time. Transformations record no share of the cores: their time is as recorded.
    """
    results = sorted(results, key=lambda r: list(EXPERIMENTS).index(r["experiment"]) if r["experiment"] in EXPERIMENTS else len(EXPERIMENTS))
    firsts, seen = [], set()
    for res in results:
        for record in res.get("models", {}).values():
            if record["key"] not in seen and record["trained_at_revision"] == res["environment"].get("git_revision"):
                firsts.append((res["experiment"], record))
            seen.add(record["key"])
    shares = [e["cpu_share"] for _, r in firsts for e in _own_epochs(r) if e.get("cpu_share", 0) >= CONTESTED_SHARE]
    quiet_share = float(np.median(shares)) if shares else 1.0
    rows = {}
    for res in results:
        row = rows.setdefault(
            res["experiment"],
            dict.fromkeys(
                ("result files", "trained here", "contested", "share recorded", "training", "training, quiet estimate", "wall", "evaluation"), 0.0
            ),
        )
        row["result files"] += 1
        row["wall"] += res["wall_seconds"].get("train_and_embed", 0.0) / 60
        row["evaluation"] += res["wall_seconds"].get("evaluate", 0.0) / 60
    for experiment, record in firsts:
        row, epochs = rows[experiment], _own_epochs(record)
        row["trained here"] += 1
        row["training"] += record["train_seconds"] / 60
        row["training, quiet estimate"] += _quiet_seconds(epochs, quiet_share) / 60 if epochs else record["train_seconds"] / 60
        row["contested"] += _contested(record)
        row["share recorded"] += any("cpu_share" in e for e in epochs)
    table = pd.DataFrame.from_dict(rows, orient="index")
    if table.empty:
        return table
    embedding = (table.pop("wall") - table["training"]).clip(lower=0)
    table.insert(table.columns.get_loc("evaluation"), "embedding and other", embedding)
    table["total"] = table["training"] + table["embedding and other"] + table["evaluation"]
    table["total, quiet estimate"] = table["training, quiet estimate"] + table["embedding and other"] + table["evaluation"]
    table.loc["book"] = table.sum()
    counts = ["result files", "trained here", "contested", "share recorded"]
    return table.astype({c: int for c in counts}).rename(columns={c: f"{c} (min)" for c in table.columns if c not in counts})


def shown_results(profile, store: Store | None = None) -> list[dict | None]:
    """The result files the book of ``profile`` shows (every chapter's jobs, in order; stale files of other keys
    left aside), None for one not yet made."""
    store = store or Store()
    return [store.read_result(job.experiment, profile.name, job.key) for job in book_jobs(profile)]


def shown_revisions(results: list[dict | None]) -> pd.Series:
    """How many of ``results`` (:func:`shown_results`) each revision wrote; a file not yet made counts under "missing"."""
    written = ["missing" if res is None else res["environment"].get("git_revision", "unrecorded") for res in results]
    return pd.Series(written, dtype=object).value_counts().rename("result files").rename_axis("written at revision")
