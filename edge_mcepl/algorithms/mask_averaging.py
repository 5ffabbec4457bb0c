"""Ablation: direct averaging of binary masks instead of MCE-PL's aggregation tensor.

MCE-PL lets the neighbours' mean mask ``m̄`` act through the scores (``|y| = |z| + mean|z|·m̄``,
spec §4). This ablation replaces that by a plain vote of binary masks: the agent's own mask
``TopK_r(|z|)`` and the neighbours' mean are averaged with equal weight,

    m = TopK_r( (TopK_r(|z|) + m̄) / 2  +  ε·|z| / max|z| ),   ε = 1e-6,

where the ε term only breaks ties between entries with the same vote (it is far smaller than the
smallest vote difference). Everything else — local step, straight-through gradient, what is sent,
aggregation, consensus step — is MCE-PL's.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ..nn.masking import topk_mask
from ..nn.zoo import MaskedNetwork
from .mcepl import MCEPL, MCEPLParams, Retention

TIE_BREAK = 1e-6


@torch.no_grad()
def voted_mask(scores: Tensor, neighbour_mean: Tensor, retention_ratio: float) -> Tensor:
    magnitude = scores.abs()
    own = topk_mask(magnitude, retention_ratio)
    vote = (own + neighbour_mean) / 2 + TIE_BREAK * magnitude / magnitude.max().clamp(min=1e-30)
    return topk_mask(vote, retention_ratio)


class MaskAveraging(MCEPL):
    def __init__(self, model: MaskedNetwork, params: MCEPLParams, retention: Retention, prior_seed: int) -> None:
        super().__init__(model, dataclasses.replace(params, aggregation_tensor=False), retention, prior_seed)
        for _, layer in model.masked_layers():
            # The layer's forward and model.masks() ask layer.mask(); answer with the vote.
            layer.mask = lambda layer=layer: voted_mask(layer.scores, layer.neighbour_mean, layer.retention_ratio)
