"""Neighbours of different widths: m̄ is the mean over the neighbours holding each entry (0 where none does)."""

from __future__ import annotations

import torch

from edge_mcepl.algorithms.holders import mean_over_holders
from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import build_model


def test_each_entry_is_averaged_over_its_holders_only():
    own = torch.zeros(4, 4)
    narrow = torch.ones(2, 2)  # holds the top-left corner
    wide = torch.full((6, 6), 0.5)  # holds more than the receiver: cropped
    got = mean_over_holders([narrow, wide], own)
    assert torch.equal(got[:2, :2], torch.full((2, 2), 0.75))
    assert torch.equal(got[2:, :], torch.full((2, 4), 0.5)) and torch.equal(got[:2, 2:], torch.full((2, 2), 0.5))
    assert torch.equal(mean_over_holders([narrow], own)[2:], torch.zeros(2, 4))  # nobody holds it: no vote
    assert torch.equal(mean_over_holders([], own), own)


def test_equal_widths_give_the_plain_mean_to_the_bit():
    gen = torch.Generator().manual_seed(0)
    masks = [(torch.rand(64, 32, 5, 5, generator=gen) > 0.7).float() for _ in range(3)]
    plain = (masks[0] + masks[1] + masks[2]) / 3
    assert torch.equal(mean_over_holders(masks, masks[0]), plain)


def _rule(width: float) -> MCEPL:
    model = build_model("small-cnn")
    load_fixed_weights(model, generate_fixed_weights(model, "small-cnn", 3))
    return MCEPL(model, MCEPLParams(), Retention(0.3, 0.9, width=width), seed=3)


def test_a_full_width_agent_hears_a_half_width_one_where_it_holds_and_takes_no_consensus_step_elsewhere():
    wide, narrow = _rule(1.0), _rule(0.5)
    images, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    wide.local_step(images, labels)
    narrow_masks = [m.clone() for m in narrow.masks()]
    wide.aggregate([narrow_masks])
    conv2 = wide.layers[1].neighbour_mean
    assert torch.equal(conv2[:32, :16], narrow_masks[1]) and not conv2[32:].any() and not conv2[:, 16:].any()
    before = wide.layers[1].scores.detach().clone()
    wide.consensus_step()
    moved = wide.layers[1].scores.detach() != before
    assert moved[:32, :16].any() and not moved[32:].any() and not moved[:, 16:].any()


def test_a_narrow_agent_starts_from_the_leading_block_of_the_full_agents_scores():
    wide, narrow = _rule(1.0), _rule(0.25)
    for a, b in zip(wide.layers, narrow.layers):
        block = tuple(slice(0, n) for n in b.scores.shape)
        assert torch.equal(a.scores.detach()[block], b.scores.detach())
        assert torch.equal(a.neighbour_mean[block], b.neighbour_mean)  # the shared round-0 prior, cut alike
