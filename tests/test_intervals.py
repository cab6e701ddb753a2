"""Intervals against independent oracles (the normal approximation, hand-made shifts), and the claim
rules decided on constructed result files."""

import numpy as np
import pytest

from compat.evaluate import retrieval_metrics, update_gain
from compat.intervals import Interval, difference_interval, gain_interval, mean_interval, per_query_metric, resample_weights
from compat.store import Store


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    x = 100.0 * (rng.random(5000) < 0.3)  # 5000 queries, 30 % hits
    iv = mean_interval(x[None], replicates=2000)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))  # CLT oracle
    assert iv.value == pytest.approx(x.mean())
    assert iv.low == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert iv.high == pytest.approx(x.mean() + half, abs=0.15 * half)


def test_paired_difference_is_exact_for_a_constant_shift_and_zero_for_equal_cases():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 300))
    same = difference_interval(a, a)
    assert same.low == same.high == same.value == 0.0
    shifted = difference_interval(a + 1.5, a)
    assert shifted.low == pytest.approx(1.5) and shifted.high == pytest.approx(1.5)
    assert shifted.per_seed == pytest.approx((1.5, 1.5))


def test_resample_weights_are_multinomial_counts():
    w = resample_weights(7, replicates=50, seed=0)
    counts = w * 7
    assert w.shape == (50, 7) and np.allclose(w.sum(1), 1.0) and np.allclose(counts, np.round(counts))


def test_per_query_values_reproduce_the_evaluator_and_nan_queries_are_left_out():
    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    labels = rng.integers(0, 6, 60)
    labels[0] = 99  # a query without a positive
    metrics, pq = retrieval_metrics(q, g, labels, per_query=True)
    assert pq["rank"][0] == -1 and np.isnan(pq["ap"][0])
    for m in ("top1", "top5", "mAP"):
        assert np.nanmean(per_query_metric(pq, m)) == pytest.approx(metrics[m])
        assert mean_interval(per_query_metric(pq, m)[None]).value == pytest.approx(metrics[m])


def test_gain_interval_point_is_the_update_gain_of_the_means():
    rng = np.random.default_rng(4)
    oo, nn, no = (100.0 * (rng.random((1, 2000)) < p) for p in (0.2, 0.4, 0.3))
    g = gain_interval(no, oo, nn)
    assert g.value == pytest.approx(update_gain(no.mean(), oo.mean(), nn.mean()))
    assert g.low < g.value < g.high


def test_a_claim_needs_the_interval_and_every_seed():
    assert Interval(1.0, 0.2, 1.8, (0.9, 1.1)).above(0)
    assert not Interval(1.0, -0.1, 2.1, (0.9, 1.1)).above(0)  # interval reaches 0
    assert not Interval(1.0, 0.2, 1.8, (2.1, -0.1)).above(0)  # one seed disagrees


def _fake_results(tmp_path, values: dict[str, list[float]], n=4000, seeds=(0, 1), experiment="bct", paired=False):
    """Result files of ``experiment`` whose per-query top-1 hits have the given rates per case (``paired``: every
    case thresholds the same uniform draw per query, as models that agree on which queries are easy)."""
    from compat.experiments.common import write_seed_result

    store = Store(tmp_path / "c", tmp_path / "r")
    rng = np.random.default_rng(5)
    results = []

    from compat.config import get_profile

    profile = get_profile("smoke")
    for i, seed in enumerate(seeds):
        per_query, rows = {}, []
        shared = rng.random(n)
        for case, rates in values.items():
            hit = (shared if paired else rng.random(n)) < rates[i]
            per_query[f"l2|{case}|rank"] = np.where(hit, 0, 3).astype(np.int32)
            per_query[f"l2|{case}|ap"] = hit.astype(np.float32)
            rows.append({"distance": "l2", "case": case, "top1": 100 * hit.mean(), "top5": 100 * hit.mean(), "mAP": 100 * hit.mean()})
        results.append(write_seed_result(store, profile, seed, False, f"k{seed}", rows, {}, {}, experiment=experiment, per_query=per_query))
    return results, store


def test_bct_verdict_rules_on_constructed_results(tmp_path):
    from compat.experiments import get_experiment

    bct = get_experiment("bct")
    base = {
        "old/old": [0.10, 0.10],
        "independent new/new": [0.20, 0.20],
        "independent new/old": [0.005, 0.005],
        "L2 new/old": [0.09, 0.09],
        "L2 new/new": [0.15, 0.15],
    }
    good, store = _fake_results(tmp_path / "a", {**base, "BCT new/old": [0.14, 0.14], "BCT new/new": [0.19, 0.19]})
    assert bct.check_claims(good, "l2", store)["holds"].all()
    assert "l2 distance: reproduced" in bct.verdict(good, "l2", store)

    # BCT new/old just below old/old: compatibility is learned, the criterion fails -> partly
    weak, store = _fake_results(tmp_path / "b", {**base, "BCT new/old": [0.095, 0.095], "BCT new/new": [0.19, 0.19]})
    holds = bct.check_claims(weak, "l2", store).set_index("claim")["holds"]
    assert holds.iloc[0] and not holds.iloc[1]
    assert "l2 distance: partly reproduced" in bct.verdict(weak, "l2", store)

    # a difference inside the noise (0.2 points on 4000 queries) does not count as a win
    noise, store = _fake_results(tmp_path / "c", {**base, "BCT new/old": [0.102, 0.102], "BCT new/new": [0.19, 0.19]})
    assert not bct.check_claims(noise, "l2", store).set_index("claim")["holds"].iloc[1]

    # nothing compatible -> not reproduced
    bad, store = _fake_results(tmp_path / "d", {**base, "BCT new/old": [0.005, 0.005], "BCT new/new": [0.19, 0.19]})
    assert "l2 distance: not reproduced" in bct.verdict(bad, "l2", store)


