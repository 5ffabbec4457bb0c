"""Non-IID splits of a labelled dataset across agents, as index arrays.

A partition never copies images: each agent gets indices into the shared train and test sets.
Train shares are always disjoint across agents (checked by :func:`check_disjoint`); test sets may
overlap, because an agent is scored on the test images of *its* label distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from edge_mcepl.errors import UserError

_MAX_DIRICHLET_DRAWS = 100


@dataclass(frozen=True, eq=False)
class AgentPartition:
    """One agent's data: sorted int64 indices into the train and test sets, and its classes.

    ``validation_indices`` (into the train set, disjoint from ``train_indices``) are the share of its
    training shard the agent never trains on: what hyperparameters are chosen on (:func:`carve_validation`).
    """

    train_indices: np.ndarray
    test_indices: np.ndarray
    classes: tuple[int, ...]
    validation_indices: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        for name in ("train_indices", "test_indices", "validation_indices"):
            array = np.array(getattr(self, name), dtype=np.int64)  # a private, read-only copy
            if array.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
            array.setflags(write=False)
            object.__setattr__(self, name, array)


VALIDATION_STREAM = 0x76616C  # "val": the validation draw's own random stream, apart from the partition's


def carve_validation(partitions: Sequence[AgentPartition], fraction: float, seed: int) -> list[AgentPartition]:
    """Each agent's training shard split into train and validation: ``round(fraction·n)`` images (at least
    one, and at least one left to train on, for a shard of ≥ 2), drawn at random with a generator seeded
    by (``seed``, agent). The split depends on nothing else, so every process of a lab carves the same one."""
    if fraction == 0:
        return list(partitions)
    carved = []
    for agent, part in enumerate(partitions):
        n = part.train_indices.size
        take = min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
        rng = np.random.default_rng([seed, VALIDATION_STREAM, agent])
        chosen = np.zeros(n, dtype=bool)
        chosen[rng.permutation(n)[:take]] = True
        carved.append(AgentPartition(part.train_indices[~chosen], part.test_indices, part.classes,
                                     validation_indices=part.train_indices[chosen]))
    return carved


def check_disjoint(partitions: Sequence[AgentPartition], num_train: int) -> None:
    """Fail loudly if two agents share a train index or an index is out of range.

    Disjointness is an invariant of every partitioner here (agents must not train on the same
    images), so a violation is a bug, hence ``ValueError`` rather than ``UserError``.
    """
    if not partitions:
        return
    merged = np.concatenate([p.train_indices for p in partitions])
    if merged.size and (merged.min() < 0 or merged.max() >= num_train):
        raise ValueError(f"train indices fall outside 0..{num_train - 1}")
    if np.unique(merged).size != merged.size:
        raise ValueError("train indices are shared between agents")


def paper_partition(
    train_labels: Sequence[int] | np.ndarray,
    test_labels: Sequence[int] | np.ndarray,
    classes_file: str | Path,
    train_counts_file: str | Path,
    test_counts_file: str | Path | None = None,
    data_fraction: float = 0.2,
) -> list[AgentPartition]:
    """The label-skew split of the paper's reference setting (docs/algorithm.md#paper-setting), read from its files.

    Agent i holds the classes of row i of ``classes_file``. ``train_counts_file[i, c]`` is agent
    i's *nominal* number of class-c images: for each class, the holders, in agent order, own
    consecutive blocks of that length of the class's images in the dataset's original order. Each
    agent then uses the first ⌊count·data_fraction⌋ images of its own block (0.2 gives exactly
    ⌊count/5⌋, the reference loader's choice). Anchoring at the nominal block rather than packing
    the reduced slices keeps agents disjoint at any fraction and makes the fraction-f share a
    prefix of the full share. Test indices are all test images of the agent's classes; a
    ``test_counts_file``, if given, must agree with that.
    """
    train, test = _labels(train_labels, "train_labels"), _labels(test_labels, "test_labels")
    num_classes = _num_classes(train, test)
    fraction = _fraction(data_fraction)
    held = _read_classes(Path(classes_file), num_classes)
    counts = _read_counts(Path(train_counts_file), held, num_classes)
    _check_class_totals(Path(train_counts_file), counts, train)
    if test_counts_file is not None:
        _check_test_counts(Path(test_counts_file), held, test, num_classes)

    shares: list[list[np.ndarray]] = [[] for _ in held]
    for c in range(num_classes):
        pool = np.flatnonzero(train == c)
        start = 0
        for agent, count in enumerate(counts[:, c]):
            take = int(count) * fraction.numerator // fraction.denominator
            shares[agent].append(pool[start : start + take])
            start += int(count)
    partitions = [
        _agent(np.concatenate(share), test, classes) for share, classes in zip(shares, held)
    ]
    check_disjoint(partitions, train.size)
    return partitions


def classes_partition(
    train_labels: Sequence[int] | np.ndarray,
    test_labels: Sequence[int] | np.ndarray,
    num_agents: int,
    classes_per_agent: int,
    seed: int,
    samples_per_agent: int | None = None,
    shard_fraction: float = 1.0,
) -> list[AgentPartition]:
    """Each agent holds ``classes_per_agent`` distinct classes; each class is split among holders.

    Classes are dealt least-used first (ties broken at random), so every class is used as soon as
    ``num_agents·classes_per_agent ≥ num_classes`` and class usage stays balanced. A class's train
    images are shuffled and split evenly between its holders; each holder keeps ⌊shard_fraction·n⌋
    of its n (a random subset: the split is shuffled; 0.2 gives the paper setting's data volume, ≈ 500
    images per agent at 20 agents and 4 classes); ``samples_per_agent`` then keeps a random subset
    of that size per agent. Test indices are all test images of the agent's classes.
    """
    train, test = _labels(train_labels, "train_labels"), _labels(test_labels, "test_labels")
    num_classes = _num_classes(train, test)
    if num_agents < 1:
        raise UserError(f"num_agents must be ≥ 1, got {num_agents}")
    if not 1 <= classes_per_agent <= num_classes:
        raise UserError(f"classes_per_agent must be in 1..{num_classes}, got {classes_per_agent}")
    rng = np.random.default_rng(seed)

    usage = np.zeros(num_classes, dtype=np.int64)
    held: list[tuple[int, ...]] = []
    for _ in range(num_agents):
        order = np.lexsort((rng.random(num_classes), usage))  # fewest uses first, random ties
        chosen = tuple(sorted(int(c) for c in order[:classes_per_agent]))
        usage[list(chosen)] += 1
        held.append(chosen)

    shares: list[list[np.ndarray]] = [[] for _ in range(num_agents)]
    for c in range(num_classes):
        holders = [a for a in range(num_agents) if c in held[a]]
        if not holders:
            continue
        pieces = np.array_split(rng.permutation(np.flatnonzero(train == c)), len(holders))
        for agent, piece in zip(holders, pieces):
            kept = _keep(piece, shard_fraction)
            if not kept.size:
                raise UserError(f"shard_fraction {shard_fraction:g} leaves agent {agent} none of its "
                                f"{piece.size} images of class {c}; use a larger fraction")
            shares[agent].append(kept)

    partitions = []
    for agent, (share, classes) in enumerate(zip(shares, held)):
        pool = np.concatenate(share)
        if samples_per_agent is not None:
            if not 1 <= samples_per_agent <= pool.size:
                raise UserError(
                    f"samples_per_agent={samples_per_agent} but agent {agent} has only "
                    f"{pool.size} training images of its classes (expected 1..{pool.size})"
                )
            pool = rng.choice(pool, size=samples_per_agent, replace=False)
        partitions.append(_agent(pool, test, classes))
    check_disjoint(partitions, train.size)
    return partitions


def dirichlet_partition(
    train_labels: Sequence[int] | np.ndarray,
    test_labels: Sequence[int] | np.ndarray,
    num_agents: int,
    alpha: float,
    seed: int,
    shard_fraction: float = 1.0,
) -> list[AgentPartition]:
    """Every train image goes to one agent; class c's shares over agents follow Dir(alpha).

    Each agent then keeps ⌊shard_fraction·n⌋ of its n images of each class (a random subset; 0.2
    keeps the paper setting's 10,000 training images in all, with Dirichlet's skew). Draws are
    repeated (up to a limit) until every agent has at least one train image. An agent's
    test set follows its train label distribution q: it takes ⌊q_c·M⌋ random test images of each
    class c, with M as large as the test set allows (M = min(|test|, min_c available_c / q_c)),
    so small agents are still scored on many images. ``classes`` are those with ≥ 1 train image.
    """
    train, test = _labels(train_labels, "train_labels"), _labels(test_labels, "test_labels")
    num_classes = _num_classes(train, test)
    if num_agents < 1:
        raise UserError(f"num_agents must be ≥ 1, got {num_agents}")
    if not alpha > 0:
        raise UserError(f"dirichlet alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)

    for _ in range(_MAX_DIRICHLET_DRAWS):
        shares = _dirichlet_shares(train, num_classes, num_agents, alpha, rng, shard_fraction)
        if all(share.size for share in shares):
            break
    else:
        raise UserError(
            f"dirichlet alpha={alpha} left some of the {num_agents} agents without train images in "
            f"{_MAX_DIRICHLET_DRAWS} draws; use a larger alpha or fewer agents"
        )

    test_pools = [rng.permutation(np.flatnonzero(test == c)) for c in range(num_classes)]
    partitions = []
    for share in shares:
        class_counts = np.bincount(train[share], minlength=num_classes)
        partitions.append(
            AgentPartition(
                train_indices=np.sort(share),
                test_indices=_matching_test(class_counts, test_pools, test.size, rng),
                classes=tuple(int(c) for c in np.flatnonzero(class_counts)),
            )
        )
    check_disjoint(partitions, train.size)
    return partitions


def _dirichlet_shares(
    train: np.ndarray, num_classes: int, num_agents: int, alpha: float, rng: np.random.Generator,
    shard_fraction: float,
) -> list[np.ndarray]:
    pieces: list[list[np.ndarray]] = [[] for _ in range(num_agents)]
    for c in range(num_classes):
        pool = rng.permutation(np.flatnonzero(train == c))
        proportions = rng.dirichlet(np.full(num_agents, alpha))
        cuts = (np.cumsum(proportions)[:-1] * pool.size).astype(np.int64)
        for agent, piece in enumerate(np.split(pool, cuts)):
            pieces[agent].append(_keep(piece, shard_fraction))
    return [np.concatenate(p) for p in pieces]


def _keep(piece: np.ndarray, shard_fraction: float) -> np.ndarray:
    """The first ⌊fraction·n⌋ of a shuffled piece — a random subset, with no random draw of its own, so a
    fraction of 1 leaves every other draw (and so every earlier partition) unchanged."""
    fraction = _fraction(shard_fraction, "shard_fraction")
    return piece[: piece.size * fraction.numerator // fraction.denominator]


def _matching_test(
    class_counts: np.ndarray, pools: list[np.ndarray], test_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Test indices whose label histogram is the train histogram ``class_counts``, scaled up."""
    q = class_counts / class_counts.sum()
    present = q > 0
    available = np.array([pool.size for pool in pools])
    scale = min(float(test_size), float(np.min(available[present] / q[present])))
    take = np.floor(q * scale + 1e-9).astype(np.int64)
    take = np.minimum(take, available)
    chosen = [rng.choice(pools[c], size=int(k), replace=False) for c, k in enumerate(take) if k]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def _agent(train_indices: np.ndarray, test: np.ndarray, classes: Sequence[int]) -> AgentPartition:
    classes = tuple(sorted(int(c) for c in classes))
    return AgentPartition(
        train_indices=np.sort(train_indices),
        test_indices=np.flatnonzero(np.isin(test, classes)),
        classes=classes,
    )


def _labels(labels: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(labels, dtype=np.int64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D label array, got shape {array.shape}")
    if array.min() < 0:
        raise ValueError(f"{name} must be non-negative")
    return array


def _num_classes(train: np.ndarray, test: np.ndarray) -> int:
    return int(max(train.max(), test.max())) + 1


def _fraction(value: float, name: str = "data_fraction") -> Fraction:
    """A fraction as an exact ratio, so 0.2 means exactly 1/5 (not 0.2000000000000000111)."""
    fraction = Fraction(value).limit_denominator(1_000_000)
    if not 0 < fraction <= 1:
        raise UserError(f"{name} must be in (0, 1], got {value}")
    return fraction


def _read_int_matrix(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{what} file {path} does not exist")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise UserError(f"{path}: {what} file is empty")
    for number, row in enumerate(rows):
        if len(row) != len(rows[0]):
            raise UserError(
                f"{path}: row {number} has {len(row)} entries, row 0 has {len(rows[0])}"
            )
    try:
        return np.array([[int(x) for x in row] for row in rows], dtype=np.int64)
    except ValueError as err:
        raise UserError(f"{path}: {what} entries must be integers ({err})") from err


def _read_classes(path: Path, num_classes: int) -> list[tuple[int, ...]]:
    matrix = _read_int_matrix(path, "classes-per-agent")
    held = []
    for agent, row in enumerate(matrix):
        if row.min() < 0 or row.max() >= num_classes:
            raise UserError(f"{path}: row {agent} has a class outside 0..{num_classes - 1}")
        if len(set(row.tolist())) != row.size:
            raise UserError(f"{path}: row {agent} repeats a class")
        held.append(tuple(sorted(int(c) for c in row)))
    return held


def _read_counts(path: Path, held: list[tuple[int, ...]], num_classes: int) -> np.ndarray:
    counts = _read_int_matrix(path, "train-counts")
    if counts.shape != (len(held), num_classes):
        raise UserError(
            f"{path}: expected {len(held)} rows (one per agent of the classes file) × "
            f"{num_classes} columns (one per class), got {counts.shape[0]}×{counts.shape[1]}"
        )
    if counts.min() < 0:
        raise UserError(f"{path}: counts must be non-negative")
    for agent, classes in enumerate(held):
        for c in range(num_classes):
            if (counts[agent, c] > 0) != (c in classes):
                state = "holds" if c in classes else "does not hold"
                raise UserError(
                    f"{path}: row {agent} col {c} is {counts[agent, c]} but agent {agent} {state} "
                    f"class {c} in the classes file"
                )
    return counts


def _check_class_totals(path: Path, counts: np.ndarray, train: np.ndarray) -> None:
    """Every class's consecutive blocks must fit its images: name the class and the first row that overflows."""
    available = np.bincount(train, minlength=counts.shape[1])
    for c, total in enumerate(counts.sum(axis=0)):
        if total > available[c]:
            row = int(np.argmax(np.cumsum(counts[:, c]) > available[c]))
            raise UserError(
                f"{path}: column {c} sums to {total} but the train set has only "
                f"{available[c]} images of class {c} (row {row} is the first that does not fit)"
            )


def _check_test_counts(
    path: Path, held: list[tuple[int, ...]], test: np.ndarray, num_classes: int
) -> None:
    counts = _read_int_matrix(path, "test-counts")
    if counts.shape != (len(held), num_classes):
        raise UserError(
            f"{path}: expected {len(held)}×{num_classes} test counts, got "
            f"{counts.shape[0]}×{counts.shape[1]}"
        )
    available = np.bincount(test, minlength=num_classes)
    for agent, classes in enumerate(held):
        for c in range(num_classes):
            expected = available[c] if c in classes else 0
            if counts[agent, c] != expected:
                raise UserError(
                    f"{path}: row {agent} col {c} is {counts[agent, c]}, expected {expected} "
                    f"(every agent is tested on all test images of the classes it holds)"
                )
