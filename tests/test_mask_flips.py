"""Every metrics row says how many bits of each layer's sent mask changed since the last one sent."""

from __future__ import annotations

import numpy as np
import pytest

from edge_mcepl.checkpoint import load_checkpoint, restore_agent, save_checkpoint
from edge_mcepl.comm.transport import InMemoryTransport
from edge_mcepl.simulator import Simulator
from edge_mcepl.wire.delta import MaskRecord
from edge_mcepl.wire.history import MaskHistory
from edge_mcepl.wire.masks import decode_masks

from conftest import tiny_lab_config


class Recording(InMemoryTransport):
    """The in-memory transport, keeping every payload published (sender → payloads by round)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[int, list[bytes]] = {}

    def publish(self, sender: int, round: int, payload: bytes) -> None:
        self.sent.setdefault(sender, []).append(payload)
        super().publish(sender, round, payload)


@pytest.mark.parametrize("width", [1.0, [0.5, 1.0]])
def test_flips_are_the_xor_of_consecutive_sent_masks(width):
    transport = Recording()
    sim = Simulator(tiny_lab_config(rounds=4, **{"retention.width": width}), log=lambda _: None, transport=transport)
    rows = [sim.run_round(t) for t in range(4)]
    assert all(row["mask_flips"] is not None for round_rows in rows for row in round_rows)
    assert any(sum(row["mask_flips"]) for round_rows in rows[1:] for row in round_rows)  # masks do move
    for agent in sim.agents:
        history = MaskHistory()  # what a receiver holds: the bases of the deltas
        masks = []
        for payload in transport.sent[agent.agent_id]:
            msg = decode_masks(payload, nested=True, bases=history.lookup, auth=agent.auth)
            history.remember(agent.agent_id, MaskRecord(msg.round, msg.masks, msg.digest))
            masks.append(msg.masks)
        for t in range(1, 4):
            want = [int(np.count_nonzero(a != b)) for a, b in zip(masks[t], masks[t - 1])]
            assert rows[t][agent.agent_id]["mask_flips"] == want


def test_a_resumed_agent_counts_flips_from_the_mask_it_sent_before_stopping(tmp_path):
    config = tiny_lab_config(rounds=4, eval_every=100)
    reference = Simulator(config, log=lambda _: None)
    expected = [reference.run_round(t) for t in range(4)]
    first = Simulator(config, log=lambda _: None)
    for t in range(2):
        first.run_round(t)
    for agent in first.agents:
        save_checkpoint(tmp_path / f"a{agent.agent_id}.npz", agent, 2, lab="t", run_id="r")
    resumed = Simulator(config, log=lambda _: None)
    for agent in resumed.agents:
        restore_agent(agent, load_checkpoint(tmp_path / f"a{agent.agent_id}.npz"), lab="t", run_id="r")
    for t in range(2, 4):
        got = resumed.run_round(t)
        assert [r["mask_flips"] for r in got] == [r["mask_flips"] for r in expected[t]]
