"""Ablation 'direct averaging of binary masks': the mask is a vote of own top-k and neighbours' masks."""

from __future__ import annotations

import numpy as np
import torch

from edge_mcepl.algorithms.mask_averaging import voted_mask
from edge_mcepl.nn.masking import kept_count, topk_mask
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_vote_equals_an_independent_count():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(40, generator=gen)
    neighbours = (torch.rand(3, 40, generator=gen) < 0.5).float()
    mbar = neighbours.mean(0)
    m = voted_mask(z, mbar, 0.25)
    assert int(m.sum()) == kept_count(40, 0.25)
    own = topk_mask(z.abs(), 0.25)
    # Every kept entry has a vote ≥ every dropped one; among equal votes, larger |z| wins.
    votes = (own + mbar).numpy()
    kept, dropped = m.bool().numpy(), ~m.bool().numpy()
    assert votes[kept].min() >= votes[dropped].max()
    order = sorted(range(40), key=lambda i: (-votes[i], -abs(float(z[i]))))
    assert set(np.flatnonzero(kept)) == set(order[: kept_count(40, 0.25)])


def test_without_neighbours_the_vote_is_plain_topk():
    z = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(voted_mask(z, torch.zeros_like(z), 0.3), topk_mask(z.abs(), 0.3))


def test_lab_runs_sends_masks_and_keeps_density():
    packbits = {"algorithm.mask_codec": "packbits"}  # a size that depends on the shapes only
    mcepl = Simulator(tiny_lab_config(**packbits), log=lambda s: None)
    sim = Simulator(tiny_lab_config(**packbits, **{"algorithm.name": "mask_averaging"}), log=lambda s: None)
    for t in range(3):
        rows, ref = sim.run_round(t), mcepl.run_round(t)
    assert [r["density"] for r in rows] == [r["density"] for r in ref]
    assert [r["bytes_sent"] for r in rows] == [r["bytes_sent"] for r in ref]
    agent = sim.agents[0]
    for layer, m in zip(agent.rule.layers, agent.rule.masks()):
        assert torch.equal(m, voted_mask(layer.scores, layer.neighbour_mean, layer.retention_ratio))
