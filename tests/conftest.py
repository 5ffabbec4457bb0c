"""Shared fixtures for the MCE-PL tests: a tiny masked network and a tiny lab config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edge_mcepl.comm.broker.mosquitto import find_mosquitto
from edge_mcepl.config import config_from_dict
from edge_mcepl.nn.layers import MaskedConv2d, MaskedLinear
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.zoo import MaskedNetwork
from edge_mcepl.validation import set_dotted


class TinyNet(MaskedNetwork):
    """conv(1→3, 3×3) → ELU → flatten → linear(3·4·4 → 4): small enough to reason about by hand."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.input_shape, self.num_classes = (1, 6, 6), num_classes
        self.conv = MaskedConv2d(1, 3, 3)
        self.fc = MaskedLinear(3 * 4 * 4, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.elu(self.conv(x)), 1))


def dense_tiny_forward(x, conv_v, fc_v, fc_bias):
    """TinyNet's forward with explicit dense weights (no masking machinery at all)."""
    return F.linear(torch.flatten(F.elu(F.conv2d(x, conv_v)), 1), fc_v, fc_bias)


@pytest.fixture
def tiny_net():
    model = TinyNet()
    load_fixed_weights(model, generate_fixed_weights(model, "tiny", 11))
    return model


def tiny_lab_config(**overrides):
    """A lab that runs in well under a second per round: small-cnn on a little synthetic data."""
    raw = {
        "name": "test", "seed": 5, "agents": 4, "rounds": 3, "eval_every": 2, "model": "small-cnn",
        "threads": 1,
        "data": {"dataset": "synthetic", "synthetic_train_per_class": 12, "synthetic_test_per_class": 4,
                 "classes_per_agent": 3},
        "topology": {"kind": "ring"},
        "algorithm": {"batch_size": 8},
    }
    for key, value in overrides.items():
        raw = set_dotted(raw, key, value)
    return config_from_dict(raw)


def pytest_runtest_setup(item):
    """A real-broker test without mosquitto is a failure, not a silent skip (`make test` installs it first)."""
    if item.get_closest_marker("mosquitto") and find_mosquitto() is None:
        pytest.fail("mosquitto is required for this test: run scripts/ensure-system-packages.sh (make test does)")
