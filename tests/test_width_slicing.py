"""Ordered width computes only its block: the sliced forward and backward equal the masked full network."""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.nn.masking import StraightThroughMask
from edge_mcepl.nn.weights import generate_fixed_weights, load_fixed_weights
from edge_mcepl.nn.width import block_slices
from edge_mcepl.nn.zoo import build_model


class PaddedScores:
    """The full-size reference: scores and mask zero-padded outside the block, the zoo's own forward."""

    def __init__(self, scores: torch.Tensor, mask: torch.Tensor) -> None:
        self.scores, self.mask = scores, mask

    def effective_weight(self, fixed: torch.Tensor) -> torch.Tensor:
        return StraightThroughMask.apply(self.scores, fixed, self.mask)


def _pad(block: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    out = torch.zeros(shape)
    out[block_slices(block.shape)] = block
    return out


@pytest.mark.parametrize("model_name,width", [("alexnet-cifar", 0.5), ("alexnet-cifar", 0.125), ("small-cnn", 0.3),
                                              ("resnet20-cifar", 0.5), ("resnet20-cifar", 0.3)])
def test_sliced_equals_masked_full(model_name: str, width: float) -> None:
    torch.manual_seed(0)
    narrow = build_model(model_name)
    fixed = generate_fixed_weights(narrow, model_name, 7)
    load_fixed_weights(narrow, fixed)
    rule = MCEPL(narrow, MCEPLParams(), Retention(0.3, 0.9, width=width), seed=7)
    assert narrow.block_shapes() != narrow.layer_shapes()

    full = build_model(model_name)
    load_fixed_weights(full, fixed)
    full.elu_logits = narrow.elu_logits
    padded = []
    for (_, layer), state in zip(full.masked_layers(), rule.layers):
        scores = _pad(state.scores.detach(), tuple(layer.weight.shape)).requires_grad_(True)
        layer.use(PaddedScores(scores, _pad(state.mask(), tuple(layer.weight.shape))))
        padded.append(scores)

    images = torch.randn(16, *narrow.input_shape)
    labels = torch.randint(0, 10, (16,))
    loss_narrow = torch.nn.functional.cross_entropy(narrow.logits(images), labels)
    loss_full = torch.nn.functional.cross_entropy(full.logits(images), labels)
    torch.testing.assert_close(loss_narrow, loss_full, rtol=1e-5, atol=1e-6)
    loss_narrow.backward()
    loss_full.backward()
    for state, scores in zip(rule.layers, padded):
        assert state.scores.grad is not None and scores.grad is not None
        block = block_slices(state.scores.shape)
        torch.testing.assert_close(state.scores.grad, scores.grad[block], rtol=1e-4, atol=1e-7)
        outside = scores.grad.clone()
        outside[block] = 0
        assert torch.count_nonzero(outside) == 0  # the full network gets no gradient outside the block either
