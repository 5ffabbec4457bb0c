"""Weight training on the same init (DSLTH check): pruned density equals MCE-PL's, no neighbours."""

from __future__ import annotations

import numpy as np
import torch

from edge_mcepl.nn.masking import kept_count
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_pruned_masks_keep_the_largest_init_weights_at_mcepl_density():
    mcepl = Simulator(tiny_lab_config(), log=lambda s: None)
    pruned = Simulator(tiny_lab_config(**{"algorithm.name": "weight_training", "algorithm.prune": True}),
                       log=lambda s: None)
    for a_m, a_p in zip(mcepl.agents, pruned.agents):
        assert a_p.rule.mask_stats()["density"] == a_m.rule.mask_stats()["density"]
        for (_, layer), keep, m in zip(a_p.rule.model.masked_layers(), a_p.rule.keep, a_m.rule.masks()):
            assert int(keep.sum()) == int(m.sum()) == kept_count(keep.numel(), a_p.rule.retention.for_layer(layer))
            kept = layer.weight.abs()[keep.bool()]
            dropped = layer.weight.abs()[~keep.bool()]
            if dropped.numel():
                assert kept.min() >= dropped.max()


def test_pruned_weights_stay_zero_and_training_learns_alone():
    config = tiny_lab_config(**{"algorithm.name": "weight_training", "algorithm.prune": True, "rounds": 40})
    sim = Simulator(config, log=lambda s: None)
    before = {k: v.clone() for k, v in sim.fixed.tensors.items()}
    initial = [w.detach().clone() for w in sim.agents[0].rule.weights]
    for t in range(40):
        rows = sim.run_round(t)
        assert all(r["bytes_sent"] == 0 and r["neighbours_heard"] == 0 for r in rows)
    agent = sim.agents[0]
    for w, w0, keep in zip(agent.rule.weights, initial, agent.rule.keep):
        assert torch.all(w[keep == 0] == 0)
        assert not torch.equal(w, w0)  # the weights did train
    assert np.mean([a for a, _ in sim.evaluate()]) > 0.6
    for k, v in sim.fixed.tensors.items():
        assert torch.equal(v, before[k])


def test_dense_weight_training_has_density_one():
    sim = Simulator(tiny_lab_config(**{"algorithm.name": "weight_training"}), log=lambda s: None)
    rows = sim.run_round(0)
    assert all(r["density"] == 1.0 and r["bytes_sent"] == 0 for r in rows)
