"""docs/algorithm.md#loss: R(y) = λ·Σ_g ‖y_g‖₂ over output filters / rows; its gradient is λ·y_g/‖y_g‖₂."""

from __future__ import annotations

import pytest
import torch

from edge_mcepl.nn.group_lasso import group_lasso, group_lasso_gradient


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (5, 7), (1, 10), (6, 1, 1, 1)])
@pytest.mark.parametrize("lam", [1e-3, 0.7])
def test_gradient_equals_autograd_of_the_penalty(shape, lam):
    gen = torch.Generator().manual_seed(len(shape) + int(lam * 10))
    y = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    value = group_lasso(y, lam)
    rows = y.detach().reshape(shape[0], -1)
    expected_value = lam * sum(float(torch.sqrt((row**2).sum())) for row in rows)
    assert float(value.detach()) == pytest.approx(expected_value, rel=1e-12)
    (autograd,) = torch.autograd.grad(value, y)
    closed = group_lasso_gradient(y.detach(), lam)
    assert closed.shape == y.shape
    torch.testing.assert_close(closed, autograd, rtol=1e-12, atol=1e-15)


def test_all_zero_group_has_zero_gradient_without_nan():
    y = torch.tensor([[0.0, 0.0, 0.0], [3.0, -4.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    grad = group_lasso_gradient(y, 0.5)
    assert bool(torch.isfinite(grad).all())
    assert torch.equal(grad[0], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(grad[2], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(grad[1], torch.tensor([0.3, -0.4, 0.0], dtype=torch.float64))
    assert float(group_lasso(y, 0.5)) == pytest.approx(2.5)
