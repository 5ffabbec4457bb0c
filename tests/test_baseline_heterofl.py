"""The HeteroFL-style baseline: dense weights of the agent's width, sent as fp32, averaged over holders."""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.algorithms.dsgd import DSGD, DSGDParams
from edge_mcepl.algorithms.heterofl import HeteroFL
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.algorithms.weight_rule import WeightParams
from edge_mcepl.errors import UserError
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import build_model

FP = bytes(16)


def _model():
    model = build_model("small-cnn")
    load_fixed_weights(model, generate_fixed_weights(model, "small-cnn", 4))
    return model


def test_weights_are_the_block_and_averaging_is_over_holders_with_self():
    wide, narrow = HeteroFL(_model(), WeightParams(), 1.0), HeteroFL(_model(), WeightParams(), 0.5)
    assert [tuple(w.shape) for w in narrow.weights] == narrow.model.block_shapes() != wide.model.layer_shapes()
    images, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    narrow.local_step(images, labels)
    payload = narrow.encode_message(fingerprint=FP, sender=1, round=0, auth=None)
    content = wide.received_content(wide.decode_message(payload, fingerprint=FP, shapes=wide.model.layer_shapes(),
                                                        auth=None))
    before = [w.detach().clone() for w in wide.weights]
    wide.aggregate([content])
    conv2 = wide.weights[1].detach()
    torch.testing.assert_close(conv2[:32, :16], (before[1][:32, :16] + narrow.weights[1].detach()) / 2)
    assert torch.equal(conv2[32:], before[1][32:])  # only the wide agent holds these: kept as they were


def test_a_rule_without_ordered_width_refuses_a_narrow_retention():
    with pytest.raises(UserError, match="retention.width 0.5: the DisPFL rule trains whole layers only"):
        from edge_mcepl.algorithms.dispfl import DisPFL, DisPFLParams
        DisPFL(_model(), DisPFLParams(), Retention(0.3, 0.9, width=0.5), agent_id=0, seed=1, total_rounds=10)
    DSGD(_model(), DSGDParams(), 0, {0: 1})  # full width is fine
