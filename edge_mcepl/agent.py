"""One agent's round loop: train → encode → publish → gather → decode → aggregate → consensus.

The same class runs inside the one-process simulator and on a device; only the
:class:`~edge_mcepl.comm.transport.Transport` differs. A round is split in two halves,
:meth:`Agent.begin_round` and :meth:`Agent.finish_round`, so a synchronous simulator can let every
agent publish before any agent gathers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .algorithms.base import LearningRule
from .wire.masks import CodecError
from .comm.transport import Transport
from .data.arrays import ArrayDataset
from .data.sampling import EpochSampler

log = logging.getLogger(__name__)


@dataclass
class RoundReport:
    """What one agent did in one round (one row of ``metrics.jsonl``)."""

    loss: float
    bytes_sent: int = 0
    bytes_received: int = 0
    neighbours_heard: int = 0
    rejected: int = 0
    stale: int = 0  # masks from an earlier round (a device lab's bounded staleness; 0 in the simulator)


class Agent:
    """One participant: its learning rule (MCE-PL or a baseline), its local data and its neighbours."""

    def __init__(
        self,
        agent_id: int,
        rule: LearningRule,
        neighbours: tuple[int, ...],
        train: ArrayDataset,
        test: ArrayDataset,
        test_indices: np.ndarray,
        fingerprint: bytes,
        seed: int,
        key: bytes | None = None,
        eval_batch_size: int = 128,
    ) -> None:
        self.agent_id, self.rule, self.neighbours = agent_id, rule, neighbours
        self.train_data, self.test_data = train, test
        self.test_indices = torch.as_tensor(np.array(test_indices, dtype=np.int64), device=test.images.device)
        self.fingerprint, self.key, self.eval_batch_size = fingerprint, key, eval_batch_size
        self.sampler = EpochSampler(len(train), rule.params.batch_size, seed, agent_id)
        self.layer_shapes = rule.model.layer_shapes()
        self._report: RoundReport | None = None

    def encode_message(self, round: int) -> bytes:
        """The rule's current message for the wire (what is sent, and what a run saves for export)."""
        return self.rule.encode_message(fingerprint=self.fingerprint, sender=self.agent_id, round=round, key=self.key)

    def begin_round(self, round: int, transport: Transport) -> None:
        """Spec §6 steps 1–3: local step(s), mask to send, publish."""
        loss = 0.0
        for _ in range(self.rule.params.local_steps):
            idx = self.sampler.next_batch().to(self.train_data.images.device)
            loss = self.rule.local_step(self.train_data.images[idx], self.train_data.labels[idx])
        message = self.encode_message(round)
        transport.publish(self.agent_id, round, message)
        # One copy of the message goes to each neighbour (spec §9).
        self._report = RoundReport(loss=loss, bytes_sent=len(message) * len(self.neighbours))

    def finish_round(self, round: int, transport: Transport, timeout: float | None = None,
                     max_staleness: int = 0) -> RoundReport:
        """Spec §6 steps 3–5: gather neighbours' masks, aggregate what arrived, consensus step.

        ``timeout`` is the round deadline handed to the transport; ``max_staleness`` > 0 accepts a
        neighbour's mask from up to that many rounds back when its current one did not arrive (a
        device lab's bounded staleness; the synchronous simulator uses 0).
        """
        assert self._report is not None, "finish_round() before begin_round()"
        report, self._report = self._report, None
        received = []
        for sender, payload in transport.gather(self.agent_id, round, self.neighbours, timeout).items():
            report.bytes_received += len(payload)
            decoded = self._decode(sender, round, payload, max_staleness)
            if decoded is None:
                report.rejected += 1
            else:
                content, sent_round = decoded
                received.append(content)
                report.stale += sent_round != round
        report.neighbours_heard = len(received)
        self.rule.aggregate(received)
        self.rule.consensus_step()
        return report

    def _decode_strict(self, payload: bytes):
        """Decode and verify a message against this agent's lab (fingerprint, shapes, key)."""
        return self.rule.decode_message(payload, fingerprint=self.fingerprint, shapes=self.layer_shapes, key=self.key)

    def check_message(self, payload: bytes) -> tuple[int, int]:
        """Fully decode and verify a message for this agent's lab; (sender, round) or CodecError."""
        msg = self._decode_strict(payload)
        return msg.sender, msg.round

    def _decode(self, sender: int, round: int, payload: bytes,
                max_staleness: int = 0) -> tuple[list[torch.Tensor], int] | None:
        """Decode a neighbour's message; a bad one is logged and ignored — it must not stop training."""
        try:
            msg = self._decode_strict(payload)
        except CodecError as exc:
            log.warning("agent %d: rejected message from %d (round %d): %s", self.agent_id, sender, round, exc)
            return None
        if msg.sender != sender or not round - max_staleness <= msg.round <= round:
            log.warning("agent %d: rejected message on %d's channel claiming sender %d round %d (expected round %d)",
                        self.agent_id, sender, msg.sender, msg.round, round)
            return None
        return self.rule.received_content(msg), msg.round

    def evaluate(self) -> tuple[float, float]:
        """(accuracy, mean loss) of the personalized model on this agent's test images."""
        correct, loss_sum = 0, 0.0
        for chunk in torch.split(self.test_indices, self.eval_batch_size):
            c, s = self.rule.evaluate(self.test_data.images[chunk], self.test_data.labels[chunk])
            correct, loss_sum = correct + c, loss_sum + s
        n = max(len(self.test_indices), 1)
        return correct / n, loss_sum / n
