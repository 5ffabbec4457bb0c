"""Learned filter selection keeps exactly ⌈ρ·C⌉ filters per layer, chosen by votes, over live inputs only."""

from __future__ import annotations

import torch

from edge_mcepl.algorithms.filter_selection import LearnedFilters
from edge_mcepl.algorithms.mcepl import MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.nn.masking import kept_count, live_filters
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.width import kept_filters
from edge_mcepl.nn.zoo import build_model


def _rule(width: float = 0.5) -> LearnedFilters:
    model = build_model("alexnet-cifar")
    load_fixed_weights(model, generate_fixed_weights(model, "alexnet-cifar", 2))
    return LearnedFilters(model, MCEPLParams(), Retention(0.3, 0.9, width=width), seed=2)


def test_kept_filters_inner_counts_and_live_inputs():
    rule = _rule()
    masks = rule.masks()
    assert rule.model.block_shapes() == rule.model.layer_shapes()  # no slicing: filters are anywhere
    for index, (mask, state) in enumerate(zip(masks, rule.layers)):
        last = index == len(masks) - 1
        assert live_filters(mask) == (mask.shape[0] if last else kept_filters(mask.shape[0], 0.5))
        rows_alive = mask.reshape(mask.shape[0], -1).sum(1) > 0
        if index:
            upstream = masks[index - 1].reshape(masks[index - 1].shape[0], -1).sum(1) > 0
            live_in = upstream.repeat_interleave(mask.shape[1] // upstream.numel())
            assert not mask[:, ~live_in].any()  # nothing kept on an input the layer before dropped
            region = int(rows_alive.sum()) * int(live_in.sum()) * (mask[0, 0].numel())
        else:
            region = int(rows_alive.sum()) * mask[0].numel()
        assert int(mask.sum()) == kept_count(region, state.retention_ratio)


def test_neighbour_votes_move_which_filters_survive():
    rule = _rule()
    first = rule.masks()[0].reshape(64, -1).sum(1) > 0
    vote = torch.zeros(64, 3, 5, 5)
    vote[~first] = 1.0  # every neighbour keeps exactly the filters this agent dropped
    rule.layers[0].neighbour_mean = vote
    after = rule.masks()[0].reshape(64, -1).sum(1) > 0
    assert not torch.equal(first, after) and int(after.sum()) == 32
