"""robust_aggregation: overlap — m̄ leaves out a neighbour whose mask overlaps this agent's less than chance."""

from __future__ import annotations

import torch

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.algorithms.robust import above_chance


def rule(model, robust: str) -> MCEPL:
    return MCEPL(model, MCEPLParams(robust_aggregation=robust, elu_logits=False), Retention(0.5, 0.5), seed=3)


def test_chance_is_the_overlap_of_independent_masks_of_the_same_densities():
    own = [torch.tensor([1.0, 1, 0, 0]), torch.tensor([[1.0, 0], [0, 1]])]
    assert above_chance(own, [m.clone() for m in own])  # itself: all shared
    assert not above_chance(own, [1 - m for m in own])  # its complement: nothing shared
    # Exactly chance (one of two kept entries shared, half the entries kept on each side) is not above it.
    assert not above_chance([torch.tensor([1.0, 1, 0, 0])], [torch.tensor([1.0, 0, 1, 0])])
    # A narrower neighbour (ordered width) is compared on the block both hold.
    assert above_chance([torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])], [torch.tensor([[1.0, 1, 0, 0]])])


def test_an_anti_correlated_neighbour_is_left_out_of_the_mean_and_counted(tiny_net):
    robust, plain = rule(tiny_net, "overlap"), rule(tiny_net, "none")
    own = [m.clone() for m in robust.masks()]
    honest, hostile = [m.clone() for m in own], [1 - m for m in own]
    robust.aggregate([honest, hostile])
    plain.aggregate([honest, hostile])
    assert robust.left_out == 1 and robust.mask_stats()["left_out"] == 1
    assert "left_out" not in plain.mask_stats()
    for state, mine in zip(robust.layers, own):
        assert torch.equal(state.neighbour_mean, mine)  # the honest neighbour's mask alone
    for state in plain.layers:
        assert torch.allclose(state.neighbour_mean, torch.full_like(state.neighbour_mean, 0.5))
