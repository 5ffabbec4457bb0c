"""Communication graphs: structure of each constructor, file validation, dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_mcepl import topology
from edge_mcepl.errors import UserError
from edge_mcepl.topology import (
    Topology,
    build_topology,
    complete,
    erdos_renyi,
    from_adjacency_file,
    k_regular,
    ring,
)


def _write_matrix(path: Path, rows: list[list[int]]) -> Path:
    path.write_text("\n".join(" ".join(map(str, r)) for r in rows) + "\n")
    return path


def test_complete_graph() -> None:
    g = complete(5)
    assert g.num_agents == 5 and g.num_edges == 10
    assert g.neighbours(2) == (0, 1, 3, 4) and g.degree(4) == 4
    assert g.is_connected()


def test_ring_graph() -> None:
    g = ring(6)
    assert g.num_edges == 6
    assert g.neighbours(0) == (1, 5) and g.neighbours(3) == (2, 4)
    assert ring(2).num_edges == 1 and ring(1).num_edges == 0
    assert g.is_connected()


def test_is_connected_detects_two_components() -> None:
    adjacency = np.zeros((4, 4), dtype=bool)
    adjacency[0, 1] = adjacency[1, 0] = adjacency[2, 3] = adjacency[3, 2] = True
    assert not Topology(adjacency).is_connected()


def test_topology_rejects_asymmetric_matrix_and_is_read_only() -> None:
    with pytest.raises(ValueError, match="symmetric"):
        Topology(np.array([[0, 1], [0, 0]]))
    g = ring(3)
    with pytest.raises(ValueError):
        g.adjacency[0, 1] = False


def test_erdos_renyi_is_connected_and_deterministic() -> None:
    a, b, c = erdos_renyi(15, 0.25, seed=1), erdos_renyi(15, 0.25, seed=1), erdos_renyi(15, 0.25, seed=2)
    assert a.is_connected()
    assert np.array_equal(a.adjacency, b.adjacency) and not np.array_equal(a.adjacency, c.adjacency)


def test_erdos_renyi_gives_up_with_the_culprit_named() -> None:
    with pytest.raises(UserError, match="p=0.001"):
        erdos_renyi(30, 0.001, seed=0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 40), k=st.integers(2, 39), seed=st.integers(0, 1000))
@example(n=30, k=28, seed=0)  # dense: drawn as the complement of a 1-regular graph
def test_k_regular_is_regular_and_connected(n: int, k: int, seed: int) -> None:
    if k >= n or n * k % 2:
        with pytest.raises(UserError):
            k_regular(n, k, seed)
        return
    g = k_regular(n, k, seed)
    assert {g.degree(i) for i in range(n)} == {k}
    assert g.is_connected()
    assert np.array_equal(g.adjacency, k_regular(n, k, seed).adjacency)


@pytest.mark.parametrize(("n", "k"), [(9, 4), (10, 5), (12, 2)])
def test_k_regular_falls_back_to_relabelled_circulant(
    monkeypatch: pytest.MonkeyPatch, n: int, k: int
) -> None:
    monkeypatch.setattr(topology, "_random_pairing", lambda *args: None)
    g = k_regular(n, k, seed=3)
    assert {g.degree(i) for i in range(n)} == {k} and g.is_connected()


def test_k_regular_rejects_odd_stub_count_naming_it() -> None:
    with pytest.raises(UserError, match="n·k even"):
        k_regular(7, 3, seed=0)


def test_adjacency_file_round_trip(tmp_path: Path) -> None:
    rows = [[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 1, 0]]
    g = from_adjacency_file(_write_matrix(tmp_path / "a.txt", rows))
    assert g.adjacency.astype(int).tolist() == rows
    assert g.neighbours(2) == (0, 3) and g.num_edges == 3


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[0, 1, 0], [1, 0, 1]], "row 0 has 3 entries"),
        ([[0, 2], [1, 0]], "row 0 col 1 is '2'"),
        ([[1, 1], [1, 0]], "row 0 col 0 is 1; the diagonal"),
        (
            [[0, 1, 0, 0, 0, 0], [1, 0, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0],
             [0, 1, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]],
            "row 3 col 5 is 1 but row 5 col 3 is 0",
        ),
        ([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], r"not connected: agents \[2, 3\]"),
    ],
)
def test_adjacency_file_errors_name_file_and_problem(
    tmp_path: Path, rows: list[list[int]], message: str
) -> None:
    path = _write_matrix(tmp_path / "graph.txt", rows)
    with pytest.raises(UserError, match=rf"graph.txt: .*{message}"):
        from_adjacency_file(path)


def test_build_topology_dispatch_and_errors(tmp_path: Path) -> None:
    assert build_topology("ring", 5, seed=0).num_edges == 5
    assert build_topology("complete", 4, seed=0).num_edges == 6
    assert {build_topology("k-regular", 8, seed=0, k=3).degree(i) for i in range(8)} == {3}
    assert build_topology("erdos-renyi", 8, seed=0, p=0.5).is_connected()
    path = _write_matrix(tmp_path / "g.txt", [[0, 1], [1, 0]])
    assert build_topology("file", 2, seed=0, path=path).num_edges == 1
    with pytest.raises(UserError, match="unknown topology kind 'star'"):
        build_topology("star", 4, seed=0)
    with pytest.raises(UserError, match="needs the parameter 'k'"):
        build_topology("k-regular", 4, seed=0)
    with pytest.raises(UserError, match="does not take the parameter 'p'"):
        build_topology("ring", 4, seed=0, p=0.3)
    with pytest.raises(UserError, match="g.txt: topology has 2 agents but num_agents is 3"):
        build_topology("file", 3, seed=0, path=path)
