"""An agent's per-layer state is held compactly (docs/scale.md): m̄ as vote counts, masks as bools or bits.

What the memory cut must not change: the float m̄ and the masks read back are the float
computation's, bit for bit, whatever the neighbours' widths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_mcepl.algorithms.holders import mean_over_holders, votes_over_holders
from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.metrics import read_metrics
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import build_model
from edge_mcepl.simulator import Simulator
from edge_mcepl.wire.delta import mask_digest

from conftest import tiny_lab_config


def rule(width: float = 1.0) -> MCEPL:
    model = build_model("small-cnn")
    load_fixed_weights(model, generate_fixed_weights(model, "small-cnn", 3))
    return MCEPL(model, MCEPLParams(), Retention(0.3, 0.9, width=width), seed=3)


def masks_of(widths: list[float]) -> list[list[torch.Tensor]]:
    return [[m.bool() for m in rule(w).masks()] for w in widths]


@pytest.mark.parametrize("widths", [[1.0, 1.0, 1.0], [0.5, 1.0, 0.25], [], [0.5]],
                         ids=["equal", "mixed", "none", "one"])
def test_vote_counts_give_the_float_mean_to_the_bit(widths):
    agent = rule()
    received = masks_of(widths)
    agent.aggregate(received)
    for i, state in enumerate(agent.layers):
        expected = mean_over_holders([masks[i] for masks in received], state.scores)
        assert state.neighbour_mean.dtype == torch.float32
        assert torch.equal(state.neighbour_mean, expected)
        votes, _ = votes_over_holders([masks[i] for masks in received], state.scores)
        assert votes.dtype == torch.uint8


def test_m_bar_and_the_cached_mask_take_one_byte_per_entry_with_equal_widths():
    agent = rule()
    agent.aggregate(masks_of([1.0, 1.0]))
    agent.masks()
    for state in agent.layers:
        held = state.held_bytes()
        assert held == {"m̄": state.scores.numel(), "cached mask": state.scores.numel()}


def test_many_neighbours_count_past_255():
    like = torch.zeros(3, 4)
    votes, holders = votes_over_holders([torch.ones(3, 4, dtype=torch.bool)] * 300, like)
    assert votes.dtype == torch.int32 and int(votes.max()) == 300 and holders == 300.0


def test_the_agent_keeps_its_sent_masks_packed_and_reads_back_what_it_sent(tmp_path):
    sim = Simulator(tiny_lab_config(rounds=3), log=lambda _: None)
    sim.run(tmp_path / "run", progress=False)
    agent = sim.agents[0]
    numel = sum(int(np.prod(s)) for s in agent.layer_shapes)
    packed = sum(len(b) for held in agent.recent for b in held.layers)
    assert len(agent.recent) == 3 and packed <= 3 * (numel // 8 + len(agent.layer_shapes))
    last = [row for row in read_metrics(tmp_path / "run" / "metrics.jsonl") if row["agent"] == 0][-1]
    assert mask_digest(agent.sent_masks).hex() == last["sent_digest"]
