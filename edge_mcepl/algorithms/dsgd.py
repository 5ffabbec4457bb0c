"""DSGD baseline (spec §10): dense weights, SGD, neighbour averaging, fp32 on the wire.

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

import torch

from ..nn.zoo import MaskedNetwork
from .mcepl import MCEPLParams, Retention
from .weight_training import WeightRule

MIXINGS = ("metropolis", "uniform")


def mixing_weights(own: int, heard: Sequence[int], degrees: Mapping[int, int], mixing: str) -> tuple[float, dict[int, float]]:
    """(self weight, {neighbour: weight}) for the neighbours actually heard from."""
    if mixing == "uniform":
        share = 1.0 / (1 + len(heard))
        return share, {j: share for j in heard}
    if mixing == "metropolis":
        weights = {j: 1.0 / (1 + max(degrees[own], degrees[j])) for j in heard}
        return 1.0 - sum(weights.values()), weights
    raise ValueError(f"unknown mixing {mixing!r}, expected one of {MIXINGS}")


class DSGD(WeightRule):
    """Dense decentralized SGD on the weights (no masks)."""

    def __init__(self, model: MaskedNetwork, params: MCEPLParams, agent_id: int, degrees: Mapping[int, int],
                 weight_lr: float, mixing: str = "metropolis") -> None:
        super().__init__(model, params, Retention(1.0, 1.0), weight_lr, prune=False)
        if mixing not in MIXINGS:
            raise ValueError(f"unknown mixing {mixing!r}, expected one of {MIXINGS}")
        self.agent_id, self.degrees, self.mixing = agent_id, dict(degrees), mixing

    @torch.no_grad()
    def aggregate(self, received: Sequence) -> None:
        """``received``: (sender, [tensor per layer]) of every neighbour heard this round."""
        own, weights = mixing_weights(self.agent_id, [s for s, _ in received], self.degrees, self.mixing)
        for layer, w in enumerate(self.weights):
            mixed = w * own
            for sender, tensors in received:
                mixed.add_(tensors[layer], alpha=weights[sender])
            w.copy_(mixed)
