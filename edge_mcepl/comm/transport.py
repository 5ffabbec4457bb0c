"""How encoded masks travel between agents.

The agent only publishes its own message for a round and gathers its neighbours'; whether that
is a dictionary in one process (the simulator) or an MQTT broker (a device lab) is the
transport's business, so the same :class:`~edge_mcepl.agent.Agent` code runs in both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection


class Transport(ABC):
    """Moves opaque payloads (already encoded by the codec) between agents."""

    @abstractmethod
    def publish(self, sender: int, round: int, payload: bytes) -> None:
        """Make ``payload`` — ``sender``'s message for ``round`` — available to its neighbours."""

    @abstractmethod
    def gather(self, receiver: int, round: int, senders: Collection[int], timeout: float | None = None) -> dict[int, bytes]:
        """Messages of ``round`` from ``senders`` that arrived (within ``timeout`` seconds, if given)."""


class InMemoryTransport(Transport):
    """All agents in one process, synchronous rounds: everyone publishes before anyone gathers."""

    def __init__(self) -> None:
        self._mailbox: dict[tuple[int, int], bytes] = {}

    def publish(self, sender: int, round: int, payload: bytes) -> None:
        # Keep only the current and previous round: memory stays bounded over long runs.
        for key in [k for k in self._mailbox if k[0] < round - 1]:
            del self._mailbox[key]
        self._mailbox[(round, sender)] = bytes(payload)

    def gather(self, receiver: int, round: int, senders: Collection[int], timeout: float | None = None) -> dict[int, bytes]:
        return {s: self._mailbox[(round, s)] for s in senders if (round, s) in self._mailbox}
