"""∂L/∂z = sign(z) ⊙ w ⊙ ∂L/∂v with v = w ⊙ m — straight through, dense over all entries.

docs/algorithm.md#straight-through
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edge_mcepl.algorithms.score_mask import ScoreMask
from edge_mcepl.nn.layers import MaskedConv2d, MaskedLinear


def dense_grad_v(forward, v: torch.Tensor, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """∂L/∂v from a plain dense layer whose weight v = w ⊙ m is a leaf tensor."""
    v = v.detach().clone().requires_grad_(True)
    loss = ((forward(x, v) - target) ** 2).sum()
    loss.backward()
    return v.grad


def test_linear_gradient_is_sign_times_weight_times_dense_gradient():
    layer = MaskedLinear(3, 2)
    w = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    z = torch.tensor([[0.9, -0.1, 0.5], [-0.7, 0.2, -0.3]])
    layer.weight = w
    layer.bias = torch.tensor([0.1, -0.2])
    state = ScoreMask(z, torch.zeros_like(z), 0.5)  # keep 3 of 6: |z| = 0.9, 0.7, 0.5
    layer.use(state)
    expected_mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert torch.equal(state.mask().float(), expected_mask)

    x = torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]])
    target = torch.tensor([[0.3, -0.4], [1.0, 2.0]])
    out = layer(x)
    torch.testing.assert_close(out, F.linear(x, w * expected_mask, layer.bias), rtol=0, atol=0)
    ((out - target) ** 2).sum().backward()

    grad_v = dense_grad_v(lambda x, v: F.linear(x, v, layer.bias), w * expected_mask, x, target)
    expected = torch.sign(z) * w * grad_v
    torch.testing.assert_close(state.scores.grad, expected, rtol=1e-6, atol=1e-7)
    # Dense: every pruned entry gets a gradient too (here all of them are non-zero).
    pruned = expected_mask == 0
    assert bool((state.scores.grad[pruned] != 0).all())
    # The sign of z, not of y or of w alone, decides the direction.
    assert bool((torch.sign(state.scores.grad) == torch.sign(z * w * grad_v)).all())


def test_conv_gradient_is_sign_times_weight_times_dense_gradient():
    gen = torch.Generator().manual_seed(3)
    layer = MaskedConv2d(2, 3, 3, stride=1, padding=1)
    w = torch.rand(3, 2, 3, 3, generator=gen) * 2 - 1
    z = torch.rand(3, 2, 3, 3, generator=gen) * 2 - 1
    layer.weight = w
    # Hand-set neighbour votes: they change which entries are kept, but not the gradient formula.
    state = ScoreMask(z, (torch.rand(3, 2, 3, 3, generator=gen) < 0.5).float(), 0.3)
    layer.use(state)
    m = state.mask().float()
    assert 0 < int(m.sum()) < m.numel()

    x = torch.rand(2, 2, 5, 5, generator=gen)
    target = torch.rand(2, 3, 5, 5, generator=gen)
    out = layer(x)
    torch.testing.assert_close(out, F.conv2d(x, w * m, None, 1, 1))
    ((out - target) ** 2).sum().backward()

    grad_v = dense_grad_v(lambda x, v: F.conv2d(x, v, None, 1, 1), w * m, x, target)
    torch.testing.assert_close(state.scores.grad, torch.sign(z) * w * grad_v, rtol=1e-5, atol=1e-6)
    pruned = m == 0
    assert int((state.scores.grad[pruned] != 0).sum()) == int(pruned.sum())
    # Fixed weights are never trained: no gradient flows to them.
    assert not layer.weight.requires_grad
