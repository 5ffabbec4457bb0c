"""The score optimizer: heavy-ball momentum and a cosine schedule of η and η₂ (docs/algorithm.md#score-optimizer).

The reference (momentum 0, constant) keeps no optimizer state; with the knobs on, a checkpointed
rule resumes exactly where it stopped.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention


def batch(seed: int):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 4, (8,), generator=gen)


def rule(net, **knobs) -> MCEPL:
    return MCEPL(net, MCEPLParams(lr=2.0, consensus_lr=1.0, **knobs), Retention(0.5, 0.8), seed=4, total_rounds=8)


def run_round(r: MCEPL, seed: int) -> None:
    r.local_step(*batch(seed))
    r.aggregate([])  # nobody heard: m̄ = 0, so the consensus step only advances the schedule
    r.consensus_step()


def test_the_reference_keeps_no_optimizer_state(tiny_net):
    state = rule(tiny_net).state_dict()
    assert not [k for k in state if k.startswith("velocity") or k == "rounds_done"]


def test_momentum_is_heavy_ball_on_the_whole_step(tiny_net):
    plain, heavy = rule(tiny_net), rule(copy.deepcopy(tiny_net), momentum=0.5)
    steps = []
    for t in range(3):
        with torch.no_grad():  # plain SGD from the heavy-ball rule's scores gives this round's raw step
            for a, b in zip(plain.layers, heavy.layers):
                a.scores.copy_(b.scores)
                a.neighbour_mean = b.neighbour_mean.clone()
        plain.local_step(*batch(t))
        steps.append([(b.scores.detach() - a.scores.detach()) / 2.0 for a, b in zip(plain.layers, heavy.layers)])
        old = [s.scores.detach().clone() for s in heavy.layers]
        heavy.local_step(*batch(t))
        velocity = [sum(0.5 ** (t - k) * steps[k][i] for k in range(t + 1)) for i in range(len(old))]
        for o, s, v in zip(old, heavy.layers, velocity):
            torch.testing.assert_close(s.scores.detach(), o - 2.0 * v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [0, 2, 4, 8, 12])
def test_cosine_scale_anneals_to_zero_over_the_run(tiny_net, t):
    r = rule(tiny_net, lr_schedule="cosine")
    r.schedule.rounds_done = t
    assert r.schedule.scale() == pytest.approx(0.5 * (1 + math.cos(math.pi * min(t, 8) / 8)))
    assert rule(tiny_net).schedule.scale() == 1.0


def test_cosine_scales_both_steps(tiny_net):
    constant, cosine = rule(tiny_net), rule(copy.deepcopy(tiny_net), lr_schedule="cosine")
    cosine.schedule.rounds_done = constant.schedule.rounds_done = 6  # scale ½(1 + cos(3π/4)) ≈ 0.146
    scale = cosine.schedule.scale()
    before = [s.scores.detach().clone() for s in cosine.layers]
    constant.local_step(*batch(0))
    cosine.local_step(*batch(0))
    for b, c, s in zip(before, constant.layers, cosine.layers):
        torch.testing.assert_close(s.scores.detach() - b, scale * (c.scores.detach() - b), rtol=1e-4, atol=1e-6)
    full = [torch.ones_like(s.scores) for s in cosine.layers]
    for rr in (constant, cosine):
        for st, m in zip(rr.layers, full):
            st.neighbour_mean = m
    mid = [s.scores.detach().clone() for s in cosine.layers]
    cosine.consensus_step()
    for m, s in zip(mid, cosine.layers):
        torch.testing.assert_close(s.scores.detach(), m - 1.0 * scale * s.scores.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("knobs", [{"momentum": 0.9}, {"lr_schedule": "cosine"},
                                   {"momentum": 0.5, "lr_schedule": "cosine"}], ids=["momentum", "cosine", "both"])
def test_a_resumed_rule_continues_exactly(tiny_net, knobs):
    whole, first = rule(tiny_net, **knobs), rule(copy.deepcopy(tiny_net), **knobs)
    for t in range(5):
        run_round(whole, t)
    for t in range(3):
        run_round(first, t)
    resumed = rule(copy.deepcopy(tiny_net), **knobs)
    resumed.load_state_dict(first.state_dict())
    for t in range(3, 5):
        run_round(resumed, t)
    for a, b in zip(whole.layers, resumed.layers):
        assert torch.equal(a.scores.detach(), b.scores.detach())
    if resumed.params.lr_schedule == "cosine":  # the counter is state only where a schedule reads it
        assert resumed.schedule.rounds_done == whole.schedule.rounds_done == 5
