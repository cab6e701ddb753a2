"""95 % intervals for retrieval claims: paired bootstrap over queries, seeds kept apart.

Every case of a result file stores its per-query results (first-match rank and AP), so a
statistic over any cases can be recomputed without the embeddings. Queries are resampled with
replacement (Efron's percentile bootstrap); the *same* resample is used for every case and
every seed, which keeps a comparison paired (both sides see the same queries) and pools the
seeds (the val set is the same in each). The spread over seeds is reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import ConfigError, check_range

REPLICATES = 1000
LEVEL = 0.95


def per_query_metric(per_query: Mapping[str, np.ndarray], metric: str) -> np.ndarray:
    """One value per query in percent: ``top{k}`` = 100 if the first match ranks below k, ``mAP`` = 100 x AP."""
    if metric == "mAP":
        return 100.0 * np.asarray(per_query["ap"], dtype=np.float64)
    if metric.startswith("top") and metric[3:].isdigit():
        rank = np.asarray(per_query["rank"])
        return np.where(rank < 0, np.nan, 100.0 * (rank < int(metric[3:])))
    raise ConfigError(f"unknown metric {metric!r}; allowed: 'top1', 'top5', ..., 'mAP'")


def resample_weights(n: int, replicates: int = REPLICATES, seed: int = 0) -> np.ndarray:
    """``replicates`` x ``n`` bootstrap weights: how often each query is drawn, divided by n (rows sum to 1).
    Drawn once per (n, replicates, seed) and process, then reused read-only: every interval of a chapter or a
    command shares the same resample, which keeps comparisons paired and a rebuild from result files fast."""
    check_range("replicates", replicates, 1)
    return _resample_weights(int(n), int(replicates), int(seed))


@lru_cache(maxsize=2)
def _resample_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64) / n
    weights.flags.writeable = False
    return weights


@dataclass(frozen=True)
class Interval:
    """A statistic (the mean over seeds), its 95 % bootstrap interval over queries, and the per-seed values."""

    value: float
    low: float
    high: float
    per_seed: tuple[float, ...]

    def excludes(self, x: float = 0.0) -> bool:
        """The whole interval lies on one side of ``x``."""
        return self.low > x or self.high < x

    def above(self, x: float = 0.0) -> bool:
        """The whole interval lies above ``x``, and so does every seed's value."""
        return self.low > x and all(v > x for v in self.per_seed)


def bootstrap(
    statistic: Callable[..., np.ndarray],
    arrays: Sequence[np.ndarray],
    replicates: int = REPLICATES,
    seed: int = 0,
) -> Interval:
    """Interval of ``statistic(*means)`` averaged over seeds.

    :param statistic: maps the per-case means (each an array over replicates or a scalar) to the statistic;
        e.g. ``lambda a, b: a - b`` for a paired difference, or the update gain.
    :param arrays: one S x N array per case: S seeds, N queries (NaN = a query without a positive,
        left out of every mean).
    """
    arrays = [np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ConfigError(f"per-query arrays must share one shape (seeds x queries), got {sorted(shapes)}")
    n_seeds, n = arrays[0].shape
    weights = resample_weights(n, replicates, seed)  # R x N
    point, reps = [], []
    for s in range(n_seeds):
        rows = np.stack([a[s] for a in arrays])  # cases x N
        valid = np.isfinite(rows).all(axis=0)  # one query set for every case
        if not valid.any():
            raise ConfigError("no query with a finite value in every case")
        if valid.all():  # the usual case: every resample's weights already sum to 1
            means = rows @ weights.T  # cases x R
        else:
            w = weights * valid  # R x N: resampled queries, invalid ones out
            means = np.where(valid, rows, 0.0) @ w.T / w.sum(axis=1)
        point.append(float(statistic(*rows[:, valid].mean(axis=1))))
        reps.append(statistic(*means))
    reps = np.mean(reps, axis=0)
    alpha = (1 - LEVEL) / 2
    low, high = np.nanquantile(reps, [alpha, 1 - alpha])
    return Interval(float(np.mean(point)), float(low), float(high), tuple(point))


def mean_interval(values: np.ndarray, **kw) -> Interval:
    """Interval of a metric's mean (S x N per-query values)."""
    return bootstrap(lambda a: a, [values], **kw)


def difference_interval(better: np.ndarray, worse: np.ndarray, **kw) -> Interval:
    """Paired interval of mean(better) - mean(worse) over the same queries."""
    return bootstrap(lambda a, b: a - b, [better, worse], **kw)


def gain_interval(new_old: np.ndarray, old_old: np.ndarray, new_new: np.ndarray, **kw) -> Interval:
    """Interval of BCT's update gain (Shen et al., CVPR 2020, Eq. 9) from per-query values of its three cases."""

    def gain(no, oo, nn):
        with np.errstate(divide="ignore", invalid="ignore"):  # a replicate where new/new ties old/old has no gain (NaN)
            g = np.asarray((no - oo) / (nn - oo), dtype=np.float64)
        return np.where(np.isfinite(g), g, np.nan)

    return bootstrap(gain, [new_old, old_old, new_new], **kw)
