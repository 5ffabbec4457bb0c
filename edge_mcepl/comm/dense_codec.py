"""Wire format for dense fp32 weights (the DSGD baseline): same header discipline as :mod:`.codec`.

DSGD-style baselines exchange real weights, not masks, so their communication is counted from
this encoder's bytes exactly as MCE-PL's is from :mod:`edge_mcepl.comm.codec`. The layout mirrors
the mask format so both are equally strict; only the magic, the codec id and the payload differ.

==========  ====================  ============================================================
size        field                 meaning
==========  ====================  ============================================================
4 B         magic                 ``b"MCPW"``
u8          version               ``FORMAT_VERSION`` (1)
u8          codec id              ``CODEC_FP32`` (2)
u16         flags                 bit 0 = tag is keyed; other bits must be zero
16 B        fingerprint           fingerprint of the shared initial weights
u32         sender                agent id
u32         round                 round number
u16         n_layers              1 … ``MAX_LAYERS``
per layer   u8 ndim + ndim × u32  the layer's shape; ndim 1 … ``MAX_NDIM``, every dim ≥ 1
payload     per layer             little-endian float32, C order, layers concatenated
16 B        tag                   BLAKE2b(digest_size=16) over every byte before it (keyed with
                                  the lab secret when given)
==========  ====================  ============================================================

Non-finite values are refused on both sides: a NaN from a diverged neighbour must not poison
an average. numpy only (no torch), never pickle.
"""

from __future__ import annotations

import hmac
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .codec import (_FIXED, FINGERPRINT_SIZE, FLAG_KEYED, MAX_LAYERS, MAX_NDIM, TAG_SIZE, CodecError,
                    _check_fingerprint, _check_key, _check_u32, _short, _tag)

MAGIC = b"MCPW"
FORMAT_VERSION: int = 1
CODEC_FP32: int = 2
_U32_MAX = 2**32 - 1
assert _FIXED.size == 4 + 4 + FINGERPRINT_SIZE + 10


@dataclass(frozen=True, eq=False)
class WeightMessage:
    """One decoded weight message; arrays are fresh float32 copies owned by the caller."""

    sender: int
    round: int
    fingerprint: bytes
    tensors: tuple[np.ndarray, ...]


def message_size(shapes: Sequence[Sequence[int]]) -> int:
    """Exact encoded size: header + 4 bytes per entry + tag."""
    header = _FIXED.size + sum(1 + 4 * len(s) for s in shapes)
    return header + 4 * sum(math.prod(s) for s in shapes) + TAG_SIZE


def encode_weights(tensors: Sequence[np.ndarray], *, fingerprint: bytes, sender: int, round: int,
                   key: bytes | None = None) -> bytes:
    """Encode one float array per layer (model order) as fp32; non-finite values are refused."""
    _check_fingerprint(fingerprint, "fingerprint")
    sender, round = _check_u32(sender, "sender"), _check_u32(round, "round")
    _check_key(key)
    if not 1 <= len(tensors) <= MAX_LAYERS:
        raise CodecError(f"need 1 to {MAX_LAYERS} weight layers, got {len(tensors)}")
    parts = [_FIXED.pack(MAGIC, FORMAT_VERSION, CODEC_FP32, FLAG_KEYED if key is not None else 0, fingerprint,
                         sender, round, len(tensors))]
    payloads = []
    for index, raw in enumerate(tensors):
        array = np.asarray(raw)
        if array.dtype.kind != "f":
            raise CodecError(f"weight layer {index} has dtype {array.dtype}, expected floating point")
        if not 1 <= array.ndim <= MAX_NDIM or 0 in array.shape or max(array.shape) > _U32_MAX:
            raise CodecError(f"weight layer {index} has shape {array.shape}: ndim 1..{MAX_NDIM}, dims 1..2^32-1")
        array = np.ascontiguousarray(array, dtype="<f4")
        if not np.isfinite(array).all():
            raise CodecError(f"weight layer {index} has non-finite values")
        parts.append(struct.pack(f"<B{array.ndim}I", array.ndim, *array.shape))
        payloads.append(array.tobytes())
    body = b"".join(parts + payloads)
    return body + _tag(body, key)


