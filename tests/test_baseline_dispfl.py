"""Dis-PFL baseline: holder-wise aggregation, fixed density under prune/regrow (codec: test_sparse_codec.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_mcepl.algorithms.dispfl import anneal_rate
from edge_mcepl.comm.transport import InMemoryTransport
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_aggregation_is_the_holder_wise_mean_re_masked():
    sim = Simulator(tiny_lab_config(**{"algorithm.name": "dispfl"}), log=lambda s: None)
    transport = InMemoryTransport()
    for agent in sim.agents:
        transport.listen(agent.agent_id, agent.neighbours, agent.decode_message)
        agent.begin_round(0, transport)
    snap = [([m.clone() for m in a.rule.keep], [w.detach().clone() for w in a.rule.weights]) for a in sim.agents]
    for agent in sim.agents:
        for w, m in zip(agent.rule.weights, agent.rule.keep):
            assert torch.all(w[m == 0] == 0)
        deliveries = transport.gather(agent.agent_id, 0).deliveries  # decoded by the rule's strict decoder
        agent.rule.aggregate([agent.rule.received_content(deliveries[j].message) for j in agent.neighbours])
    for agent in sim.agents:
        i = agent.agent_id
        for layer, w in enumerate(agent.rule.weights):
            group = (i, *agent.neighbours)
            num = sum(snap[j][0][layer] * snap[j][1][layer] for j in group)
            cnt = sum(snap[j][0][layer] for j in group)
            expected = torch.where(cnt > 0, num / cnt.clamp(min=1), torch.zeros_like(num)) * snap[i][0][layer]
            torch.testing.assert_close(w.detach(), expected)


def test_density_is_fixed_masks_are_personal_and_evolve_and_it_learns():
    config = tiny_lab_config(**{"algorithm.name": "dispfl", "rounds": 40})
    sim = Simulator(config, log=lambda s: None)
    start = [[m.clone() for m in a.rule.keep] for a in sim.agents]
    counts = [[int(m.sum()) for m in a.rule.keep] for a in sim.agents]
    assert not torch.equal(start[0][0], start[1][0])  # personalised initial masks
    for t in range(40):
        rows = sim.run_round(t)
        assert [[int(m.sum()) for m in a.rule.keep] for a in sim.agents] == counts
        for agent, row in zip(sim.agents, rows):
            assert row["bytes_sent"] == len(agent.encode_message(t)) * len(agent.neighbours)
    assert any(not torch.equal(a, b) for a, b in zip(start[0], sim.agents[0].rule.keep))  # masks evolved
    for agent in sim.agents:
        for w, m in zip(agent.rule.weights, agent.rule.keep):
            assert torch.all(w[m == 0] == 0)
    assert np.mean([a for a, _ in sim.evaluate()]) > 0.6


def test_anneal_rate_is_cosine():
    assert anneal_rate(0, 100) == 0.5 and anneal_rate(100, 100) == pytest.approx(0.0)
    assert anneal_rate(50, 100) == pytest.approx(0.25)


def test_masks_change_only_on_update_rounds():
    sim = Simulator(tiny_lab_config(**{"algorithm.name": "dispfl", "rounds": 40}), log=lambda s: None)
    rule = sim.agents[0].rule
    start = [m.clone() for m in rule.keep]
    for t in range(rule.params.update_every - 1):
        sim.run_round(t)
    assert all(torch.equal(a, b) for a, b in zip(start, rule.keep))
    sim.run_round(rule.params.update_every - 1)
    assert any(not torch.equal(a, b) for a, b in zip(start, rule.keep))
