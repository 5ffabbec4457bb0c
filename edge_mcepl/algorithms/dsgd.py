"""DSGD baseline (docs/algorithm.md#baselines): dense weights, SGD, neighbour averaging, fp32 on the wire.

Round t for agent i: one (or ``local_steps``) SGD step on its own copy of the weights from the
same seeded init, publish the weights as fp32 (:mod:`edge_mcepl.wire.dense`), then
``w_i ← w_ii·w_i + Σ_{j heard} w_ij·w_j`` with

- ``metropolis``: ``w_ij = 1 / (1 + max(d_i, d_j))`` (degrees in the lab graph), ``w_ii = 1 − Σ_j w_ij``;
- ``uniform``: ``w_ij = w_ii = 1 / (1 + |heard|)``.

A neighbour that was not heard simply gives its weight back to the agent itself, so the mixing
stays a convex combination.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..nn.zoo import MaskedNetwork
from .base import RuleContext
from .params import Retention, params_from
from .weight_rule import DenseWeightRule, WeightParams

Mixing = Literal["metropolis", "uniform"]
MIXINGS: tuple[str, ...] = get_args(Mixing)


@dataclass(frozen=True)
class DSGDParams(WeightParams):
    mixing: Mixing = "metropolis"


def mixing_weights(own: int, heard: Sequence[int], degrees: Mapping[int, int],
                   mixing: str) -> tuple[float, dict[int, float]]:
    """(self weight, {neighbour: weight}) for the neighbours actually heard from."""
    if mixing == "uniform":
        share = 1.0 / (1 + len(heard))
        return share, {j: share for j in heard}
    if mixing == "metropolis":
        weights = {j: 1.0 / (1 + max(degrees[own], degrees[j])) for j in heard}
        return 1.0 - sum(weights.values()), weights
    raise ValueError(f"unknown mixing {mixing!r}, expected one of {MIXINGS}")


class DSGD(DenseWeightRule):
    """Dense decentralized SGD on the weights (no masks)."""

    params: DSGDParams

    def __init__(self, model: MaskedNetwork, params: DSGDParams, agent_id: int, degrees: Mapping[int, int],
                 total_rounds: int = 0) -> None:
        if params.mixing not in MIXINGS:
            raise ValueError(f"unknown mixing {params.mixing!r}, expected one of {MIXINGS}")
        super().__init__(model, params, Retention(1.0, 1.0), total_rounds=total_rounds)
        self.agent_id, self.degrees = agent_id, dict(degrees)

    @classmethod
    def build(cls, ctx: RuleContext) -> DSGD:
        return cls(ctx.model, params_from(DSGDParams, ctx.algorithm), ctx.agent_id, ctx.degrees or {},
                   ctx.total_rounds)

    @torch.no_grad()
    def aggregate(self, received: Sequence[tuple[int, list[Tensor]]]) -> None:
        """``received``: (sender, [tensor per layer]) of every neighbour heard this round."""
        own, weights = mixing_weights(self.agent_id, [s for s, _ in received], self.degrees, self.params.mixing)
        for layer, w in enumerate(self.weights):
            mixed = w * own
            for sender, tensors in received:
                mixed.add_(tensors[layer], alpha=weights[sender])
            w.copy_(mixed)
