"""DSGD baseline: the mixing step equals an independently computed Metropolis / uniform average."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_mcepl.algorithms.dsgd import DSGD, mixing_weights
from edge_mcepl.comm.transport import InMemoryTransport
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def metropolis_matrix(adjacency: np.ndarray) -> np.ndarray:
    """W_ij = 1/(1+max(d_i,d_j)) on edges, W_ii = 1 − row sum (the textbook definition)."""
    deg = adjacency.sum(1)
    n = len(adjacency)
    w = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if adjacency[i, j]:
                w[i, j] = 1.0 / (1 + max(deg[i], deg[j]))
        w[i, i] = 1.0 - w[i].sum()
    return w


def uniform_matrix(adjacency: np.ndarray) -> np.ndarray:
    a = adjacency + np.eye(len(adjacency))
    return a / a.sum(1, keepdims=True)


@pytest.mark.parametrize("mixing", ["metropolis", "uniform"])
def test_one_round_mixes_post_step_weights_with_the_graph_matrix(mixing):
    config = tiny_lab_config(**{"algorithm.name": "dsgd", "algorithm.mixing": mixing, "agents": 6,
                                "topology.kind": "erdos-renyi", "topology.p": 0.5, "seed": 3})
    sim = Simulator(config, log=lambda s: None)
    adjacency = sim.topology.adjacency.astype(float)
    assert len(set(adjacency.sum(1))) > 1, "want unequal degrees so Metropolis ≠ uniform"
    transport = InMemoryTransport()
    for agent in sim.agents:
        transport.listen(agent.agent_id, agent.neighbours, agent.decode_message)
        agent.begin_round(0, transport)
    after_step = [[w.detach().clone().double() for w in a.rule.weights] for a in sim.agents]
    for agent in sim.agents:
        report = agent.finish_round(0, transport)
        assert report.neighbours_heard == len(agent.neighbours) and report.rejected == 0
    mix = metropolis_matrix(adjacency) if mixing == "metropolis" else uniform_matrix(adjacency)
    assert np.allclose(mix.sum(1), 1.0) and (mix >= 0).all()
    if mixing == "metropolis":
        assert np.allclose(mix, mix.T)  # doubly stochastic
    for i, agent in enumerate(sim.agents):
        for layer, w in enumerate(agent.rule.weights):
            expected = sum(mix[i, j] * after_step[j][layer] for j in range(len(sim.agents)))
            torch.testing.assert_close(w.detach().double(), expected, rtol=1e-5, atol=1e-6)


def test_bytes_are_fp32_messages_times_neighbours():
    sim = Simulator(tiny_lab_config(**{"algorithm.name": "dsgd"}), log=lambda s: None)
    rows = sim.run_round(0)
    params = sum(int(np.prod(s)) for s in sim.agents[0].layer_shapes)
    for agent, row in zip(sim.agents, rows):
        per_message = row["bytes_sent"] // len(agent.neighbours)
        assert per_message == len(agent.encode_message(0))
        assert 4 * params < per_message < 4 * params + 200
        assert row["density"] == 1.0


def test_missing_neighbour_gives_its_weight_back_to_self():
    own, w = mixing_weights(0, [1], {0: 3, 1: 2, 2: 5}, "metropolis")
    assert w == {1: 0.25} and own == 0.75
    own, w = mixing_weights(0, [], {0: 3}, "uniform")
    assert own == 1.0 and w == {}


def test_a_corrupt_neighbour_message_is_rejected_and_not_mixed():
    sim = Simulator(tiny_lab_config(**{"algorithm.name": "dsgd"}), log=lambda s: None)

    class Corrupting(InMemoryTransport):
        def publish(self, sender, round, payload):
            if sender == 1:
                payload = payload[:-1] + bytes([payload[-1] ^ 1])
            super().publish(sender, round, payload)

    transport = Corrupting()
    for agent in sim.agents:
        transport.listen(agent.agent_id, agent.neighbours, agent.decode_message)
        agent.begin_round(0, transport)
    for agent in sim.agents:
        report = agent.finish_round(0, transport)
        assert report.rejected == (1 in agent.neighbours)
        for w in agent.rule.weights:
            assert torch.isfinite(w).all()


def test_dsgd_learns_and_does_not_touch_the_shared_fixed_weights():
    config = tiny_lab_config(**{"algorithm.name": "dsgd", "rounds": 40})
    sim = Simulator(config, log=lambda s: None)
    before = {k: v.clone() for k, v in sim.fixed.tensors.items()}
    for t in range(40):
        sim.run_round(t)
    accs = [a for a, _ in sim.evaluate()]
    assert np.mean(accs) > 0.6  # 3 classes per agent: chance is 1/3
    for k, v in sim.fixed.tensors.items():
        assert torch.equal(v, before[k])
    assert isinstance(sim.agents[0].rule, DSGD)
