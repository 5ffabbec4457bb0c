"""``data.shard_fraction``: the classes and Dirichlet partitions keep a share of every agent's class shard.

So a heterogeneity sweep over classes per agent or Dirichlet α can hold the paper setting's data
volume (``data_fraction`` 0.2 of the reference shards) instead of handing out all 50,000 images.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_mcepl.config import config_from_dict
from edge_mcepl.data.partitions import check_disjoint, classes_partition, dirichlet_partition
from edge_mcepl.errors import UserError

TRAIN = np.repeat(np.arange(10), 100)
TEST = np.repeat(np.arange(10), 20)


def counts(parts, labels=TRAIN):
    return [np.bincount(labels[p.train_indices], minlength=10) for p in parts]


def test_classes_partition_keeps_the_floor_of_the_fraction_of_each_class_shard():
    full = classes_partition(TRAIN, TEST, 6, 3, seed=5)
    fifth = classes_partition(TRAIN, TEST, 6, 3, seed=5, shard_fraction=0.2)
    check_disjoint(fifth, TRAIN.size)
    for whole, part, a, b in zip(full, fifth, counts(full), counts(fifth)):
        assert b.tolist() == [n // 5 for n in a.tolist()], "⌊0.2·n⌋ of every class, exactly"
        assert set(part.train_indices.tolist()) <= set(whole.train_indices.tolist()), "a subset of the full share"
        assert part.classes == whole.classes and np.array_equal(part.test_indices, whole.test_indices)


def test_dirichlet_partition_keeps_the_fraction_of_each_class_share():
    full = dirichlet_partition(TRAIN, TEST, 5, 0.5, seed=3)
    half = dirichlet_partition(TRAIN, TEST, 5, 0.5, seed=3, shard_fraction=0.5)
    check_disjoint(half, TRAIN.size)
    for a, b in zip(counts(full), counts(half)):
        assert b.tolist() == [n // 2 for n in a.tolist()]


def test_a_fraction_of_one_changes_nothing():
    """The default: every earlier partition (and run) is unchanged, random draws included."""
    pairs = [(classes_partition(TRAIN, TEST, 4, 2, seed=1),
              classes_partition(TRAIN, TEST, 4, 2, seed=1, shard_fraction=1)),
             (dirichlet_partition(TRAIN, TEST, 4, 1.0, seed=1),
              dirichlet_partition(TRAIN, TEST, 4, 1.0, seed=1, shard_fraction=1))]
    for default, one in pairs:
        assert all(np.array_equal(x.train_indices, y.train_indices) and np.array_equal(x.test_indices, y.test_indices)
                   for x, y in zip(default, one))
    assert sum(p.train_indices.size for p in pairs[1][0]) == TRAIN.size


def test_a_fraction_that_empties_a_class_shard_is_refused():
    with pytest.raises(UserError, match="shard_fraction 0.001 leaves agent"):
        classes_partition(TRAIN, TEST, 4, 2, seed=1, shard_fraction=0.001)


def test_config_takes_it_for_classes_and_dirichlet_and_refuses_it_for_the_paper_partition():
    assert config_from_dict({"data": {"partition": "dirichlet", "shard_fraction": 0.2}}).data.shard_fraction == 0.2
    with pytest.raises(UserError, match="shard_fraction"):
        config_from_dict({"data": {"partition": "paper", "classes_file": "c.txt", "train_counts_file": "t.txt",
                                   "shard_fraction": 0.2}})
