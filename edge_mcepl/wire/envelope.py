"""The envelope every edge-mcepl message shares: fixed header, shape records, BLAKE2b tag.

Masks (:mod:`.masks`), dense fp32 weights (:mod:`.dense`) and masked fp32 weights
(:mod:`.sparse`) differ only in magic, codec id and payload; the header, the shape records
and the tag are parsed and checked here, once, so the three decoders are equally strict. Decoding
is split in two because only the payload codec knows how many payload bytes the shapes imply:
:func:`read_header` checks structure (so a truncated or future-version message says so rather
than "tampered"), then the codec checks the length, then :func:`verify` checks the tag and what
the now-authentic header claims. numpy-free and torch-free; never pickle.

A transport needs less: :func:`read_common_header` reads the fields every kind shares up to the
round (kind, version, sender, round) so it can route, de-duplicate and drop stale messages
without knowing any codec; the receiver's strict decoder still checks everything.

==========  ====================  ============================================================
size        field                 meaning
==========  ====================  ============================================================
4 B         magic                 which payload family (``MCPL`` masks, ``MCPW``, ``MCPS``)
u8          version               format version, ``FORMAT_VERSION`` (1)
u8          codec id              payload codec
u16         flags                 bit 0 = tag is keyed; other bits must be zero
16 B        fingerprint           fingerprint of the shared fixed weights
u32         sender                agent id
u32         round                 round number
u16         n_layers              1 … ``MAX_LAYERS``
per layer   u8 ndim + ndim × u32  the layer's shape; ndim 1 … ``MAX_NDIM``, every dim ≥ 1
payload     codec-specific
16 B        tag                   BLAKE2b(digest_size=16) over every byte before it; keyed
                                  with the lab secret when given (authenticity), else unkeyed
                                  (integrity only)
==========  ====================  ============================================================
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, SupportsIndex

from ..errors import UserError
from ..nn.width import check_nested

FORMAT_VERSION: int = 1
FLAG_KEYED: int = 1
FINGERPRINT_SIZE: int = 16
TAG_SIZE: int = 16
MAX_LAYERS: int = 256
MAX_NDIM: int = 8
MAX_KEY_SIZE: int = 64  # BLAKE2b's key limit
U32_MAX = 2**32 - 1

# The prefix every message kind shares: magic, version, codec, flags, fingerprint, sender, round.
COMMON = struct.Struct("<4sBBH16sII")
FIXED = struct.Struct(COMMON.format + "H")  # ... then n_layers

MASK_MAGIC = b"MCPL"
WEIGHT_MAGIC = b"MCPW"
SPARSE_WEIGHT_MAGIC = b"MCPS"
KINDS: dict[bytes, str] = {MASK_MAGIC: "mask", WEIGHT_MAGIC: "weight", SPARSE_WEIGHT_MAGIC: "sparse weight"}


class CodecError(UserError):
    """A message (or the arguments to build or read one) is invalid; the text says why.

    ``reason`` names the kind of defect in a receiver's per-reason rejection counters (a subclass
    per reason a lab operator tells apart: a bad signature, another run, a missing base...).
    """

    reason: ClassVar[str] = "malformed"


@dataclass(frozen=True)
class Header:
    """A parsed header: who sent what, for which weights, and where the payload starts."""

    fingerprint: bytes
    sender: int
    round: int
    shapes: tuple[tuple[int, ...], ...]
    payload_offset: int
    codec: int


@dataclass(frozen=True)
class CommonHeader:
    """The unauthenticated routing fields of any message: which kind, who claims to send it, for which round."""

    kind: str
    codec: int
    sender: int
    round: int


def read_common_header(data: bytes) -> CommonHeader:
    """The common header of a message of any kind, without decoding (nor trusting) the rest.

    What a transport routes on; the tag is not checked here, so the receiver's strict decoder must
    still accept the whole message before it is used.
    """
    if len(data) < COMMON.size:
        raise CodecError(f"truncated: {len(data)} bytes, shorter than the {COMMON.size}-byte common header")
    magic, version, codec, _flags, _fingerprint, sender, round_ = COMMON.unpack_from(data)
    kind = KINDS.get(magic)
    if kind is None:
        raise CodecError(f"not an edge-mcepl message (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported {kind} format version {version}, this decoder reads {FORMAT_VERSION}")
    return CommonHeader(kind, codec, sender, round_)


def header_size(shapes: Sequence[Sequence[int]]) -> int:
    """Bytes before the payload for layers of these shapes."""
    return FIXED.size + sum(1 + 4 * len(shape) for shape in shapes)


def pack_header(magic: bytes, codec: int, shapes: Sequence[tuple[int, ...]], *, fingerprint: bytes,
                sender: int, round: int, key: bytes | None, kind: str) -> bytes:
    """Check the arguments and pack the header (fixed part + shape records)."""
    check_fingerprint(fingerprint, "fingerprint")
    sender, round = check_u32(sender, "sender"), check_u32(round, "round")
    check_key(key)
    if not 1 <= len(shapes) <= MAX_LAYERS:
        raise CodecError(f"need 1 to {MAX_LAYERS} {kind} layers, got {len(shapes)}")
    flags = FLAG_KEYED if key is not None else 0
    parts = [FIXED.pack(magic, FORMAT_VERSION, codec, flags, fingerprint, sender, round, len(shapes))]
    parts += [struct.pack(f"<B{len(s)}I", len(s), *s) for s in shapes]
    return b"".join(parts)


def check_layer_shape(shape: tuple[int, ...], index: int, kind: str) -> None:
    """Refuse a layer the header cannot describe."""
    if not 1 <= len(shape) <= MAX_NDIM:
        raise CodecError(f"{kind} layer {index} has ndim {len(shape)}, allowed 1 to {MAX_NDIM}")
    if 0 in shape or max(shape) > U32_MAX:
        raise CodecError(f"{kind} layer {index} has shape {shape}: every dim must be 1..2^32-1")


def seal(body: bytes, key: bytes | None) -> bytes:
    """The whole message: body + its tag."""
    return body + _tag(body, key)


def read_header(data: object, *, magic: bytes, codec: int | tuple[int, ...], kind: str,
                expected_fingerprint: bytes | None, key: bytes | None) -> tuple[bytes, Header]:
    """Structural checks of the fixed header and the shape records; the tag is *not* checked yet.

    ``codec`` is the payload codec id the caller reads (or a tuple of them). Returns (the message
    as bytes, its header). Nothing is allocated from declared sizes.
    """
    codecs = codec if isinstance(codec, tuple) else (codec,)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"{kind} message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if expected_fingerprint is not None:
        check_fingerprint(expected_fingerprint, "expected_fingerprint")
    check_key(key)
    if len(data) < FIXED.size:
        raise CodecError(f"{kind} message truncated: {len(data)} bytes, the fixed header alone is {FIXED.size}")
    got_magic, version, got_codec, flags, fingerprint, sender, round_, n_layers = FIXED.unpack_from(data)
    if got_magic != magic:
        raise CodecError(f"not a {kind} message: bad magic {got_magic!r}, expected {magic!r}")
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported {kind} format version {version}, this decoder reads {FORMAT_VERSION}")
    if got_codec not in codecs:
        raise CodecError(f"unknown {kind} codec id {got_codec}, this decoder knows "
                         f"{', '.join(map(str, codecs))}")
    if flags & ~FLAG_KEYED:
        raise CodecError(f"unknown {kind} message flag bits 0x{flags & ~FLAG_KEYED:04x}")
    if flags & FLAG_KEYED and key is None:
        raise CodecError(f"{kind} message is keyed (lab secret) but no key was given to check it")
    if not flags & FLAG_KEYED and key is not None:
        raise CodecError(f"{kind} message is unkeyed but a key was given: refusing unauthenticated")
    if not 1 <= n_layers <= MAX_LAYERS:
        raise CodecError(f"{kind} message declares {n_layers} layers, allowed 1 to {MAX_LAYERS}")
    shapes, offset = _read_shapes(data, n_layers, kind)
    return data, Header(fingerprint, sender, round_, shapes, offset, got_codec)


def _read_shapes(data: bytes, n_layers: int, kind: str) -> tuple[tuple[tuple[int, ...], ...], int]:
    """The shape records after the fixed header; returns them and the payload offset."""
    shapes, offset = [], FIXED.size
    for index in range(n_layers):
        if offset + 1 > len(data):
            raise CodecError(f"{kind} message truncated in the shape of layer {index}")
        ndim = data[offset]
        offset += 1
        if not 1 <= ndim <= MAX_NDIM:
            raise CodecError(f"{kind} message layer {index} has ndim {ndim}, allowed 1 to {MAX_NDIM}")
        if offset + 4 * ndim > len(data):
            raise CodecError(f"{kind} message truncated in the shape of layer {index}")
        shape = struct.unpack_from(f"<{ndim}I", data, offset)
        offset += 4 * ndim
        if 0 in shape:
            raise CodecError(f"{kind} message layer {index} has a zero dimension: {shape}")
        shapes.append(shape)
    return tuple(shapes), offset


def verify(data: bytes, header: Header, *, kind: str, key: bytes | None, expected_fingerprint: bytes | None,
           expected_shapes: Sequence[tuple[int, ...]] | None, nested: bool = False) -> None:
    """The tag first, then what the now-authentic header claims (fingerprint, shapes).

    ``nested``: the shapes may be any ordered-width block of ``expected_shapes`` (a neighbour of
    another width, docs/algorithm.md#width), not only those shapes themselves.
    """
    body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not hmac.compare_digest(tag, _tag(body, key)):
        raise CodecError(f"{kind} message corrupt or tampered: tag mismatch"
                         + (" (or signed with a different key)" if key is not None else ""))
    if expected_fingerprint is not None and header.fingerprint != expected_fingerprint:
        raise CodecError(f"weights fingerprint mismatch: message has {_short(header.fingerprint)}, this agent has"
                         f" {_short(expected_fingerprint)}")
    if expected_shapes is None:
        return
    if nested:
        try:
            check_nested(header.shapes, expected_shapes)
        except ValueError as exc:
            raise CodecError(f"{kind} message: {exc}") from None
        return
    if len(header.shapes) != len(expected_shapes):
        raise CodecError(f"{kind} message has {len(header.shapes)} layers, this model has {len(expected_shapes)}")
    for index, (got, want) in enumerate(zip(header.shapes, expected_shapes)):
        if tuple(got) != tuple(want):
            raise CodecError(f"{kind} shape mismatch at layer {index}: message has {tuple(got)}, "
                             f"this model has {tuple(want)}")


def check_length(data: bytes, header: Header, payload_len: int, kind: str) -> None:
    """The message must be exactly header + payload + tag: no truncation, no trailing bytes."""
    got = len(data) - header.payload_offset
    if got < payload_len + TAG_SIZE:
        raise CodecError(f"{kind} message truncated: header says {payload_len} payload bytes + {TAG_SIZE}-byte"
                         f" tag, got {got}")
    if got > payload_len + TAG_SIZE:
        raise CodecError(f"{kind} message has {got - payload_len - TAG_SIZE} trailing bytes after the tag")


def check_fingerprint(fingerprint: object, name: str) -> None:
    if not isinstance(fingerprint, bytes) or len(fingerprint) != FINGERPRINT_SIZE:
        got = len(fingerprint) if isinstance(fingerprint, bytes) else type(fingerprint).__name__
        raise CodecError(f"{name} must be {FINGERPRINT_SIZE} bytes, got {got}")


def check_u32(value: object, name: str) -> int:
    if not isinstance(value, SupportsIndex):
        raise CodecError(f"{name} must be an integer, got {type(value).__name__}")
    number = operator.index(value)
    if not 0 <= number <= U32_MAX:
        raise CodecError(f"{name} must be in 0..{U32_MAX}, got {number}")
    return number


def check_key(key: object) -> None:
    # An empty key would set the keyed flag while BLAKE2b computes the unkeyed tag.
    if key is not None and (not isinstance(key, bytes) or not 1 <= len(key) <= MAX_KEY_SIZE):
        raise CodecError(f"key must be 1 to {MAX_KEY_SIZE} bytes")


def _tag(body: bytes, key: bytes | None) -> bytes:
    return hashlib.blake2b(body, digest_size=TAG_SIZE, key=key or b"").digest()


def _short(fingerprint: bytes) -> str:
    return fingerprint[:4].hex() + "…"
