"""The one interface every learning rule implements, so one :class:`~edge_mcepl.agent.Agent` runs them all.

MCE-PL and every baseline (DSGD, Dis-PFL, local-only, weight training, mask averaging) plug into
the same round loop, the same transports and the same byte accounting; they differ only in what
they compute and what they put on the wire. Like Flower's ``Client``, the rule owns its state (a
rule's tensors live in the rule, never as attributes poked into the network's layers: a layer
only asks the rule's :class:`~edge_mcepl.nn.layers.WeightSource` what to multiply with) and its
message format; the agent owns data, neighbours and transport.

A rule is built from a :class:`RuleContext` by its ``build`` classmethod; the name → class table
is :mod:`.registry`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import AlgorithmConfig
from ..errors import UserError
from ..nn.masking import live_filters
from ..nn.zoo import MaskedNetwork
from ..wire.delta import MaskRecord
from ..wire.envelope import Authenticator
from ..wire.history import MaskHistory
from .params import Retention, RuleParams

if TYPE_CHECKING:
    from typing_extensions import Self


class Message(Protocol):
    """What every decoded wire message tells its receiver before the rule looks inside."""

    @property
    def sender(self) -> int: ...

    @property
    def round(self) -> int: ...

    @property
    def digest(self) -> bytes | None:
        """A digest of the content a receiver can compare with the sender's own record (masks); None if none."""


M = TypeVar("M", bound=Message)  # the rule's decoded message
C = TypeVar("C")  # what aggregate() takes per neighbour heard


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may need to build one agent's state; each rule reads only its part."""

    model: MaskedNetwork  # the agent's network, fixed weights loaded, on the agent's device
    algorithm: AlgorithmConfig  # the lab config's algorithm section (each rule picks its params)
    retention: Retention  # this agent's retention ratios
    agent_id: int
    seed: int  # the lab seed: initial scores, round-0 prior, per-agent initial masks
    per_agent_scores: bool = False  # True: this agent draws its own initial scores
    degrees: Mapping[int, int] | None = None  # lab-graph degree of the agent and its neighbours
    total_rounds: int = 0  # schedules that anneal over the run (Dis-PFL)
    declared: Mapping[int, Retention] | None = None  # the neighbours' declared retention (the lab's roster)


class LearningRule(ABC, Generic[M, C]):
    """One agent's learning rule: local step → message → aggregate what arrived → consensus step."""

    learns_masks: ClassVar[bool] = False  # its message is a mask message export can read
    exchanges_messages: ClassVar[bool] = True  # False: the agent is built with no neighbours
    supports_width: ClassVar[bool] = False  # True: it trains and exchanges blocks of retention.width < 1
    # The neighbours' masks this rule decoded last, the bases of their delta messages (wire/history.py);
    # None for a rule whose messages never refer to earlier ones. Checkpointed with the agent.
    history: MaskHistory | None = None

    def __init__(self, model: MaskedNetwork, params: RuleParams, retention: Retention) -> None:
        if retention.width != 1 and not self.supports_width:
            raise UserError(f"retention.width {retention.width:g}: the {type(self).__name__} rule trains whole "
                            "layers only; use width 1 (the rules with ordered width: docs/algorithm.md#width)")
        self.model, self.params, self.retention = model, params, retention
        model.elu_logits = params.elu_logits

    @classmethod
    @abstractmethod
    def build(cls, ctx: RuleContext) -> Self:
        """The rule of agent ``ctx.agent_id``, exactly as every process building it from the same context gets it."""

    @abstractmethod
    def local_step(self, images: Tensor, labels: Tensor) -> float:
        """One optimisation step on a mini-batch; returns the loss."""

    @abstractmethod
    def encode_message(self, *, fingerprint: bytes, sender: int, round: int, auth: Authenticator | None,
                       reference: MaskRecord | None = None) -> bytes:
        """What this agent sends its neighbours this round, encoded for the wire.

        ``reference``: this agent's last message, which its receivers hold — a codec may code only
        what changed since (MCE-PL's delta codec); None when the message must stand alone.
        """

    @abstractmethod
    def decode_message(self, payload: bytes, *, fingerprint: bytes, shapes: Sequence[tuple[int, ...]],
                       auth: Authenticator | None) -> M:
        """Strictly decode a neighbour's message (raises ``CodecError``)."""

    @abstractmethod
    def received_content(self, msg: M) -> C:
        """The part of a decoded message :meth:`aggregate` consumes (one item per neighbour)."""

    @abstractmethod
    def aggregate(self, received: Sequence[C]) -> None:
        """Fold in the neighbours' contents actually received this round (possibly none)."""

    @abstractmethod
    def consensus_step(self) -> None:
        """The update after aggregation (MCE-PL's personalized fine-tuning; a no-op for some rules)."""

    @abstractmethod
    def masks(self) -> list[Tensor]:
        """The current 0/1 mask of every masked layer, wire order (all ones for a dense rule)."""

    @abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every array a resumed agent needs to continue exactly where it stopped (CPU copies)."""

    @abstractmethod
    def _load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy an already checked :meth:`state_dict` back into the rule."""

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`; names, shapes and dtypes must match this rule's (else ValueError)."""
        own = self.state_dict()
        if set(state) != set(own):
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise ValueError(f"rule state does not match this rule: missing {missing[:3]}, unexpected {extra[:3]}")
        for name, array in own.items():
            got = state[name]
            if got.shape != array.shape or got.dtype != array.dtype:
                raise ValueError(f"{name} is {got.dtype} {got.shape}, expected {array.dtype} {array.shape}")
        self._load_state(state)

    def evaluate(self, images: Tensor, labels: Tensor) -> tuple[int, float]:
        """(correct predictions, summed loss) of the personalized model on one batch."""
        return evaluate_batch(self.model, images, labels)

    def mask_stats(self) -> dict[str, float | int | list[int] | list[float]]:
        """Density (kept / the lab model's masked weights, whatever block this agent holds) and live
        filters per layer of the model as it would be exported."""
        masks = self.masks()
        kept = sum(int(m.sum()) for m in masks)
        total = sum(math.prod(shape) for shape in self.model.layer_shapes())
        return {"density": kept / total, "live_filters": [live_filters(m) for m in masks]}


@torch.no_grad()
def evaluate_batch(model: MaskedNetwork, images: Tensor, labels: Tensor) -> tuple[int, float]:
    """(correct predictions, summed cross-entropy) of ``model`` on one batch — shared by every rule."""
    logits = model.logits(images)
    return int((logits.argmax(dim=1) == labels).sum()), float(F.cross_entropy(logits, labels, reduction="sum"))


def arrays(prefix: str, tensors: Sequence[Tensor]) -> dict[str, np.ndarray]:
    """``{prefix_i: CPU copy}`` for a rule's per-layer tensors (the :meth:`LearningRule.state_dict` naming)."""
    return {f"{prefix}_{i}": t.detach().cpu().numpy().copy() for i, t in enumerate(tensors)}
