"""Masked layers: fixed weights ``w``, trainable ``scores`` ``z``, a binary mask chosen per layer.

The fixed weights are buffers, not parameters: they are regenerated from the lab seed (see
:mod:`edge_mcepl.nn.weights`), shared by every agent in a process, and never trained or sent.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masking import StraightThroughMask, aggregation_magnitude, aggregation_tensor, drop_sparse_filters, topk_mask


class MaskedLayer(nn.Module):
    """State and mask function shared by :class:`MaskedConv2d` and :class:`MaskedLinear`.

    Attributes set by the learning rule (all per agent):

    - ``retention_ratio`` — fraction of this layer's entries kept;
    - ``neighbour_mean`` — m̄, the mean of the neighbours' latest masks (zeros = no prior);
    - ``use_aggregation_tensor`` — False for the "m̄ ≡ 0 in y" ablation;
    - ``min_kept_per_filter`` — filter-drop threshold (None = rule off).
    """

    weight: Tensor
    neighbour_mean: Tensor

    def __init__(self, weight_shape: tuple[int, ...], fan_in: int) -> None:
        super().__init__()
        self.fan_in = fan_in
        self.register_buffer("weight", torch.zeros(weight_shape), persistent=False)
        self.scores = nn.Parameter(torch.zeros(weight_shape))
        self.register_buffer("neighbour_mean", torch.zeros(weight_shape), persistent=False)
        self.retention_ratio = 1.0
        self.use_aggregation_tensor = True
        self.min_kept_per_filter: int | None = None
        self._mask_cache: tuple[tuple, Tensor] | None = None

    @property
    def init_bound(self) -> float:
        """PyTorch's default layer init is uniform(±1/√fan_in) for weights and biases (spec §2)."""
        return 1.0 / math.sqrt(self.fan_in)

    def _effective_neighbour_mean(self) -> Tensor | None:
        return self.neighbour_mean if self.use_aggregation_tensor else None

    def aggregation_tensor(self) -> Tensor:
        """y = z + mean|z|·sign(z)⊙m̄ (spec §4), or z alone in the no-aggregation ablation."""
        return aggregation_tensor(self.scores, self._effective_neighbour_mean())

    def _mask_state(self) -> tuple:
        # In-place updates of scores / m̄ bump a tensor's version counter, so this key changes
        # exactly when the mask can: evaluation batches and the next round's forward pass reuse
        # the mask instead of re-running the selection over every weight. Tensors are held (and
        # compared by identity), not their ids, which a freed tensor's successor could reuse.
        return (self.scores, self.scores._version, self.neighbour_mean, self.neighbour_mean._version,
                self.retention_ratio, self.use_aggregation_tensor, self.min_kept_per_filter)

    @torch.no_grad()
    def mask(self) -> Tensor:
        """The layer's current binary mask m = TopK_r(|y|), with the filter-drop rule if enabled."""
        state = self._mask_state()
        if self._mask_cache is not None and all(a is b or (not isinstance(a, Tensor) and a == b)
                                                for a, b in zip(self._mask_cache[0], state)):
            return self._mask_cache[1]
        m = topk_mask(aggregation_magnitude(self.scores, self._effective_neighbour_mean()), self.retention_ratio)
        if self.min_kept_per_filter is not None:
            m = drop_sparse_filters(m, self.min_kept_per_filter)
        self._mask_cache = (state, m)
        return m

    def masked_weight(self) -> Tensor:
        """v = w ⊙ m with the straight-through gradient to the scores."""
        return StraightThroughMask.apply(self.scores, self.weight, self.mask())


class MaskedConv2d(MaskedLayer):
    """Bias-free masked convolution (the paper's conv layers have no bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.masked_weight(), None, self.stride, self.padding)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


class MaskedLinear(MaskedLayer):
    """Masked linear layer with a fixed, unmasked bias (spec §1)."""

    bias: Tensor

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__((out_features, in_features), in_features)
        self.register_buffer("bias", torch.zeros(out_features), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.masked_weight(), self.bias)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"{i}, {o}"
