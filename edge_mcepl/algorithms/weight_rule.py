"""What the weight-based baselines share: trainable copies of the fixed weights under a fixed 0/1 mask.

DSGD, Dis-PFL and weight training (the DSLTH check) all train *weights* from the same seeded init
that MCE-PL keeps fixed. Each agent gets its own copy (the shared buffer stays fixed for every
other agent in the process) and a 0/1 mask — all ones for dense training — bound to each layer as
its :class:`~edge_mcepl.nn.layers.WeightSource`. Biases stay fixed, as in MCE-PL, so every method
learns over the same set of tensors. :class:`DenseWeightRule` adds fp32 weights on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn.masking import topk_mask
from ..nn.zoo import MaskedNetwork
from ..wire.delta import MaskRecord
from ..wire.dense import WeightMessage, decode_weights, encode_weights
from ..wire.envelope import Authenticator
from .base import C, LearningRule, M, arrays
from .params import Retention, RuleParams
from .schedule import StepSchedule


@dataclass(frozen=True)
class WeightParams(RuleParams):
    weight_lr: float = 0.05  # SGD step size on the weights


class TrainedWeight:
    """A layer's trained weight ``w``, times its mask when ``keep`` is given (else ``w`` as it is)."""

    def __init__(self, weight: Tensor, keep: Tensor | None) -> None:
        self.weight, self.keep = weight, keep

    def effective_weight(self, fixed: Tensor) -> Tensor:
        return self.weight if self.keep is None else self.weight * self.keep


class WeightRule(LearningRule[M, C]):
    """Trainable per-agent weights ``w`` and masks ``keep`` (kept weights at ``retention``; ones when dense)."""

    params: WeightParams

    def __init__(self, model: MaskedNetwork, params: WeightParams, retention: Retention,
                 initial_masks: Sequence[Tensor] | None = None, mask_in_forward: bool = True,
                 total_rounds: int = 0) -> None:
        """``initial_masks`` None: magnitude top-k at ``retention`` (all ones at retention 1).

        ``mask_in_forward`` False: the forward uses ``w`` itself (the rule keeps it zero off-mask),
        so ``w.grad`` is the dense gradient — what Dis-PFL's regrowth ranks. ``total_rounds``: the
        run's length, which a cosine ``lr_schedule`` anneals ``weight_lr`` over.
        """
        super().__init__(model, params, retention)
        self.schedule = StepSchedule(params.lr_schedule, total_rounds)
        self.weights: list[Tensor] = []
        self.keep: list[Tensor] = []
        for i, (_, layer) in enumerate(model.masked_layers()):
            w = layer.block.detach().clone().requires_grad_(True)  # own copy: the shared buffer stays fixed
            m = initial_masks[i] if initial_masks is not None else topk_mask(layer.block.abs(),
                                                                             retention.for_layer(layer))
            with torch.no_grad():
                w.mul_(m)
            layer.use(TrainedWeight(w, m if mask_in_forward else None))
            self.weights.append(w)
            self.keep.append(m)

    def local_step(self, images: Tensor, labels: Tensor) -> float:
        """One SGD step on the weights: w ← w − lr·(g + λ_wd·w), pruned entries stay zero (lr: this round's)."""
        lr = self.params.weight_lr * self.schedule.scale()
        for w in self.weights:
            w.grad = None
        loss = F.cross_entropy(self.model.logits(images), labels)
        loss.backward()
        with torch.no_grad():
            for w, m in zip(self.weights, self.keep):
                assert w.grad is not None
                step = w.grad + self.params.weight_decay * w if self.params.weight_decay else w.grad
                w.sub_(lr * step * m)
        return loss.item()

    def current_weights(self) -> list[np.ndarray]:
        return [w.detach().cpu().numpy().copy() for w in self.weights]

    def masks(self) -> list[Tensor]:
        return self.keep

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**arrays("weights", self.weights), **arrays("keep", self.keep), **self.schedule.state()}

    def _load_state(self, state: Mapping[str, np.ndarray]) -> None:
        with torch.no_grad():
            for i, (w, m) in enumerate(zip(self.weights, self.keep)):
                w.copy_(torch.from_numpy(state[f"weights_{i}"]))
                w.grad = None
                m.copy_(torch.from_numpy(state[f"keep_{i}"]))
        self.schedule.load(state)

    def consensus_step(self) -> None:
        """No consensus step for weight rules (Dis-PFL adds its mask update): the round ends, the schedule moves."""
        self.schedule.advance()


class DenseWeightRule(WeightRule[WeightMessage, tuple[int, list[Tensor]]]):
    """A weight rule that sends its weights as fp32 (:mod:`edge_mcepl.wire.dense`)."""

    def encode_message(self, *, fingerprint: bytes, sender: int, round: int, auth: Authenticator | None,
                       reference: MaskRecord | None = None) -> bytes:
        return encode_weights(self.current_weights(), fingerprint=fingerprint, sender=sender, round=round, auth=auth)

    def decode_message(self, payload: bytes, *, fingerprint: bytes, shapes: Sequence[tuple[int, ...]],
                       auth: Authenticator | None) -> WeightMessage:
        return decode_weights(payload, expected_fingerprint=fingerprint, expected_shapes=shapes, auth=auth)

    def received_content(self, msg: WeightMessage) -> tuple[int, list[Tensor]]:
        """What :meth:`aggregate` gets per neighbour: (sender, tensors) — mixing weights need the sender."""
        return msg.sender, [torch.from_numpy(t).to(self.model.device) for t in msg.tensors]
