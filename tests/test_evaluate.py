"""Retrieval and verification metrics against independent oracles: brute force, sklearn, hand-computed cases."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_curve

from compat.errors import ConfigError
from compat.evaluate import far_threshold, per_query_tar, retrieval_metrics, tar_at_far, update_gain, verification_scores


def brute_force(query, gallery, labels, topk=(1, 5), cosine=False):
    """Per-query loop over a full distance matrix: CMC by explicit ranking, AP by sklearn."""
    q, g = query.astype(np.float64), gallery.astype(np.float64)
    if cosine:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        dist = 1 - q @ g.T
    else:
        dist = np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    hits = {k: [] for k in topk}
    aps = []
    for i in range(len(q)):
        others = np.array([j for j in range(len(g)) if j != i])
        d, same = dist[i, others], labels[others] == labels[i]
        if not same.any():
            continue
        first_pos = d[same].min()
        rank = int(((d <= first_pos) & ~same).sum())  # ties rank before the match
        for k in topk:
            hits[k].append(rank < k)
        aps.append(average_precision_score(same, -d))
    out = {f"top{k}": 100 * np.mean(hits[k]) for k in topk}
    out["mAP"] = 100 * np.mean(aps)
    out["n_queries"] = len(aps)
    return out


def assert_matches(ours, oracle):
    for key, value in oracle.items():
        assert ours[key] == pytest.approx(value, abs=1e-4), key


@pytest.mark.parametrize("cosine", [False, True])
def test_cross_model_metrics_match_brute_force(cosine):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, size=120)
    old = rng.normal(size=(120, 8)).astype(np.float32) + labels[:, None] * 0.3
    new = old + rng.normal(scale=0.8, size=old.shape).astype(np.float32)
    ours = retrieval_metrics(new, old, labels, distance="cosine" if cosine else "l2", topk=(1, 3, 5), chunk_size=17)
    assert_matches(ours, brute_force(new, old, labels, topk=(1, 3, 5), cosine=cosine))


def test_ties_and_queries_without_positive_match_brute_force():
    rng = np.random.default_rng(2)
    # integer coordinates on a small grid: many exactly tied distances
    x = rng.integers(0, 3, size=(60, 2)).astype(np.float32)
    labels = rng.integers(0, 6, size=60)
    labels[0] = 99  # a class of one item: its query has no positive
    ours = retrieval_metrics(x, x, labels, chunk_size=7)
    oracle = brute_force(x, x, labels)
    assert ours["n_skipped"] == 1
    assert_matches(ours, oracle)


def test_hand_computed_case():
    # 1-D gallery; query 0 (class a) at 0, others: b at 1, a at 2, b at 3, a at 4
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 0])
    q = x[:1]
    out = retrieval_metrics(q, x[1:], labels[:1], labels[1:], leave_one_out=False, topk=(1, 2))
    # ranking b, a, b, a: first match at rank 2; AP = (1/2 + 2/4) / 2
    assert out["top1"] == 0.0 and out["top2"] == 100.0
    assert out["mAP"] == pytest.approx(100 * 0.5)


def test_hand_computed_tie_case():
    # query at 0; a negative and a positive both at distance 1, a positive at 2
    g = np.array([[1.0], [-1.0], [2.0]], dtype=np.float32)
    out = retrieval_metrics(np.zeros((1, 1), np.float32), g, np.array([0]), np.array([1, 0, 0]), leave_one_out=False)
    assert out["top1"] == 0.0  # the tie goes against the query
    # sklearn: threshold group {1,-1} precision 1/2 recall 1/2; then precision 2/3 at recall 1
    assert out["mAP"] == pytest.approx(100 * (0.5 * 0.5 + 0.5 * 2 / 3))


def test_perfect_and_leave_one_out():
    labels = np.repeat(np.arange(4), 3)
    x = np.eye(4, dtype=np.float32)[labels] * 10
    out = retrieval_metrics(x, x, labels)
    assert out["top1"] == 100.0 and out["mAP"] == 100.0
    # every item its own class: without leave-one-out each query finds itself; with it, nothing is left
    distinct = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    assert retrieval_metrics(distinct, distinct, np.arange(12), leave_one_out=False)["top1"] == 100.0
    with pytest.raises(ConfigError, match="no query has a same-class item"):
        retrieval_metrics(distinct, distinct, np.arange(12))


def test_random_features_sit_at_chance():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(50), 20)
    x = rng.normal(size=(1000, 32)).astype(np.float32)
    out = retrieval_metrics(x, x, labels)
    chance_top1 = 19 / 999
    assert abs(out["top1"] / 100 - chance_top1) < 4 * np.sqrt(chance_top1 * (1 - chance_top1) / 1000)


def test_mismatched_inputs_fail_clearly():
    x, y = np.zeros((5, 4), np.float32), np.zeros((5, 3), np.float32)
    with pytest.raises(ConfigError, match="4-d but gallery embeddings are 3-d"):
        retrieval_metrics(x, y, np.arange(5))
    with pytest.raises(ConfigError, match="leave_one_out"):
        retrieval_metrics(x, x[:4], np.arange(5), np.arange(4))
    with pytest.raises(ConfigError, match="labels"):
        retrieval_metrics(x, x, np.arange(4))
    with pytest.raises(ConfigError, match="unknown distance 'l1'"):
        retrieval_metrics(x, x, np.arange(5), distance="l1")
    with pytest.raises(ConfigError, match="NaN"):
        retrieval_metrics(x * np.nan, x, np.arange(5))


def test_update_gain_hand_computed():
    assert update_gain(new_old=40.0, old_old=30.0, new_new=50.0) == pytest.approx(0.5)
    assert update_gain(new_old=25.0, old_old=30.0, new_new=50.0) == pytest.approx(-0.25)
    with pytest.raises(ConfigError):
        update_gain(1.0, 2.0, 2.0)


def oracle_tar(genuine, impostor, far):
    scores = np.r_[genuine, impostor]
    truth = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return tpr[fpr <= far + 1e-12].max()


@pytest.mark.parametrize("far", [0.0, 1e-3, 0.01, 0.1, 0.5, 1.0])
def test_tar_at_far_matches_roc_curve(far):
    rng = np.random.default_rng(4)
    genuine = np.round(rng.normal(1.0, 1.0, 500), 1)  # rounding makes ties across both sets
    impostor = np.round(rng.normal(0.0, 1.0, 2000), 1)
    assert tar_at_far(genuine, impostor, far) == pytest.approx(oracle_tar(genuine, impostor, far))


def test_verification_scores_match_brute_force():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, size=30)
    q, g = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
    genuine, impostor = verification_scores(q, g, labels, max_impostors=None)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    s = qn @ gn.T
    off = ~np.eye(30, dtype=bool)
    same = labels[:, None] == labels[None]
    np.testing.assert_allclose(np.sort(genuine), np.sort(s[same & off]), atol=1e-5)
    np.testing.assert_allclose(np.sort(impostor), np.sort(s[~same]), atol=1e-5)
    _, sampled = verification_scores(q, g, labels, max_impostors=50, seed=0)
    assert len(sampled) == 50
    assert np.abs(sampled[:, None] - s[~same][None]).min(axis=1).max() < 1e-5  # each one is an impostor score


@pytest.mark.parametrize("far", [0.0, 0.05, 0.3, 1.0])
def test_per_query_tar_averages_to_the_tar_at_far(far):
    """Oracle: with equal class sizes the per-query shares average to tar_at_far's TAR; with unequal sizes their mean
    weighted by each query's genuine pairs does; a brute-force count per query gives each share."""
    rng = np.random.default_rng(6)
    equal = np.repeat(np.arange(5), 6)
    for labels in (equal, rng.integers(0, 4, size=30)):
        q, g = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
        genuine, impostor = verification_scores(q, g, labels, max_impostors=None)
        threshold = far_threshold(impostor, far)
        shares = per_query_tar(q, g, labels, threshold)
        pairs = np.array([(labels == c).sum() - 1 for c in labels])
        assert np.nansum(shares * pairs) / pairs.sum() == pytest.approx(100 * tar_at_far(genuine, impostor, far))
        s = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
        mates = (labels[:, None] == labels[None]) & ~np.eye(30, dtype=bool)
        brute = [100 * (s[i][mates[i]] > threshold).mean() if mates[i].any() else np.nan for i in range(30)]
        np.testing.assert_allclose(shares, brute, atol=1e-9)
    assert per_query_tar(q, g, np.arange(30), 0.0).tolist() == [pytest.approx(np.nan, nan_ok=True)] * 30  # no mates


