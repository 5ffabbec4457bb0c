"""resnet20-cifar trains like any zoo model: a few MCE-PL rounds on tiny synthetic CIFAR-shaped data lower the loss."""

from __future__ import annotations

from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_a_few_mcepl_rounds_lower_every_agents_loss():
    rounds = 4
    config = tiny_lab_config(**{"model": "resnet20-cifar", "agents": 2, "rounds": rounds, "topology.kind": "complete",
                                "data.synthetic_train_per_class": 8, "data.synthetic_test_per_class": 8,
                                "algorithm.batch_size": 24})  # one full batch of each agent's 3 classes per round
    sim = Simulator(config, log=lambda _: None)
    before = sim.evaluate()
    rows = [sim.run_round(t) for t in range(rounds)]
    after = sim.evaluate()
    for agent, ((_, loss_before), (_, loss_after)) in enumerate(zip(before, after)):
        assert loss_after < loss_before - 0.2, (agent, before, after)
        assert rows[-1][agent]["loss"] < rows[0][agent]["loss"], [r[agent]["loss"] for r in rows]
    assert all(row["neighbours_heard"] == 1 for row in rows[-1])
