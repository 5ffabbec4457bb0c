"""The MCE-PL learning rule of one agent (docs/algorithm.md#round), independent of how masks travel.

One synchronous round t for agent i:

1. :meth:`MCEPL.local_step` — SGD on the scores with ``m = TopK(|z| + a·m̄⁽ᵗ⁾)``; keeps ``g``.
2. :meth:`MCEPL.encode_message` — ``TopK(|z| + mean|z|·m̄⁽ᵗ⁾)`` with the new scores.
3. (exchange — the agent's transport)
4. :meth:`MCEPL.aggregate` — ``m̄⁽ᵗ⁺¹⁾`` = mean of the neighbours' masks actually received.
5. :meth:`MCEPL.consensus_step` — ``z ← z − η₂ · g ⊙ m̄⁽ᵗ⁺¹⁾``.
6. :meth:`MCEPL.evaluate` — with ``TopK(|z| + a·m̄⁽ᵗ⁺¹⁾)``.

The per-layer state (z, m̄, r) is a :class:`~.score_mask.ScoreMask` each; the rule binds them to
the layers, so the network's forward pass computes with the rule's mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn.group_lasso import group_lasso_gradient
from ..nn.weights import seeded_bernoulli_prior, seeded_scores
from ..nn.width import block_slices
from ..nn.zoo import MaskedNetwork
from ..wire.delta import MaskRecord
from ..wire.envelope import Authenticator
from ..wire.history import MaskHistory
from ..wire.masks import MaskMessage, decode_masks, encode_masks
from .base import LearningRule, RuleContext, arrays
from .density import WrongDensity, check_density
from .holders import mean_over_holders, votes_over_holders
from .params import Retention, RuleParams, params_from
from .robust import above_chance, overlap_weight
from .schedule import StepSchedule
from .score_mask import ScoreMask


@dataclass(frozen=True)
class MCEPLParams(RuleParams):
    """MCE-PL's knobs; defaults are the reference code's (the ``reference`` preset)."""

    lr: float = 10.0  # η, SGD on the scores
    consensus_lr: float = 10.0  # η₂; 0 = no consensus step
    round0_prior: Literal["bernoulli", "zeros"] = "bernoulli"  # m̄⁽⁰⁾: a shared Bernoulli(r) mask, or none
    group_lasso: float = 0.0
    min_kept_per_filter: int | None = None
    aggregation_tensor: bool = True
    aggregation_amplitude: float = 1.0  # γ in |y| = |z| + γ·mean|z|·m̄: how hard the neighbours' votes pull
    mask_codec: str = "delta"  # what changed (wire/delta.py); "rice": ≈ H(r) bits/weight; "packbits": 1 bit/weight
    keyframe_every: int = 100  # delta codec: a stand-alone (Rice) message every this many rounds (docs/codec.md)
    robust_aggregation: str = "none"  # "overlap": m̄ leaves out masks anti-correlated with this agent's (robust.py)
    # "overlap": m̄ weighs each neighbour's mask by its overlap with this agent's beyond chance (robust.py)
    neighbour_weighting: str = "uniform"
    # The score optimizer (docs/algorithm.md#score-optimizer): heavy-ball momentum on the local step
    # (0: the reference's plain SGD) and the step sizes' schedule over the run.
    momentum: float = 0.0


class MCEPL(LearningRule[MaskMessage, list[Tensor]]):
    """Holds one agent's scores and neighbour means and applies the MCE-PL update to them."""

    learns_masks = True
    supports_width = True
    layer_mask: ClassVar[type[ScoreMask]] = ScoreMask
    params: MCEPLParams

    def __init__(self, model: MaskedNetwork, params: MCEPLParams, retention: Retention, *, seed: int,
                 agent_id: int | None = None, declared: Mapping[int, Retention] | None = None,
                 total_rounds: int = 0) -> None:
        """``seed`` draws the initial scores (shared, or this agent's own when ``agent_id`` is given) and m̄⁽⁰⁾.

        ``declared``: each neighbour's retention, as the lab declares it (the roster): a received mask
        must keep exactly what it implies (:mod:`.density`). None: not checked (a rule built alone).
        ``total_rounds``: the run's length, which a cosine schedule anneals over.

        With ``retention.width`` < 1 the model computes its ordered-width block only, and every
        per-layer tensor (scores, m̄, mask) is that block: the leading corner of what a full-width
        agent of the same seed draws, so agents of different widths start from the same values.
        """
        super().__init__(model, params, retention)
        self.narrow_model()
        self.layers: list[ScoreMask] = []
        for (name, layer), scores in zip(model.masked_layers(), seeded_scores(model, seed, agent_id)):
            r = retention.for_layer(layer)
            full = tuple(layer.weight.shape)
            prior = (seeded_bernoulli_prior(full, r, seed, name) if params.round0_prior == "bernoulli"
                     else torch.zeros(full))
            block = block_slices(layer.block_shape)
            # m̄⁽⁰⁾ held as one vote (0 or 1) per entry, as if every neighbour had sent the prior
            state = self.layer_mask(scores[block].to(layer.weight.device),
                                    prior[block].to(layer.weight.device, torch.uint8), r, holders=1.0,
                                    use_aggregation_tensor=params.aggregation_tensor,
                                    min_kept_per_filter=params.min_kept_per_filter,
                                    aggregation_amplitude=params.aggregation_amplitude)
            layer.use(state)
            self.layers.append(state)
        self.link_layers()
        self.history: MaskHistory = MaskHistory()  # the neighbours' last decoded masks: the bases of their deltas
        self.declared = declared
        self.kinds = [layer.kind for _, layer in model.masked_layers()]
        self.left_out = 0  # neighbours robust aggregation left out of the last m̄
        self.neighbour_weights: list[float] = []  # neighbour_weighting: overlap — each heard mask's weight in m̄
        self.schedule = StepSchedule(params.lr_schedule, total_rounds)
        # momentum buffers, one per layer (empty without momentum: the reference keeps no optimizer state)
        self.velocity: list[Tensor] = [torch.zeros_like(s.scores) for s in self.layers] if params.momentum else []

    def narrow_model(self) -> None:
        """Ordered width: the model computes the leading block of every layer (docs/algorithm.md#width)."""
        self.model.narrow(self.retention.width)

    def link_layers(self) -> None:
        """Hook for a variant whose layer masks depend on the layer before (learned filter selection)."""

    @classmethod
    def build(cls, ctx: RuleContext) -> MCEPL:
        return cls(ctx.model, cls.params_for(ctx), ctx.retention, seed=ctx.seed,
                   agent_id=ctx.agent_id if ctx.per_agent_scores else None, declared=ctx.declared,
                   total_rounds=ctx.total_rounds)

    @classmethod
    def params_for(cls, ctx: RuleContext) -> MCEPLParams:
        """The rule's knobs from the lab config (a variant may switch some off)."""
        return params_from(MCEPLParams, ctx.algorithm)

    def local_step(self, images: Tensor, labels: Tensor) -> float:
        """One SGD step on the scores (with momentum, if set); leaves the task-loss gradient g in ``scores.grad``."""
        before = self.begin_step()
        loss = F.cross_entropy(self.model.logits(images), labels)
        loss.backward()
        self.end_step(before)
        return loss.item()

    def begin_step(self) -> list[Tensor] | None:
        """A step's first part, before the loss's backward pass: clear the gradients; the group-lasso
        term's aggregation tensors y, taken where the loss is evaluated (None without the term).

        Split from :meth:`local_step` so that the batched engine (backends/batched.py) can run the
        forward and backward passes of many agents' steps as one."""
        for state in self.layers:
            state.scores.grad = None
        return [state.aggregation_tensor() for state in self.layers] if self.params.group_lasso > 0 else None

    def end_step(self, before: list[Tensor] | None) -> None:
        """A step's last part, with ``scores.grad`` filled: the update of every layer's scores."""
        p = self.params
        lr = p.lr * self.schedule.scale()
        with torch.no_grad():
            for i, state in enumerate(self.layers):
                z, g = state.scores, state.scores.grad
                assert g is not None, "every score receives a straight-through gradient"
                step = g + p.weight_decay * z if p.weight_decay else g.clone()
                if before is not None:
                    step += group_lasso_gradient(before[i], p.group_lasso)
                if self.velocity:
                    step = self.velocity[i].mul_(p.momentum).add_(step)
                z.sub_(lr * step)

    def masks(self) -> list[Tensor]:
        """m⁽ᵗ⁺¹⁾ = TopK(|z| + mean|z|·m̄⁽ᵗ⁾) per layer: new scores, old neighbour mean."""
        return [state.mask() for state in self.layers]

    def encode_message(self, *, fingerprint: bytes, sender: int, round: int, auth: Authenticator | None,
                       reference: MaskRecord | None = None) -> bytes:
        """The mask to send (wire format v2, signed with ``auth``): 1 bit per weight, fewer with the Rice
        codec, only what changed since ``reference`` with the delta codec — except on the keyframe
        schedule (docs/wire-format.md#delta)."""
        masks = [m.cpu().numpy().astype(bool) for m in self.masks()]
        base = None if reference is None or round % self.params.keyframe_every == 0 else reference
        return encode_masks(masks, fingerprint=fingerprint, sender=sender, round=round, auth=auth,
                            codec=self.params.mask_codec, base=base)

    def decode_message(self, payload: bytes, *, fingerprint: bytes, shapes: Sequence[tuple[int, ...]],
                       auth: Authenticator | None) -> MaskMessage:
        """A neighbour's masks: any ordered-width block of the lab's ``shapes`` (its width is its own).

        A delta is decoded against the sender's masks this rule decoded before. The masks must
        keep what the sender's declared retention keeps (:mod:`.density`); a message that passes
        is remembered as a base for the sender's next one.
        """
        msg = decode_masks(payload, expected_fingerprint=fingerprint, expected_shapes=shapes, auth=auth, nested=True,
                           bases=self.history.lookup)
        if self.declared is not None:
            if msg.sender not in self.declared:
                raise WrongDensity(f"agent {msg.sender} has no declared retention in this lab")
            check_density(msg.masks, self.kinds, self.declared[msg.sender], sender=msg.sender,
                          exact=self.exact_kept_count)
        self.history.remember(msg.sender, MaskRecord(msg.round, msg.masks, msg.digest))
        return msg

    @property
    def exact_kept_count(self) -> bool:
        """Whether every mask keeps exactly the declared count (not with the filter-drop rule, which drops more)."""
        return self.params.min_kept_per_filter is None

    def received_content(self, msg: MaskMessage) -> list[Tensor]:
        """A neighbour's binary masks, one float tensor per layer (what :meth:`aggregate` averages)."""
        return [torch.from_numpy(m).to(self.model.device) for m in msg.masks]

    def aggregate(self, received: Sequence[list[Tensor]]) -> None:
        """m̄ ← per entry, the mean of the received masks that hold it (uniform 1/|heard from| when all
        widths match); zeros where nobody was heard (docs/algorithm.md#width).

        With ``robust_aggregation: overlap``, only over the masks that overlap this agent's own more
        than chance (:mod:`.robust`); the others are counted in ``left_out``. With
        ``neighbour_weighting: overlap``, each mask weighs its overlap beyond chance (float m̄).
        """
        compares = self.params.robust_aggregation == "overlap" or self.params.neighbour_weighting == "overlap"
        own = self.masks() if compares else []  # this agent's masks, what both compare the neighbours' with
        if self.params.robust_aggregation == "overlap":
            kept = [masks for masks in received if above_chance(own, masks)]
            self.left_out, received = len(received) - len(kept), kept
        if self.params.neighbour_weighting == "overlap":
            self.neighbour_weights = [overlap_weight(own, masks) for masks in received]
            for i, state in enumerate(self.layers):
                state.neighbour_mean = mean_over_holders([masks[i] for masks in received], state.scores,
                                                         self.neighbour_weights)
            return
        for i, state in enumerate(self.layers):
            state.set_votes(*votes_over_holders([masks[i] for masks in received], state.scores))

    def mask_stats(self) -> dict[str, float | int | list[int] | list[float]]:
        stats = super().mask_stats()
        if self.params.robust_aggregation != "none":
            stats["left_out"] = self.left_out
        if self.params.neighbour_weighting != "uniform":
            stats["neighbour_weights"] = [round(w, 4) for w in self.neighbour_weights]
        return stats

    def consensus_step(self) -> None:
        """z ← z − η₂·g⊙m̄: entries the neighbours keep move further along this agent's gradient.

        The last step of a round: the schedule's round counter advances here.
        """
        scale = self.schedule.scale()
        self.schedule.advance()
        if self.params.consensus_lr == 0:
            return
        with torch.no_grad():
            for state in self.layers:
                if state.scores.grad is not None:
                    state.scores.addcmul_(state.scores.grad, state.neighbour_mean,
                                          value=-self.params.consensus_lr * scale)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Scores and m̄; the momentum buffers and the schedule's round counter only when they are in use
        (checkpoints of the reference preset are unchanged)."""
        state = {**arrays("scores", [s.scores for s in self.layers]),
                 **arrays("neighbour_mean", [s.neighbour_mean for s in self.layers]),
                 **arrays("velocity", self.velocity)}
        return {**state, **self.schedule.state()}

    def _load_state(self, state: Mapping[str, np.ndarray]) -> None:
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                layer.scores.copy_(torch.from_numpy(state[f"scores_{i}"]))
                layer.scores.grad = None
                layer.neighbour_mean = torch.from_numpy(state[f"neighbour_mean_{i}"].copy()).to(layer.scores.device)
            for i, velocity in enumerate(self.velocity):
                velocity.copy_(torch.from_numpy(state[f"velocity_{i}"]))
        self.schedule.load(state)
