"""The MCE-PL learning rule of one agent (spec §6), independent of how masks travel.

One synchronous round t for agent i:

1. :meth:`MCEPL.local_step` — SGD on the scores with ``m = TopK(|z| + a·m̄⁽ᵗ⁾)``; keeps ``g``.
2. :meth:`MCEPL.mask_to_send` — ``TopK(|z| + mean|z|·m̄⁽ᵗ⁾)`` with the new scores.
3. (exchange — the agent's transport)
4. :meth:`MCEPL.aggregate` — ``m̄⁽ᵗ⁺¹⁾`` = mean of the neighbours' masks actually received.
5. :meth:`MCEPL.consensus_step` — ``z ← z − η₂ · g ⊙ m̄⁽ᵗ⁺¹⁾``.
6. :meth:`MCEPL.evaluate` — with ``TopK(|z| + a·m̄⁽ᵗ⁺¹⁾)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..wire.masks import MaskMessage, decode_masks, encode_masks
from ..nn.group_lasso import group_lasso_gradient
from ..nn.layers import MaskedConv2d
from ..nn.masking import live_filters
from ..nn.weights import seeded_bernoulli_prior
from ..nn.zoo import MaskedNetwork
from .base import evaluate_batch


@dataclass(frozen=True)
class MCEPLParams:
    """Every knob of the rule; defaults are the reference code's (the ``reference`` preset)."""

    lr: float = 10.0
    weight_decay: float = 5e-4
    consensus_lr: float = 10.0
    batch_size: int = 128
    local_steps: int = 1
    round0_prior: str = "bernoulli"  # or "zeros"
    elu_logits: bool = True
    group_lasso: float = 0.0
    min_kept_per_filter: int | None = None
    aggregation_tensor: bool = True
    mask_codec: str = "packbits"  # or "rice": ≈ H(r) bits per weight instead of 1 (comm/rice.py)


@dataclass(frozen=True)
class Retention:
    """Retention ratios (fraction kept) of one agent: one for conv layers, one for linear layers."""

    conv: float = 0.3
    linear: float = 0.9

    def for_layer(self, layer: object) -> float:
        return self.conv if isinstance(layer, MaskedConv2d) else self.linear


class MCEPL:
    """Holds one agent's model (scores, m̄) and applies the MCE-PL update to it."""

    def __init__(self, model: MaskedNetwork, params: MCEPLParams, retention: Retention, prior_seed: int) -> None:
        self.model, self.params, self.retention = model, params, retention
        model.elu_logits = params.elu_logits
        for name, layer in model.masked_layers():
            layer.retention_ratio = retention.for_layer(layer)
            layer.use_aggregation_tensor = params.aggregation_tensor
            layer.min_kept_per_filter = params.min_kept_per_filter
            if params.round0_prior == "bernoulli":
                prior = seeded_bernoulli_prior(tuple(layer.weight.shape), layer.retention_ratio, prior_seed, name)
                layer.neighbour_mean = prior.to(layer.weight.device)
            else:
                layer.neighbour_mean = torch.zeros_like(layer.weight)

    def _layers(self):
        return [layer for _, layer in self.model.masked_layers()]

    def local_step(self, images: Tensor, labels: Tensor) -> float:
        """One SGD step on the scores; leaves the task-loss gradient g in ``scores.grad``."""
        p = self.params
        for layer in self._layers():
            layer.scores.grad = None
        # y is taken before the update: the group-lasso term is evaluated where the loss was.
        y = [layer.aggregation_tensor() for layer in self._layers()] if p.group_lasso > 0 else None
        loss = F.cross_entropy(self.model.logits(images), labels)
        loss.backward()
        with torch.no_grad():
            for i, layer in enumerate(self._layers()):
                z, g = layer.scores, layer.scores.grad
                step = g + p.weight_decay * z if p.weight_decay else g.clone()
                if y is not None:
                    step += group_lasso_gradient(y[i], p.group_lasso)
                z.sub_(p.lr * step)
        return loss.item()

    def mask_to_send(self) -> list[Tensor]:
        """m⁽ᵗ⁺¹⁾ = TopK(|z| + mean|z|·m̄⁽ᵗ⁾): new scores, old neighbour mean."""
        return self.model.masks()

    def encode_message(self, *, fingerprint: bytes, sender: int, round: int, key: bytes | None) -> bytes:
        """The mask to send (wire format v1): 1 bit per weight, or fewer with the Rice codec."""
        masks = [m.cpu().numpy().astype(bool) for m in self.mask_to_send()]
        return encode_masks(masks, fingerprint=fingerprint, sender=sender, round=round, key=key,
                            codec=self.params.mask_codec)

    def decode_message(self, payload: bytes, *, fingerprint: bytes, shapes: Sequence[tuple[int, ...]],
                       key: bytes | None) -> MaskMessage:
        return decode_masks(payload, expected_fingerprint=fingerprint, expected_shapes=shapes, key=key)

    def received_content(self, msg: MaskMessage) -> list[Tensor]:
        """A neighbour's binary masks, one float tensor per layer (what :meth:`aggregate` averages)."""
        return [torch.from_numpy(m).to(self.model.device) for m in msg.masks]

    def aggregate(self, neighbour_masks: Sequence[Sequence[Tensor]]) -> None:
        """m̄ ← mean of the masks received (uniform 1/|heard from|); zeros when nobody was heard."""
        for i, layer in enumerate(self._layers()):
            total = torch.zeros_like(layer.weight)
            for masks in neighbour_masks:
                total.add_(masks[i])
            layer.neighbour_mean = total.div_(len(neighbour_masks)) if neighbour_masks else total

    def consensus_step(self) -> None:
        """z ← z − η₂·g⊙m̄: entries the neighbours keep move further along this agent's gradient."""
        if self.params.consensus_lr == 0:
            return
        with torch.no_grad():
            for layer in self._layers():
                if layer.scores.grad is not None:
                    layer.scores.addcmul_(layer.scores.grad, layer.neighbour_mean, value=-self.params.consensus_lr)

    def evaluate(self, images: Tensor, labels: Tensor) -> tuple[int, float]:
        """(correct predictions, summed loss) on one batch with the current personalized mask."""
        return evaluate_batch(self.model, images, labels)

    def mask_stats(self) -> dict[str, float | int | list[int]]:
        """Density (kept / masked weights) and live filters per layer of the current mask."""
        masks = self.model.masks()
        kept = sum(int(m.sum()) for m in masks)
        total = sum(m.numel() for m in masks)
        return {"density": kept / total, "live_filters": [live_filters(m) for m in masks]}
