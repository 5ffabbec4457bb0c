"""γ in |y| = |z| + γ·mean|z|·m̄ scales the neighbours' pull (docs/algorithm.md#aggregation-tensor)."""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.algorithms.score_mask import ScoreMask
from edge_mcepl.config import config_from_dict
from edge_mcepl.errors import UserError


def layer(gamma: float, seed: int = 0, r: float = 0.3) -> ScoreMask:
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(16, 24, generator=gen) * 2 - 1
    votes = torch.randint(0, 5, (16, 24), generator=gen).to(torch.uint8)
    return ScoreMask(z, votes, r, holders=4.0, aggregation_amplitude=gamma)


def test_amplitude_scales_the_neighbour_term_of_the_aggregation_tensor():
    for gamma in (0.25, 1.0, 3.0):
        state = layer(gamma)
        z = state.scores.detach()
        expected = z.abs() + gamma * z.abs().mean() * state.neighbour_mean
        torch.testing.assert_close(state.aggregation_tensor().abs(), expected)


def test_zero_amplitude_is_the_no_aggregation_ablation():
    off = layer(1.0)
    off.use_aggregation_tensor = False
    assert torch.equal(layer(0.0).mask(), off.mask())


def test_a_large_amplitude_keeps_what_the_neighbours_keep():
    """With γ ≫ 1 the votes decide the ranking: every kept entry has at least the votes of every dropped one."""
    state = layer(1e4)
    m, votes = state.mask().bool(), state.neighbour_mean
    assert votes[m].min() >= votes[~m].max()
    assert not torch.equal(m, layer(1.0).mask().bool()), "γ = 1 lets the scores overrule some votes"


def test_the_mask_follows_a_changed_amplitude():
    state = layer(1.0)
    before = state.mask().clone()
    state.aggregation_amplitude = 1e4
    assert not torch.equal(state.mask(), before), "the cached mask must not outlive the knob it depends on"


def test_config_refuses_a_negative_amplitude():
    with pytest.raises(UserError, match="aggregation_amplitude"):
        config_from_dict({"algorithm": {"aggregation_amplitude": -1}}, source="lab.yaml")
