"""The book's budget before it runs (compat.budget): its count of models to train against the trainings a run
actually does, its minutes against a hand computation, its speeds against the committed records."""

import numpy as np
import pandas as pd
import pytest
from helpers import TINY

from compat.budget import artefact_table, book_jobs, budget_table, measured_budget, measured_speeds
from compat.config import get_profile
from compat.experiments import EXPERIMENTS
from compat.store import Store

TINY = {**TINY, "new_train.epochs": "2"}


def test_every_chapters_jobs_are_its_result_files_in_run_order():
    profile = get_profile("smoke")
    for name, experiment in EXPERIMENTS.items():
        jobs = experiment.jobs(profile)
        assert [j.key for j in jobs] == experiment.result_keys(profile) and len({j.key for j in jobs}) == len(jobs)
        assert all(j.experiment == name and j.models for j in jobs)
    assert [j.experiment for j in book_jobs(profile, ["bict", "bct"])][:1] == ["bict"]  # the order asked for


def test_the_models_to_train_are_those_a_run_trains(tmp_path, monkeypatch):
    from compat import artefacts

    store = Store(tmp_path / "cache", tmp_path / "results")
    profile = get_profile("smoke", TINY)
    before = artefact_table(profile, store, book_jobs(profile, ["bct"]))
    trained = []
    real_fit = artefacts.fit
    monkeypatch.setattr(artefacts, "fit", lambda *a, **k: trained.append(k["desc"]) or real_fit(*a, **k))
    EXPERIMENTS["bct"].run(profile, store)
    assert int(before["to train"].sum()) == len(trained) == 8  # counted before, trained once each
    images = before.set_index("what")["images"]
    assert images["plain old, seed 0"] < images["plain new, seed 0"] == 6 * 12  # the old model sees the old classes only
    after = artefact_table(profile, store, book_jobs(profile, ["bct"]))
    assert not after["to train"].any() and after["stored"].all()
    changed = get_profile("smoke", {**TINY, "new_train.lr": "0.05"})
    assert int(artefact_table(changed, store, book_jobs(changed, ["bct"]))["to train"].sum()) == 7  # the old model is kept


def test_the_minutes_are_samples_over_the_measured_speed():
    artefacts = pd.DataFrame(
        [
            {"experiment": "a", "kind": "model", "samples": 6000.0, "to train": True},
            {"experiment": "a", "kind": "model", "samples": 3000.0, "to train": False},
            {"experiment": "b", "kind": "transformation", "samples": np.nan, "to train": True},
        ]
    )
    table = budget_table(artefacts, images_per_s=50.0, transformation_seconds=30.0)
    assert table.loc["a", "training minutes, whole chapter"] == pytest.approx(9000 / 50 / 60)
    assert table.loc["a", "training minutes to do"] == pytest.approx(6000 / 50 / 60)
    assert table.loc["b", "training minutes to do"] == pytest.approx(0.5)
    assert table.loc["book", "models to train"] == 1 and table.loc["book", "transformations"] == 1
    assert np.isnan(budget_table(artefacts, None, 30.0).loc["a", "training minutes to do"])  # no speed measured: no figure


def test_the_speeds_are_the_medians_of_the_committed_records_each_model_once(tmp_path):
    store = Store(tmp_path / "cache", tmp_path / "results")
    base = {"experiment": "bct", "profile": "cpu", "kind": "main", "rows": [], "config": {}, "wall_seconds": {}, "environment": {}}

    def record(key, speed=None, seconds=60.0, mse=None):
        return {"key": key, "images_per_s": speed, "train_seconds": seconds, "final_mse": mse}

    store.write_result(
        "bct",
        "cpu",
        "a" * 16,
        {**base, "key": "a" * 16, "models": {"old": record("m1", 100.0), "new": record("m2", 300.0), "h": record("t1", seconds=10.0, mse=0.1)}},
    )
    store.write_result(
        "bct",
        "cpu",
        "b" * 16,
        {**base, "key": "b" * 16, "models": {"old": record("m1", 100.0), "other": record("m3", 1000.0), "h": record("t2", seconds=30.0, mse=0.2)}},
    )
    assert measured_speeds("cpu", store) == (300.0, 20.0)  # m1 counted once: median of 100, 300, 1000
    shared = {**record("m5", 10.0, seconds=100.0), "epochs": [{"seconds": 100.0, "cpu_share": 0.5}]}  # it shared the cores
    quiet = {**record("m6", 2000.0, seconds=100.0), "epochs": [{"seconds": 100.0, "cpu_share": 0.97}]}
    store.write_result("bct", "cpu", "c" * 16, {**base, "key": "c" * 16, "models": {"a": shared, "b": quiet}})
    assert measured_speeds("cpu", store) == (650.0, 20.0)  # median of 100, 300, 1000, 2000: m5 left out
    assert measured_speeds("gpu", store) == (None, None)


