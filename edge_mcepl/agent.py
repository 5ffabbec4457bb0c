"""One agent's round loop: train → encode → publish → gather (decoded once) → aggregate → consensus.

The same class runs inside the one-process simulator and on a device; only the
:class:`~edge_mcepl.comm.transport.Transport` differs. A round is split in two halves,
:meth:`Agent.begin_round` and :meth:`Agent.finish_round`, so a synchronous simulator can let every
agent publish before any agent gathers.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .algorithms.base import LearningRule, Message
from .comm.transport import Transport
from .data.arrays import ArrayDataset
from .data.augment import AUGMENTATIONS, augmentation_generator
from .data.sampling import EpochSampler
from .wire.delta import MaskRecord
from .wire.envelope import Authenticator
from .wire.history import HeldMasks
from .wire.masks import encode_masks, is_delta

RESEND_DEPTH = 4  # recent messages an agent can send again to a neighbour that lost them
INITIAL_ROUND = -1  # what the agent's initial mask (the flip count's first reference) is filed under


@dataclass
class RoundReport:
    """What one agent did in one round (one row of ``metrics.jsonl``)."""

    loss: float
    bytes_sent: int = 0
    bytes_received: int = 0
    neighbours_heard: int = 0
    rejected: int = 0
    stale: int = 0  # messages from an earlier round (the transport's bounded staleness; 0 in the simulator)
    train_seconds: float = 0.0  # this agent's local step(s) and encoding, not the whole lab's round
    mask_flips: list[int] | None = None  # per layer, bits of the mask sent that differ from the last one sent
    keyframe: bool = True  # the message sent stood alone (False: a delta, wire/delta.py)
    resent: int = 0  # earlier messages sent again, standing alone, because a neighbour lost them
    sent_digest: bytes = b""  # mask_digest of the masks sent
    missing_base: int = 0  # neighbours' deltas refused because this agent did not hold their base
    heard_digests: dict[int, tuple[int, bytes]] | None = None  # sender → (round, digest) of the masks used

    def fields(self) -> dict[str, Any]:
        """This report's part of a ``metrics.jsonl`` row — the simulator's and a device's alike.

        ``sent_digest`` and ``heard_digests`` (hex) let anyone check that every mask a receiver
        used is exactly what its sender sent in that round, whatever the codec and the losses.
        """
        row: dict[str, Any] = {
            "loss": self.loss, "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
            "neighbours_heard": self.neighbours_heard, "rejected": self.rejected, "missing_base": self.missing_base,
            "mask_flips": self.mask_flips, "keyframe": self.keyframe, "resent": self.resent}
        if self.sent_digest:
            row["sent_digest"] = self.sent_digest.hex()
            row["heard_digests"] = {str(s): [r, d.hex()] for s, (r, d) in sorted((self.heard_digests or {}).items())}
        return row


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
        auth: Authenticator | None = None,
        eval_batch_size: int = 128,
        validation: ArrayDataset | None = None,
    ) -> None:
        """``auth``: signs what this agent sends and verifies what it receives (wire/signing.py);
        None: unsigned messages (tests of a rule alone; a lab always signs). ``validation``: the
        images carved from this agent's training shard that it never trains on (None: no split)."""
        self.agent_id, self.rule, self.neighbours = agent_id, rule, neighbours
        self.train_data, self.test_data, self.validation_data = train, test, validation
        self.test_indices = torch.as_tensor(np.array(test_indices, dtype=np.int64), device=test.images.device)
        self.fingerprint, self.auth, self.eval_batch_size = fingerprint, auth, eval_batch_size
        self.sampler = EpochSampler(len(train), rule.params.batch_size, seed, agent_id)
        self.seed = seed
        self.augmentation = AUGMENTATIONS[rule.params.augment]
        self.layer_shapes = rule.model.layer_shapes()
        self._report: RoundReport | None = None
        # What the last message sent carried (before round 1: the initial mask, "round −1"), so every round
        # can say how many mask bits moved. None: unknown (an old checkpoint). Packed, 1 bit per weight.
        self.sent: HeldMasks | None = self._held(INITIAL_ROUND, self.current_masks())
        # The masks of the last few messages sent (packed): the newest is the next delta's base, and all of
        # them can be sent again, standing alone, to a neighbour that lost them (it asks the transport).
        self.recent: deque[HeldMasks] = deque(maxlen=RESEND_DEPTH)

    def _held(self, round: int, masks: list[np.ndarray]) -> HeldMasks:
        return HeldMasks.pack(self.agent_id, round, masks)

    @property
    def sent_masks(self) -> list[np.ndarray] | None:
        """The last sent mask per layer as bool arrays (what a checkpoint keeps); None: unknown."""
        return None if self.sent is None else self.sent.unpack()

    @property
    def sent_round(self) -> int | None:
        """The round of the last message sent (None: none yet — the initial mask is nobody's base)."""
        return self.recent[-1].round if self.recent else None

    def restore_sent(self, masks: list[np.ndarray] | None, round: int | None) -> None:
        """After a checkpoint: the last message sent (None: unknown, so the next message stands alone)."""
        self.sent = None if masks is None else self._held(INITIAL_ROUND if round is None else round, masks)
        self.recent.clear()
        if self.sent is not None and round is not None:
            self.recent.append(self.sent)

    def current_masks(self) -> list[np.ndarray]:
        """The rule's current mask per layer as bool arrays (what a mask message would carry)."""
        return [m.detach().cpu().numpy().astype(bool) for m in self.rule.masks()]

    def encode_message(self, round: int, reference: MaskRecord | None = None) -> bytes:
        """The rule's current message for the wire, signed.

        ``reference`` is the last message sent, for a codec that sends only what changed; without
        it the message stands alone.
        """
        return self.rule.encode_message(fingerprint=self.fingerprint, sender=self.agent_id, round=round,
                                        auth=self.auth, reference=reference)

    def file_message(self, round: int) -> bytes:
        """The rule's current message as a run directory keeps it for export: standing alone, unsigned
        (integrity tag): a file is read with no roster (wire/envelope.py)."""
        return self.rule.encode_message(fingerprint=self.fingerprint, sender=self.agent_id, round=round, auth=None)

    def standalone_copies(self, since: int) -> list[tuple[int, bytes]]:
        """(round, message) for each recent message of round ≥ ``since``, encoded to stand alone (Rice).

        What a neighbour that lost this agent's masks from round ``since`` on gets again: it can use
        those still inside its staleness window and decode this agent's next delta.
        """
        return [(r.round, encode_masks(r.unpack(), fingerprint=self.fingerprint, sender=self.agent_id, round=r.round,
                                       auth=self.auth, codec="rice")) for r in self.recent if r.round >= since]

    def begin_round(self, round: int, transport: Transport) -> None:
        """docs/algorithm.md#round steps 1–3: local step(s), mask to send, publish.

        The last message sent is the reference a delta codec may code against — unless a receiver
        lost this agent's masks (it asked the transport): then the recent messages it lacks go out
        again standing alone, and so does this round's.
        """
        began = time.perf_counter()
        loss = 0.0
        for step in range(self.rule.params.local_steps):
            loss = self.rule.local_step(*self.batch(round, step))
        self.publish_round(round, transport, loss, began)

    def batch(self, round: int, step: int) -> tuple[Tensor, Tensor]:
        """The images (augmented, when the rule says so) and labels of local step ``step`` of ``round``."""
        idx = self.sampler.next_batch().to(self.train_data.images.device)
        images = self.train_data.images[idx]
        if self.augmentation is not None:
            images = self.augmentation(images, augmentation_generator(self.seed, self.agent_id, round, step))
        return images, self.train_data.labels[idx]

    def publish_round(self, round: int, transport: Transport, loss: float, began: float) -> None:
        """docs/algorithm.md#round steps 2–3 after the local steps (their last ``loss``; ``began``: when the
        agent's training began, ``time.perf_counter()``): the mask to send, published, and the report."""
        since = transport.take_keyframe_request(self.agent_id)
        if not self.rule.learns_masks:  # its messages never refer to earlier ones: nothing to send again
            since = None
        resent = self.standalone_copies(since) if since is not None else []
        for old_round, copy in resent:
            transport.publish(self.agent_id, old_round, copy)
        message = self.encode_message(round, None if since is not None or not self.recent else self.recent[-1].record())
        trained = time.perf_counter() - began
        transport.publish(self.agent_id, round, message)
        held = self._held(round, self.current_masks())
        flips = None if self.sent is None else held.flips(self.sent)
        self.sent = held
        self.recent.append(held)
        # One copy of each message goes to each neighbour (docs/algorithm.md#communication).
        sent_bytes = (len(message) + sum(len(copy) for _, copy in resent)) * len(self.neighbours)
        self._report = RoundReport(loss=loss, bytes_sent=sent_bytes, train_seconds=trained, mask_flips=flips,
                                   keyframe=not is_delta(message), resent=len(resent),
                                   sent_digest=held.digest if self.rule.learns_masks else b"")

    def finish_round(self, round: int, transport: Transport, timeout: float | None = None) -> RoundReport:
        """docs/algorithm.md#round steps 3–5: gather neighbours' messages, aggregate what arrived, consensus step.

        ``timeout`` is the round deadline handed to the transport. The transport has already decoded
        and verified every message with :meth:`decode_message` (once), and decided which stand in
        stale for a missing one; this only counts.
        """
        assert self._report is not None, "finish_round() before begin_round()"
        report, self._report = self._report, None
        gathered = transport.gather(self.agent_id, round, timeout)
        deliveries = list(gathered.deliveries.values())
        report.bytes_received = sum(d.size for d in deliveries) + gathered.rejected_bytes
        report.rejected = gathered.rejected
        report.stale = sum(d.stale for d in deliveries)
        report.neighbours_heard = len(deliveries)
        report.missing_base = gathered.missing_base
        report.heard_digests = {s: (d.message.round, d.message.digest) for s, d in gathered.deliveries.items()
                                if d.message.digest is not None}
        self.rule.aggregate([self.rule.received_content(d.message) for d in deliveries])
        self.rule.consensus_step()
        return report

    def decode_message(self, payload: bytes) -> Message:
        """Decode and verify a message against this agent's lab (signature, run, fingerprint, shapes).

        The strict decoder this agent's transport decodes its neighbours' messages with, once
        (:meth:`~edge_mcepl.comm.transport.Transport.listen`); raises ``CodecError``.
        """
        return self.rule.decode_message(payload, fingerprint=self.fingerprint, shapes=self.layer_shapes,
                                        auth=self.auth)

    def evaluate(self) -> tuple[float, float]:
        """(accuracy, mean loss) of the personalized model on this agent's test images."""
        return self._score(self.test_data, self.test_indices)

    def evaluation(self) -> dict[str, float]:
        """An evaluation round's metrics fields: test ``accuracy``/``test_loss``, and with a validation
        split ``val_accuracy``/``val_loss`` — the numbers settings are chosen on."""
        accuracy, loss = self.evaluate()
        fields = {"accuracy": accuracy, "test_loss": loss}
        if self.validation_data is not None and len(self.validation_data):
            fields["val_accuracy"], fields["val_loss"] = self._score(self.validation_data)
        return fields

    def _score(self, data: ArrayDataset, indices: torch.Tensor | None = None) -> tuple[float, float]:
        """(accuracy, mean loss) over ``data`` (its ``indices`` only, when given), in evaluation batches."""
        index = torch.arange(len(data), device=data.images.device) if indices is None else indices
        correct, loss_sum = 0, 0.0
        for chunk in torch.split(index, self.eval_batch_size):
            c, s = self.rule.evaluate(data.images[chunk], data.labels[chunk])
            correct, loss_sum = correct + c, loss_sum + s
        n = max(len(index), 1)
        return correct / n, loss_sum / n
