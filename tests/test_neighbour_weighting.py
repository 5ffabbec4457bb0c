"""neighbour_weighting: overlap — m̄ weighs each neighbour's mask by its overlap with this agent's beyond chance."""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.algorithms.robust import overlap_weight
from edge_mcepl.errors import UserError
from edge_mcepl.metrics import read_metrics
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def rule(model, weighting: str) -> MCEPL:
    return MCEPL(model, MCEPLParams(neighbour_weighting=weighting, elu_logits=False), Retention(0.5, 0.5), seed=3)


def test_the_weight_is_0_at_chance_1_when_all_is_shared_and_linear_between():
    own = [torch.tensor([1.0, 1, 0, 0]), torch.tensor([[1.0, 0], [0, 1]])]
    assert overlap_weight(own, [m.clone() for m in own]) == 1.0
    assert overlap_weight(own, [1 - m for m in own]) == 0.0  # anti-correlated: no vote
    assert overlap_weight([torch.tensor([1.0, 1, 0, 0])], [torch.tensor([1.0, 0, 1, 0])]) == 0.0  # exactly chance
    # 8 entries, 4 kept each: chance 2 shared, at most 4; 3 shared → (3 − 2) / (4 − 2)
    a, b = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]), torch.tensor([1.0, 1, 1, 0, 1, 0, 0, 0])
    assert overlap_weight([a], [b]) == pytest.approx(0.5)
    assert overlap_weight([torch.ones(4)], [torch.ones(4)]) == 1.0  # masks that cannot differ


def test_m_bar_is_the_overlap_weighted_mean_of_the_masks_heard(tiny_net):
    weighted, plain = rule(tiny_net, "overlap"), rule(tiny_net, "uniform")
    own = [m.clone() for m in weighted.masks()]
    alike, opposite = [m.clone() for m in own], [1 - m for m in own]
    weighted.aggregate([alike, opposite])
    plain.aggregate([alike, opposite])
    assert weighted.neighbour_weights == [1.0, 0.0]
    assert weighted.mask_stats()["neighbour_weights"] == [1.0, 0.0]
    assert "neighbour_weights" not in plain.mask_stats()
    for w, p, mine in zip(weighted.layers, plain.layers, own):
        assert torch.equal(w.neighbour_mean, mine)  # the opposite mask weighs nothing
        assert torch.allclose(p.neighbour_mean, torch.full_like(mine, 0.5))
    # Two equally weighted masks: the plain mean, as uniform gives it.
    other = rule(tiny_net, "overlap")
    other.aggregate([alike, alike])
    for state, mine in zip(other.layers, own):
        assert torch.equal(state.neighbour_mean, mine)


def test_a_lab_records_each_neighbours_weight_and_bad_values_are_refused(tmp_path):
    config = tiny_lab_config(rounds=2, **{"algorithm.neighbour_weighting": "overlap"})
    Simulator(config, log=lambda _: None).run(tmp_path / "run", progress=False)
    rows = list(read_metrics(tmp_path / "run" / "metrics.jsonl"))
    assert rows and all(len(r["neighbour_weights"]) == r["neighbours_heard"] for r in rows)
    weights = [w for r in rows for w in r["neighbour_weights"]]
    assert weights and all(0.0 <= w <= 1.0 for w in weights) and any(0.0 < w < 1.0 for w in weights)
    with pytest.raises(UserError, match="neighbour_weighting"):
        tiny_lab_config(**{"algorithm.neighbour_weighting": "similarity"})