def test_the_plan_command_prints_the_count_and_refuses_an_unknown_chapter(capsys):
    from compat.cli import main

    assert main(["plan", "bct", "--profile", "smoke", *[f"--set={k}={v}" for k, v in TINY.items()]]) == 0
    out = capsys.readouterr().out
    assert "profile smoke: 2 result files (0 stored)" in out and "none for image models" in out
    assert "training, estimated: nan h for the whole book" in out  # no committed smoke run measured a speed
    assert main(["plan", "bcx", "--profile", "smoke"]) == 2
    assert "unknown experiment 'bcx'" in capsys.readouterr().err


def test_the_measured_budget_counts_each_model_once_where_its_file_trained_it_and_scales_contested_epochs(tmp_path):
    """Hand-computed: a model is counted in the first chapter of the book's order that names it, only if trained at
    that file's revision; a branch counts its own epochs; a contested epoch is scaled to the quiet epochs' share."""
    store = Store(tmp_path / "cache", tmp_path / "results")

    def epochs(*pairs):
        return [{"epoch": i + 1, "seconds": s, "cpu_share": c} for i, (s, c) in enumerate(pairs)]

    def record(key, log, revision="r1"):
        return {"key": key, "train_seconds": sum(e["seconds"] for e in log), "final_mse": None, "trained_at_revision": revision, "epochs": log}

    quiet = record("m1", epochs((60.0, 0.9), (60.0, 1.0)))  # quiet share: median of 0.9, 1.0 and the others below
    contested = record("m2", epochs((50.0, 0.95), (100.0, 0.475)))  # the second epoch would take 100 x 0.5 = 50 s quiet
    trunk = epochs((10.0, 0.95), (10.0, 0.95))
    branch = {**record("m3", [*trunk, *epochs((30.0, 0.95))]), "train_seconds": 30.0}  # branched after 2 epochs
    reused = record("m4", epochs((500.0, 0.5)), revision="r0")  # trained by an earlier run: not in this file's wall time
    base = {"profile": "cpu", "kind": "main", "rows": [], "config": {}, "environment": {"git_revision": "r1"}}
    files = {
        ("bict", "a"): {"models": {"old": quiet, "new": branch}, "wall_seconds": {"train_and_embed": 300.0, "evaluate": 6.0}},
        ("bct", "b"): {"models": {"old": quiet, "new": contested, "kept": reused}, "wall_seconds": {"train_and_embed": 330.0, "evaluate": 12.0}},
    }
    for (experiment, letter), payload in files.items():
        store.write_result(experiment, "cpu", letter * 16, {**base, **payload, "experiment": experiment, "key": letter * 16})
    table = measured_budget([store.read_result(experiment, "cpu", letter * 16) for experiment, letter in files])
    assert list(table.index) == ["bct", "bict", "book"]  # the book's order: BCT first, so m1 is BCT's
    assert table.loc["bct", "trained here"] == 2 and table.loc["bict", "trained here"] == 1
    assert table.loc["bct", "training (min)"] == pytest.approx(270 / 60)  # m1 120 s + m2 150 s; m4 reused
    assert table.loc["bct", "training, quiet estimate (min)"] == pytest.approx((120 + 50 + 100 * 0.475 / 0.95) / 60)
    assert table.loc["bct", "contested"] == 1 and table.loc["bict", "contested"] == 0 and table.loc["book", "share recorded"] == 3
    assert table.loc["bict", "training (min)"] == pytest.approx(0.5)  # the branch's own epoch only
    assert table.loc["bct", "embedding and other (min)"] == pytest.approx(60 / 60) and table.loc[
        "bict", "embedding and other (min)"
    ] == pytest.approx(4.5)
    assert table.loc["book", "total (min)"] == pytest.approx((330 + 12 + 300 + 6) / 60)
    assert measured_budget([]).empty


def test_the_shown_revisions_count_the_books_files_by_the_revision_that_wrote_them(tmp_path):
    from compat.budget import shown_results, shown_revisions

    store = Store(tmp_path / "cache", tmp_path / "results")
    profile = get_profile("smoke", TINY)
    jobs = book_jobs(profile)
    base = {"profile": profile.name, "kind": "main", "rows": [], "config": {}, "wall_seconds": {}, "models": {}}
    for job, revision in zip(jobs[:3], ("r1", "r2", "r1")):
        store.write_result(
            job.experiment, profile.name, job.key, {**base, "experiment": job.experiment, "key": job.key, "environment": {"git_revision": revision}}
        )
    store.write_result(
        "bct", profile.name, "f" * 16, {**base, "experiment": "bct", "key": "f" * 16, "environment": {"git_revision": "stale"}}
    )  # not shown
    assert shown_revisions(shown_results(profile, store)).to_dict() == {"r1": 2, "r2": 1, "missing": len(jobs) - 3}
