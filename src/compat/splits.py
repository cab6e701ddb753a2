"""Old/new training sets for model upgrades: class splits, data splits and upgrade sequences.

A split is a set of training-row indices plus the classes it covers. The old model
trains on the old split, the new model on the new one:

* class splits: old = the first K classes; new = all classes (extended) or only the others (open);
* data splits: old = a seeded fraction of every class's images; new = all (extended) or the rest (open).

These give the four UniBCT scenarios (Zhang et al., IJCAI 2022; 30/70 by convention, after
MixBCT's split script), the FCT/BCT protocol (old on 100 of 200 classes, new on all) and
sequences of several generations (e.g. 50 -> 100 -> 200 classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, check_choice, check_range

SCENARIOS = ("extended-class", "open-class", "extended-data", "open-data")


@dataclass(frozen=True)
class Subset:
    """Training rows of one model and the classes they cover.

    :param indices: sorted row indices into the training set.
    :param classes: sorted class labels present in those rows.
    """

    indices: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def local_labels(self, labels: np.ndarray) -> np.ndarray:
        """Map global labels of this subset's classes to 0..len(classes)-1 (for a classifier head)."""
        lookup = np.full(int(max(self.classes.max(), labels.max())) + 1, -1, dtype=np.int64)
        lookup[self.classes] = np.arange(len(self.classes))
        local = lookup[labels]
        if (local < 0).any():
            raise ConfigError("labels outside this subset's classes")
        return local


@dataclass(frozen=True)
class Split:
    """An old/new pair of training subsets for one upgrade scenario."""

    scenario: str
    old: Subset
    new: Subset


def _num_classes(labels: np.ndarray, num_classes: int | None) -> int:
    n = int(labels.max()) + 1 if num_classes is None else num_classes
    present = np.bincount(labels, minlength=n)
    if len(present) > n:
        raise ConfigError(f"labels go up to {len(present) - 1} but num_classes={n}")
    if (present == 0).any():
        raise ConfigError(f"classes {np.flatnonzero(present == 0)[:5].tolist()} have no training rows")
    return n


def _subset(labels: np.ndarray, indices: np.ndarray, expected: np.ndarray, what: str) -> Subset:
    indices = np.sort(indices)
    classes = np.unique(labels[indices])
    missing = np.setdiff1d(expected, classes)
    if len(missing):
        raise ConfigError(f"{what} leaves classes {missing[:5].tolist()} empty; use a larger fraction or more data")
    return Subset(indices, classes)


def class_subset(labels: np.ndarray, classes: np.ndarray | range) -> Subset:
    """All rows whose label is in ``classes``."""
    classes = np.asarray(list(classes), dtype=np.int64)
    return _subset(labels, np.flatnonzero(np.isin(labels, classes)), classes, "class subset")


def first_classes(labels: np.ndarray, count: int, num_classes: int | None = None) -> Subset:
    """All rows of the first ``count`` classes (labels 0..count-1)."""
    n = _num_classes(labels, num_classes)
    check_range("class count", count, 1, n)
    return class_subset(labels, range(count))


def data_fraction(labels: np.ndarray, fraction: float, seed: int, part: str = "first") -> Subset:
    """A seeded ``fraction`` of every class's rows (``part='first'``), or the remaining rows (``'rest'``).

    Per class, the rows are shuffled with ``seed`` and the first max(1, round(fraction * n))
    go to ``first``; the same ``seed`` and ``fraction`` make ``first`` and ``rest`` disjoint.
    """
    check_range("fraction", fraction, 0, 1, low_open=True, high_open=True)
    check_choice("part", part, ("first", "rest"))
    rng = np.random.default_rng(seed)
    chosen = []
    classes = np.unique(labels)
    for c in classes:
        rows = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, round(fraction * len(rows)))
        chosen.append(rows[:k] if part == "first" else rows[k:])
    return _subset(labels, np.concatenate(chosen), classes, f"data fraction {fraction} ({part})")


def make_split(
    scenario: str,
    labels: np.ndarray,
    old_fraction: float = 0.3,
    seed: int = 0,
    num_classes: int | None = None,
) -> Split:
    """The old/new training subsets of one UniBCT scenario.

    :param scenario: ``extended-class`` | ``open-class`` | ``extended-data`` | ``open-data``.
    :param labels: training labels 0..C-1.
    :param old_fraction: share of classes (class scenarios) or of each class's images (data scenarios)
        that the old model sees; 0.3 by convention, 0.5 for the FCT protocol.
    :param seed: seed of the per-class shuffle (data scenarios).
    """
    check_choice("scenario", scenario, SCENARIOS)
    check_range("old_fraction", old_fraction, 0, 1, low_open=True, high_open=True)
    n = _num_classes(labels, num_classes)
    everything = Subset(np.arange(len(labels)), np.arange(n))
    if scenario.endswith("class"):
        k = round(old_fraction * n)
        if not 1 <= k < n:
            raise ConfigError(f"old_fraction={old_fraction} gives {k} of {n} old classes; need 1..{n - 1}")
        old = first_classes(labels, k, n)
        new = everything if scenario == "extended-class" else class_subset(labels, range(k, n))
    else:
        old = data_fraction(labels, old_fraction, seed, "first")
        new = everything if scenario == "extended-data" else data_fraction(labels, old_fraction, seed, "rest")
    return Split(scenario, old, new)


def class_sequence(labels: np.ndarray, counts: list[int] | tuple[int, ...], num_classes: int | None = None) -> list[Subset]:
    """Generations of an upgrade sequence trained on growing class prefixes, e.g. (50, 100, 200)."""
    n = _num_classes(labels, num_classes)
    if list(counts) != sorted(set(counts)):
        raise ConfigError(f"class counts must strictly increase, got {list(counts)}")
    return [first_classes(labels, c, n) for c in counts]


def class_coverage(subset: Subset, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class, the share of its training rows that ``subset`` holds (for split pictures)."""
    total = np.bincount(labels, minlength=num_classes)
    return np.bincount(labels[subset.indices], minlength=num_classes) / np.maximum(total, 1)