def test_fct_verdict_rules_on_constructed_results(tmp_path):
    from compat.experiments import get_experiment
    from compat.experiments.fct import NO_SIDE, SIDE

    fct = get_experiment("fct")
    base = {"old/old": [0.15, 0.15], "independent new/new": [0.25, 0.25], "BCT new/old": [0.17, 0.17]}
    good, store = _fake_results(tmp_path / "a", {**base, NO_SIDE: [0.215, 0.215], SIDE: [0.232, 0.232]}, n=2000, experiment="fct", paired=True)
    text = fct.verdict(good, "l2", store)
    assert "l2 distance: reproduced" in text and "overlapping that range" in text
    # side-information adds nothing: partly reproduced
    flat, store = _fake_results(tmp_path / "b", {**base, NO_SIDE: [0.22, 0.22], SIDE: [0.22, 0.22]}, n=2000, experiment="fct", paired=True)
    assert "l2 distance: partly reproduced" in fct.verdict(flat, "l2", store)
    # the transformed gallery no better than the old one: not reproduced
    bad, store = _fake_results(tmp_path / "c", {**base, NO_SIDE: [0.14, 0.14], SIDE: [0.15, 0.15]}, n=2000, experiment="fct", paired=True)
    assert "l2 distance: not reproduced" in fct.verdict(bad, "l2", store)


def test_unibct_verdict_rules_on_constructed_results(tmp_path):
    """Reproduced needs BCT to break outside extended-class and UniBCT to hold in every scenario."""
    from compat.experiments import get_experiment
    from compat.splits import SCENARIOS

    unibct = get_experiment("unibct")

    def results(where, bct, uni):
        values = {}
        for s in SCENARIOS:
            values |= {
                f"{s}: old/old": [0.10, 0.10],
                f"{s}: BCT new/old": [bct[s]] * 2,
                f"{s}: UniBCT new/old": [uni[s]] * 2,
                f"{s}: UniBCT (no refinement) new/old": [0.11, 0.11],
            }
        return _fake_results(tmp_path / where, values, n=2000, experiment="unibct", paired=True)

    closed_only = {s: 0.14 if s == "extended-class" else 0.07 for s in SCENARIOS}
    everywhere = dict.fromkeys(SCENARIOS, 0.14)
    good, store = results("a", closed_only, everywhere)
    text = unibct.verdict(good, "l2", store)
    assert "l2 distance: reproduced" in text
    assert "- open-class: BCT compatible: no; UniBCT compatible: yes; UniBCT above BCT: yes; refinement helps: yes" in text
    assert "- claim 1, BCT's compatibility breaks outside the closed set: yes, in open-class, extended-data, open-data" in text
    assert "- claim 2, UniBCT compatible in every scenario: yes (compatible in extended-class, open-class, extended-data, open-data;" in text
    # BCT breaks only in the closed-set scenario it was designed for: that is not the paper's claim
    closed_broken = {s: 0.07 if s == "extended-class" else 0.14 for s in SCENARIOS}
    partial, store = results("b", closed_broken, everywhere)
    assert "l2 distance: partly reproduced" in unibct.verdict(partial, "l2", store)
    # UniBCT never compatible and never above BCT
    bad, store = results("c", everywhere, dict.fromkeys(SCENARIOS, 0.07))
    text = unibct.verdict(bad, "l2", store)
    assert "l2 distance: not reproduced" in text
    assert "- claim 1, BCT's compatibility breaks outside the closed set: no, not in any scenario but extended-class" in text
    assert "- claim 2, UniBCT compatible in every scenario: no (compatible in none; above BCT in none;" in text


def test_cost_cells_name_units_and_compute_the_ratio_from_the_rows():
    from compat.tables import cost_cells

    rows = [
        {"method": m, "n": n, "seconds": s, "rows_per_s": n / s, "input_mb": 1.5, "peak_extra_mb": None}
        for m, n, s in (("upgrade", 100, 0.01), ("re-embed", 100, 2.0), ("upgrade", 1000, 0.05), ("re-embed", 1000, 20.0))
    ]
    table, text = cost_cells({"rows": rows, "environment": {"device": "cpu (test)", "git_revision": "abcdef1234567890"}})
    assert list(table.index) == [100, 1000] and ("time (s)", "re-embed") in table.columns
    assert table.loc[1000, ("rows per s", "upgrade")] == "20,000" and table.loc[100, ("peak extra memory (MB)", "upgrade")] == ""
    assert "**200x, 400x**" in text and "N = 100, 1,000" in text and "abcdef123456)" in text
