"""The envelope every edge-mcepl message shares: fixed header, shape records, signature or integrity tag.

Masks (:mod:`.masks`), dense fp32 weights (:mod:`.dense`) and masked fp32 weights
(:mod:`.sparse`) differ only in magic, codec id and payload; the header, the shape records
and the trailer are parsed and checked here, once, so the three decoders are equally strict.
Decoding is split in two because only the payload codec knows how many payload bytes the shapes
imply: :func:`read_header` checks structure (so a truncated or future-version message says so
rather than "tampered"), then the codec checks the length, then :func:`verify` checks the
signature (or tag), the run and what the now-authentic header claims. numpy-free, torch-free and
crypto-library-free (an :class:`Authenticator` signs and verifies, :mod:`.signing` implements it);
never pickle.

A message crossing a lab's network is **signed**: an Ed25519 signature by the sender's own key,
which every receiver checks against the lab's roster (the sender's public key) before anything
else, and the header names the run (the lab config's run id), so a message of another run — or
one captured from a run with the same seed — is refused. A file (``final/``, ``final_mask.mcpl``:
read by ``export`` with no roster) carries a BLAKE2b integrity tag instead and run id zero.

A transport needs less: :func:`read_common_header` reads the fields every kind shares up to the
round (kind, version, run, sender, round) so it can route, de-duplicate and drop stale messages
without knowing any codec; the receiver's strict decoder still checks everything.

==========  ====================  ============================================================
size        field                 meaning
==========  ====================  ============================================================
4 B         magic                 which payload family (``MCPL`` masks, ``MCPW``, ``MCPS``)
u8          version               format version, ``FORMAT_VERSION`` (2)
u8          codec id              payload codec
u16         flags                 bit 0 = signed (the trailer is a signature); other bits zero
16 B        fingerprint           fingerprint of the shared fixed weights
8 B         run id                the lab run this message belongs to (zero: not bound, a file)
u32         sender                agent id
u32         round                 round number
u16         n_layers              1 … ``MAX_LAYERS``
per layer   u8 ndim + ndim × u32  the layer's shape; ndim 1 … ``MAX_NDIM``, every dim ≥ 1
payload     codec-specific
64 B / 16 B trailer               signed: Ed25519 signature by the sender over every byte
                                  before it; unsigned: BLAKE2b(digest_size=16) of them
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
from typing import ClassVar, Protocol, SupportsIndex

from ..errors import UserError
from ..nn.width import check_nested

FORMAT_VERSION: int = 2
FLAG_SIGNED: int = 1
FINGERPRINT_SIZE: int = 16
RUN_ID_SIZE: int = 8
NO_RUN: bytes = bytes(RUN_ID_SIZE)  # a file's run id: not bound to any run
TAG_SIZE: int = 16  # an unsigned message's BLAKE2b integrity tag
SIGNATURE_SIZE: int = 64  # Ed25519
MAX_LAYERS: int = 256
MAX_NDIM: int = 8
U32_MAX = 2**32 - 1

# The prefix every message kind shares: magic, version, codec, flags, fingerprint, run id, sender, round.
COMMON = struct.Struct("<4sBBH16s8sII")
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


class SignatureError(CodecError):
    """Not signed by the sender it names (forged, tampered, unsigned, or a sender the roster lacks)."""

    reason = "signature"


class WrongRun(CodecError):
    """An authentic message of another run (a replay, or a device left on an old run)."""

    reason = "run"


class Authenticator(Protocol):
    """Signs what one agent sends and verifies what it receives (:class:`~.signing.MessageAuth`)."""

    @property
    def run_id(self) -> bytes: ...

    @property
    def signs(self) -> bool:
        """Whether :meth:`sign` can sign (an observer only verifies)."""

    def sign(self, body: bytes) -> bytes: ...

    def verify(self, sender: int, body: bytes, signature: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is ``sender``'s over ``body``."""


@dataclass(frozen=True)
class Header:
    """A parsed header: who sent what, for which weights, and where the payload starts."""

    fingerprint: bytes
    sender: int
    round: int
    shapes: tuple[tuple[int, ...], ...]
    payload_offset: int
    codec: int
    run_id: bytes = NO_RUN
    signed: bool = False

    @property
    def trailer_size(self) -> int:
        return trailer_size(self.signed)


@dataclass(frozen=True)
class CommonHeader:
    """The unauthenticated routing fields of any message: which kind, who claims to send it, for which round."""

    kind: str
    codec: int
    sender: int
    round: int
    run_id: bytes = NO_RUN


def read_common_header(data: bytes) -> CommonHeader:
    """The common header of a message of any kind, without decoding (nor trusting) the rest.

    What a transport routes on; the tag is not checked here, so the receiver's strict decoder must
    still accept the whole message before it is used.
    """
    if len(data) < COMMON.size:
        raise CodecError(f"truncated: {len(data)} bytes, shorter than the {COMMON.size}-byte common header")
    magic, version, codec, _flags, _fingerprint, run_id, sender, round_ = COMMON.unpack_from(data)
    kind = KINDS.get(magic)
    if kind is None:
        raise CodecError(f"not an edge-mcepl message (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported {kind} format version {version}, this decoder reads {FORMAT_VERSION}")
    return CommonHeader(kind, codec, sender, round_, run_id)


def header_size(shapes: Sequence[Sequence[int]]) -> int:
    """Bytes before the payload for layers of these shapes."""
    return FIXED.size + sum(1 + 4 * len(shape) for shape in shapes)


def trailer_size(signed: bool) -> int:
    """Bytes after the payload: a signature, or an unsigned message's integrity tag."""
    return SIGNATURE_SIZE if signed else TAG_SIZE


