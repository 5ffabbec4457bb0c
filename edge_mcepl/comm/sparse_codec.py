"""Wire format for masked (sparse) fp32 weights — the Dis-PFL baseline's messages.

Same fixed header and tag as :mod:`.dense_codec` (magic ``b"MCPS"``, codec id ``CODEC_SPARSE_FP32``
= 3). Payload: every layer's mask as ``np.packbits(bitorder="little")`` (each layer padded to whole
bytes with zero bits, as in the mask codec), then the float32 values of the kept entries of every
layer in C order. Its size is therefore ``header + ⌈n/8⌉ per layer + 4·(kept entries) + tag`` —
the honest cost of sending a sparse model (mask + values). Decoding is strict: the length must
match the masks' popcount exactly, padding bits must be zero, values must be finite.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .codec import (MAX_LAYERS, MAX_NDIM, TAG_SIZE, CodecError, _check_fingerprint, _check_key, _check_u32, _tag,
                    unpack_mask)
from .dense_codec import _FIXED, FLAG_KEYED, FORMAT_VERSION, check_tag_and_claims, parse_header

MAGIC = b"MCPS"
CODEC_SPARSE_FP32: int = 3
_U32_MAX = 2**32 - 1


@dataclass(frozen=True, eq=False)
class SparseWeightMessage:
    """Decoded masked weights: per layer a bool mask and a dense float32 array (zeros off-mask)."""

    sender: int
    round: int
    fingerprint: bytes
    masks: tuple[np.ndarray, ...]
    tensors: tuple[np.ndarray, ...]


def encode_sparse_weights(masks: Sequence[np.ndarray], tensors: Sequence[np.ndarray], *, fingerprint: bytes,
                          sender: int, round: int, key: bytes | None = None) -> bytes:
    """Encode per-layer (mask, weights): the mask bits plus the fp32 values where the mask is set."""
    _check_fingerprint(fingerprint, "fingerprint")
    sender, round = _check_u32(sender, "sender"), _check_u32(round, "round")
    _check_key(key)
    if not 1 <= len(masks) <= MAX_LAYERS or len(masks) != len(tensors):
        raise CodecError(f"need 1 to {MAX_LAYERS} layers and one mask per weight tensor")
    parts = [_FIXED.pack(MAGIC, FORMAT_VERSION, CODEC_SPARSE_FP32, FLAG_KEYED if key is not None else 0,
                         fingerprint, sender, round, len(masks))]
    bits, values = [], []
    for index, (raw_m, raw_w) in enumerate(zip(masks, tensors)):
        m, w = np.asarray(raw_m), np.asarray(raw_w)
        if m.dtype != np.bool_ or w.dtype.kind != "f" or m.shape != w.shape:
            raise CodecError(f"layer {index}: need a bool mask and a float array of the same shape")
        if not 1 <= m.ndim <= MAX_NDIM or 0 in m.shape or max(m.shape) > _U32_MAX:
            raise CodecError(f"layer {index} has shape {m.shape}: ndim 1..{MAX_NDIM}, dims 1..2^32-1")
        kept = np.ascontiguousarray(w, dtype="<f4")[m]
        if not np.isfinite(kept).all():
            raise CodecError(f"weight layer {index} has non-finite values")
        parts.append(struct.pack(f"<B{m.ndim}I", m.ndim, *m.shape))
        bits.append(np.packbits(m.ravel(), bitorder="little").tobytes())
        values.append(kept.tobytes())
    body = b"".join(parts + bits + values)
    return body + _tag(body, key)


def decode_sparse_weights(data: bytes, *, expected_fingerprint: bytes | None = None,
                          expected_shapes: Sequence[tuple[int, ...]] | None = None, key: bytes | None = None,
                          max_entries: int = 1 << 26) -> SparseWeightMessage:
    data, (fingerprint, sender, round_), shapes, offset = parse_header(data, MAGIC, CODEC_SPARSE_FP32,
                                                                       expected_fingerprint, key)
    entries = sum(math.prod(s) for s in shapes)
    if entries > max_entries:
        raise CodecError(f"weight message declares {entries} entries, more than max_entries={max_entries}")
    mask_bytes = [(math.prod(s) + 7) // 8 for s in shapes]
    if len(data) - offset < sum(mask_bytes) + TAG_SIZE:
        raise CodecError("sparse weight message truncated in its masks")
    check_tag_and_claims(data, key, fingerprint, expected_fingerprint, shapes, expected_shapes)
    masks = []
    for index, (shape, size) in enumerate(zip(shapes, mask_bytes)):
        masks.append(unpack_mask(data, offset, shape, f"sparse weight message layer {index}"))
        offset += size
    kept = sum(int(m.sum()) for m in masks)
    if len(data) - offset != 4 * kept + TAG_SIZE:
        raise CodecError(f"sparse weight message length mismatch: masks keep {kept} entries "
                         f"({4 * kept} value bytes + {TAG_SIZE}-byte tag), got {len(data) - offset}")
    tensors = []
    for m in masks:
        k = int(m.sum())
        values = np.frombuffer(data, dtype="<f4", count=k, offset=offset).astype(np.float32)
        offset += 4 * k
        if not np.isfinite(values).all():
            raise CodecError("sparse weight message has non-finite values")
        dense = np.zeros(m.shape, np.float32)
        dense[m] = values
        tensors.append(dense)
    return SparseWeightMessage(sender, round_, fingerprint, tuple(masks), tuple(tensors))
