"""export/graph.py reads the op chain off the model's own forward, and refuses what it cannot rebuild."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edge_mcepl.errors import UserError
from edge_mcepl.export import graph as g
from edge_mcepl.nn.layers import MaskedConv2d, MaskedLinear
from edge_mcepl.nn.zoo import MaskedNetwork, build_model


def test_alexnet_chain_matches_the_paper_model():
    ops = g.trace_ops(build_model("alexnet-cifar"))
    assert ops == [
        g.Conv("conv1", 1, 1), g.Elu(1.0), g.LRN(4, 2e-5, 0.75, 1.0), g.MaxPool(3, 2, 0),
        g.Conv("conv2", 1, 1), g.Elu(1.0), g.LRN(4, 1e-4, 0.75, 1.0), g.MaxPool(3, 2, 0),
        g.Conv("conv3", 1, 1), g.Elu(1.0), g.LRN(4, 1e-4, 0.75, 1.0), g.MaxPool(3, 2, 1),
        g.Flatten(), g.Linear("fc1"), g.Elu(1.0), g.Linear("fc2")]


class Residual(MaskedNetwork):
    def __init__(self) -> None:
        super().__init__()
        self.input_shape, self.num_classes = (1, 4, 4), 2
        self.conv = MaskedConv2d(1, 1, 3, padding=1)
        self.fc = MaskedLinear(16, 2)

    def forward(self, x):
        return self.fc(torch.flatten(x + self.conv(x), 1))


class AvgPool(Residual):
    def forward(self, x):
        return self.fc(torch.flatten(F.avg_pool2d(self.conv(x), 1), 1))


@pytest.mark.parametrize("model,message", [(Residual(), "not a single chain"), (AvgPool(), "does not support")])
def test_unsupported_forward_is_refused(model, message):
    with pytest.raises(UserError, match=message):
        g.trace_ops(model, "odd")
