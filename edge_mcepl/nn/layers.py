"""Masked layers: a fixed weight ``w`` and the learning rule's say in what the forward pass uses.

The fixed weights are buffers, not parameters: they are regenerated from the lab seed (see
:mod:`edge_mcepl.nn.weights`), shared by every agent in a process, and never trained or sent.
A layer holds no learning state of its own. What its forward multiplies with is asked of a
:class:`WeightSource` the learning rule binds (:meth:`MaskedLayer.use`): MCE-PL's scored mask
``w ⊙ TopK(|y|)``, a baseline's trained weights, or export's fixed mask. With none bound the
layer computes with ``w`` itself (the dense random network).

A layer may compute with only the leading block of its weight (:meth:`MaskedLayer.narrow`, ordered
width, docs/algorithm.md#width): the forward pass then slices ``w`` — a smaller convolution or
matmul, forward and backward — and the source sees that block only.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import stacked
from .width import block_slices

LayerKind = Literal["conv", "linear"]


class WeightSource(Protocol):
    """What a layer's forward pass multiplies with, given the layer's fixed weight."""

    def effective_weight(self, fixed: Tensor) -> Tensor:
        """The weight tensor the forward pass uses (same shape as ``fixed``)."""
        ...


class FixedMask:
    """A constant binary mask: ``v = w ⊙ m`` with no gradient anywhere (export's reference model)."""

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask

    def effective_weight(self, fixed: Tensor) -> Tensor:
        return fixed * self.mask.to(fixed.device)


class MaskedLayer(nn.Module):
    """What :class:`MaskedConv2d` and :class:`MaskedLinear` share: the fixed weight and its source."""

    kind: ClassVar[LayerKind]
    weight: Tensor

    def __init__(self, weight_shape: tuple[int, ...], fan_in: int) -> None:
        super().__init__()
        self.fan_in = fan_in
        self.register_buffer("weight", torch.zeros(weight_shape), persistent=False)
        self.source: WeightSource | None = None
        self.block_shape: tuple[int, ...] = weight_shape  # the leading block the forward computes with

    @property
    def init_bound(self) -> float:
        """PyTorch's default init, uniform(±1/√fan_in), for weights and biases (docs/algorithm.md#initialisation)."""
        return 1.0 / math.sqrt(self.fan_in)

    def use(self, source: WeightSource | None) -> None:
        """Bind what the forward pass multiplies with (None: the fixed weight itself)."""
        self.source = source

    def narrow(self, block_shape: tuple[int, ...]) -> None:
        """Compute with ``weight[:o, :i, …]`` only (the full shape: the whole layer again)."""
        full = tuple(self.weight.shape)
        if len(block_shape) != len(full) or any(not 1 <= b <= n for b, n in zip(block_shape, full)):
            raise ValueError(f"block {block_shape} does not fit a layer of shape {tuple(self.weight.shape)}")
        self.block_shape = tuple(block_shape)

    @property
    def block(self) -> Tensor:
        """The fixed weights this layer computes with: the leading ``block_shape`` corner of ``weight``."""
        if self.block_shape == tuple(self.weight.shape):
            return self.weight
        return self.weight[block_slices(self.block_shape)]

    def effective_weight(self) -> Tensor:
        return self.block if self.source is None else self.source.effective_weight(self.block)


class MaskedConv2d(MaskedLayer):
    """Bias-free masked convolution (the paper's conv layers have no bias)."""

    kind: ClassVar[LayerKind] = "conv"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        weight = self.effective_weight()
        if weight.dim() == 5:  # several agents' weights (nn/stacked.py): their images one agent after another
            return stacked.conv2d(x, weight, self.stride, self.padding)
        return F.conv2d(x, weight, None, self.stride, self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


class MaskedLinear(MaskedLayer):
    """Masked linear layer with a fixed, unmasked bias (docs/algorithm.md#objects)."""

    kind: ClassVar[LayerKind] = "linear"
    bias: Tensor

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__((out_features, in_features), in_features)
        self.register_buffer("bias", torch.zeros(out_features), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.effective_weight(), self.bias[: self.block_shape[0]]
        if weight.dim() == 3:  # several agents' weights (nn/stacked.py)
            return stacked.linear(x, weight, bias)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}"
