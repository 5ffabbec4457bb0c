"""The weight-based baselines take the same cosine schedule on ``weight_lr`` as MCE-PL on its step sizes.

(The fair-baseline protocol of issue 15: the same tricks for every method.) A resumed agent
continues the schedule where it stopped.
"""

from __future__ import annotations

import copy

import pytest
import torch

from edge_mcepl.algorithms.params import Retention
from edge_mcepl.algorithms.schedule import cosine
from edge_mcepl.algorithms.weight_rule import WeightParams
from edge_mcepl.algorithms.weight_training import WeightTraining


def batch(seed: int):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 4, (8,), generator=gen)


def rule(net, schedule: str) -> WeightTraining:
    return WeightTraining(net, WeightParams(weight_lr=0.1, weight_decay=0.0, lr_schedule=schedule),
                          Retention(1.0, 1.0), total_rounds=10)


def round_(r: WeightTraining, seed: int) -> list[torch.Tensor]:
    before = [w.detach().clone() for w in r.weights]
    r.local_step(*batch(seed))
    r.aggregate([])
    r.consensus_step()
    return [w.detach() - b for w, b in zip(r.weights, before)]


@pytest.mark.parametrize("t", [0, 3, 7])
def test_the_step_of_round_t_is_the_constant_step_times_the_cosine(tiny_net, t):
    constant, annealed = rule(tiny_net, "constant"), rule(copy.deepcopy(tiny_net), "cosine")
    annealed.schedule.rounds_done = t
    for a, b in zip(constant.weights, annealed.weights):
        assert torch.equal(a, b)
    plain, scaled = round_(constant, t), round_(annealed, t)
    for p, s in zip(plain, scaled):
        torch.testing.assert_close(s, cosine(t, 10) * p, rtol=1e-5, atol=1e-8)
    assert annealed.schedule.rounds_done == t + 1


def test_a_resumed_baseline_continues_its_schedule(tiny_net):
    whole, first = rule(tiny_net, "cosine"), rule(copy.deepcopy(tiny_net), "cosine")
    for t in range(4):
        round_(whole, t)
    for t in range(2):
        round_(first, t)
    resumed = rule(copy.deepcopy(tiny_net), "cosine")
    resumed.load_state_dict(first.state_dict())
    for t in range(2, 4):
        round_(resumed, t)
    for a, b in zip(whole.weights, resumed.weights):
        assert torch.equal(a, b)
