"""Partial backfill (compat.backfill): the re-embedding orders and the mixed gallery against hand-made oracles, and
the measurement end to end on the tiny smoke profile, whose ends must be its chapter's own cases."""

import numpy as np
import pytest
from helpers import TINY

from compat import backfill
from compat.config import get_profile
from compat.errors import ConfigError
from compat.store import Store


def test_far_from_class_mean_puts_the_stored_vectors_farthest_from_their_class_mean_first():
    stored = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 5.0], [10.0, -1.0]])
    labels = np.array([0, 0, 1, 1, 1])
    # class 0's mean (1, 0): rows 0 and 1 at 1; class 1's mean (10, 4/3): rows 2, 3, 4 at 4/3, 11/3, 7/3
    assert backfill.backfill_order(stored, labels, "far from class mean").tolist() == [3, 4, 2, 0, 1]


def test_far_from_class_mean_at_cosine_measures_directions_not_lengths():
    stored = np.array([[1.0, 0.0], [5.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    labels = np.array([0, 0, 0, 0])
    order = backfill.backfill_order(stored, labels, "far from class mean", distance="cosine")
    # unit vectors (1,0), (1,0), (0,1), (0,1): all at the same distance from their mean (1/2, 1/2); ties keep row order
    assert order.tolist() == [0, 1, 2, 3]
    assert backfill.backfill_order(stored, labels, "far from class mean").tolist()[0] == 1  # L2: the long one


def test_the_random_order_is_a_permutation_fixed_by_its_seed():
    stored = np.zeros((50, 3))
    labels = np.zeros(50, dtype=int)
    a, b = (backfill.backfill_order(stored, labels, "random", seed=3) for _ in range(2))
    assert sorted(a.tolist()) == list(range(50)) and a.tolist() == b.tolist()
    assert a.tolist() != backfill.backfill_order(stored, labels, "random", seed=4).tolist()


def test_the_mixed_gallery_holds_the_new_embeddings_of_the_first_rows_of_the_order_only():
    stored, new = np.zeros((8, 2), np.float32), np.ones((8, 2), np.float32)
    order = np.array([5, 2, 7, 0, 1, 3, 4, 6])
    gallery = backfill.mixed_gallery(stored, new, order, 0.25)
    assert np.flatnonzero(gallery[:, 0]).tolist() == [2, 5] and not stored.any()
    assert not backfill.mixed_gallery(stored, new, order, 0.0).any() and backfill.mixed_gallery(stored, new, order, 1.0).all()


def test_bad_names_are_refused_with_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown backfill order 'sideways'; allowed: 'random', 'far from class mean'"):
        backfill.backfill_order(np.zeros((2, 2)), np.zeros(2), "sideways")
    with pytest.raises(ConfigError, match=r"unknown backfill strategy 'BCT, twice'; allowed: .*'BCT'"):
        backfill.measurement_key(get_profile("smoke"), ("BCT, twice",))
    with pytest.raises(ConfigError, match="must share one shape"):
        backfill.mixed_gallery(np.zeros((2, 2)), np.zeros((3, 2)), np.arange(2), 0.5)


def test_the_measurement_needs_its_chapters_result_files(tmp_path):
    with pytest.raises(ConfigError, match=r"no result file bct/smoke/.*python -m compat run bct --profile smoke"):
        backfill.measure(get_profile("smoke", TINY), Store(tmp_path / "c", tmp_path / "r"), ("BCT",))


def test_the_measurement_runs_from_nothing_re_embedded_to_the_full_backfill_of_its_chapter(tmp_path, monkeypatch):
    from compat.experiments import get_experiment

    profile, store = get_profile("smoke", TINY), Store(tmp_path / "c", tmp_path / "r")
    chapter = get_experiment("bct").run(profile, store)[0]
    assert backfill.read(profile, store, ("BCT",)) is None
    payload = backfill.measure(profile, store, ("BCT",))
    for distance in profile.protocol.distances:
        curve = backfill.curves(payload, distance)
        reported = {r["case"]: r["top1"] for r in chapter["rows"] if r["distance"] == distance}
        for order in backfill.ORDERS:
            by_fraction = curve[curve["order"] == order].set_index("fraction")["top1"]
            assert by_fraction[0.0] == pytest.approx(reported["BCT new/old"])  # nothing re-embedded: the compatible upgrade
            assert by_fraction[1.0] == pytest.approx(reported["BCT new/new"])  # everything: the backfill
            assert list(by_fraction.index) == list(backfill.FRACTIONS)
    assert {d["fraction"] for d in payload["order_differences"]} == set(backfill.FRACTIONS[1:-1])
    assert payload["sources"]["BCT"]["result"] == chapter["key"]

    monkeypatch.setattr(backfill, "retrieval_metrics", lambda *a, **k: pytest.fail("measured twice"))
    assert backfill.measure(profile, store, ("BCT",)) == payload == backfill.read(profile, store, ("BCT",))


def test_the_command_measures_after_the_chapters_and_says_which_to_run_first(capsys):
    from compat.cli import main

    assert main(["bench", "backfill", "--profile", "smoke"]) == 2
    assert "no result file bct/smoke/" in capsys.readouterr().err  # the first strategy's chapter, with its command


def test_the_reading_says_where_the_ordered_backfill_is_above_or_below_random_by_its_interval():
    rows = [
        {"strategy": "BCT", "distance": "l2", "order": order, "fraction": f, "top1": 10 + 10 * f, "top1 low": 0, "top1 high": 30}
        for order in backfill.ORDERS
        for f in backfill.FRACTIONS
    ]
    differences = [
        {"strategy": "BCT", "distance": "l2", "fraction": f, "difference": d, "low": low, "high": high}
        for f, d, low, high in ((0.1, 1.0, 0.2, 1.8), (0.25, 0.5, -0.1, 1.1), (0.5, -1.0, -1.5, -0.5), (0.75, 0.0, -0.4, 0.4))
    ]
    text = backfill.reading({"rows": rows, "order_differences": differences})
    assert text == (
        "* **BCT**: top-1 10.0 % with nothing re-embedded, 20.0 % with everything; ordering by distance to the class mean is "
        "above random at 10 % and below random at 50 % re-embedded."
    )
    for d in differences:
        d.update(low=-1.0, high=1.0)
    assert "inside the noise of random at every fraction" in backfill.reading({"rows": rows, "order_differences": differences})


def test_a_damaged_measurement_is_measured_again_not_used(tmp_path):
    from compat.experiments import get_experiment

    profile, store = get_profile("smoke", TINY), Store(tmp_path / "c", tmp_path / "r")
    get_experiment("bct").run(profile, store)
    first = backfill.measure(profile, store, ("BCT",))
    path = store.result_path(backfill.NAME, profile.name, first["key"])
    path.write_text(path.read_text().replace('"top1"', '"top5"', 1))  # its sha256 no longer matches
    with pytest.warns(UserWarning, match="making it again"):
        again = backfill.measure(profile, store, ("BCT",))
    assert again["rows"] == first["rows"] and backfill.read(profile, store, ("BCT",))["rows"] == first["rows"]
