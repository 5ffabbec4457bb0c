"""The undirected communication graph between agents.

Agents only ever exchange masks with their neighbours, so the graph decides both who influences
whom and how many bytes cross the network per round. Every constructor returns a connected graph:
on a disconnected one, consensus between components is impossible and results would silently
degrade into independent groups.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_mcepl.errors import UserError

KINDS = ("complete", "ring", "erdos-renyi", "k-regular", "file")
_MAX_TRIES = 1000


@dataclass(frozen=True, eq=False)
class Topology:
    """A simple undirected graph as a read-only bool adjacency matrix (symmetric, zero diagonal)."""

    adjacency: np.ndarray

    def __post_init__(self) -> None:
        matrix = np.array(self.adjacency, dtype=bool)  # private copy, so callers cannot mutate it
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
            raise ValueError(f"adjacency must be a non-empty square matrix, got {matrix.shape}")
        if not np.array_equal(matrix, matrix.T):
            raise ValueError("adjacency must be symmetric")
        if matrix.diagonal().any():
            raise ValueError("adjacency must have a zero diagonal (no self-loops)")
        matrix.setflags(write=False)
        object.__setattr__(self, "adjacency", matrix)

    @property
    def num_agents(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.adjacency.sum()) // 2

    def neighbours(self, i: int) -> tuple[int, ...]:
        return tuple(int(j) for j in np.flatnonzero(self.adjacency[i]))

    def degree(self, i: int) -> int:
        return int(self.adjacency[i].sum())

    def is_connected(self) -> bool:
        return bool(_reachable_from_zero(self.adjacency).all())


def complete(n: int) -> Topology:
    _check_size(n)
    return Topology(~np.eye(n, dtype=bool))


def ring(n: int) -> Topology:
    """Agent i talks to i±1 (mod n); n = 2 is a single edge and n = 1 has no edges."""
    _check_size(n)
    adjacency = np.zeros((n, n), dtype=bool)
    for i in range(n):
        j = (i + 1) % n
        if i != j:
            adjacency[i, j] = adjacency[j, i] = True
    return Topology(adjacency)


def erdos_renyi(n: int, p: float, seed: int) -> Topology:
    """G(n, p), redrawn until connected, so it is G(n, p) conditioned on connectivity."""
    _check_size(n)
    if not 0 < p <= 1:
        raise UserError(f"erdos-renyi edge probability p must be in (0, 1], got {p}")
    rng = np.random.default_rng(seed)
    for _ in range(_MAX_TRIES):
        upper = np.triu(rng.random((n, n)) < p, k=1)
        topology = Topology(upper | upper.T)
        if topology.is_connected():
            return topology
    raise UserError(
        f"erdos-renyi p={p} gave no connected graph on {n} agents in {_MAX_TRIES} draws; "
        "use a larger p"
    )


def k_regular(n: int, k: int, seed: int) -> Topology:
    """A random connected k-regular graph (every agent has exactly k neighbours).

    Stubs are paired at random, re-pairing only the clashing ones (the Steger–Wormald scheme), which
    succeeds quickly while k ≤ (n−1)/2. A denser graph is drawn as the complement of a random
    (n−1−k)-regular one: complementing is a bijection between the two families, and every agent
    then has ≥ n/2 neighbours, which forces connectivity. If pairing keeps failing, a circulant
    graph (offsets 1..k/2, plus n/2 for odd k) with randomly relabelled agents is used: always
    regular and connected.
    """
    _check_size(n)
    if not 1 <= k < n:
        raise UserError(f"k-regular degree k must be in 1..{n - 1} for {n} agents, got {k}")
    if n * k % 2:
        raise UserError(f"k-regular needs n·k even, got n={n}, k={k}")
    if k == 1 and n > 2:
        raise UserError(f"k-regular with k=1 is never connected on {n} > 2 agents; use k ≥ 2")
    rng = np.random.default_rng(seed)
    dense = 2 * k > n - 1
    for _ in range(_MAX_TRIES // 10):
        edges = _random_pairing(n, n - 1 - k if dense else k, rng)
        if edges is not None:
            topology = _from_edges(n, edges)
            if dense:
                topology = Topology(~topology.adjacency & ~np.eye(n, dtype=bool))
            if topology.is_connected():
                return topology
    return _relabelled_circulant(n, k, rng)


def from_adjacency_file(path: str | Path) -> Topology:
    """Read a whitespace-separated 0/1 matrix, one row per agent; every defect is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"topology file {path} does not exist")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    n = len(rows)
    if n == 0:
        raise UserError(f"{path}: topology file is empty")
    for i, row in enumerate(rows):
        if len(row) != n:
            raise UserError(f"{path}: row {i} has {len(row)} entries; a square {n}×{n} matrix is expected")
        for j, token in enumerate(row):
            if token not in ("0", "1"):
                raise UserError(f"{path}: row {i} col {j} is {token!r}; only 0 and 1 are allowed")
    adjacency = np.array([[token == "1" for token in row] for row in rows], dtype=bool)
    for i in range(n):
        if adjacency[i, i]:
            raise UserError(f"{path}: row {i} col {i} is 1; the diagonal must be 0 (no self-loops)")
    for i, j in zip(*np.nonzero(adjacency != adjacency.T)):
        if adjacency[i, j]:
            raise UserError(f"{path}: row {i} col {j} is 1 but row {j} col {i} is 0 (must be symmetric)")
    unreachable = np.flatnonzero(~_reachable_from_zero(adjacency))
    if unreachable.size:
        raise UserError(
            f"{path}: graph is not connected: agents {unreachable.tolist()} cannot reach agent 0"
        )
    return Topology(adjacency)