def test_chance_metrics_match_simulated_random_rankings():
    from compat.evaluate import chance_metrics

    rng = np.random.default_rng(6)
    sizes = np.array([2, 3, 5, 6])  # 16 items
    labels = np.repeat(np.arange(4), sizes)
    n = len(labels)
    hits1, hits3, aps = [], [], []
    for _ in range(4000):
        i = rng.integers(n)
        others = rng.permutation(np.delete(np.arange(n), i))
        rel = labels[others] == labels[i]
        first = np.argmax(rel)
        hits1.append(first < 1)
        hits3.append(first < 3)
        aps.append(average_precision_score(rel, -np.arange(len(rel))))
    chance = chance_metrics(sizes, topk=(1, 3))
    assert chance["top1"] / 100 == pytest.approx(np.mean(hits1), abs=0.02)
    assert chance["top3"] / 100 == pytest.approx(np.mean(hits3), abs=0.02)
    assert chance["mAP"] / 100 == pytest.approx(np.mean(aps), abs=0.01)


def test_published_gains_are_computed_from_the_quoted_rows():
    from compat.published import OPENBCT_IMAGENET, reference_table

    table = reference_table(OPENBCT_IMAGENET)
    assert table.loc["BCT new/old", "G (top1)"] == pytest.approx((42.2 - 39.5) / (66.3 - 39.5))
    assert np.isnan(table.loc["BCT new/new", "G (top1)"])


