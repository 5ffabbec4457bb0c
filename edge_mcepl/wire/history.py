"""What a receiver keeps of each sender's masks: the bases its delta messages can name.

A receiver decodes every neighbour's message once; remembering the last few masks it decoded per
sender (packed, 1 bit per weight) is what lets the sender send only what changed. A few rounds,
not one: a duplicate or a resent copy of the previous round's message names the round before it.
Lookups match the round *and* the digest, so a sender that restarted and computed a round
differently can never be decoded against the wrong masks. A device's checkpoint keeps the history
(:meth:`MaskHistory.entries`), so a receiver that restarts still decodes the deltas queued for it.
Thread-safe: a device's network thread remembers while its round loop checkpoints.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .delta import MaskRecord, pack_layers, packed_digest


@dataclass(frozen=True, eq=False)
class HeldMasks:
    """One sender's masks as a receiver holds them: 1 bit per weight, with their round and digest."""

    sender: int
    round: int
    digest: bytes
    shapes: tuple[tuple[int, ...], ...]
    layers: tuple[bytes, ...]  # np.packbits(mask, bitorder="little") per layer

    @classmethod
    def of(cls, sender: int, record: MaskRecord) -> HeldMasks:
        """A decoded message's masks (its digest already known), packed."""
        return cls(sender, record.round, record.digest, tuple(m.shape for m in record.masks),
                   pack_layers(record.masks))

    @classmethod
    def pack(cls, sender: int, round: int, masks: Sequence[np.ndarray]) -> HeldMasks:
        """``masks`` packed once, the digest taken from the packed bits (what a sender keeps of its message)."""
        shapes, layers = tuple(tuple(m.shape) for m in masks), pack_layers(masks)
        return cls(sender, round, packed_digest(shapes, layers), shapes, layers)

    def unpack(self) -> list[np.ndarray]:
        return [np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=int(np.prod(shape)), bitorder="little")
                .view(np.bool_).reshape(shape) for bits, shape in zip(self.layers, self.shapes)]

    def record(self) -> MaskRecord:
        """The masks unpacked, as a delta's base."""
        return MaskRecord(self.round, tuple(self.unpack()), self.digest)

    def flips(self, other: HeldMasks) -> list[int]:
        """Per layer, the bits that differ from ``other`` (same shapes), counted on the packed bytes."""
        return [int(np.bitwise_count(np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))).sum())
                for a, b in zip(self.layers, other.layers)]


class MaskHistory:
    """The ``depth`` newest decoded masks of every sender, looked up by (sender, round, digest)."""

    def __init__(self, depth: int = 3) -> None:
        self.depth = depth
        self._by_sender: dict[int, deque[HeldMasks]] = {}
        self._lock = threading.Lock()

    def remember(self, sender: int, record: MaskRecord) -> None:
        """Keep ``record`` (decoded from ``sender``) as a possible base; the oldest beyond ``depth`` goes."""
        self.add(HeldMasks.of(sender, record))

    def add(self, held: HeldMasks) -> None:
        """Keep ``held`` (e.g. restored from a checkpoint); the sender's oldest beyond ``depth`` goes."""
        with self._lock:
            kept = self._by_sender.setdefault(held.sender, deque(maxlen=self.depth))
            if not any(p.round == held.round and p.digest == held.digest for p in kept):
                kept.append(held)

    def lookup(self, sender: int, round: int, digest: bytes) -> Sequence[np.ndarray] | None:
        """``sender``'s masks of ``round`` with this digest, if held (fresh arrays), else None."""
        with self._lock:
            found = next((p for p in self._by_sender.get(sender, ()) if p.round == round and p.digest == digest), None)
        return None if found is None else found.unpack()

    def newest_round(self, sender: int) -> int | None:
        """The latest round of ``sender``'s masks held (None: nothing — a process that just started)."""
        with self._lock:
            return max((p.round for p in self._by_sender.get(sender, ())), default=None)

    def entries(self) -> list[HeldMasks]:
        """Everything held, oldest first per sender (what a checkpoint saves)."""
        with self._lock:
            return [held for kept in self._by_sender.values() for held in kept]
