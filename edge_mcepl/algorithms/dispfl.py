"""Dis-PFL baseline (Dai et al., ICML 2022; docs/algorithm.md#baselines): personalised sparse weights, masked exchange.

Each agent trains its own sparse model — weights ``w_i`` (from the same seeded init as every
method) restricted to a personal mask ``m_i`` with a fixed per-layer density (the agent's MCE-PL
retention ratios, so densities match). Round t:

1. local SGD step(s) on the kept weights (off-mask weights stay exactly zero);
2. send ``(m_i, w_i ⊙ m_i)`` — mask bits + fp32 kept values (:mod:`edge_mcepl.wire.sparse`);
3. aggregate each parameter over the agents (self + neighbours heard) whose mask holds it, then
   re-mask with the own mask: ``w_i ← m_i ⊙ Σ_j m_j ⊙ w_j / max(1, Σ_j m_j)``;
4. every ``update_every`` rounds, a mask update with a cosine-annealed rate
   ``α_t = α₀/2·(1 + cos(π t / T))``: per layer, prune the ⌊α_t·kept⌋ kept weights of smallest
   magnitude and regrow as many never-kept-this-round positions with the largest dense gradient
   ``|∂L/∂w|`` of the last local step, regrown at zero.

Schedule: Dis-PFL updates masks once per round with α₀ = 0.5, but its round is several local
epochs; a round here is one SGD step, and updating every round at α₀ = 0.5 replaces half the
weights by zeros faster than one step can regrow them (measured: the AlexNet models collapsed to a
constant prediction). The defaults therefore follow RigL's scale in steps — an update every 20
rounds, α₀ = 0.3.

The initial masks are random at the agent's density, seeded per agent (personalised from round 0).
Simplifications against the paper: one mask update per round (not every few local epochs), the
same fixed biases as every other method here, no ERK layer-wise density (the MCE-PL ratios instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..nn.masking import topk_mask
from ..nn.weights import derive_seed
from ..nn.zoo import MaskedNetwork
from ..wire.delta import MaskRecord
from ..wire.envelope import Authenticator
from ..wire.sparse import SparseWeightMessage, decode_sparse_weights, encode_sparse_weights
from .base import RuleContext
from .params import Retention, params_from
from .schedule import cosine
from .weight_rule import WeightParams, WeightRule


@dataclass(frozen=True)
class DisPFLParams(WeightParams):
    anneal: float = 0.3  # α₀ of the cosine-annealed prune/regrow rate
    update_every: int = 20  # rounds between mask updates


def anneal_rate(round: int, total_rounds: int, initial: float = 0.5) -> float:
    """α_t = α₀/2·(1 + cos(π t/T)): α₀ at t = 0, 0 at t = T."""
    return cosine(round, total_rounds, initial)


def random_masks(model: MaskedNetwork, retention: Retention, agent_id: int, seed: int) -> list[Tensor]:
    """Each layer's initial mask: random at the agent's density, seeded per agent and layer."""
    masks = []
    for name, layer in model.masked_layers():
        gen = torch.Generator().manual_seed(derive_seed(seed, f"dispfl-mask:{agent_id}:{name}"))
        scores = torch.rand(tuple(layer.weight.shape), generator=gen)
        masks.append(topk_mask(scores, retention.for_layer(layer)).to(layer.weight.device))
    return masks


class DisPFL(WeightRule[SparseWeightMessage, tuple[list[Tensor], list[Tensor]]]):
    params: DisPFLParams

    def __init__(self, model: MaskedNetwork, params: DisPFLParams, retention: Retention, agent_id: int, seed: int,
                 total_rounds: int) -> None:
        # w is kept exactly zero off-mask, so the forward uses it directly and w.grad is the dense
        # gradient the regrowth step needs.
        super().__init__(model, params, retention, random_masks(model, retention, agent_id, seed),
                         mask_in_forward=False, total_rounds=total_rounds)
        self.total_rounds, self.round = total_rounds, 0

    @classmethod
    def build(cls, ctx: RuleContext) -> DisPFL:
        return cls(ctx.model, params_from(DisPFLParams, ctx.algorithm), ctx.retention, ctx.agent_id, ctx.seed,
                   ctx.total_rounds)

    def encode_message(self, *, fingerprint: bytes, sender: int, round: int, auth: Authenticator | None,
                       reference: MaskRecord | None = None) -> bytes:
        return encode_sparse_weights([m.bool().cpu().numpy() for m in self.keep], self.current_weights(),
                                     fingerprint=fingerprint, sender=sender, round=round, auth=auth)

    def decode_message(self, payload: bytes, *, fingerprint: bytes, shapes: Sequence[tuple[int, ...]],
                       auth: Authenticator | None) -> SparseWeightMessage:
        return decode_sparse_weights(payload, expected_fingerprint=fingerprint, expected_shapes=shapes, auth=auth)

    def received_content(self, msg: SparseWeightMessage) -> tuple[list[Tensor], list[Tensor]]:
        device = self.model.device
        return ([torch.from_numpy(m.astype("float32")).to(device) for m in msg.masks],
                [torch.from_numpy(t).to(device) for t in msg.tensors])

    @torch.no_grad()
    def aggregate(self, received: Sequence[tuple[list[Tensor], list[Tensor]]]) -> None:
        """Holder-wise mean over self + neighbours heard, re-masked with the own mask."""
        for layer, (w, m) in enumerate(zip(self.weights, self.keep)):
            total, count = w * m, m.clone()
            for masks, tensors in received:
                total.add_(tensors[layer] * masks[layer])
                count.add_(masks[layer])
            w.copy_(total.div_(count.clamp_(min=1)).mul_(m))

    @torch.no_grad()
    def consensus_step(self) -> None:
        """The mask update (prune by magnitude, regrow by gradient), then the round counters."""
        alpha = anneal_rate(self.round, self.total_rounds, self.params.anneal)
        self.round += 1
        super().consensus_step()
        if self.round % self.params.update_every:
            return
        for w, m in zip(self.weights, self.keep):
            if w.grad is None:
                continue
            flat_w, flat_m, grad = w.view(-1), m.view(-1), w.grad.reshape(-1).abs()
            kept = flat_m.nonzero().squeeze(1)
            free = (flat_m == 0).nonzero().squeeze(1)
            k = min(int(alpha * len(kept)), len(free))
            if k == 0:
                continue
            prune = kept[torch.topk(flat_w[kept].abs(), k, largest=False).indices]
            grow = free[torch.topk(grad[free], k).indices]
            flat_m[prune], flat_w[prune] = 0.0, 0.0
            flat_m[grow], flat_w[grow] = 1.0, 0.0

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "round": np.array([self.round], dtype=np.int64)}

    def _load_state(self, state: Mapping[str, np.ndarray]) -> None:
        super()._load_state(state)
        self.round = int(state["round"][0])
