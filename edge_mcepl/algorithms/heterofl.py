"""HeteroFL-style width baseline, decentralized: fp32 weights of each device's width, averaged over holders.

The fair anchor for "a model sized to each device" (docs/structured.md): HeteroFL (Diao et al.,
ICLR 2021) gives every client the leading ⌈ρ·C⌉ channels of each layer — the same ordered width
MCE-PL's structured mode uses (docs/algorithm.md#width) — trains those weights densely and has
the server average each parameter over the clients that hold it. Here there is no server: round t
for agent i is SGD step(s) on its own block of weights (from the same seeded init as every
method), the block sent as fp32 (:mod:`edge_mcepl.wire.dense`), then

    w_i ← per entry, the mean of w_i and the received blocks that hold it.

Simplifications against the paper: no static batch norm (the zoo has none; LRN needs no
statistics), no masked cross-entropy, the same fixed biases as every other method here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..nn.zoo import MaskedNetwork
from ..wire.dense import WeightMessage, decode_weights
from ..wire.envelope import Authenticator
from .base import RuleContext
from .holders import mean_over_holders
from .params import Retention, params_from
from .weight_rule import DenseWeightRule, WeightParams


class HeteroFL(DenseWeightRule):
    """Dense training of the agent's ordered-width block, neighbours averaged over holders."""

    supports_width = True

    def __init__(self, model: MaskedNetwork, params: WeightParams, width: float, total_rounds: int = 0) -> None:
        model.narrow(width)  # before the weight copies are taken: they are the block's
        super().__init__(model, params, Retention(1.0, 1.0, width), total_rounds=total_rounds)

    @classmethod
    def build(cls, ctx: RuleContext) -> HeteroFL:
        return cls(ctx.model, params_from(WeightParams, ctx.algorithm), ctx.retention.width, ctx.total_rounds)

    def decode_message(self, payload: bytes, *, fingerprint: bytes, shapes: Sequence[tuple[int, ...]],
                       auth: Authenticator | None) -> WeightMessage:
        """A neighbour's weights: any ordered-width block of the lab's ``shapes``."""
        return decode_weights(payload, expected_fingerprint=fingerprint, expected_shapes=shapes, auth=auth, nested=True)

    @torch.no_grad()
    def aggregate(self, received: Sequence[tuple[int, list[Tensor]]]) -> None:
        for layer, w in enumerate(self.weights):
            w.copy_(mean_over_holders([w, *(tensors[layer] for _, tensors in received)], w))
