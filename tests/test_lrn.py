"""nn/lrn.py: the hand-written local response norm equals PyTorch's, forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edge_mcepl.nn.lrn import LocalResponseNorm, local_response_norm


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("channels", [1, 2, 3, 6, 16])
def test_forward_equals_torch(size, channels):
    gen = torch.Generator().manual_seed(size * 100 + channels)
    x = torch.randn(3, channels, 5, 4, generator=gen, dtype=torch.float64) * 3
    for alpha, beta, k in [(1e-4, 0.75, 1.0), (2e-5, 0.75, 1.0), (0.5, 0.6, 2.0)]:
        ours = local_response_norm(x, size, alpha, beta, k)
        torch.testing.assert_close(ours, F.local_response_norm(x, size, alpha, beta, k), rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(2, 6, 5), (2, 6, 3, 2, 2)])
def test_other_ranks_match_torch(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(local_response_norm(x, 4, 0.3, 0.75, 1.0), F.local_response_norm(x, 4, 0.3, 0.75, 1.0),
                               rtol=0, atol=1e-10)


def test_module_matches_function_and_leaves_input_alone():
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64)
    before = x.clone()
    out = LocalResponseNorm(4, alpha=0.3, beta=0.75, k=1.0)(x)
    torch.testing.assert_close(out, F.local_response_norm(before, 4, 0.3, 0.75, 1.0), rtol=0, atol=1e-10)
    assert torch.equal(x, before)


@pytest.mark.parametrize("size,channels", [(4, 2), (4, 6), (5, 3), (5, 8), (2, 5), (1, 3)])
def test_gradcheck(size, channels):
    gen = torch.Generator().manual_seed(size + channels)
    x = (torch.randn(2, channels, 3, 2, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    # A large alpha makes the cross-channel terms of the Jacobian matter.
    assert torch.autograd.gradcheck(lambda t: local_response_norm(t, size, 0.7, 0.75, 1.5), (x,))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [3, 4])
def test_backward_equals_torch_backward(size, memory_format):
    # The models feed channels_last activations (MaskedNetwork.logits), so both layouts matter.
    gen = torch.Generator().manual_seed(size)
    x = torch.randn(2, 7, 4, 4, generator=gen, dtype=torch.float64).to(memory_format=memory_format)
    x.requires_grad_(True)
    weight = torch.randn(2, 7, 4, 4, generator=gen, dtype=torch.float64)
    (ours,) = torch.autograd.grad((local_response_norm(x, size, 0.2, 0.75, 1.0) * weight).sum(), x)
    (ref,) = torch.autograd.grad((F.local_response_norm(x, size, 0.2, 0.75, 1.0) * weight).sum(), x)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
