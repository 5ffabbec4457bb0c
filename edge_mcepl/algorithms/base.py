"""The one interface every learning rule implements, so one :class:`~edge_mcepl.agent.Agent` runs them all.

MCE-PL and every baseline (DSGD, Dis-PFL, local-only, weight training, mask averaging) plug into
the same round loop, the same transports and the same byte accounting; they differ only in what
they compute and what they put on the wire. Like Flower's ``Client``, the rule owns its state and
its message format; the agent owns data, neighbours and transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn.zoo import MaskedNetwork

if TYPE_CHECKING:  # MCEPL's module uses evaluate_batch from here
    from .mcepl import MCEPLParams


class LearningRule(Protocol):
    """One agent's learning rule: local step → message → aggregate what arrived → consensus step."""

    model: MaskedNetwork
    params: "MCEPLParams"

    def local_step(self, images: Tensor, labels: Tensor) -> float:
        """One optimisation step on a mini-batch; returns the loss."""

    def encode_message(self, *, fingerprint: bytes, sender: int, round: int, key: bytes | None) -> bytes:
        """What this agent sends its neighbours this round, encoded for the wire."""

    def decode_message(self, payload: bytes, *, fingerprint: bytes, shapes: Sequence[tuple[int, ...]],
                       key: bytes | None) -> Any:
        """Strictly decode a neighbour's message (raises ``CodecError``); has ``.sender`` and ``.round``."""

    def received_content(self, msg: Any) -> Any:
        """The part of a decoded message :meth:`aggregate` consumes (one item per neighbour)."""

    def aggregate(self, received: Sequence[Any]) -> None:
        """Fold in the neighbours' contents actually received this round (possibly none)."""

    def consensus_step(self) -> None:
        """The update after aggregation (MCE-PL's personalized fine-tuning; a no-op for some rules)."""

    def evaluate(self, images: Tensor, labels: Tensor) -> tuple[int, float]:
        """(correct predictions, summed loss) of the personalized model on one batch."""

    def mask_stats(self) -> dict[str, float | int | list[int]]:
        """Density and live filters per layer of the model as it would be exported."""


@torch.no_grad()
def evaluate_batch(model: MaskedNetwork, images: Tensor, labels: Tensor) -> tuple[int, float]:
    """(correct predictions, summed cross-entropy) of ``model`` on one batch — shared by every rule."""
    logits = model.logits(images)
    return int((logits.argmax(dim=1) == labels).sum()), float(F.cross_entropy(logits, labels, reduction="sum"))
