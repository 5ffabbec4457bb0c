"""resnet20-cifar at ordered width: its masked layers form a shape chain, and the end-padded shortcuts nest.

A device of width ρ keeps the first ⌈ρ·C⌉ filters of every layer (docs/algorithm.md#width); the
option-A shortcut appends its zero channels at the end, so the narrowed network is plain slices of the
full one: it computes what the full network computes with every filter outside the block removed.
(tests/test_width_slicing.py checks the same with MCE-PL's scored masks, gradients included.)
"""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.nn.layers import FixedMask
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.width import block_slices, width_shapes
from edge_mcepl.nn.zoo import build_model, option_a_shortcut

torch.set_num_threads(1)


@pytest.mark.parametrize("width,k16,k32,k64", [(0.5, 8, 16, 32), (0.3, 5, 10, 20)])
def test_the_blocks_are_a_chain_of_leading_filters(width, k16, k32, k64):
    shapes = width_shapes(build_model("resnet20-cifar").layer_shapes(), width)
    want = [(k16, 3, 3, 3)] + [(k16, k16, 3, 3)] * 6
    want += [(k32, k16, 3, 3)] + [(k32, k32, 3, 3)] * 5 + [(k64, k32, 3, 3)] + [(k64, k64, 3, 3)] * 5
    assert shapes == want + [(10, k64)]


def test_the_shortcut_appends_zero_channels_at_the_end():
    x = torch.randn(2, 3, 8, 8)
    out = option_a_shortcut(x, 7, 2)
    assert out.shape == (2, 7, 4, 4)
    torch.testing.assert_close(out[:, :3], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert torch.count_nonzero(out[:, 3:]) == 0
    assert option_a_shortcut(x, 3, 1) is x
    with pytest.raises(ValueError, match="cannot map 3 channels onto 2"):
        option_a_shortcut(x, 2, 1)


@pytest.mark.parametrize("width", [0.5, 0.3])
def test_the_narrowed_network_equals_the_full_one_with_the_other_filters_removed(width):
    fixed = generate_fixed_weights(build_model("resnet20-cifar"), "resnet20-cifar", 5)
    narrow, full = build_model("resnet20-cifar"), build_model("resnet20-cifar")
    load_fixed_weights(narrow, fixed)
    load_fixed_weights(full, fixed)
    narrow.narrow(width)
    generator = torch.Generator().manual_seed(1)
    for (_, small), (_, big) in zip(narrow.masked_layers(), full.masked_layers()):
        mask = (torch.rand(small.block_shape, generator=generator) < 0.5).float()
        small.use(FixedMask(mask))
        padded = torch.zeros(big.weight.shape)
        padded[block_slices(mask.shape)] = mask  # every filter outside the block: all-zero mask
        big.use(FixedMask(padded))
    assert narrow.block_shapes() != narrow.layer_shapes()
    assert narrow.stage2[0].conv1.block.shape[:2] == (width_shapes(full.layer_shapes(), width)[7][:2])
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(narrow.logits(images), full.logits(images), rtol=1e-4, atol=1e-5)
