"""Partitions of labelled data across agents: class sets, counts, disjointness, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_mcepl.data.partitions import (
    AgentPartition,
    check_disjoint,
    classes_partition,
    dirichlet_partition,
    paper_partition,
)
from edge_mcepl.errors import UserError


def _labels(per_class: int, num_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


TRAIN = _labels(20, 4, seed=0)  # 80 images, 4 classes, shuffled like a real dataset
TEST = _labels(5, 4, seed=1)


def _write(path: Path, rows: list[list[int]]) -> Path:
    path.write_text("\n".join(" ".join(map(str, row)) for row in rows) + "\n")
    return path


@pytest.fixture
def paper_files(tmp_path: Path) -> tuple[Path, Path]:
    classes = _write(tmp_path / "classes.txt", [[0, 1], [2, 1], [2, 0]])
    counts = _write(tmp_path / "counts.txt", [[10, 10, 0, 0], [0, 10, 15, 0], [10, 0, 5, 0]])
    return classes, counts


# ---------------------------------------------------------------- paper partition


def test_paper_partition_takes_fraction_of_each_nominal_block(paper_files: tuple[Path, Path]) -> None:
    parts = paper_partition(TRAIN, TEST, *paper_files, data_fraction=0.2)
    pools = [np.flatnonzero(TRAIN == c) for c in range(4)]
    assert [p.classes for p in parts] == [(0, 1), (1, 2), (0, 2)]
    # agent 1: class 1 block is [10:20) (after agent 0's 10), class 2 block is [0:15)
    expected = np.sort(np.concatenate([pools[1][10:12], pools[2][0:3]]))
    assert parts[1].train_indices.tolist() == expected.tolist()
    # agent 2: class 0 block [10:20) → 2 images, class 2 block [15:20) → 1 image
    assert parts[2].train_indices.tolist() == sorted(pools[0][10:12].tolist() + pools[2][15:16].tolist())
    assert [p.train_indices.size for p in parts] == [4, 5, 3]


def test_paper_partition_shares_are_prefixes_of_full_shares(paper_files: tuple[Path, Path]) -> None:
    small = paper_partition(TRAIN, TEST, *paper_files, data_fraction=0.2)
    full = paper_partition(TRAIN, TEST, *paper_files, data_fraction=1.0)
    assert sum(p.train_indices.size for p in full) == 60
    for s, f in zip(small, full):
        assert set(s.train_indices.tolist()) <= set(f.train_indices.tolist())
        assert set(TRAIN[f.train_indices].tolist()) == set(f.classes)


def test_paper_partition_tests_on_all_test_images_of_held_classes(paper_files: tuple[Path, Path]) -> None:
    parts = paper_partition(TRAIN, TEST, *paper_files)
    for part in parts:
        assert part.test_indices.tolist() == np.flatnonzero(np.isin(TEST, part.classes)).tolist()


def test_paper_partition_fraction_is_exact(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(2), 100)
    classes = _write(tmp_path / "c.txt", [[0], [1]])
    counts = _write(tmp_path / "n.txt", [[100, 0], [0, 100]])
    # 100 * 0.29 == 28.999999999999996 in floating point; the share must still be 29
    parts = paper_partition(labels, labels, classes, counts, data_fraction=0.29)
    assert [p.train_indices.size for p in parts] == [29, 29]


def test_paper_partition_validates_test_counts(tmp_path: Path, paper_files: tuple[Path, Path]) -> None:
    good = _write(tmp_path / "test_ok.txt", [[5, 5, 0, 0], [0, 5, 5, 0], [5, 0, 5, 0]])
    assert len(paper_partition(TRAIN, TEST, *paper_files, test_counts_file=good)) == 3
    bad = _write(tmp_path / "test_bad.txt", [[5, 5, 0, 0], [0, 5, 4, 0], [5, 0, 5, 0]])
    with pytest.raises(UserError, match=r"test_bad.txt: row 1 col 2 is 4, expected 5"):
        paper_partition(TRAIN, TEST, *paper_files, test_counts_file=bad)


@pytest.mark.parametrize(
    ("classes", "counts", "message"),
    [
        ([[0, 1], [2, 1]], [[10, 10, 0, 0], [0, 10, 15, 0], [10, 0, 5, 0]], "counts.txt: expected 2 rows"),
        ([[0, 1], [2, 9], [2, 0]], [[10, 10, 0, 0]] * 3, r"classes.txt: row 1 has a class outside 0\.\.3"),
        ([[0, 0], [2, 1], [2, 0]], [[10, 10, 0, 0]] * 3, "classes.txt: row 0 repeats a class"),
        (
            [[0, 1], [2, 1], [2, 0]],
            [[10, 10, 1, 0], [0, 10, 15, 0], [10, 0, 5, 0]],
            "row 0 col 2 is 1 but agent 0 does not hold",
        ),
        ([[0, 1], [2, 1], [2, 0]], [[10, 10, 0, 0], [0, 10, 15, 0], [11, 0, 5, 0]], "column 0 sums to 21"),
        (
            [[0, 1], [2, 1], [2, 0]],
            [[10, 10, 0], [0, 10, 15], [10, 0, 5]],
            r"counts.txt: expected 3 rows .* 4 columns",
        ),
    ],
)
def test_paper_partition_rejects_inconsistent_files(
    tmp_path: Path, classes: list[list[int]], counts: list[list[int]], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        paper_partition(
            TRAIN, TEST, _write(tmp_path / "classes.txt", classes), _write(tmp_path / "counts.txt", counts)
        )


def test_paper_partition_rejects_bad_fraction_and_missing_file(
    paper_files: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="data_fraction"):
        paper_partition(TRAIN, TEST, *paper_files, data_fraction=0.0)
    with pytest.raises(UserError, match="missing.txt does not exist"):
        paper_partition(TRAIN, TEST, tmp_path / "missing.txt", paper_files[1])


# ---------------------------------------------------------------- classes partition


def test_classes_partition_class_sets_and_even_disjoint_split() -> None:
    train, test = _labels(30, 10, seed=2), _labels(4, 10, seed=3)
    parts = classes_partition(train, test, num_agents=6, classes_per_agent=3, seed=5)
    assert all(len(set(p.classes)) == 3 for p in parts)
    assert set().union(*(p.classes for p in parts)) == set(range(10))  # 18 slots cover 10 classes
    check_disjoint(parts, train.size)
    for c in range(10):
        shares = [np.sum(train[p.train_indices] == c) for p in parts if c in p.classes]
        assert sum(shares) == 30 and max(shares) - min(shares) <= 1
    for p in parts:
        assert set(train[p.train_indices].tolist()) == set(p.classes)
        assert p.test_indices.tolist() == np.flatnonzero(np.isin(test, p.classes)).tolist()


def test_classes_partition_is_deterministic_per_seed() -> None:
    a = classes_partition(TRAIN, TEST, 5, 2, seed=7)
    b = classes_partition(TRAIN, TEST, 5, 2, seed=7)
    c = classes_partition(TRAIN, TEST, 5, 2, seed=8)
    assert all(np.array_equal(x.train_indices, y.train_indices) for x, y in zip(a, b))
    assert [p.classes for p in a] == [p.classes for p in b]
    assert any(not np.array_equal(x.train_indices, y.train_indices) for x, y in zip(a, c))


def test_classes_partition_samples_per_agent() -> None:
    parts = classes_partition(TRAIN, TEST, 4, 2, seed=0, samples_per_agent=7)
    assert [p.train_indices.size for p in parts] == [7] * 4
    check_disjoint(parts, TRAIN.size)
    with pytest.raises(UserError, match="samples_per_agent=500"):
        classes_partition(TRAIN, TEST, 4, 2, seed=0, samples_per_agent=500)


def test_classes_partition_rejects_too_many_classes() -> None:
    with pytest.raises(UserError, match="classes_per_agent"):
        classes_partition(TRAIN, TEST, 4, 5, seed=0)


# ---------------------------------------------------------------- dirichlet partition


def test_dirichlet_partition_covers_every_train_sample_once() -> None:
    train, test = _labels(50, 10, seed=4), _labels(10, 10, seed=5)
    parts = dirichlet_partition(train, test, num_agents=8, alpha=0.3, seed=1)
    check_disjoint(parts, train.size)
    merged = np.sort(np.concatenate([p.train_indices for p in parts]))
    assert merged.tolist() == list(range(train.size))
    for p in parts:
        assert p.train_indices.size > 0
        assert p.classes == tuple(np.unique(train[p.train_indices]).tolist())
        assert set(test[p.test_indices].tolist()) <= set(p.classes)


def test_dirichlet_test_set_follows_train_distribution() -> None:
    train, test = _labels(200, 5, seed=6), _labels(100, 5, seed=7)
    for p in dirichlet_partition(train, test, num_agents=4, alpha=0.5, seed=2):
        q_train = np.bincount(train[p.train_indices], minlength=5) / p.train_indices.size
        q_test = np.bincount(test[p.test_indices], minlength=5) / p.test_indices.size
        assert np.abs(q_train - q_test).max() < 0.02
        assert p.test_indices.size >= 100  # scaled up to use the test set, not tiny


def test_dirichlet_small_alpha_is_more_skewed() -> None:
    train, test = _labels(100, 10, seed=8), _labels(10, 10, seed=9)
    skewed = dirichlet_partition(train, test, 10, alpha=0.05, seed=3)
    mixed = dirichlet_partition(train, test, 10, alpha=100.0, seed=3)
    assert np.mean([len(p.classes) for p in skewed]) < np.mean([len(p.classes) for p in mixed])


def test_dirichlet_is_deterministic_and_validates_alpha() -> None:
    a = dirichlet_partition(TRAIN, TEST, 3, 1.0, seed=4)
    b = dirichlet_partition(TRAIN, TEST, 3, 1.0, seed=4)
    assert all(np.array_equal(x.train_indices, y.train_indices) for x, y in zip(a, b))
    assert all(np.array_equal(x.test_indices, y.test_indices) for x, y in zip(a, b))
    with pytest.raises(UserError, match="alpha"):
        dirichlet_partition(TRAIN, TEST, 3, 0.0, seed=4)


# ---------------------------------------------------------------- helpers


def test_check_disjoint_detects_shared_and_out_of_range_indices() -> None:
    a = AgentPartition(np.array([0, 1]), np.array([0]), (0,))
    b = AgentPartition(np.array([1, 2]), np.array([0]), (0,))
    with pytest.raises(ValueError, match="shared"):
        check_disjoint([a, b], 10)
    with pytest.raises(ValueError, match="outside"):
        check_disjoint([a], 1)
    check_disjoint([a, AgentPartition(np.array([2]), np.array([]), (0,))], 3)


def test_agent_partition_indices_are_read_only() -> None:
    part = AgentPartition(np.array([3, 4]), np.array([1]), (0,))
    with pytest.raises(ValueError):
        part.train_indices[0] = 9
