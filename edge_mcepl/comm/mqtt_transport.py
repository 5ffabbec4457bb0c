"""An agent's :class:`~.transport.Transport` over MQTT: its messages out, its neighbours' in, each checked once.

An agent subscribes only to its neighbours' message topics, so the broker forwards exactly one
copy of each message to each neighbour — the simulator's byte count. Rules this module keeps
(DESIGN.md, "MQTT"):

- **Check on arrival, never block paho's thread.** :meth:`MqttTransport._on_message` reads the
  common header (:func:`~edge_mcepl.wire.envelope.read_common_header`: any message kind, no codec
  here), then the receiver's strict decoder — a few hundred microseconds of CPU, no waiting — and
  files the *decoded* message under a lock; the agent's thread waits on a condition variable and
  gets it from :meth:`~MqttTransport.gather` without decoding again. A message refused on arrival
  cannot take the place of a good one that comes later.
- **QoS 1 delivers duplicates**: messages are de-duplicated on (sender, round). A repeat with the
  same bytes is dropped as a redelivery (before decoding it); a *different* message for a
  (sender, round) already held is a duplicate if it decodes to the same content (a keyframe sent
  again in place of a delta), else rejected as conflicting (first valid one wins).
- **Keyframe requests**: a delta whose base this agent lacks (it restarted, started late, or lost
  a message) is a counted rejection, and the agent publishes, retained on its own ``keyframe``
  topic, each sender it lacks with the first round it lacks; a sender that sees a new entry for
  itself sends its recent messages from that round on again, standing alone, and a keyframe next.
  Retained, so a sender that was offline when asked still sees the request when it comes back.
- **A round window**: a message older than the ``max_staleness`` window is dropped on arrival
  (counted late) and evicted as the agent moves on; one further ahead than an honest neighbour can
  be (:class:`MqttTransport`) is refused (``early``), so a flood of future rounds cannot fill the
  inbox or pre-empt the genuine messages. The inbox
  has a byte budget (payload bytes), shared out per sender. :meth:`~MqttTransport.gather` is the
  one place that decides what is stale.
- **Every refusal is counted by reason** (``reasons``: signature, run, density, early, conflict,
  oversize, missing_base, malformed, ...) and logged with it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from ..errors import UserError
from ..validation import AgentId, StrictModel, validate_json
from ..wire.delta import BaseMissing
from ..wire.envelope import CodecError, read_common_header
from .client import MqttConnection
from .topics import keyframe_topic, mask_topic, topic_agent
from .transport import Decoder, Delivery, Gathered, Transport, check_channel

log = logging.getLogger(__name__)


@dataclass
class TransportStats:
    """Arrival counters an agent reports per round (read and reset with :meth:`MqttTransport.take_stats`)."""

    rejected: int = 0
    missing_base: int = 0  # of the rejected: deltas whose base this agent did not hold
    duplicates: int = 0
    late: int = 0
    dropped: int = 0  # thrown away on purpose (``drop_incoming``, a lossy link for testing)
    reasons: Counter[str] = field(default_factory=Counter)  # rejected messages by reason (signature, run, early, ...)


@dataclass(frozen=True)
class _Held:
    payload: bytes  # kept to tell a redelivery (same bytes) from a conflicting message
    message: Any  # decoded and verified
    arrived: float  # time.time() when it was accepted


ANSWER_ROUNDS = 2
"""A sender answers a keyframe request before its next message, or the one after when the request reached it
after it had encoded the next: a delta still undecodable later than that means the answer was lost, so ask again."""


class KeyframeRequest(StrictModel):
    """An agent's retained ``keyframe`` message: each sender whose deltas it cannot decode, with the first
    round of that sender's it lacks. Empty: it lacks nothing."""

    lacking: list[tuple[AgentId, Annotated[int, Field(ge=0, le=2**32 - 1)]]]


def lost_on_purpose(receiver: int, sender: int, round: int, fraction: float) -> bool:
    """``drop_incoming``'s choice: a pure function of (receiver, sender, round), so a lossy run can be
    repeated and a test can tell which messages were lost."""
    draw = hashlib.blake2b(f"{receiver}/{sender}/{round}".encode(), digest_size=8).digest()
    return int.from_bytes(draw, "little") < fraction * 2**64


