"""Wire format for masked (sparse) fp32 weights — the Dis-PFL baseline's messages.

The shared :mod:`.envelope` header and tag (magic ``b"MCPS"``, codec id ``CODEC_SPARSE_FP32``
= 3). Payload: every layer's mask as ``np.packbits(bitorder="little")`` (each layer padded to whole
bytes with zero bits, as in the mask codec), then the float32 values of the kept entries of every
layer in C order. Its size is therefore ``header + ⌈n/8⌉ per layer + 4·(kept entries) + tag`` —
the honest cost of sending a sparse model (mask + values). Decoding is strict: the length must
match the masks' popcount exactly, padding bits must be zero, values must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dense import check_entries, finite_fp32, read_finite_fp32
from .envelope import (
    KINDS,
    SPARSE_WEIGHT_MAGIC,
    Authenticator,
    CodecError,
    check_length,
    pack_header,
    read_header,
    seal,
    verify,
)
from .masks import unpack_masks

MAGIC = SPARSE_WEIGHT_MAGIC
CODEC_SPARSE_FP32: int = 3
_KIND = KINDS[MAGIC]


@dataclass(frozen=True, eq=False)
class SparseWeightMessage:
    """Decoded masked weights: per layer a bool mask and a dense float32 array (zeros off-mask)."""

    sender: int
    round: int
    fingerprint: bytes
    masks: tuple[np.ndarray, ...]
    tensors: tuple[np.ndarray, ...]
    digest: None = None  # weights carry no content digest (wire/delta.py's is for masks)


def encode_sparse_weights(masks: Sequence[np.ndarray], tensors: Sequence[np.ndarray], *, fingerprint: bytes,
                          sender: int, round: int, auth: Authenticator | None = None) -> bytes:
    """Encode per-layer (mask, weights): the mask bits plus the fp32 values where the mask is set."""
    if len(masks) != len(tensors):
        raise CodecError(f"need one mask per weight tensor, got {len(masks)} masks and {len(tensors)} tensors")
    bits, values = [], []
    for index, (raw_m, raw_w) in enumerate(zip(masks, tensors)):
        m, w = np.asarray(raw_m), finite_fp32(raw_w, index)
        if m.dtype != np.bool_ or m.shape != w.shape:
            raise CodecError(f"layer {index}: need a bool mask of the weights' shape {w.shape}")
        bits.append(np.packbits(m.ravel(), bitorder="little").tobytes())
        values.append(w[m].tobytes())
    header = pack_header(MAGIC, CODEC_SPARSE_FP32, [np.shape(w) for w in tensors], fingerprint=fingerprint,
                         sender=sender, round=round, auth=auth, kind=_KIND)
    return seal(b"".join([header, *bits, *values]), auth)


def decode_sparse_weights(data: bytes, *, expected_fingerprint: bytes | None = None,
                          expected_shapes: Sequence[tuple[int, ...]] | None = None, auth: Authenticator | None = None,
                          max_entries: int = 1 << 26) -> SparseWeightMessage:
    """Decode and verify; the length must match the masks' popcount exactly (checked after the tag,
    since the popcount is payload)."""
    data, header = read_header(data, magic=MAGIC, codec=CODEC_SPARSE_FP32, kind=_KIND,
                               expected_fingerprint=expected_fingerprint, auth=auth)
    check_entries(header.shapes, max_entries)
    mask_bytes = [(math.prod(s) + 7) // 8 for s in header.shapes]
    if len(data) - header.payload_offset < sum(mask_bytes) + header.trailer_size:
        raise CodecError("sparse weight message truncated in its masks")
    verify(data, header, kind=_KIND, auth=auth, expected_fingerprint=expected_fingerprint,
           expected_shapes=expected_shapes)
    masks, offset = unpack_masks(data, header.payload_offset, header.shapes, "sparse weight message")
    kept = [int(m.sum()) for m in masks]
    check_length(data, header, sum(mask_bytes) + 4 * sum(kept), _KIND)
    tensors = []
    for m, k in zip(masks, kept):
        dense = np.zeros(m.shape, np.float32)
        dense[m] = read_finite_fp32(data, offset, k)
        offset += 4 * k
        tensors.append(dense)
    return SparseWeightMessage(header.sender, header.round, header.fingerprint, tuple(masks), tuple(tensors))
