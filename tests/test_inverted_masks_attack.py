"""attack.kind inverted_masks: the agent trains honestly but sends its lowest-ranked weights, at its own density."""

from __future__ import annotations

import torch

from edge_mcepl.algorithms.attacks import InvertedMasks
from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.nn.masking import aggregation_magnitude
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights


def test_the_sent_masks_keep_the_same_count_from_the_bottom_of_the_ranking(tiny_net):
    params = MCEPLParams(elu_logits=False)
    honest_net = type(tiny_net)()
    load_fixed_weights(honest_net, generate_fixed_weights(honest_net, "tiny", 11))  # conftest's tiny_net, again
    attacker = InvertedMasks(tiny_net, params, Retention(0.3, 0.3), seed=3)
    honest = MCEPL(honest_net, params, Retention(0.3, 0.3), seed=3)
    for sent, real, state in zip(attacker.masks(), honest.masks(), attacker.layers):
        assert int(sent.sum()) == int(real.sum())  # passes the density check
        magnitude = aggregation_magnitude(state.scores, state.neighbour_mean)
        assert magnitude[sent.bool()].max() <= magnitude[~sent.bool()].min()  # the lowest-ranked weights
        assert not torch.equal(sent, real)
    images = torch.randn(4, 1, 6, 6)
    torch.testing.assert_close(attacker.model.logits(images), honest.model.logits(images))  # trains honestly
