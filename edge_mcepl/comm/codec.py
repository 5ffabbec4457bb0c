"""Wire format v1: binary masks as real bytes, 1 bit per masked weight.

Agents share the fixed random weights (regenerated from a seed) and exchange only masks, so this
module is the whole of what crosses the network. Communication figures are counted from the bytes
it produces, and the decoder is the first thing that touches untrusted input: it must reject
anything malformed with a one-line :class:`CodecError` and never allocate more than the message
itself justifies. It imports numpy only, so a torch-free device can decode too. Never pickle.

Layout (little-endian, fixed offsets via :mod:`struct`):

==========  ====================  ============================================================
size        field                 meaning
==========  ====================  ============================================================
4 B         magic                 ``b"MCPL"``
u8          version               format version, ``FORMAT_VERSION`` (1)
u8          codec id              payload codec, ``CODEC_PACKBITS`` (1)
u16         flags                 bit 0 = tag is keyed; other bits must be zero
16 B        fingerprint           fingerprint of the shared fixed weights
u32         sender                agent id
u32         round                 round number
u16         n_layers              1 … ``MAX_LAYERS``
per layer   u8 ndim + ndim × u32  the layer's shape; ndim 1 … ``MAX_NDIM``, every dim ≥ 1
payload     per layer             ``np.packbits(mask.ravel(), bitorder="little")``, layers
                                  concatenated; each padded to whole bytes with zero bits
16 B        tag                   BLAKE2b(digest_size=16) over every byte before it; keyed
                                  with the lab secret when given (authenticity), else unkeyed
                                  (integrity only)
==========  ====================  ============================================================

Per-layer padding costs at most 7 bits a layer but lets every layer be unpacked from its own
byte slice, and checking that the padding is zero keeps the encoding canonical: one mask set has
exactly one valid message.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import operator
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_mcepl.errors import UserError

MAGIC = b"MCPL"
FORMAT_VERSION: int = 1
CODEC_PACKBITS: int = 1
FLAG_KEYED: int = 1
FINGERPRINT_SIZE: int = 16
TAG_SIZE: int = 16
MAX_LAYERS: int = 256
MAX_NDIM: int = 8
MAX_KEY_SIZE: int = 64  # BLAKE2b's key limit

_FIXED = struct.Struct("<4sBBH16sIIH")
_U32_MAX = 2**32 - 1


class CodecError(UserError):
    """A mask message (or the arguments to build or read one) is invalid; the text says why."""


@dataclass(frozen=True, eq=False)
class MaskMessage:
    """One decoded mask message.

    ``eq=False`` because the fields hold numpy arrays, whose ``==`` is elementwise: a generated
    ``__eq__``/``__hash__`` would raise instead of comparing. The arrays are fresh and owned by
    the caller.
    """

    sender: int
    round: int
    fingerprint: bytes
    masks: tuple[np.ndarray, ...]


def header_size(shapes: Sequence[Sequence[int]]) -> int:
    """Bytes before the payload for layers of these shapes."""
    return _FIXED.size + sum(1 + 4 * len(shape) for shape in shapes)


def message_size(shapes: Sequence[Sequence[int]]) -> int:
    """Exact encoded size for layers of these shapes: header + packed payload + tag."""
    payload = sum((math.prod(shape) + 7) // 8 for shape in shapes)
    return header_size(shapes) + payload + TAG_SIZE


def encode_masks(
    masks: Sequence[np.ndarray],
    *,
    fingerprint: bytes,
    sender: int,
    round: int,
    key: bytes | None = None,
) -> bytes:
    """Encode one mask per masked layer (model order) into a wire-format v1 message.

    Masks may be bool arrays, 0/1-valued numeric arrays, or anything ``np.asarray`` turns into
    one (e.g. CPU torch tensors). A value other than 0/1 is refused rather than rounded, because
    it means the caller sent scores instead of a mask.
    """
    _check_fingerprint(fingerprint, "fingerprint")
    sender = _check_u32(sender, "sender")
    round = _check_u32(round, "round")
    _check_key(key)
    if not 1 <= len(masks) <= MAX_LAYERS:
        raise CodecError(f"need 1 to {MAX_LAYERS} mask layers, got {len(masks)}")

    flags = FLAG_KEYED if key is not None else 0
    parts = [
        _FIXED.pack(
            MAGIC, FORMAT_VERSION, CODEC_PACKBITS, flags, fingerprint, sender, round, len(masks)
        )
    ]
    payloads = []
    for index, raw in enumerate(masks):
        mask = _as_bool_mask(raw, index)
        parts.append(struct.pack(f"<B{mask.ndim}I", mask.ndim, *mask.shape))
        payloads.append(np.packbits(mask.ravel(), bitorder="little").tobytes())
    body = b"".join(parts + payloads)
    return body + _tag(body, key)


def decode_masks(
    data: bytes,
    *,
    expected_fingerprint: bytes | None = None,
    expected_shapes: Sequence[tuple[int, ...]] | None = None,
    key: bytes | None = None,
    max_entries: int = 1 << 28,
) -> MaskMessage:
    """Decode and verify a wire-format v1 message; any defect raises :class:`CodecError`.

    Structure is checked first (so a truncated or future-version message says so rather than
    "tampered"), then the tag, then what the now-authentic content claims (fingerprint, shapes,
    padding). Nothing is allocated until the declared sizes match the bytes actually present,
    so a hostile header cannot make the decoder reserve memory.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"mask message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if expected_fingerprint is not None:
        _check_fingerprint(expected_fingerprint, "expected_fingerprint")
    _check_key(key)

    if len(data) < _FIXED.size:
        raise CodecError(
            f"mask message truncated: {len(data)} bytes, the fixed header alone is {_FIXED.size}"
        )
    magic, version, codec, flags, fingerprint, sender, round_, n_layers = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise CodecError(f"not a mask message: bad magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise CodecError(
            f"unsupported mask format version {version}, this decoder reads {FORMAT_VERSION}"
        )
    if codec != CODEC_PACKBITS:
        raise CodecError(f"unknown mask codec id {codec}, this decoder knows {CODEC_PACKBITS}")
    if flags & ~FLAG_KEYED:
        raise CodecError(f"unknown mask message flag bits 0x{flags & ~FLAG_KEYED:04x}")
    if flags & FLAG_KEYED and key is None:
        raise CodecError("mask message is keyed (lab secret) but no key was given to check it")
    if not flags & FLAG_KEYED and key is not None:
        raise CodecError("mask message is unkeyed but a key was given: refusing unauthenticated")
    if not 1 <= n_layers <= MAX_LAYERS:
        raise CodecError(f"mask message declares {n_layers} layers, allowed 1 to {MAX_LAYERS}")

    shapes, offset = _read_shapes(data, n_layers)
    entries = sum(math.prod(shape) for shape in shapes)
    if entries > max_entries:
        raise CodecError(
            f"mask message declares {entries} entries, more than max_entries={max_entries}"
        )
    sizes = [(math.prod(shape) + 7) // 8 for shape in shapes]
    payload_len = sum(sizes)
    got = len(data) - offset
    if got < payload_len + TAG_SIZE:
        raise CodecError(
            f"mask message truncated: header says {payload_len} payload bytes + {TAG_SIZE}-byte"
            f" tag, got {got}"
        )
    if got > payload_len + TAG_SIZE:
        raise CodecError(
            f"mask message has {got - payload_len - TAG_SIZE} trailing bytes after the tag"
        )

    body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not hmac.compare_digest(tag, _tag(body, key)):
        raise CodecError(
            "mask message corrupt or tampered: tag mismatch"
            + (" (or signed with a different key)" if key is not None else "")
        )
    if expected_fingerprint is not None and fingerprint != expected_fingerprint:
        raise CodecError(
            f"weights fingerprint mismatch: message has {_short(fingerprint)}, this agent has"
            f" {_short(expected_fingerprint)}"
        )
    if expected_shapes is not None:
        _check_shapes(shapes, expected_shapes)

    masks = []
    for index, (shape, size) in enumerate(zip(shapes, sizes)):
        masks.append(unpack_mask(data, offset, shape, f"mask message layer {index}"))
        offset += size
    return MaskMessage(
        sender=sender, round=round_, fingerprint=fingerprint, masks=tuple(masks)
    )


def unpack_mask(data: bytes, offset: int, shape: tuple[int, ...], where: str) -> np.ndarray:
    """One layer's packed bits at ``offset`` as a bool array; nonzero padding bits are an error."""
    n = math.prod(shape)
    packed = np.frombuffer(data, dtype=np.uint8, count=(n + 7) // 8, offset=offset)
    if n % 8 and packed[-1] >> (n % 8):
        raise CodecError(f"{where}: nonzero padding bits")
    return np.unpackbits(packed, count=n, bitorder="little").view(np.bool_).reshape(shape)


def _read_shapes(data: bytes, n_layers: int) -> tuple[list[tuple[int, ...]], int]:
    """Parse the per-layer shape records; return the shapes and the payload offset."""
    shapes = []
    offset = _FIXED.size
    for index in range(n_layers):
        if offset + 1 > len(data):
            raise CodecError(f"mask message truncated in the shape of layer {index}")
        ndim = data[offset]
        offset += 1
        if not 1 <= ndim <= MAX_NDIM:
            raise CodecError(f"mask message layer {index} has ndim {ndim}, allowed 1 to {MAX_NDIM}")
        if offset + 4 * ndim > len(data):
            raise CodecError(f"mask message truncated in the shape of layer {index}")
        shape = struct.unpack_from(f"<{ndim}I", data, offset)
        offset += 4 * ndim
        if 0 in shape:
            raise CodecError(f"mask message layer {index} has a zero dimension: {shape}")
        shapes.append(shape)
    return shapes, offset


def _check_shapes(
    shapes: Sequence[tuple[int, ...]], expected: Sequence[tuple[int, ...]]
) -> None:
    if len(shapes) != len(expected):
        raise CodecError(f"mask message has {len(shapes)} layers, this model has {len(expected)}")
    for index, (got, want) in enumerate(zip(shapes, expected)):
        if tuple(got) != tuple(want):
            raise CodecError(
                f"mask shape mismatch at layer {index}: message has {tuple(got)},"
                f" this model has {tuple(want)}"
            )


def _as_bool_mask(raw: object, index: int) -> np.ndarray:
    mask = np.asarray(raw)
    if mask.dtype.kind not in "biuf":
        raise CodecError(f"mask layer {index} has dtype {mask.dtype}, expected bool or 0/1")
    if not 1 <= mask.ndim <= MAX_NDIM:
        raise CodecError(f"mask layer {index} has ndim {mask.ndim}, allowed 1 to {MAX_NDIM}")
    if 0 in mask.shape or max(mask.shape) > _U32_MAX:
        raise CodecError(f"mask layer {index} has shape {mask.shape}: every dim must be 1..2^32-1")
    if mask.dtype != np.bool_:
        if not np.all((mask == 0) | (mask == 1)):
            raise CodecError(f"mask layer {index} has values other than 0 and 1")
        mask = mask.astype(np.bool_)
    return mask


def _check_fingerprint(fingerprint: object, name: str) -> None:
    if not isinstance(fingerprint, bytes) or len(fingerprint) != FINGERPRINT_SIZE:
        got = len(fingerprint) if isinstance(fingerprint, bytes) else type(fingerprint).__name__
        raise CodecError(f"{name} must be {FINGERPRINT_SIZE} bytes, got {got}")


def _check_u32(value: object, name: str) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise CodecError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not 0 <= number <= _U32_MAX:
        raise CodecError(f"{name} must be in 0..{_U32_MAX}, got {number}")
    return number


def _check_key(key: object) -> None:
    # An empty key would set the keyed flag while BLAKE2b computes the unkeyed tag.
    if key is not None and (not isinstance(key, bytes) or not 1 <= len(key) <= MAX_KEY_SIZE):
        raise CodecError(f"key must be 1 to {MAX_KEY_SIZE} bytes")


def _tag(body: bytes, key: bytes | None) -> bytes:
    return hashlib.blake2b(body, digest_size=TAG_SIZE, key=key or b"").digest()


def _short(fingerprint: bytes) -> str:
    return fingerprint[:4].hex() + "…"
