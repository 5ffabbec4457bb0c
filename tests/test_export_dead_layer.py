"""A layer whose every filter/row is dead makes the network constant: export refuses, naming it."""

from __future__ import annotations

import numpy as np
import pytest

from edge_mcepl.errors import UserError
from edge_mcepl.export.graph import trace_ops
from edge_mcepl.export.prune import prune_network
from edge_mcepl.nn.weights import generate_fixed_weights
from edge_mcepl.nn.zoo import build_model


@pytest.mark.parametrize("layer,unit", [("conv1", "filter"), ("conv2", "filter"), ("fc1", "row"), ("fc2", "row")])
def test_every_filter_dead_is_a_clear_user_error(layer, unit):
    template = build_model("small-cnn")
    fixed = generate_fixed_weights(template, "small-cnn", 1)
    masks = {name: np.ones(tuple(m.weight.shape), np.float32) for name, m in template.masked_layers()}
    masks[layer][:] = 0
    with pytest.raises(UserError, match=rf"layer {layer}: every {unit} is dead") as err:
        prune_network(trace_ops(template), {k: v.numpy() for k, v in fixed.tensors.items()}, masks,
                      input_shape=template.input_shape, num_classes=10, elu_logits=True)
    assert "\n" not in str(err.value)


def test_dead_by_cascade_counts_too():
    # conv2 only reads conv1 channels that are all dead: every conv2 filter outputs 0.
    template = build_model("small-cnn")
    fixed = generate_fixed_weights(template, "small-cnn", 1)
    masks = {name: np.ones(tuple(m.weight.shape), np.float32) for name, m in template.masked_layers()}
    masks["conv1"][:4] = 0
    masks["conv2"][:] = 0
    masks["conv2"][:, :4] = 1
    with pytest.raises(UserError, match="layer conv2: every filter is dead"):
        prune_network(trace_ops(template), {k: v.numpy() for k, v in fixed.tensors.items()}, masks,
                      input_shape=template.input_shape, num_classes=10, elu_logits=True)
