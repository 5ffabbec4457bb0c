"""benchmarks/scale.py measures what it says: one small lab's round, memory and per-agent parts."""

from __future__ import annotations

import math

import pytest

from benchmarks.scale import ROOT, before_after, capacity, erdos_renyi_p, run_one, table
from edge_mcepl.nn.zoo import build_model

DATA = ROOT.parent / "shared" / "data"


@pytest.mark.integration
@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason="MNIST is in ../shared/data on CI and dev machines")
def test_one_lab_reports_its_round_memory_and_where_an_agents_memory_goes():
    result = run_one("small-cnn", "k-regular", 6, rounds=2, data_dir=str(DATA))
    weights = sum(math.prod(s) for s in build_model("small-cnn").layer_shapes())
    parts = result["per_agent_parts_mb"]
    assert parts["scores"] == parts["score gradient"] == pytest.approx(weights * 4 / 2**20)
    assert parts["m̄"] == parts["cached mask"] == pytest.approx(weights / 2**20)  # uint8 votes, bools
    assert parts["own sent masks"] == pytest.approx(2 * weights / 8 / 2**20, rel=0.01)  # two rounds, packed
    assert parts["neighbours' masks held"] > 0 and parts["training data"] > 0
    assert result["round_s"] > 0 and result["mean_degree"] == 4
    assert result["peak_mb"] >= result["rss_built_mb"] > result["rss_start_mb"]
    assert "| small-cnn | k-regular | 6 |" in table([result])[-1]
    assert "agents in this machine's" in capacity([result])[2]


def test_the_erdos_renyi_graph_stays_connectable_as_the_lab_grows():
    assert erdos_renyi_p(20) * 19 >= 4 and erdos_renyi_p(100) * 99 >= 4  # mean degree at least 4
    assert erdos_renyi_p(500) * 500 > math.log(500)  # above the connectivity threshold, where 4/(N−1) is not


def test_before_after_compares_the_same_labs_peak_per_agent():
    row = {"model": "m", "graph": "g", "agents": 10, "rss_start_mb": 100.0, "round_s": 2.0}
    lines = before_after([{**row, "peak_mb": 300.0}], [{**row, "peak_mb": 500.0, "round_s": 4.0}])
    assert lines[-1] == "| m | g | 10 | 40.0 | 20.0 | 0.50 | 0.50 |"
    assert before_after([{**row, "peak_mb": 300.0}], [{**row, "agents": 20, "peak_mb": 1.0}]) == []
