"""Wire format for dense fp32 weights (the DSGD baseline): the shared :mod:`.envelope`, fp32 payload.

DSGD-style baselines exchange real weights, not masks, so their communication is counted from
this encoder's bytes exactly as MCE-PL's is from :mod:`.masks`.

Layout: the shared :mod:`.envelope` with magic ``b"MCPW"`` and codec id ``CODEC_FP32`` (2); the
payload is every layer's values as little-endian float32, C order, layers concatenated.

Non-finite values are refused on both sides: a NaN from a diverged neighbour must not poison
an average. numpy only (no torch), never pickle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .envelope import (
    KINDS,
    WEIGHT_MAGIC,
    Authenticator,
    CodecError,
    check_layer_shape,
    check_length,
    header_size,
    pack_header,
    read_header,
    seal,
    trailer_size,
    verify,
)

MAGIC = WEIGHT_MAGIC
CODEC_FP32: int = 2
_KIND = KINDS[MAGIC]


@dataclass(frozen=True, eq=False)
class WeightMessage:
    """One decoded weight message; arrays are fresh float32 copies owned by the caller."""

    sender: int
    round: int
    fingerprint: bytes
    tensors: tuple[np.ndarray, ...]
    digest: None = None  # weights carry no content digest (wire/delta.py's is for masks)


def message_size(shapes: Sequence[Sequence[int]], signed: bool = False) -> int:
    """Exact encoded size: header + 4 bytes per entry + trailer (a signature when ``signed``, else the tag)."""
    return header_size(shapes) + 4 * sum(math.prod(s) for s in shapes) + trailer_size(signed)


def encode_weights(tensors: Sequence[np.ndarray], *, fingerprint: bytes, sender: int, round: int,
                   auth: Authenticator | None = None) -> bytes:
    """Encode one float array per layer (model order) as fp32; non-finite values are refused."""
    arrays = [finite_fp32(raw, index) for index, raw in enumerate(tensors)]
    header = pack_header(MAGIC, CODEC_FP32, [a.shape for a in arrays], fingerprint=fingerprint, sender=sender,
                         round=round, auth=auth, kind=_KIND)
    return seal(b"".join([header, *(a.tobytes() for a in arrays)]), auth)


def decode_weights(data: bytes, *, expected_fingerprint: bytes | None = None,
                   expected_shapes: Sequence[tuple[int, ...]] | None = None, auth: Authenticator | None = None,
                   max_entries: int = 1 << 26, nested: bool = False) -> WeightMessage:
    """Decode and verify a weight message; any defect raises :class:`CodecError` (nothing is trusted
    until sizes match the bytes present and the tag checks)."""
    data, header = read_header(data, magic=MAGIC, codec=CODEC_FP32, kind=_KIND,
                               expected_fingerprint=expected_fingerprint, auth=auth)
    entries = check_entries(header.shapes, max_entries)
    check_length(data, header, 4 * entries, _KIND)
    verify(data, header, kind=_KIND, auth=auth, expected_fingerprint=expected_fingerprint,
           expected_shapes=expected_shapes, nested=nested)
    tensors, offset = [], header.payload_offset
    for shape in header.shapes:
        n = math.prod(shape)
        tensors.append(read_finite_fp32(data, offset, n).reshape(shape))
        offset += 4 * n
    return WeightMessage(sender=header.sender, round=header.round, fingerprint=header.fingerprint,
                         tensors=tuple(tensors))


def check_entries(shapes: Sequence[tuple[int, ...]], max_entries: int) -> int:
    """Total entries the header declares, refused above ``max_entries`` (before any allocation)."""
    entries = sum(math.prod(s) for s in shapes)
    if entries > max_entries:
        raise CodecError(f"weight message declares {entries} entries, more than max_entries={max_entries}")
    return entries


def finite_fp32(raw: object, index: int) -> np.ndarray:
    """A layer's weights as contiguous little-endian fp32; non-float or non-finite input is refused."""
    array = np.asarray(raw)
    if array.dtype.kind != "f":
        raise CodecError(f"weight layer {index} has dtype {array.dtype}, expected floating point")
    check_layer_shape(array.shape, index, _KIND)
    array = np.ascontiguousarray(array, dtype="<f4")
    if not np.isfinite(array).all():
        raise CodecError(f"weight layer {index} has non-finite values")
    return array


def read_finite_fp32(data: bytes, offset: int, count: int) -> np.ndarray:
    """``count`` fp32 values at ``offset`` as a fresh float32 array: a NaN from a diverged
    neighbour must not poison an average."""
    values = np.frombuffer(data, dtype="<f4", count=count, offset=offset).astype(np.float32)
    if not np.isfinite(values).all():
        raise CodecError("weight message has non-finite values")
    return values