def pack_header(magic: bytes, codec: int, shapes: Sequence[tuple[int, ...]], *, fingerprint: bytes,
                sender: int, round: int, auth: Authenticator | None, kind: str) -> bytes:
    """Check the arguments and pack the header (fixed part + shape records).

    Signed (and bound to ``auth``'s run) with ``auth``; without, an unsigned file message.
    """
    check_fingerprint(fingerprint, "fingerprint")
    sender, round = check_u32(sender, "sender"), check_u32(round, "round")
    if not 1 <= len(shapes) <= MAX_LAYERS:
        raise CodecError(f"need 1 to {MAX_LAYERS} {kind} layers, got {len(shapes)}")
    if auth is not None and not auth.signs:
        raise CodecError("this identity has no signing key (an observer only verifies)")
    signed = auth is not None
    run_id = auth.run_id if auth is not None else NO_RUN
    parts = [FIXED.pack(magic, FORMAT_VERSION, codec, FLAG_SIGNED if signed else 0, fingerprint, run_id, sender,
                        round, len(shapes))]
    parts += [struct.pack(f"<B{len(s)}I", len(s), *s) for s in shapes]
    return b"".join(parts)


def check_layer_shape(shape: tuple[int, ...], index: int, kind: str) -> None:
    """Refuse a layer the header cannot describe."""
    if not 1 <= len(shape) <= MAX_NDIM:
        raise CodecError(f"{kind} layer {index} has ndim {len(shape)}, allowed 1 to {MAX_NDIM}")
    if 0 in shape or max(shape) > U32_MAX:
        raise CodecError(f"{kind} layer {index} has shape {shape}: every dim must be 1..2^32-1")


def seal(body: bytes, auth: Authenticator | None) -> bytes:
    """The whole message: body + its signature (``auth`` signs) or integrity tag."""
    return body + (auth.sign(body) if auth is not None else _tag(body))


def read_header(data: object, *, magic: bytes, codec: int | tuple[int, ...], kind: str,
                expected_fingerprint: bytes | None, auth: Authenticator | None) -> tuple[bytes, Header]:
    """Structural checks of the fixed header and the shape records; the trailer is *not* checked yet.

    ``codec`` is the payload codec id the caller reads (or a tuple of them). ``auth``: a lab's
    receiver, which accepts only signed messages; None: a file reader, which accepts only unsigned
    ones (it has no roster to check a signature with). Returns (the message as bytes, its header).
    Nothing is allocated from declared sizes.
    """
    codecs = codec if isinstance(codec, tuple) else (codec,)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"{kind} message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if expected_fingerprint is not None:
        check_fingerprint(expected_fingerprint, "expected_fingerprint")
    if len(data) < FIXED.size:
        raise CodecError(f"{kind} message truncated: {len(data)} bytes, the fixed header alone is {FIXED.size}")
    got_magic, version, got_codec, flags, fingerprint, run_id, sender, round_, n_layers = FIXED.unpack_from(data)
    if got_magic != magic:
        raise CodecError(f"not a {kind} message: bad magic {got_magic!r}, expected {magic!r}")
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported {kind} format version {version}, this decoder reads {FORMAT_VERSION}")
    if got_codec not in codecs:
        raise CodecError(f"unknown {kind} codec id {got_codec}, this decoder knows "
                         f"{', '.join(map(str, codecs))}")
    if flags & ~FLAG_SIGNED:
        raise CodecError(f"unknown {kind} message flag bits 0x{flags & ~FLAG_SIGNED:04x}")
    signed = bool(flags & FLAG_SIGNED)
    if signed and auth is None:
        raise CodecError(f"{kind} message is signed (a lab's message, not a file): checking it needs the lab's "
                         "roster")
    if not signed and auth is not None:
        raise SignatureError(f"{kind} message is unsigned: this lab accepts only messages signed by their sender")
    if not 1 <= n_layers <= MAX_LAYERS:
        raise CodecError(f"{kind} message declares {n_layers} layers, allowed 1 to {MAX_LAYERS}")
    shapes, offset = _read_shapes(data, n_layers, kind)
    return data, Header(fingerprint, sender, round_, shapes, offset, got_codec, run_id, signed)


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


def verify(data: bytes, header: Header, *, kind: str, auth: Authenticator | None,
           expected_fingerprint: bytes | None, expected_shapes: Sequence[tuple[int, ...]] | None,
           nested: bool = False) -> None:
    """The signature (or tag) first, then what the now-authentic header claims (run, fingerprint, shapes).

    ``nested``: the shapes may be any ordered-width block of ``expected_shapes`` (a neighbour of
    another width, docs/algorithm.md#width), not only those shapes themselves.
    """
    size = header.trailer_size
    body, trailer = data[:-size], data[-size:]
    if auth is not None:  # read_header made sure the message is signed
        auth.verify(header.sender, body, trailer)
        if header.run_id != auth.run_id:
            raise WrongRun(f"{kind} message of run {header.run_id.hex()}, this lab runs {auth.run_id.hex()} "
                           "(a replay, or a device still on another run)")
    elif not hmac.compare_digest(trailer, _tag(body)):
        raise CodecError(f"{kind} message corrupt or tampered: tag mismatch")
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
    got, trailer = len(data) - header.payload_offset, header.trailer_size
    what = "signature" if header.signed else "tag"
    if got < payload_len + trailer:
        raise CodecError(f"{kind} message truncated: header says {payload_len} payload bytes + {trailer}-byte"
                         f" {what}, got {got}")
    if got > payload_len + trailer:
        raise CodecError(f"{kind} message has {got - payload_len - trailer} trailing bytes after the {what}")


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


def _tag(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=TAG_SIZE).digest()


def _short(fingerprint: bytes) -> str:
    return fingerprint[:4].hex() + "…"