class _Refused(Exception):
    """A message this agent will not use; the text is the logged reason, ``reason`` its counter's name."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class MqttTransport(Transport):
    """Publishes this agent's messages and gathers its neighbours' over an :class:`MqttConnection`.

    ``gather`` waits until every sender's message for the round is in, the ``timeout`` (the round
    deadline) passes, or :attr:`stop` is set; for a sender still missing it falls back to that
    sender's newest message from the last ``max_staleness`` rounds, marked stale.
    """

    def __init__(self, conn: MqttConnection, lab: str, agent_id: int, *, max_staleness: int = 0,
                 max_message_bytes: int = 1 << 20, inbox_budget_bytes: int = 64 << 20, max_ahead: int | None = None,
                 drop_incoming: float = 0.0) -> None:
        """``drop_incoming``: the fraction of neighbours' messages to lose on arrival, as a lossy link
        would (which ones is a pure function of receiver, sender and round, so a run can be repeated).

        Messages are accepted up to ``max_ahead`` rounds ahead (default ``max_staleness`` + 1: a
        neighbour that heard this agent is at most that far ahead). A device lab allows what the broker
        queues for an agent that was away (devicelab/limits.py): a restarted or late agent catches
        up on them without waiting. Each sender may fill only its share of ``inbox_budget_bytes``, so
        one sender's flood cannot crowd out the others.
        """
        self.conn, self.lab, self.agent_id = conn, lab, agent_id
        self.max_staleness, self.drop_incoming = max_staleness, drop_incoming
        self.max_ahead = max_staleness + 1 if max_ahead is None else max_ahead
        self.max_message_bytes, self.inbox_budget_bytes = max_message_bytes, inbox_budget_bytes
        self.stop = threading.Event()
        self._cond = threading.Condition()
        self._inbox: dict[tuple[int, int], _Held] = {}
        self._sender_bytes: Counter[int] = Counter()  # payload bytes held per sender (each gets a share)
        self._decode: Decoder | None = None
        self._senders: tuple[int, ...] = ()
        self._current = 0
        self._stats = TransportStats()
        self.published_at: dict[int, float] = {}
        self.last_arrivals: dict[int, float] = {}  # sender → arrival time of what the last gather returned
        self.last_stale: dict[int, int] = {}  # sender → round of a stale message the last gather fell back on
        self.last_gather_end = 0.0  # when the last gather returned (time.time())
        self._lacking: dict[int, int] = {}  # sender whose deltas this agent cannot decode → first round it lacks
        self._asked: dict[int, int] = {}  # neighbour lacking this agent's masks → its request's round (as seen)
        self._keyframe_due: int | None = None  # the earliest round asked for and not yet answered
        conn.on(mask_topic(lab, "+"), self._on_message)
        conn.on(keyframe_topic(lab, "+"), self._on_keyframe_request)

    def listen(self, receiver: int, senders: Collection[int], decode: Decoder) -> None:
        """Subscribe to these agents' message topics (the neighbours'), checking what comes with ``decode``."""
        self._check_receiver(receiver)
        self._decode = decode
        self._senders = tuple(senders)
        self.conn.subscribe([mask_topic(self.lab, s) for s in sorted(self._senders)]
                            + [keyframe_topic(self.lab, s) for s in sorted(self._senders)])

    def ask_keyframes(self, since: Mapping[int, int]) -> None:
        """Ask each sender for its masks from its round ``since[sender]`` on, standing alone.

        This agent's retained ``keyframe`` message always lists every sender it lacks, each with
        the first round it lacks; a sender answers an entry it has not seen before (or whose round
        changed) once, so republishing the list never asks anyone twice for the same loss, and a
        sender that comes back still sees what it was asked while away.
        """
        with self._cond:
            asked = {s: r for s, r in since.items() if s not in self._lacking or r > self._lacking[s] + ANSWER_ROUNDS}
            if not asked:
                return  # asked already, the answer may still be on its way
            self._lacking.update(asked)
            lacking = dict(self._lacking)
        self._publish_request(lacking)

    def take_keyframe_request(self, sender: int) -> int | None:
        self._check_receiver(sender)
        with self._cond:
            since, self._keyframe_due = self._keyframe_due, None
        return since

    def set_round(self, round: int) -> None:
        """Where this agent is: drops what is now too old (used when resuming)."""
        with self._cond:
            self._current = round
            self._evict()

    # -- paho thread --------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        arrived = time.time()
        sender = topic_agent(topic)
        if sender is None or sender not in self._senders or self._decode is None:
            return  # not a neighbour (e.g. a wildcard subscription of someone else's): not ours
        round_: int | None = None
        try:
            round_ = self._round_to_keep(sender, payload)
            if round_ is None or self._lost(sender, round_) or self._is_redelivery(sender, round_, payload):
                return
            message = self._decode(payload)
            check_channel(message, sender, round_)
        except (CodecError, _Refused) as exc:
            log.warning("agent %d: rejected message on %s (%s): %s", self.agent_id, topic, exc.reason, exc)
            with self._cond:
                self._stats.rejected += 1
                self._stats.missing_base += isinstance(exc, BaseMissing)
                self._stats.reasons[exc.reason] += 1
            if isinstance(exc, BaseMissing) and round_ is not None:  # (only a decoded header names a base)
                self.ask_keyframes({sender: round_})
            return
        self._file((sender, round_), _Held(payload, message, arrived))
        self._base_regained(sender)

    def _base_regained(self, sender: int) -> None:
        """A message of ``sender`` decoded: this agent holds a base again; withdraw the request."""
        with self._cond:
            if self._lacking.pop(sender, None) is None:
                return
            lacking = dict(self._lacking)
        self._publish_request(lacking)

    def _publish_request(self, lacking: dict[int, int]) -> None:
        request = KeyframeRequest(lacking=sorted(lacking.items()))
        self.conn.publish(keyframe_topic(self.lab, self.agent_id), request.model_dump_json().encode(), qos=1,
                          retain=True)

    def _on_keyframe_request(self, topic: str, payload: bytes) -> None:
        requester = topic_agent(topic)
        if requester is None or requester not in self._senders:
            return  # only neighbours receive this agent's messages
        try:
            request = validate_json(KeyframeRequest, payload, f"keyframe request on {topic}")
        except UserError as exc:
            log.warning("agent %d: ignored: %s", self.agent_id, exc)
            return
        since = dict(request.lacking).get(self.agent_id)
        with self._cond:
            if since is None:
                self._asked.pop(requester, None)
                return
            if self._asked.get(requester) == since:
                return  # already answered (the list was republished for another sender)
            self._asked[requester] = since
            self._keyframe_due = since if self._keyframe_due is None else min(since, self._keyframe_due)
        log.info("agent %d: agent %d lacks this agent's masks from round %d on: they follow, standing alone",
                 self.agent_id, requester, since)

    def _round_to_keep(self, sender: int, payload: bytes) -> int | None:
        """The round the common header names, or None when it is too old to be used (counted late)."""
        if len(payload) > self.max_message_bytes:
            raise _Refused("oversize", f"{len(payload)} bytes exceeds the {self.max_message_bytes}-byte limit")
        header = read_common_header(payload)
        if header.sender != sender:
            raise _Refused("sender", f"message claims sender {header.sender} on agent {sender}'s topic")
        with self._cond:
            too_old = header.round < self._current - self.max_staleness
            too_early = header.round > self._current + self.max_ahead
            if too_old:
                self._stats.late += 1
        if too_early:
            raise _Refused("early", f"round {header.round} is beyond this agent's window (it is at round "
                                    f"{self._current}, accepts up to {self.max_ahead} ahead)")
        if too_old:
            log.info("agent %d: late message (sender %d, round %d) dropped: this agent is at round %d "
                     "(max staleness %d)", self.agent_id, sender, header.round, self._current, self.max_staleness)
            return None
        return header.round

    def _lost(self, sender: int, round_: int) -> bool:
        """Whether ``drop_incoming`` loses this (sender, round): the same answer for every copy of it."""
        if not lost_on_purpose(self.agent_id, sender, round_, self.drop_incoming):
            return False
        log.info("agent %d: dropped (sender %d, round %d) on purpose (--drop-incoming %g)", self.agent_id, sender,
                 round_, self.drop_incoming)
        with self._cond:
            self._stats.dropped += 1
        return True

    def _is_redelivery(self, sender: int, round_: int, payload: bytes) -> bool:
        """True for a QoS 1 redelivery of a message held, byte for byte (ignored before decoding)."""
        with self._cond:
            held = self._inbox.get((sender, round_))
            if held is None or held.payload != payload:
                return False
            self._stats.duplicates += 1
        log.warning("agent %d: duplicate of (sender %d, round %d) ignored (QoS 1 redelivery)",
                    self.agent_id, sender, round_)
        return True

    def _file(self, key: tuple[int, int], held: _Held) -> None:
        with self._cond:
            old = self._inbox.get(key)
            if old is not None and old.message == held.message:  # same content, another encoding (or a race)
                self._stats.duplicates += 1
                log.warning("agent %d: (sender %d, round %d) again with the same content: duplicate ignored",
                            self.agent_id, *key)
                return
            if old is not None:
                self._stats.rejected += 1
                self._stats.reasons["conflict"] += 1
                log.warning("agent %d: conflicting second message for (sender %d, round %d); keeping the first",
                            self.agent_id, *key)
                return
            share = self.inbox_budget_bytes // max(len(self._senders), 1)
            if self._sender_bytes[key[0]] + len(held.payload) > share:
                log.warning("agent %d: sender %d's share of the inbox (%d bytes) is full; dropped its round %d",
                            self.agent_id, key[0], share, key[1])
                self._stats.rejected += 1
                self._stats.reasons["inbox_full"] += 1
                return
            self._inbox[key] = held
            self._sender_bytes[key[0]] += len(held.payload)
            self._cond.notify_all()

    # -- agent thread -------------------------------------------------------------------------

    def publish(self, sender: int, round: int, payload: bytes) -> None:
        with self._cond:
            self._current = max(self._current, round)
            self._evict()
        self.published_at[round] = time.time()
        self.conn.publish(mask_topic(self.lab, sender), payload, qos=1)

    def gather(self, receiver: int, round: int, timeout: float | None = None) -> Gathered:
        self._check_receiver(receiver)
        deadline = None if timeout is None else time.monotonic() + timeout
        deliveries: dict[int, Delivery] = {}
        with self._cond:
            while not self.stop.is_set() and not all((s, round) in self._inbox for s in self._senders):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(0.25 if remaining is None else min(remaining, 0.25))
            self.last_arrivals, self.last_stale = {}, {}
            for s in self._senders:
                used = self._usable_round(s, round)
                if used is None:
                    continue
                held = self._inbox[(s, used)]
                deliveries[s] = Delivery(held.message, len(held.payload), stale=used != round)
                if used == round:
                    self.last_arrivals[s] = held.arrived
                else:
                    self.last_stale[s] = used
        self.last_gather_end = time.time()
        missing = [s for s in self._senders if s not in deliveries]
        if missing and not self.stop.is_set():
            log.warning("agent %d: round %d deadline passed without masks from %s%s", self.agent_id, round,
                        ", ".join(map(str, missing)),
                        f" (stale masks used for {dict(sorted(self.last_stale.items()))})" if self.last_stale else "")
        return Gathered(deliveries)

    def take_stats(self) -> TransportStats:
        with self._cond:
            stats, self._stats = self._stats, TransportStats()
        return stats

    def _usable_round(self, sender: int, round: int) -> int | None:
        """``round`` if ``sender``'s message for it is in, else its newest within the staleness window, else None."""
        if (sender, round) in self._inbox:
            return round
        older = [r for (who, r) in self._inbox if who == sender and round - self.max_staleness <= r < round]
        return max(older, default=None)

    def _check_receiver(self, receiver: int) -> None:
        if receiver != self.agent_id:
            raise ValueError(f"this transport is agent {self.agent_id}'s, not agent {receiver}'s")

    def _evict(self) -> None:
        # Bounded staleness: nothing older than max_staleness rounds can be used again.
        floor = self._current - self.max_staleness
        for key in [k for k in self._inbox if k[1] < floor]:
            self._sender_bytes[key[0]] -= len(self._inbox.pop(key).payload)
