"""Local response normalisation with a hand-written backward pass.

PyTorch's stock ``F.local_response_norm`` builds the channel window sum out of a padded
``avg_pool3d`` and lets autograd differentiate it, which made it ≈ 60 % of a whole AlexNet
training step on a 2-core CPU. The same maths as a few shifted in-place adds along the channel
axis (window size 4 ⇒ 4 adds) plus an explicit backward is several times cheaper and keeps the
result identical to the stock operator (to float rounding), which is what the paper's model uses.

    out_c = x_c · d_c^(−β),   d_c = k + (α/n) · Σ_{j ∈ W(c)} x_j²,   W(c) = [c − ⌊n/2⌋, c + ⌊(n−1)/2⌋]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _channel_window_sum(t: Tensor, before: int, after: int) -> Tensor:
    """s_c = Σ_{j=c−before}^{c+after} t_j over dim 1, zero outside the channel range."""
    s = t.clone()
    for shift in range(1, before + 1):
        s[:, shift:] += t[:, :-shift]
    for shift in range(1, after + 1):
        s[:, :-shift] += t[:, shift:]
    return s


def _denominator(x: Tensor, size: int, alpha: float, k: float) -> Tensor:
    """d = k + (α/n)·Σ_window x²."""
    return _channel_window_sum(x * x, size // 2, (size - 1) // 2).mul_(alpha / size).add_(k)


def _inverse_power(d: Tensor, beta: float) -> Tensor:
    """d^(−β); for the paper's β = 0.75 as rsqrt(d)·√rsqrt(d), twice as fast as ``pow`` on a CPU."""
    if beta == 0.75:
        r = d.rsqrt()
        return r.mul_(r.sqrt())
    return d.pow(-beta)


class _LocalResponseNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:
        d = _denominator(x, size, alpha, k)
        d_pow = _inverse_power(d, beta)
        out = x * d_pow
        ctx.save_for_backward(x, d, d_pow, out)
        ctx.params = (size, alpha, beta)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, d, d_pow, out = ctx.saved_tensors
        size, alpha, beta = ctx.params
        # ∂out_c/∂x_j = δ_cj·d_c^(−β) − (2αβ/n)·x_c·d_c^(−β−1)·x_j  for j ∈ W(c); the transposed
        # window (c ∈ W(j)) runs the other way, hence the swapped before/after.
        t = (grad * out).div_(d)
        s = _channel_window_sum(t, (size - 1) // 2, size // 2)
        grad_x = (grad * d_pow).addcmul_(x, s, value=-2.0 * alpha * beta / size)
        return grad_x, None, None, None, None


def local_response_norm(x: Tensor, size: int, alpha: float, beta: float = 0.75, k: float = 1.0) -> Tensor:
    """Drop-in for ``torch.nn.functional.local_response_norm`` (same definition, faster)."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x * _inverse_power(_denominator(x, size, alpha, k), beta)  # evaluation: nothing to save
    return _LocalResponseNorm.apply(x, size, alpha, beta, k)


class LocalResponseNorm(nn.Module):
    """Module form of :func:`local_response_norm` (also used as-is by the ONNX export path)."""

    def __init__(self, size: int, alpha: float, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return nn.functional.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
