"""The simulator is deterministic for a seed, and its metrics rows carry the documented fields."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_mcepl.metrics import read_metrics
from edge_mcepl.nn.zoo import build_model
from edge_mcepl.simulator import Simulator
from edge_mcepl.wire.masks import decode_masks, message_size

from conftest import tiny_lab_config

TIMING_FIELDS = {"train_seconds", "round_seconds"}
# Path graph 0 – 1 – 2 – 3: degrees 1, 2, 2, 1.
PATH_GRAPH = "0 1 0 0\n1 0 1 0\n0 1 0 1\n0 0 1 0\n"


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("graph") / "path4.txt"
    path.write_text(PATH_GRAPH)
    return str(path)


def run(config, run_dir: Path):
    Simulator(config, log=lambda _: None).run(run_dir, progress=False)
    state = json.loads((run_dir / "final" / "state.json").read_text())
    shapes = build_model(config.model, state["num_classes"]).layer_shapes()
    fingerprint = bytes.fromhex(state["fingerprint"])
    masks = {}
    for agent in state["agents"]:
        data = (run_dir / "final" / agent["mask_file"]).read_bytes()
        message = decode_masks(data, expected_fingerprint=fingerprint, expected_shapes=shapes)
        assert (message.sender, message.round) == (agent["id"], config.rounds)
        masks[agent["id"]] = (data, message.masks)
    return masks, read_metrics(run_dir / "metrics.jsonl")


def strip_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, graph_file):
    base = tmp_path_factory.mktemp("runs")
    config = tiny_lab_config(**{"rounds": 5, "eval_every": 2, "topology.kind": "file", "topology.file": graph_file,
                                "algorithm.mask_codec": "packbits"})  # exact sizes below
    other = tiny_lab_config(**{"seed": 6, "rounds": 5, "eval_every": 2, "topology.kind": "file",
                               "topology.file": graph_file})
    return config, run(config, base / "a"), run(config, base / "b"), run(other, base / "c")


def test_same_config_gives_identical_masks_and_metrics(runs):
    _, (masks_a, rows_a), (masks_b, rows_b), _ = runs
    assert sorted(masks_a) == [0, 1, 2, 3]
    for agent in masks_a:
        assert masks_a[agent][0] == masks_b[agent][0], f"agent {agent}: mask files differ"
    assert strip_timing(rows_a) == strip_timing(rows_b)
    assert all(set(row) & TIMING_FIELDS == TIMING_FIELDS for row in rows_a)
    # The agents did learn different things (the comparison above is not between constants).
    assert any(not all(np.array_equal(x, y) for x, y in zip(masks_a[0][1], masks_a[a][1])) for a in (1, 2, 3))


def test_different_seed_gives_different_masks(runs):
    _, (masks_a, _), _, (masks_c, _) = runs
    for agent in masks_a:
        assert not all(np.array_equal(x, y) for x, y in zip(masks_a[agent][1], masks_c[agent][1]))


def test_metrics_rows_have_the_documented_fields(runs):
    config, (masks, rows), _, _ = runs
    shapes = build_model(config.model, 10).layer_shapes()
    size = message_size(shapes, signed=True)  # the simulator signs as a lab does
    degree = {0: 1, 1: 2, 2: 2, 3: 1}
    neighbours = {0: [1], 1: [0, 2], 2: [1, 3], 3: [2]}
    total = sum(int(np.prod(s)) for s in shapes)
    sent = {(r["agent"], r["round"]): r["sent_digest"] for r in rows}

    assert len(rows) == config.rounds * config.agents
    # Rows number rounds from 1, as the console does: eval_every 2 of 5 rounds evaluates rounds 2, 4 and 5.
    assert [(r["round"], r["agent"]) for r in rows] == [(t, a) for t in range(1, config.rounds + 1) for a in range(4)]
    evaluated = {t for t in range(1, config.rounds + 1) if t % config.eval_every == 0 or t == config.rounds}
    assert evaluated == {2, 4, 5}
    for row in rows:
        assert ("accuracy" in row) == (row["round"] in evaluated)
        assert ("test_loss" in row) == (row["round"] in evaluated)
        if "accuracy" in row:
            assert 0.0 <= row["accuracy"] <= 1.0
        a = row["agent"]
        assert row["bytes_sent"] == size * degree[a]
        assert row["bytes_received"] == sum(size for _ in neighbours[a])
        assert row["neighbours_heard"] == degree[a] and row["rejected"] == row["missing_base"] == 0
        assert row["keyframe"] is True  # packbits: every message stands alone
        assert sorted(map(int, row["heard_digests"])) == neighbours[a]
        for s, (t, digest) in row["heard_digests"].items():
            assert t == row["round"] - 1 and digest == sent[(int(s), row["round"])]
        assert np.isfinite(row["loss"]) and row["loss"] > 0
        assert len(row["classes"]) == config.data.classes_per_agent
        assert row["retention_conv"] == config.retention.conv
        assert row["filters"] == [s[0] for s in shapes]
        assert 0 < row["density"] < 1
        assert len(row["live_filters"]) == len(shapes)
    # The last row's density is the density of the saved final mask (no round happens in between).
    for a, (_, final_masks) in masks.items():
        last = [r for r in rows if r["agent"] == a][-1]
        assert last["density"] == pytest.approx(sum(int(m.sum()) for m in final_masks) / total)
    # Every saved final mask is exactly message_size bytes: unsigned (a file), so a tag instead of a signature.
    assert all(len(data) == message_size(shapes) == size - 48 for data, _ in masks.values())


def test_every_message_is_decoded_once_per_receiver(monkeypatch):
    """The transport decodes (with the receiver's strict decoder); the agent only uses what it hands over."""
    sim = Simulator(tiny_lab_config(), log=lambda _: None)
    calls = []
    for agent in sim.agents:
        rule = agent.rule
        monkeypatch.setattr(rule, "decode_message", lambda payload, _d=rule.decode_message, **kw: (
            calls.append(payload), _d(payload, **kw))[1])
    rows = sim.run_round(0)
    assert len(calls) == sum(len(a.neighbours) for a in sim.agents) == sum(r["neighbours_heard"] for r in rows)
