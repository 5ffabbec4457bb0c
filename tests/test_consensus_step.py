"""docs/algorithm.md#round (steps 4–5): m̄ = mean of the received masks; z ← z − η₂·g⊙m̄ with the local step's g."""

from __future__ import annotations

import torch

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention

ETA2 = 10.0


def make_rule(model, consensus_lr=ETA2):
    params = MCEPLParams(lr=1.0, consensus_lr=consensus_lr, batch_size=4, elu_logits=False)
    return MCEPL(model, params, Retention(conv=0.5, linear=0.5), seed=3)


def one_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(6, 1, 6, 6, generator=gen), torch.randint(0, 4, (6,), generator=gen)


def vote_pattern(shape, seed):
    """Two neighbour masks giving each entry 0, 1 or 2 votes (in a known pattern)."""
    gen = torch.Generator().manual_seed(seed)
    votes = torch.randint(0, 3, shape, generator=gen)
    first = (votes >= 1).float()
    second = (votes == 2).float()
    return votes, first, second


def test_consensus_moves_by_eta2_times_gradient_times_neighbour_mean(tiny_net):
    rule = make_rule(tiny_net)
    rule.local_step(*one_batch())
    g = [layer.scores.grad.clone() for layer in rule.layers]
    z_before = [layer.scores.detach().clone() for layer in rule.layers]

    patterns = [vote_pattern(tuple(layer.scores.shape), i) for i, layer in enumerate(rule.layers)]
    rule.aggregate([[p[1] for p in patterns], [p[2] for p in patterns]])
    rule.consensus_step()

    for layer, g_l, z_l, (votes, _, _) in zip(rule.layers, g, z_before, patterns):
        assert torch.equal(layer.neighbour_mean, votes.float() / 2)
        z_after = layer.scores.detach()
        assert bool((g_l != 0).any())
        none, half, all_ = votes == 0, votes == 1, votes == 2
        assert none.any() and half.any() and all_.any()
        assert torch.equal(z_after[none], z_l[none]), "entries no neighbour keeps must not move"
        torch.testing.assert_close(z_after[half], z_l[half] - ETA2 * g_l[half] / 2, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(z_after[all_], z_l[all_] - ETA2 * g_l[all_], rtol=1e-6, atol=1e-7)
        # The consensus step reuses g; it does not recompute or consume it.
        assert torch.equal(layer.scores.grad, g_l)


def test_zero_consensus_lr_leaves_scores_unchanged(tiny_net):
    rule = make_rule(tiny_net, consensus_lr=0.0)
    rule.local_step(*one_batch(1))
    z_before = [layer.scores.detach().clone() for layer in rule.layers]
    rule.aggregate([[torch.ones_like(layer.scores) for layer in rule.layers]])
    rule.consensus_step()
    for layer, z in zip(rule.layers, z_before):
        assert torch.equal(layer.scores.detach(), z)


def test_aggregate_without_messages_gives_zero_mean_and_no_move(tiny_net):
    rule = make_rule(tiny_net)
    assert any(bool(layer.neighbour_mean.any()) for layer in rule.layers), "round-0 prior is not zero"
    rule.local_step(*one_batch(2))
    z_before = [layer.scores.detach().clone() for layer in rule.layers]
    rule.aggregate([])
    for layer in rule.layers:
        assert layer.neighbour_mean.shape == layer.scores.shape
        assert not bool(layer.neighbour_mean.any())
    rule.consensus_step()
    for layer, z in zip(rule.layers, z_before):
        assert torch.equal(layer.scores.detach(), z)


def test_neighbour_mean_is_mean_of_received_masks(tiny_net):
    rule = make_rule(tiny_net)
    gen = torch.Generator().manual_seed(9)
    received = [[(torch.rand(layer.scores.shape, generator=gen) < 0.4).float() for layer in rule.layers]
                for _ in range(3)]
    rule.aggregate(received)
    for i, layer in enumerate(rule.layers):
        expected = (received[0][i].double() + received[1][i].double() + received[2][i].double()) / 3
        torch.testing.assert_close(layer.neighbour_mean.double(), expected, rtol=0, atol=1e-7)
    # A later round replaces m̄ entirely (it is not accumulated across rounds).
    rule.aggregate([received[0]])
    for i, layer in enumerate(rule.layers):
        assert torch.equal(layer.neighbour_mean, received[0][i])