def decode_weights(data: bytes, *, expected_fingerprint: bytes | None = None,
                   expected_shapes: Sequence[tuple[int, ...]] | None = None, key: bytes | None = None,
                   max_entries: int = 1 << 26) -> WeightMessage:
    """Decode and verify a weight message; any defect raises :class:`CodecError` (nothing is trusted
    until sizes match the bytes present and the tag checks)."""
    data, (fingerprint, sender, round_), shapes, offset = parse_header(data, MAGIC, CODEC_FP32, expected_fingerprint, key)
    entries = sum(math.prod(s) for s in shapes)
    if entries > max_entries:
        raise CodecError(f"weight message declares {entries} entries, more than max_entries={max_entries}")
    got = len(data) - offset
    if got != 4 * entries + TAG_SIZE:
        raise CodecError(f"weight message length mismatch: header says {4 * entries} payload bytes + "
                         f"{TAG_SIZE}-byte tag, got {got}")
    check_tag_and_claims(data, key, fingerprint, expected_fingerprint, shapes, expected_shapes)
    tensors = []
    for shape in shapes:
        n = math.prod(shape)
        array = np.frombuffer(data, dtype="<f4", count=n, offset=offset).astype(np.float32).reshape(shape)
        offset += 4 * n
        if not np.isfinite(array).all():
            raise CodecError("weight message has non-finite values")
        tensors.append(array)
    return WeightMessage(sender=sender, round=round_, fingerprint=fingerprint, tensors=tuple(tensors))


def parse_header(data: object, magic_expected: bytes, codec_expected: int, expected_fingerprint: bytes | None,
                 key: bytes | None) -> tuple[bytes, tuple[bytes, int, int], list[tuple[int, ...]], int]:
    """Check the fixed header and parse the shape records of a weight-family message.

    Returns (data as bytes, (fingerprint, sender, round), shapes, payload offset). The tag is *not*
    checked here: the caller knows the payload length and checks it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"weight message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if expected_fingerprint is not None:
        _check_fingerprint(expected_fingerprint, "expected_fingerprint")
    _check_key(key)
    if len(data) < _FIXED.size:
        raise CodecError(f"weight message truncated: {len(data)} bytes, the fixed header alone is {_FIXED.size}")
    magic, version, codec, flags, fingerprint, sender, round_, n_layers = _FIXED.unpack_from(data)
    if magic != magic_expected:
        raise CodecError(f"not a weight message of this kind: bad magic {magic!r}, expected {magic_expected!r}")
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported weight format version {version}, this decoder reads {FORMAT_VERSION}")
    if codec != codec_expected:
        raise CodecError(f"unknown weight codec id {codec}, this decoder knows {codec_expected}")
    if flags & ~FLAG_KEYED:
        raise CodecError(f"unknown weight message flag bits 0x{flags & ~FLAG_KEYED:04x}")
    if bool(flags & FLAG_KEYED) != (key is not None):
        raise CodecError("weight message keyed/unkeyed does not match the key given")
    if not 1 <= n_layers <= MAX_LAYERS:
        raise CodecError(f"weight message declares {n_layers} layers, allowed 1 to {MAX_LAYERS}")
    shapes, offset = [], _FIXED.size
    for index in range(n_layers):
        ndim = data[offset] if offset < len(data) else 0
        if offset >= len(data) or offset + 1 + 4 * ndim > len(data):
            raise CodecError(f"weight message truncated in the shape of layer {index}")
        if not 1 <= ndim <= MAX_NDIM:
            raise CodecError(f"weight message layer {index} has ndim {ndim}, allowed 1 to {MAX_NDIM}")
        shape = struct.unpack_from(f"<{ndim}I", data, offset + 1)
        offset += 1 + 4 * ndim
        if 0 in shape:
            raise CodecError(f"weight message layer {index} has a zero dimension: {shape}")
        shapes.append(shape)
    return data, (fingerprint, sender, round_), shapes, offset


def check_tag_and_claims(data: bytes, key: bytes | None, fingerprint: bytes, expected_fingerprint: bytes | None,
                         shapes, expected_shapes) -> None:
    """Tag first, then what the now-authentic header claims."""
    body, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not hmac.compare_digest(tag, _tag(body, key)):
        raise CodecError("weight message corrupt or tampered: tag mismatch")
    if expected_fingerprint is not None and fingerprint != expected_fingerprint:
        raise CodecError(f"weights fingerprint mismatch: message has {_short(fingerprint)}, this agent has "
                         f"{_short(expected_fingerprint)}")
    if expected_shapes is not None:
        if len(shapes) != len(expected_shapes) or any(tuple(a) != tuple(b) for a, b in zip(shapes, expected_shapes)):
            raise CodecError(f"weight shapes mismatch: message has {shapes}, this model has {list(expected_shapes)}")
