"""How messages travel between agents, and the contract every transport keeps.

The agent only publishes its own message for a round and gathers its neighbours'; whether that
is a dictionary in one process (the simulator) or an MQTT broker (a device lab) is the
transport's business, so the same :class:`~edge_mcepl.agent.Agent` code runs in both.

The contract:

- :meth:`Transport.publish` takes the sender's encoded bytes, opaque: any codec of
  :mod:`edge_mcepl.wire` travels the same way.
- :meth:`Transport.listen` tells the transport, once, whom a receiver hears and how it decodes:
  ``decode`` is the receiver's strict decoder (the rule's, with the receiver's fingerprint, shapes
  and key). The transport decodes each message **once** with it — on arrival (MQTT, so a bad
  message is refused before it can take a good one's place) or in :meth:`~Transport.gather`
  (in memory) — and hands the receiver decoded, verified messages; the agent never decodes again.
- :meth:`Transport.gather` decides what a round gets: the round's messages, and, where a
  transport has a staleness window, an earlier round's message for a sender still missing,
  marked ``stale``. The window lives in the transport only; the agent just counts.
- **Keyframe requests.** A receiver that cannot decode a delta because it lacks the base
  (:class:`~edge_mcepl.wire.delta.BaseMissing`) counts a rejection and asks the sender, through the
  transport, for its masks from that round on; the sender's next :meth:`Transport.take_keyframe_request`
  says from which round, and it sends its recent messages from then on again, standing alone, and
  a keyframe as its next message (docs/wire-format.md#delta).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..wire.delta import BaseMissing
from ..wire.envelope import CodecError

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], Any]
"""A receiver's strict decoder: bytes → a message with ``.sender`` and ``.round``, or :class:`CodecError`."""


@dataclass(frozen=True)
class Delivery:
    """One neighbour's message as a receiver gets it: decoded and verified once, with its size on the wire."""

    message: Any
    size: int
    stale: bool = False  # an earlier round's message standing in for this round's, which did not arrive


@dataclass(frozen=True)
class Gathered:
    """What :meth:`Transport.gather` hands a receiver for one round."""

    deliveries: dict[int, Delivery] = field(default_factory=dict)  # sender → message, in listening order
    rejected: int = 0  # this round's messages refused at gather time (a transport that checks on arrival counts there)
    rejected_bytes: int = 0  # their bytes: they were received all the same
    missing_base: int = 0  # of those, deltas whose base the receiver did not hold (a keyframe was asked for)


def check_channel(message: Any, sender: int, round: int) -> None:
    """A decoded message must be what its channel says it is: ``sender``'s message for ``round``."""
    if (message.sender, message.round) != (sender, round):
        raise CodecError(f"message on agent {sender}'s channel for round {round} decodes as sender "
                         f"{message.sender}, round {message.round}")


class Transport(ABC):
    """Moves opaque payloads (already encoded by a codec) between agents; receivers get them decoded."""

    @abstractmethod
    def listen(self, receiver: int, senders: Collection[int], decode: Decoder) -> None:
        """From now on ``receiver`` hears ``senders`` (in this order), decoding with ``decode``."""

    @abstractmethod
    def publish(self, sender: int, round: int, payload: bytes) -> None:
        """Make ``payload`` — ``sender``'s message for ``round`` — available to its neighbours."""

    @abstractmethod
    def gather(self, receiver: int, round: int, timeout: float | None = None) -> Gathered:
        """The messages ``receiver`` gets for ``round`` (waiting up to ``timeout`` seconds, if given)."""

    @abstractmethod
    def take_keyframe_request(self, sender: int) -> int | None:
        """The earliest round of ``sender``'s masks a receiver asked for since the last call (None: no request)."""


class InMemoryTransport(Transport):
    """All agents in one process, synchronous rounds: everyone publishes before anyone gathers.

    No staleness window: a round gets that round's messages or none. Messages are decoded in
    :meth:`gather`, by the receiver's decoder.
    """

    def __init__(self) -> None:
        self._mailbox: dict[tuple[int, int], bytes] = {}
        self._listeners: dict[int, tuple[tuple[int, ...], Decoder]] = {}
        self._keyframe_requests: dict[int, int] = {}  # sender → the earliest round a receiver lacks

    def listen(self, receiver: int, senders: Collection[int], decode: Decoder) -> None:
        self._listeners[receiver] = (tuple(senders), decode)

    def publish(self, sender: int, round: int, payload: bytes) -> None:
        # Keep only the current and previous round: memory stays bounded over long runs.
        for key in [k for k in self._mailbox if k[0] < round - 1]:
            del self._mailbox[key]
        self._mailbox[(round, sender)] = bytes(payload)

    def gather(self, receiver: int, round: int, timeout: float | None = None) -> Gathered:
        if receiver not in self._listeners:
            raise ValueError(f"agent {receiver} gathers without having listened (Transport.listen) on this transport")
        senders, decode = self._listeners[receiver]
        deliveries: dict[int, Delivery] = {}
        rejected = rejected_bytes = missing_base = 0
        for sender in senders:
            payload = self._mailbox.get((round, sender))
            if payload is None:
                continue
            try:
                message = decode(payload)
                check_channel(message, sender, round)
            except CodecError as exc:  # a bad message is logged and ignored: it must not stop training
                log.warning("agent %d: rejected message from %d (round %d): %s", receiver, sender, round, exc)
                rejected, rejected_bytes = rejected + 1, rejected_bytes + len(payload)
                if isinstance(exc, BaseMissing):
                    missing_base += 1
                    self._keyframe_requests[sender] = min(round, self._keyframe_requests.get(sender, round))
                continue
            deliveries[sender] = Delivery(message, len(payload))
        return Gathered(deliveries, rejected, rejected_bytes, missing_base)

    def take_keyframe_request(self, sender: int) -> int | None:
        return self._keyframe_requests.pop(sender, None)

    def pending_requests(self) -> dict[int, int]:
        """The keyframe requests not yet taken by their senders (sender → earliest round): a checkpoint keeps them."""
        return dict(self._keyframe_requests)

    def add_requests(self, requests: Mapping[int, int]) -> None:
        """Requests made elsewhere — by another shard's agents, or before a checkpoint — for senders here."""
        for sender, since in requests.items():
            self._keyframe_requests[sender] = min(since, self._keyframe_requests.get(sender, since))