def _clustered(n, classes=50, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    return centres[labels] + rng.normal(scale=0.7, size=(n, dim)).astype(np.float32), labels


@pytest.mark.parametrize("cosine", [False, True])
def test_the_top_k_path_matches_the_brute_force_cmc_without_ranking_everything(cosine):
    x, labels = _clustered(400)
    ours = retrieval_metrics(x, x, labels, distance="cosine" if cosine else "l2", topk=(1, 3, 5), with_map=False, chunk_size=33)
    oracle = brute_force(x, x, labels, topk=(1, 3, 5), cosine=cosine)
    assert "mAP" not in ours
    assert_matches(ours, {k: v for k, v in oracle.items() if k != "mAP"})
    # a first match beyond the window is recorded at the window's edge, never inside it
    _, per_query = retrieval_metrics(x, x, labels, topk=(1, 5), with_map=False, per_query=True)
    _, exact = retrieval_metrics(x, x, labels, topk=(1, 5), per_query=True)
    assert np.array_equal(per_query["rank"], np.minimum(exact["rank"], 5))


def test_approximate_indexes_recall_the_exact_neighbours_and_refuse_map():
    from compat.evaluate import build_index, search

    x, labels = _clustered(3000, dim=32, seed=1)
    _, exact = search(build_index(x, "flat"), x[:200], 10)
    for kind in ("ivf", "hnsw"):
        _, approx = search(build_index(x, kind), x[:200], 10)
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
        assert recall > 0.9, (kind, recall)
        top = retrieval_metrics(x, x, labels, with_map=False, index=kind)
        assert abs(top["top1"] - retrieval_metrics(x, x, labels, with_map=False)["top1"]) < 3
    with pytest.raises(ConfigError, match="index='ivf' is approximate; mAP needs the exact full ranking"):
        retrieval_metrics(x, x, labels, index="ivf")
    with pytest.raises(ConfigError, match="unknown index 'annoy'"):
        retrieval_metrics(x, x, labels, with_map=False, index="annoy")


def test_the_gallery_benchmark_measures_each_size_and_the_recall_of_the_approximate_index(tmp_path):
    import json

    from compat.bench import bench_gallery

    figures = bench_gallery(sizes=(600, 1500), queries=30, dim=16, out=tmp_path / "gallery.json")
    rows = figures["rows"]
    assert [(r["n"], r["what"]) for r in rows[:4]] == [
        (600, "exact top-k search"),
        (600, "IVF-Flat build + search"),
        (600, "evaluator with mAP"),
        (600, "gallery upgrade (h)"),
    ]
    assert len(rows) == 8 and all(r["seconds"] > 0 for r in rows)
    assert all(0 <= r["recall_at_k"] <= 1 for r in rows if r["what"].startswith("IVF"))
    assert json.loads((tmp_path / "gallery.json").read_text())["rows"] == rows


@pytest.mark.parametrize("n", [6, 12])
@pytest.mark.reliability(
    fault="the top-k-only evaluator asked for k >= N - 1 (the window holds the whole gallery)",
    behaviour="the exact CMC of the brute-force oracle, ties included, for every k up to N + 2 (it gave top-1 0 %)",
)
def test_the_top_k_path_is_exact_when_k_reaches_the_gallery_size(n):
    rng = np.random.default_rng(n)
    x = rng.integers(0, 2, size=(n, 2)).astype(np.float32)  # many tied distances
    labels = np.repeat(np.arange(n // 2), 2)
    for k in range(1, n + 3):
        ours = retrieval_metrics(x, x, labels, topk=(1, k), with_map=False)
        assert_matches(ours, {key: v for key, v in brute_force(x, x, labels, topk=(1, k)).items() if key != "mAP"})


@pytest.mark.parametrize("with_map", [True, False])
@pytest.mark.reliability(
    fault="labels given as an N x 1 column (or any non-vector) to the evaluator or the verification scores",
    behaviour="one ConfigError naming the labels and their shape (it raised IndexError or broadcast error)",
)
def test_labels_that_are_not_one_per_row_are_refused(with_map):
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    column = np.repeat(np.arange(5), 2)[:, None]
    with pytest.raises(ConfigError, match=r"query_labels must be one label per row \(shape \(N,\)\), got shape \(10, 1\)"):
        retrieval_metrics(x, x, column, with_map=with_map)
    with pytest.raises(ConfigError, match=r"labels must be one label per row"):
        verification_scores(x, x, column)


@pytest.mark.parametrize(
    "labels",
    [np.array(list("aabbccddee")), np.repeat(np.arange(-5, 0), 2), np.repeat([0.5, 7.0, 1e9, -2.0, 3.0], 2)],
    ids=["text", "negative", "float"],
)
@pytest.mark.reliability(
    fault="text, negative or non-integer class labels in the verification scores",
    behaviour="the scores of the brute-force oracle, as for labels 0..C-1 (it raised TypeError or ValueError)",
)
def test_verification_scores_accept_any_label_values(labels):
    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    codes = np.unique(labels, return_inverse=True)[1]
    for got, want in zip(verification_scores(q, g, labels, max_impostors=None), verification_scores(q, g, codes, max_impostors=None)):
        np.testing.assert_array_equal(np.sort(got), np.sort(want))
    assert len(verification_scores(q, g, labels, max_impostors=7)[1]) == 7
    assert_matches(retrieval_metrics(q, q, labels), brute_force(q, q, codes))


def test_the_step_profile_ranks_operators_by_their_own_time_within_the_steps_wall_time(tmp_path):
    import json

    from compat.bench import bench_step_profile

    figures = bench_step_profile("smoke", steps=2, top=5, out=tmp_path / "profile.json")
    rows = figures["rows"]
    assert len(rows) == 6 and rows[-1]["operator"] == "all other operators" and all(r["operator"].startswith("aten::") for r in rows[:5])
    shares = [r["share_of_step"] for r in rows]
    assert shares[:5] == sorted(shares[:5], reverse=True) and all(s >= 0 for s in shares)
    assert 0.3 < sum(shares) <= 1.0  # operators on the calling thread fit inside the wall time; most of a step is in them
    assert any("convolution" in r["operator"] for r in rows[:5])  # a convolutional network's step
    assert rows[0]["ms_per_step"] == pytest.approx(shares[0] * figures["ms_per_step"])
    assert json.loads((tmp_path / "profile.json").read_text())["rows"] == rows


def test_the_levers_train_each_variant_and_compare_it_with_the_conventional_pipeline(tmp_path, monkeypatch):
    import json

    from compat import bench

    compiled = []
    compile_ = bench.torch.compile
    monkeypatch.setattr(bench.torch, "compile", lambda m: compiled.append(m) or compile_(m))
    figures = bench.bench_levers("smoke", steps=2, workers=0, out=tmp_path / "levers.json")
    batch = bench.get_profile("smoke").old_train.batch_size
    assert [r["lever"] for r in figures["rows"]] == [
        f"engine, batch {batch} (as the book trains)",
        f"torch.compile, batch {batch}",
        f"engine, batch {batch // 2}",
        f"engine, batch {2 * batch}",
    ]
    assert len(compiled) == 1  # the compiled row trains a compiled module, the others do not
    for r in figures["rows"]:
        assert r["images_per_s"] > 0 and r["x_conventional"] == pytest.approx(r["images_per_s"] / figures["conventional_images_per_s"])
    assert json.loads((tmp_path / "levers.json").read_text())["rows"] == figures["rows"]
