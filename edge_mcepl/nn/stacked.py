"""Several agents in one forward pass: the layer arithmetic of the batched engine (docs/batched-engine.md).

The agents of a lab share the fixed weights and differ only in their masks, so one pass can carry
A of them: the batch holds their images one agent after another (``[A·B, …]``) and each masked
layer a stack of their effective weights (``[A, …]``, :class:`StackedSource`). A convolution is
then one grouped convolution — agent a's images meet agent a's weights only — and a linear layer
one batched matmul; every other op (ReLU, pooling, LRN, flatten, ELU) works image by image already.
Gradients flow back through each agent's own source (its straight-through mask), so each agent's
scores receive exactly the gradient of its own loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class _Source(Protocol):
    def effective_weight(self, fixed: Tensor) -> Tensor: ...


class StackedSource:
    """One layer's effective weights of several agents, stacked along a new first dimension."""

    def __init__(self, sources: Sequence[_Source]) -> None:
        self.sources = list(sources)

    def effective_weight(self, fixed: Tensor) -> Tensor:
        return torch.stack([source.effective_weight(fixed) for source in self.sources])


def conv2d(x: Tensor, weight: Tensor, stride: int, padding: int) -> Tensor:
    """``x`` [A·B, C, H, W] and ``weight`` [A, O, C, k, k] → [A·B, O, H', W']: A convolutions as one grouped one."""
    agents, out_channels = weight.shape[:2]
    batch = x.shape[0] // agents
    grouped = x.reshape(agents, batch, *x.shape[1:]).transpose(0, 1).reshape(batch, agents * x.shape[1], *x.shape[2:])
    y = F.conv2d(grouped, weight.reshape(agents * out_channels, *weight.shape[2:]), None, stride, padding,
                 groups=agents)
    return y.reshape(batch, agents, out_channels, *y.shape[2:]).transpose(0, 1).reshape(
        agents * batch, out_channels, *y.shape[2:])


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x`` [A·B, I] and ``weight`` [A, O, I] → [A·B, O]: A matmuls as one batched one (the bias is shared)."""
    agents = weight.shape[0]
    return torch.baddbmm(bias, x.reshape(agents, -1, x.shape[-1]), weight.transpose(1, 2)).reshape(-1, weight.shape[1])
