"""Ablation: direct averaging of binary masks instead of MCE-PL's aggregation tensor.

MCE-PL lets the neighbours' mean mask ``m̄`` act through the scores (``|y| = |z| + mean|z|·m̄``,
docs/algorithm.md#aggregation-tensor). This ablation replaces that by a plain vote of binary masks: the agent's own mask
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
from .base import RuleContext
from .mcepl import MCEPL, MCEPLParams
from .score_mask import ScoreMask

TIE_BREAK = 1e-6


@torch.no_grad()
def voted_mask(scores: Tensor, neighbour_mean: Tensor, retention_ratio: float) -> Tensor:
    magnitude = scores.detach().abs()
    own = topk_mask(magnitude, retention_ratio)
    vote = (own + neighbour_mean) / 2 + TIE_BREAK * magnitude / magnitude.max().clamp(min=1e-30)
    return topk_mask(vote, retention_ratio)


class VotedMask(ScoreMask):
    """A layer's mask chosen by the vote above instead of the aggregation tensor."""

    def select(self) -> Tensor:
        return voted_mask(self.scores, self.neighbour_mean, self.retention_ratio)


class MaskAveraging(MCEPL):
    layer_mask = VotedMask

    @classmethod
    def params_for(cls, ctx: RuleContext) -> MCEPLParams:
        return dataclasses.replace(super().params_for(ctx), aggregation_tensor=False)