def build_topology(kind: str, num_agents: int, seed: int, **params: Any) -> Topology:
    """Dispatch on ``kind`` in :data:`KINDS`; ``params`` carries p (erdos-renyi), k (k-regular)
    or path (file). A file topology must have exactly ``num_agents`` rows."""
    needs = {"complete": (), "ring": (), "erdos-renyi": ("p",), "k-regular": ("k",), "file": ("path",)}
    if kind not in needs:
        raise UserError(f"unknown topology kind {kind!r}; expected one of {', '.join(KINDS)}")
    missing = [name for name in needs[kind] if params.get(name) is None]
    extra = sorted(name for name, value in params.items() if name not in needs[kind] and value is not None)
    if missing:
        raise UserError(f"topology {kind!r} needs the parameter {missing[0]!r}")
    if extra:
        raise UserError(f"topology {kind!r} does not take the parameter {extra[0]!r}")
    if kind == "complete":
        return complete(num_agents)
    if kind == "ring":
        return ring(num_agents)
    if kind == "erdos-renyi":
        return erdos_renyi(num_agents, float(params["p"]), seed)
    if kind == "k-regular":
        return k_regular(num_agents, int(params["k"]), seed)
    topology = from_adjacency_file(params["path"])
    if topology.num_agents != num_agents:
        raise UserError(
            f"{params['path']}: topology has {topology.num_agents} agents but num_agents is {num_agents}"
        )
    return topology


def _check_size(n: int) -> None:
    if n < 1:
        raise UserError(f"number of agents must be ≥ 1, got {n}")


def _reachable_from_zero(adjacency: np.ndarray) -> np.ndarray:
    """Bool mask of agents reachable from agent 0 (breadth-first over matrix rows)."""
    seen = np.zeros(adjacency.shape[0], dtype=bool)
    seen[0] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = adjacency[frontier].any(axis=0) & ~seen
        seen |= frontier
    return seen


def _from_edges(n: int, edges: set[tuple[int, int]]) -> Topology:
    adjacency = np.zeros((n, n), dtype=bool)
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = True
    return Topology(adjacency)


def _random_pairing(n: int, k: int, rng: np.random.Generator) -> set[tuple[int, int]] | None:
    """One attempt at a simple k-regular edge set; None when the leftover stubs cannot be paired."""
    edges: set[tuple[int, int]] = set()
    stubs = np.repeat(np.arange(n), k)
    while stubs.size:
        rng.shuffle(stubs)
        leftover: Counter[int] = Counter()
        for a, b in zip(stubs[0::2].tolist(), stubs[1::2].tolist()):
            pair = (min(a, b), max(a, b))
            if a != b and pair not in edges:
                edges.add(pair)
            else:
                leftover[a] += 1
                leftover[b] += 1
        if leftover and not _can_still_pair(leftover, edges):
            return None
        stubs = np.array([node for node, count in leftover.items() for _ in range(count)], dtype=np.int64)
    return edges


def _can_still_pair(leftover: Counter[int], edges: set[tuple[int, int]]) -> bool:
    nodes = sorted(leftover)
    return any((a, b) not in edges for i, a in enumerate(nodes) for b in nodes[i + 1 :])


def _relabelled_circulant(n: int, k: int, rng: np.random.Generator) -> Topology:
    offsets = list(range(1, k // 2 + 1)) + ([n // 2] if k % 2 else [])
    adjacency = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for offset in offsets:
            j = (i + offset) % n
            adjacency[i, j] = adjacency[j, i] = True
    order = rng.permutation(n)
    return Topology(adjacency[np.ix_(order, order)])
