"""End to end: MCE-PL learns personalized masks far above chance, with per-agent retention honoured."""

from __future__ import annotations

import pytest

from edge_mcepl.nn.layers import MaskedConv2d
from edge_mcepl.nn.masking import kept_count
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_four_agents_learn_their_classes():
    rounds = 30
    config = tiny_lab_config(**{
        "agents": 4, "rounds": rounds, "threads": 1, "topology.kind": "complete", "data.classes_per_agent": 4,
        "data.synthetic_train_per_class": 40, "data.synthetic_test_per_class": 20, "algorithm.batch_size": 32,
    })
    sim = Simulator(config, log=lambda _: None)
    chance = 1 / config.data.classes_per_agent
    before = [acc for acc, _ in sim.evaluate()]
    for t in range(rounds):
        rows = sim.run_round(t)
    after = [acc for acc, _ in sim.evaluate()]
    assert all(len(sim.data.partitions[i].classes) == 4 for i in range(4))
    assert all(acc >= 0.8 for acc in after), f"accuracy per agent {after} (chance {chance})"
    mean_before, mean_after = sum(before) / 4, sum(after) / 4
    assert mean_after >= mean_before + 0.3, (before, after)
    assert all(row["neighbours_heard"] == 3 for row in rows)


def test_heterogeneous_retention_gives_each_agent_its_own_density():
    ratios = {"conv": [0.2, 0.5, 0.35], "linear": [0.9, 0.6]}
    config = tiny_lab_config(**{"agents": 4, "rounds": 2, "retention.conv": ratios["conv"],
                                "retention.linear": ratios["linear"]})
    sim = Simulator(config, log=lambda _: None)
    rows = sim.run_round(0) + sim.run_round(1)
    for agent in sim.agents:
        i = agent.agent_id
        conv, linear = ratios["conv"][i % 3], ratios["linear"][i % 2]
        kept = total = 0
        for (name, layer), mask in zip(agent.rule.model.masked_layers(), agent.rule.masks()):
            r = conv if isinstance(layer, MaskedConv2d) else linear
            n = layer.weight.numel()
            assert int(mask.sum()) == kept_count(n, r), f"agent {i} layer {name}"
            kept, total = kept + kept_count(n, r), total + n
        last = [row for row in rows if row["agent"] == i][-1]
        assert last["density"] == pytest.approx(kept / total)
    densities = {row["density"] for row in rows}
    assert len(densities) == 4, "four different (conv, linear) pairs give four densities"
