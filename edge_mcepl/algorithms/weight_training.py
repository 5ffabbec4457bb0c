"""Weight-training baseline on the same fixed init (spec §10, the DSLTH check).

Each agent trains the *weights* of the same network from the same seeded init that MCE-PL keeps
fixed — dense, or magnitude-pruned once at init to exactly MCE-PL's per-layer density — with plain
SGD and no neighbours. Comparing it with mask-only learning (MCE-PL / local-only) on the same init
is the distributed strong-lottery-ticket check. Biases stay fixed, as in MCE-PL, so every method
learns over the same set of tensors.

This module also holds :class:`WeightRule`, the shared machinery of the weight-based baselines
(:mod:`.dsgd`, :mod:`.dispfl`): the :class:`~.base.LearningRule` interface with fp32 weights on
the wire.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..wire.dense import WeightMessage, decode_weights, encode_weights
from ..nn.masking import live_filters, topk_mask
from ..nn.zoo import MaskedNetwork
from .base import evaluate_batch
from .mcepl import MCEPLParams, Retention


class WeightRule:
    """Trainable per-agent copies of the fixed weights, times a fixed 0/1 mask (all ones = dense)."""

    def __init__(self, model: MaskedNetwork, params: MCEPLParams, retention: Retention, weight_lr: float,
                 prune: bool = False) -> None:
        self.model, self.params, self.weight_lr = model, params, weight_lr
        self.retention = retention if prune else Retention(1.0, 1.0)
        model.elu_logits = params.elu_logits
        self.weights: list[Tensor] = []
        self.keep: list[Tensor] = []
        for _, layer in model.masked_layers():
            w = layer.weight.detach().clone().requires_grad_(True)  # own copy: the shared buffer stays fixed
            m = topk_mask(layer.weight.abs(), self.retention.for_layer(layer)) if prune else torch.ones_like(w)
            with torch.no_grad():
                w.mul_(m)
            # The layer's forward asks for masked_weight(); answer with the trained, masked weights.
            layer.masked_weight = lambda w=w, m=m: w * m
            self.weights.append(w)
            self.keep.append(m)

    def local_step(self, images: Tensor, labels: Tensor) -> float:
        """One SGD step on the weights: w ← w − lr·(g + λ_wd·w), pruned entries stay zero."""
        for w in self.weights:
            w.grad = None
        loss = F.cross_entropy(self.model.logits(images), labels)
        loss.backward()
        with torch.no_grad():
            for w, m in zip(self.weights, self.keep):
                step = w.grad + self.params.weight_decay * w if self.params.weight_decay else w.grad
                w.sub_(self.weight_lr * step * m)
        return loss.item()

    def current_weights(self) -> list[np.ndarray]:
        return [w.detach().cpu().numpy().copy() for w in self.weights]

    def encode_message(self, *, fingerprint: bytes, sender: int, round: int, key: bytes | None) -> bytes:
        return encode_weights(self.current_weights(), fingerprint=fingerprint, sender=sender, round=round, key=key)

    def decode_message(self, payload: bytes, *, fingerprint: bytes, shapes, key: bytes | None) -> WeightMessage:
        return decode_weights(payload, expected_fingerprint=fingerprint, expected_shapes=shapes, key=key)

    def received_content(self, msg: WeightMessage) -> tuple[int, list[Tensor]]:
        """What :meth:`aggregate` gets per neighbour: (sender, tensors) — mixing weights need the sender."""
        return msg.sender, [torch.from_numpy(t).to(self.model.device) for t in msg.tensors]

    def aggregate(self, received: Sequence) -> None:
        """No neighbours: nothing to mix."""

    def consensus_step(self) -> None:
        """No consensus step in weight training."""

    def evaluate(self, images: Tensor, labels: Tensor) -> tuple[int, float]:
        return evaluate_batch(self.model, images, labels)

    def mask_stats(self) -> dict[str, float | int | list[int]]:
        kept = sum(int(m.sum()) for m in self.keep)
        total = sum(m.numel() for m in self.keep)
        return {"density": kept / total, "live_filters": [live_filters(m) for m in self.keep]}


class WeightTraining(WeightRule):
    """Local weight training, dense (``prune=False``) or magnitude-pruned at MCE-PL's density."""
