"""Delta-coded masks (mask codec 3): a mask sent as its XOR with an earlier mask of the same sender.

Why: MCE-PL's masks are top-k of slowly moving scores, so from one round to the next a sender's
mask changes in only 0.1–0.5 % of its entries (docs/flips.md). The XOR with the previous mask then
carries ≈ 0.02–0.035 bits of information per weight, against ≈ 0.82 for the mask itself; coding
the XOR's set positions with the Rice coder of :mod:`.rice` (its parameter chosen from the flip
rate) comes within a few per cent of that.

A delta is only as good as its base, so it names the base exactly — the round *and* the
:func:`mask_digest` of the masks it is relative to — and a receiver never guesses: one that does
not hold that base raises :class:`BaseMissing` (a :class:`CodecError`, counted as a rejection;
the transports then ask the sender for a keyframe, docs/wire-format.md#delta). Every decoded
layer must also have exactly the kept count the message declares, a check that catches any
wrong base the digest did not. The digest is BLAKE2b-8 of the shapes and packed bits: it binds
a base, it does not authenticate (the message's tag does).

Payload (after the envelope's header): u32 base round, 8-byte base digest, then per layer in
model order u32 kept (ones in the new mask) and the XOR's Rice layer (:mod:`.rice` layout).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import rice
from .envelope import CodecError

DIGEST_SIZE = 8
PREFIX = struct.Struct(f"<I{DIGEST_SIZE}s")
KEPT = struct.Struct("<I")


class BaseMissing(CodecError):
    """A delta relative to a mask this receiver does not hold: it cannot be decoded, only refused."""

    reason = "missing_base"


@dataclass(frozen=True, eq=False)
class MaskRecord:
    """A sender's masks of one round with their digest: what a delta is relative to.

    ``eq=False``: the masks are numpy arrays; compare ``digest``.
    """

    round: int
    masks: tuple[np.ndarray, ...]
    digest: bytes

    @classmethod
    def of(cls, round: int, masks: Sequence[np.ndarray]) -> MaskRecord:
        bool_masks = tuple(np.asarray(m, dtype=bool) for m in masks)
        return cls(round, bool_masks, mask_digest(bool_masks))


BaseLookup = Callable[[int, int, bytes], "Sequence[np.ndarray] | None"]
"""(sender, round, digest) → that sender's masks of that round if this receiver holds them, else None."""


def mask_digest(masks: Sequence[np.ndarray]) -> bytes:
    """BLAKE2b-8 over each layer's shape and little-endian packed bits: equal iff the masks are equal
    (up to a 2⁻⁶⁴ collision), whichever codec carried them."""
    return packed_digest([m.shape for m in masks], pack_layers(masks))


def pack_layers(masks: Sequence[np.ndarray]) -> tuple[bytes, ...]:
    """Each layer's mask as little-endian packed bits (1 bit per weight)."""
    return tuple(np.packbits(np.asarray(m, dtype=bool).ravel(), bitorder="little").tobytes() for m in masks)


def packed_digest(shapes: Sequence[tuple[int, ...]], layers: Sequence[bytes]) -> bytes:
    """:func:`mask_digest` of masks already packed by :func:`pack_layers` (no second packing)."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for shape, bits in zip(shapes, layers):
        h.update(struct.pack(f"<B{len(shape)}I", len(shape), *shape))
        h.update(bits)
    return h.digest()


def worth_a_delta(masks: Sequence[np.ndarray], base: MaskRecord) -> bool:
    """Whether the delta codes fewer symbols than the mask itself (Rice codes the minority symbol of
    each): false after a large change, or when the shapes differ (a base of another width)."""
    if len(masks) != len(base.masks) or any(m.shape != b.shape for m, b in zip(masks, base.masks)):
        return False
    flips = sum(int(np.count_nonzero(m != b)) for m, b in zip(masks, base.masks))
    minority = sum(min(int(np.count_nonzero(m)), m.size - int(np.count_nonzero(m))) for m in masks)
    return flips < minority


def encode_payload(masks: Sequence[np.ndarray], base: MaskRecord) -> bytes:
    """The delta payload of ``masks`` (bool, model order) relative to ``base`` (same shapes)."""
    parts = [PREFIX.pack(base.round, base.digest)]
    for index, (mask, old) in enumerate(zip(masks, base.masks, strict=True)):
        if mask.shape != old.shape:
            raise CodecError(f"mask layer {index} has shape {mask.shape}, its delta base {old.shape}")
        parts += [KEPT.pack(int(np.count_nonzero(mask))), rice.encode_layer(mask ^ old)]
    return b"".join(parts)


def decode_payload(body: bytes, offset: int, sender: int, shapes: Sequence[tuple[int, ...]],
                   bases: BaseLookup | None) -> tuple[list[np.ndarray], int, int]:
    """The masks a delta payload at ``offset`` codes: (masks, base round, offset after the payload).

    ``body`` is the authenticated message without its tag. Raises :class:`BaseMissing` when
    ``bases`` does not hold the named base, :class:`CodecError` for any other defect.
    """
    if offset + PREFIX.size > len(body):
        raise CodecError("delta mask message truncated in its base reference")
    base_round, digest = PREFIX.unpack_from(body, offset)
    offset += PREFIX.size
    base = bases(sender, base_round, digest) if bases is not None else None
    if base is None:
        raise BaseMissing(f"delta relative to sender {sender}'s round {base_round} mask (digest {digest.hex()}), "
                          "which this receiver does not hold")
    if len(base) != len(shapes) or any(b.shape != tuple(s) for b, s in zip(base, shapes)):
        raise CodecError(f"delta mask message has shapes {list(shapes)}, its base "
                         f"{[b.shape for b in base]}")
    masks = []
    for index, (shape, old) in enumerate(zip(shapes, base)):
        where = f"delta mask message layer {index}"
        if offset + KEPT.size > len(body):
            raise CodecError(f"{where}: truncated in its kept count")
        (kept,) = KEPT.unpack_from(body, offset)
        flips, offset = rice.decode_layer(body, offset + KEPT.size, shape, where)
        mask = old ^ flips
        if (got := int(np.count_nonzero(mask))) != kept:
            raise CodecError(f"{where}: decodes to {got} kept entries, the message declares {kept}")
        masks.append(mask)
    return masks, base_round, offset
