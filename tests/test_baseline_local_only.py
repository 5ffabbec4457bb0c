"""Local-only masks: MCE-PL with no neighbours — receives nothing, m̄ stays 0, still learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_mcepl.config import config_from_dict
from edge_mcepl.errors import UserError
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_local_only_receives_nothing_keeps_zero_mean_and_learns():
    sim = Simulator(tiny_lab_config(**{"algorithm.name": "local_only", "rounds": 40}), log=lambda s: None)
    assert all(agent.neighbours == () for agent in sim.agents)
    assert all(agent.rule.params.consensus_lr == 0 for agent in sim.agents)
    for t in range(40):
        rows = sim.run_round(t)
        assert all(r["bytes_sent"] == 0 and r["bytes_received"] == 0 and r["neighbours_heard"] == 0 for r in rows)
    for agent in sim.agents:
        for layer in agent.rule.layers:
            assert not layer.neighbour_mean.any()
    assert np.mean([a for a, _ in sim.evaluate()]) > 0.6  # chance is 1/3


def test_local_only_masks_keep_mcepl_density_but_differ_from_mcepl():
    local = Simulator(tiny_lab_config(**{"algorithm.name": "local_only"}), log=lambda s: None)
    mcepl = Simulator(tiny_lab_config(), log=lambda s: None)
    for t in range(3):
        rl, rm = local.run_round(t), mcepl.run_round(t)
    assert [r["density"] for r in rl] == [r["density"] for r in rm]
    assert any(not torch.equal(a, b) for a, b in zip(local.agents[0].rule.masks(),
                                                        mcepl.agents[0].rule.masks()))


def test_algorithm_name_is_validated_and_defaults_to_mcepl():
    assert config_from_dict({}).algorithm.name == "mcepl"
    with pytest.raises(UserError, match="algorithm.name"):
        config_from_dict({"algorithm": {"name": "fedavg"}})
    with pytest.raises(UserError, match="algorithm.mixing"):
        config_from_dict({"algorithm": {"mixing": "max-degree"}})
