"""Retrieval and verification metrics with the protocol of the BCT/FCT code.

Protocol (apple/ml-fct ``utils/eval_utils.py``, after openBCT): the val set is both query
and gallery; query i is embedded by the query model, the gallery by the gallery model
(or by a transformation of stored embeddings), and query i's own gallery entry is left
out. Distances are L2 on raw features (cosine optional). Reported:

* CMC top-k: the query's first same-class gallery item ranks within k;
* mAP: per query, average precision over the whole ranked gallery, as
  ``sklearn.metrics.average_precision_score(same_class, -distance)``, averaged over queries;
* the BCT update gain, Shen et al., CVPR 2020, Eq. (9);
* 1:1 verification TAR at a given FAR (the face papers' metric).

Distances are exact, computed by faiss over query chunks, so no N x N matrix is ever held, and no
row is sorted (each positive's rank is counted). Ties: for CMC a gallery item at the same distance
as the first match ranks before it (a degenerate model is never flattered); for AP tied items
enter together, as in sklearn.
Queries without any positive in the gallery are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from .errors import ConfigError, check_choice, check_range

DISTANCES = ("l2", "cosine")


# float32 distances are exact to float32's precision only while squared norms, summed over the dimensions, stay
# inside its normal range (about 1e-38 to 3e38): the embeddings' largest magnitude must lie here
SEARCHABLE_SCALE = (1e-15, 1e15)


def _as_embeddings(name: str, x: np.ndarray) -> np.ndarray:
    """``x`` as float32 N x D, refused if the search cannot rank it correctly: empty, no dimensions, NaN or
    infinite values, or a scale whose squared distances overflow or underflow (the ranking would be silently wrong)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise ConfigError(f"{name} must be a non-empty N x D array with D >= 1, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name} holds NaN or infinite values")
    scale = float(np.abs(x).max())
    low, high = SEARCHABLE_SCALE
    if scale and not low <= scale <= high:
        raise ConfigError(
            f"{name}' largest magnitude is {scale:.3g}, outside [{low:g}, {high:g}] where float32 distances "
            "are exact to their precision: rescale them (retrieval ranks do not depend on a common scale)"
        )
    return x


