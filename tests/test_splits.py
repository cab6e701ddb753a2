"""Old/new splits: counts and disjointness checked by hand against the label array."""

import numpy as np
import pytest

from compat.errors import ConfigError
from compat.splits import class_sequence, data_fraction, first_classes, make_split

LABELS = np.repeat(np.arange(10), 20)  # 10 classes x 20 images, like a tiny Tiny-ImageNet


def test_extended_and_open_class():
    ext = make_split("extended-class", LABELS, old_fraction=0.3)
    assert ext.old.classes.tolist() == [0, 1, 2] and len(ext.old) == 60
    assert set(LABELS[ext.old.indices]) == {0, 1, 2}
    assert len(ext.new) == 200 and ext.new.classes.tolist() == list(range(10))
    opn = make_split("open-class", LABELS, old_fraction=0.3)
    assert opn.new.classes.tolist() == list(range(3, 10)) and len(opn.new) == 140
    assert not set(opn.old.indices) & set(opn.new.indices)


def test_fct_protocol_is_first_half_then_all():
    fct = make_split("extended-class", LABELS, old_fraction=0.5)
    assert fct.old.classes.tolist() == [0, 1, 2, 3, 4] and len(fct.new) == len(LABELS)


def test_data_splits_take_a_seeded_fraction_of_every_class():
    ext = make_split("extended-data", LABELS, old_fraction=0.3, seed=7)
    assert np.bincount(LABELS[ext.old.indices]).tolist() == [6] * 10
    assert len(ext.new) == 200
    opn = make_split("open-data", LABELS, old_fraction=0.3, seed=7)
    assert np.bincount(LABELS[opn.new.indices]).tolist() == [14] * 10
    assert not set(opn.old.indices) & set(opn.new.indices)
    assert set(opn.old.indices) | set(opn.new.indices) == set(range(200))
    assert np.array_equal(opn.old.indices, ext.old.indices)  # same seed, same old rows
    other = make_split("open-data", LABELS, old_fraction=0.3, seed=8)
    assert not np.array_equal(other.old.indices, opn.old.indices)


def test_sequences_are_nested():
    gens = class_sequence(LABELS, [2, 5, 10])
    assert [len(g.classes) for g in gens] == [2, 5, 10]
    assert set(gens[0].indices) < set(gens[1].indices) < set(gens[2].indices)


def test_local_labels_remap_open_class():
    opn = make_split("open-class", LABELS, old_fraction=0.3)
    local = opn.new.local_labels(LABELS[opn.new.indices])
    assert local.min() == 0 and local.max() == 6


def test_bad_splits_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown scenario 'closed-class'"):
        make_split("closed-class", LABELS)
    with pytest.raises(ConfigError, match=r"old_fraction=1.0 is out of range; allowed: \(0, 1\)"):
        make_split("open-data", LABELS, old_fraction=1.0)
    with pytest.raises(ConfigError, match=r"fraction=0 is out of range"):
        data_fraction(LABELS, 0, seed=0)
    with pytest.raises(ConfigError, match="gives 0 of 10 old classes"):
        make_split("open-class", LABELS, old_fraction=0.01)
    one_each = np.arange(5)  # one image per class: the 'rest' of a data split is empty
    with pytest.raises(ConfigError, match="leaves classes .* empty"):
        make_split("open-data", one_each, old_fraction=0.5)
    with pytest.raises(ConfigError, match="have no training rows"):
        first_classes(np.array([0, 0, 2]), 1)
    with pytest.raises(ConfigError, match="strictly increase"):
        class_sequence(LABELS, [5, 2])