def _check_pair(query: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    query, gallery = _as_embeddings("query embeddings", query), _as_embeddings("gallery embeddings", gallery)
    if query.shape[1] != gallery.shape[1]:
        raise ConfigError(
            f"query embeddings are {query.shape[1]}-d but gallery embeddings are {gallery.shape[1]}-d; "
            "compare models in one embedding space (or transform the gallery first)"
        )
    return query, gallery


def _as_labels(name: str, labels) -> np.ndarray:
    """Class labels as one value per row (any values that compare equal within a class: integers, negative
    ones, text); a column or a matrix is refused rather than broadcast."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"{name} must be one label per row (shape (N,)), got shape {labels.shape}")
    return labels


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pairwise_distances(query: np.ndarray, gallery: np.ndarray, distance: str = "l2", chunk_size: int = 512):
    """Yield (first query row, chunk x N_g exact distances) per query chunk, by faiss (``l2``: squared L2, the
    same order as L2; ``cosine``: 1 - cosine similarity). Memory is chunk_size x N_g, never N_q x N_g."""
    check_choice("distance", distance, DISTANCES)
    query, gallery = _check_pair(query, gallery)
    metric = faiss.METRIC_L2
    if distance == "cosine":
        query, gallery = _normalize(query), _normalize(gallery)
        metric = faiss.METRIC_INNER_PRODUCT
    for start in range(0, len(query), chunk_size):
        d = faiss.pairwise_distances(query[start : start + chunk_size], gallery, metric)
        yield start, (1.0 - d if distance == "cosine" else d)


def _chunk_metrics(d: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query of a chunk: rank of the first match (hit@k is rank < k), AP, has-positive; ``d`` unsorted
    distances (a left-out item at +inf and not in ``rel``), ``rel`` the same-class mask.

    Each row's distances are sorted as values (no argsort, no reordering of labels); a positive's precision
    is (positives no farther) / (items no farther), both counted by binary search, so tied items enter
    together (sklearn's AP) and a negative tied with the first positive ranks before it (CMC).
    """
    has_pos = rel.any(axis=1)
    rank, ap = np.full(len(d), -1), np.full(len(d), np.nan)
    ordered = np.sort(d, axis=1)
    for i in np.flatnonzero(has_pos):
        pos = np.sort(d[i, rel[i]])
        all_le = np.searchsorted(ordered[i], pos, side="right")
        pos_le = np.searchsorted(pos, pos, side="right")
        rank[i] = all_le[0] - pos_le[0]
        ap[i] = np.mean(pos_le / all_le)
    return rank, ap, has_pos


INDEXES = ("flat", "ivf", "hnsw")


def build_index(gallery: np.ndarray, kind: str = "flat", distance: str = "l2", *, nprobe: int = 16, ef_search: int = 64):
    """A faiss index over ``gallery``: ``flat`` (exact), ``ivf`` (IVF-Flat, 4 sqrt(N) lists, ``nprobe`` searched)
    or ``hnsw`` (HNSW-Flat, 32 links, ``ef_search``). Cosine indexes normalized vectors by inner product."""
    check_choice("index", kind, INDEXES)
    check_choice("distance", distance, DISTANCES)
    gallery = _as_embeddings("gallery embeddings", gallery)
    if distance == "cosine":
        gallery = _normalize(gallery)
    metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
    dim = gallery.shape[1]
    if kind == "flat":
        index = faiss.IndexFlat(dim, metric)
    elif kind == "ivf":
        nlist = max(1, min(int(4 * np.sqrt(len(gallery))), len(gallery) // 39))  # faiss wants >= 39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, metric), dim, nlist, metric)
        sample = np.random.default_rng(0).choice(len(gallery), size=min(len(gallery), 64 * nlist), replace=False)  # 64 a list
        index.train(gallery[np.sort(sample)])
        index.nprobe = min(nprobe, nlist)
    else:
        index = faiss.IndexHNSWFlat(dim, 32, metric)
        index.hnsw.efSearch = ef_search
    index.add(gallery)
    return index


def search(index, query: np.ndarray, k: int, distance: str = "l2", chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest gallery rows of every query: (distances ascending, indices; -1 where fewer exist)."""
    check_range("k", k, 1)
    query = _as_embeddings("query embeddings", query)
    if query.shape[1] != index.d:
        raise ConfigError(f"query embeddings are {query.shape[1]}-d but the index holds {index.d}-d vectors")
    if distance == "cosine":
        query = _normalize(query)
    dists, ids = np.empty((len(query), k), np.float32), np.empty((len(query), k), np.int64)
    for start in range(0, len(query), chunk_size):
        dists[start : start + chunk_size], ids[start : start + chunk_size] = index.search(query[start : start + chunk_size], k)
    return (1.0 - dists if distance == "cosine" else dists), ids


def _topk_ranks(d: np.ndarray, ids: np.ndarray, rel: np.ndarray, k: int, complete: bool = False) -> np.ndarray:
    """First-match ranks, capped at ``k``, from each query's nearest rows (ascending; at least k + 1 of them,
    or every row when ``complete``): the CMC tie rule within the window; ``k`` where no match is within it, or
    where items tied with the match may lie beyond it (never flattering; a complete window has no beyond)."""
    rel = rel & (ids >= 0)
    found = rel.any(axis=1)
    first = rel.argmax(axis=1)
    d_first = d[np.arange(len(d)), first]
    rank = ((d <= d_first[:, None]) & ~rel & (ids >= 0)).sum(axis=1)
    cut_at_tie = (d[:, -1] <= d_first) & (not complete)  # the window ends inside the match's tie group
    return np.where(found & ~cut_at_tie, np.minimum(rank, k), k)


def retrieval_metrics(
    query: np.ndarray,
    gallery: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray | None = None,
    *,
    leave_one_out: bool = True,
    distance: str = "l2",
    topk: Sequence[int] = (1, 5),
    chunk_size: int = 512,
    per_query: bool = False,
    with_map: bool = True,
    index: str = "flat",
):
    """CMC top-k and mAP (in %) of ``query`` against ``gallery``.

    :param query: N_q x D query embeddings (from the query model).
    :param gallery: N_g x D gallery embeddings (from the gallery model, or transformed).
    :param query_labels: N_q class labels.
    :param gallery_labels: N_g class labels; default ``query_labels`` (query set = gallery set).
    :param leave_one_out: drop gallery row i from query i's ranking (needs N_q == N_g).
    :param distance: ``l2`` on raw features (the FCT code's default) or ``cosine``.
    :param topk: the CMC ranks to report.
    :param chunk_size: queries searched at once; memory is chunk_size x N_g.
    :param per_query: also return the per-query results, so that intervals can be computed later
        without the embeddings: ``rank`` (first-match rank, 0 = top-1 hit; -1 without a positive)
        and ``ap`` (NaN without a positive).
    :param with_map: compute mAP (each positive's rank in the full ranking); without it, only the
        ``max(topk)`` nearest rows are searched (a first-match rank beyond them is recorded as ``max(topk)``),
        which is what a gallery of millions affords.
    :param index: the search of the top-k path: ``flat`` (exact), ``ivf`` or ``hnsw`` (approximate, faiss);
        mAP always ranks exactly.
    :return: ``top{k}`` and ``mAP`` (if asked) in percent, ``n_queries`` used and ``n_skipped`` (no positive);
        with ``per_query``, the pair (that dict, {"rank": ..., "ap": ...}).
    """
    topk = tuple(int(k) for k in topk)
    for k in topk:
        check_range("topk", k, 1)
    check_range("chunk_size", chunk_size, 1)
    query_labels = _as_labels("query_labels", query_labels)
    gallery_labels = query_labels if gallery_labels is None else _as_labels("gallery_labels", gallery_labels)
    if len(query_labels) != len(query) or len(gallery_labels) != len(gallery):
        raise ConfigError(
            f"{len(query)} query rows with {len(query_labels)} labels, "
            f"{len(gallery)} gallery rows with {len(gallery_labels)} labels: counts must match"
        )
    if leave_one_out and len(query) < 2:
        raise ConfigError(f"leave-one-out retrieval needs at least two items, got {len(query)}")
    if leave_one_out and len(query) != len(gallery):
        raise ConfigError(f"leave_one_out needs query set = gallery set, got {len(query)} and {len(gallery)} rows")
    check_choice("index", index, INDEXES)
    if with_map and index != "flat":
        raise ConfigError(f"index={index!r} is approximate; mAP needs the exact full ranking: pass with_map=False or index='flat'")
    if not with_map:
        ranks, valid = _topk_only(query, gallery, query_labels, gallery_labels, max(topk), leave_one_out, distance, index, chunk_size)
        aps = np.full(len(ranks), np.nan)
        return _summary(ranks, aps, valid, topk, with_map, per_query)
    ranks, aps, valid = [], [], []
    for start, d in pairwise_distances(query, gallery, distance, chunk_size):
        rel = gallery_labels[None, :] == query_labels[start : start + len(d), None]
        if leave_one_out:  # query i's own gallery row is out of its ranking
            own = (np.arange(len(d)), np.arange(start, start + len(d)))
            d[own], rel[own] = np.inf, False
        r, ap, v = _chunk_metrics(d, rel)
        ranks.append(r)
        aps.append(ap)
        valid.append(v)
    return _summary(np.concatenate(ranks), np.concatenate(aps), np.concatenate(valid), topk, with_map, per_query)


def _topk_only(query, gallery, query_labels, gallery_labels, k, leave_one_out, distance, index, chunk_size):
    """First-match ranks from a k-nearest search (leave-one-out: one more row searched, the query's own dropped)."""
    found = build_index(gallery, index, distance)
    window = k + 1 + int(leave_one_out)  # one row beyond k: whether the match's ties run past the window
    searched = min(window, len(gallery))  # the whole gallery when k reaches its size
    dists, ids = search(found, query, searched, distance, chunk_size=max(chunk_size, 4096))
    classes, counts = np.unique(gallery_labels, return_counts=True)
    at = np.minimum(np.searchsorted(classes, query_labels), len(classes) - 1)
    positives = np.where(classes[at] == query_labels, counts[at], 0)  # same-class gallery rows per query
    if leave_one_out:
        own = ids == np.arange(len(query))[:, None]
        keep = np.argsort(own, axis=1, kind="stable")[:, : searched - 1]  # the query's own row moves out of the window
        dists, ids = np.take_along_axis(dists, keep, axis=1), np.take_along_axis(ids, keep, axis=1)
        positives = positives - 1
    rel = gallery_labels[np.maximum(ids, 0)] == query_labels[:, None]
    return _topk_ranks(dists, ids, rel, k, complete=searched == len(gallery)), positives > 0


def _summary(ranks, aps, valid, topk, with_map, per_query):
    if not valid.any():
        raise ConfigError("no query has a same-class item in the gallery; nothing to evaluate")
    out = {f"top{k}": 100.0 * float((ranks[valid] < k).mean()) for k in topk}
    if with_map:
        out["mAP"] = 100.0 * float(aps[valid].mean())
    out["n_queries"] = int(valid.sum())
    out["n_skipped"] = int((~valid).sum())
    if not per_query:
        return out
    return out, {"rank": np.where(valid, ranks, -1), "ap": np.where(valid, aps, np.nan)}


def chance_metrics(class_sizes: np.ndarray, topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Expected CMC top-k and mAP (in %) of a random ranking, leave-one-out, query set = gallery set.

    A query of a class with n items faces M = N - 1 gallery items, R = n - 1 of them positive.
    top-k: 1 - C(M - R, k) / C(M, k) (no positive among k random draws).
    AP: E[AP] = H_M / M + (R - 1)(M - H_M) / (M (M - 1)), H_M the M-th harmonic number
    (expected precision at each positive of a uniformly random permutation). Averaged over queries.
    """
    sizes = np.asarray(class_sizes, dtype=np.float64)
    sizes = sizes[sizes > 1]  # queries of singleton classes have no positive and are skipped
    m = float(np.asarray(class_sizes).sum() - 1)
    r = sizes - 1
    weights = sizes / sizes.sum()  # each class contributes n queries
    out = {}
    for k in topk:
        miss = np.ones_like(r)
        for j in range(int(k)):
            miss *= (m - r - j) / (m - j)
        out[f"top{k}"] = 100.0 * float(weights @ (1 - miss))
    h_m = float(np.sum(1.0 / np.arange(1, m + 1)))
    ap = h_m / m + (r - 1) * (m - h_m) / (m * (m - 1))
    out["mAP"] = 100.0 * float(weights @ ap)
    return out


def update_gain(new_old: float, old_old: float, new_new: float) -> float:
    """BCT update gain, Shen et al., CVPR 2020, Eq. (9).

    G = (M(new, old) - M(old, old)) / (M(new*, new*) - M(old, old)), with new* the
    independently trained new model: 0 = no better than not upgrading, 1 = as good as a full backfill.
    """
    denominator = new_new - old_old
    if denominator == 0:
        raise ConfigError("update gain is undefined: M(new*, new*) equals M(old, old)")
    return (new_old - old_old) / denominator


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """True accept rate at false accept rate ``far`` for 1:1 verification (higher score = more similar).

    The threshold is the lowest one that accepts at most ``far`` of the impostor pairs
    (a pair is accepted when its score is strictly above the threshold), as the best ROC
    point with FPR <= far.
    """
    check_range("far", far, 0, 1, high_open=False)
    genuine, impostor = np.asarray(genuine, dtype=np.float64), np.asarray(impostor, dtype=np.float64)
    if len(genuine) == 0 or len(impostor) == 0:
        raise ConfigError(f"need genuine and impostor scores, got {len(genuine)} and {len(impostor)}")
    return float((genuine > far_threshold(impostor, far)).mean())


def far_threshold(impostor: np.ndarray, far: float) -> float:
    """The lowest score threshold that accepts (score strictly above it) at most ``far`` of the ``impostor`` scores;
    -inf when ``far`` allows every impostor."""
    check_range("far", far, 0, 1, high_open=False)
    impostor = np.asarray(impostor, dtype=np.float64)
    allowed = int(np.floor(far * len(impostor)))
    if allowed >= len(impostor):
        return -np.inf
    return float(np.sort(impostor)[::-1][allowed])  # accepting anything at or below it exceeds the budget


def per_query_tar(query: np.ndarray, gallery: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Per query i, the share (%) of its genuine pairs (i, j), j != i of its class, accepted at ``threshold``
    (cosine scores as :func:`verification_scores`); NaN for a query alone in its class. With equal class sizes their
    mean is :func:`tar_at_far`'s TAR at the same threshold, so the retrieval bootstrap over queries gives it an interval."""
    query, gallery = _check_pair(query, gallery)
    labels = _as_labels("labels", labels)
    query, gallery = _normalize(query), _normalize(gallery)
    out = np.full(len(labels), np.nan)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) > 1:
            s = query[rows] @ gallery[rows].T
            out[rows] = 100.0 * ((s > threshold).sum(axis=1) - (np.diag(s) > threshold)) / (len(rows) - 1)
    return out


def verification_scores(
    query: np.ndarray,
    gallery: np.ndarray,
    labels: np.ndarray,
    *,
    max_impostors: int | None = 1_000_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of ordered pairs (query i, gallery j), i != j: all genuine pairs and impostor pairs.

    Query i is embedded by the query model, item j by the gallery model (cross-model
    verification when they differ). Impostors are all different-class pairs, or a seeded
    uniform sample of ``max_impostors`` of them.
    """
    query, gallery = _check_pair(query, gallery)
    labels = _as_labels("labels", labels)
    if not len(query) == len(gallery) == len(labels):
        raise ConfigError(f"query, gallery and labels must have equal rows, got {len(query)}, {len(gallery)}, {len(labels)}")
    query, gallery = _normalize(query), _normalize(gallery)
    genuine = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        s = query[rows] @ gallery[rows].T
        genuine.append(s[~np.eye(len(rows), dtype=bool)])
    genuine = np.concatenate(genuine)
    n = len(labels)
    sizes = np.unique(labels, return_counts=True)[1].astype(np.int64)  # any label values, not only 0..C-1
    n_impostor_pairs = n * n - int(sizes @ sizes)
    if max_impostors is None or max_impostors >= n_impostor_pairs:
        impostor = np.concatenate([(query[i : i + 256] @ gallery.T)[labels[i : i + 256, None] != labels[None]] for i in range(0, n, 256)])
    else:
        rng = np.random.default_rng(seed)
        picked = np.empty((0, 2), dtype=np.int64)
        while len(picked) < max_impostors:
            pairs = rng.integers(0, n, size=(2 * max_impostors, 2))
            picked = np.concatenate([picked, pairs[labels[pairs[:, 0]] != labels[pairs[:, 1]]]])
        picked = picked[:max_impostors]
        impostor = np.einsum("ij,ij->i", query[picked[:, 0]], gallery[picked[:, 1]])
    return genuine, impostor
