"""Wire format v1: binary masks as real bytes, 1 bit per masked weight.

Agents share the fixed random weights (regenerated from a seed) and exchange only masks, so this
module is the whole of what crosses the network. Communication figures are counted from the bytes
it produces, and the decoder is the first thing that touches untrusted input: it must reject
anything malformed with a one-line :class:`CodecError` and never allocate more than the message
itself justifies. It imports numpy only, so a torch-free device can decode too. Never pickle.

Layout (little-endian, fixed offsets via :mod:`struct`; the header and tag are the shared
:mod:`.envelope`):

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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .envelope import (FORMAT_VERSION, MAX_NDIM, TAG_SIZE, CodecError, check_layer_shape, check_length,
                       header_size, pack_header, read_header, seal, verify)

__all__ = ["CODEC_PACKBITS", "FORMAT_VERSION", "MAGIC", "CodecError", "MaskMessage", "decode_masks",
           "encode_masks", "header_size", "message_size", "unpack_mask"]

MAGIC = b"MCPL"
CODEC_PACKBITS: int = 1
_KIND = "mask"


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
    bool_masks = [_as_bool_mask(raw, index) for index, raw in enumerate(masks)]
    header = pack_header(MAGIC, CODEC_PACKBITS, [m.shape for m in bool_masks], fingerprint=fingerprint,
                         sender=sender, round=round, key=key, kind=_KIND)
    payloads = [np.packbits(m.ravel(), bitorder="little").tobytes() for m in bool_masks]
    return seal(b"".join([header, *payloads]), key)


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
    data, header = read_header(data, magic=MAGIC, codec=CODEC_PACKBITS, kind=_KIND,
                               expected_fingerprint=expected_fingerprint, key=key)
    entries = sum(math.prod(shape) for shape in header.shapes)
    if entries > max_entries:
        raise CodecError(f"mask message declares {entries} entries, more than max_entries={max_entries}")
    sizes = [(math.prod(shape) + 7) // 8 for shape in header.shapes]
    check_length(data, header, sum(sizes), _KIND)
    verify(data, header, kind=_KIND, key=key, expected_fingerprint=expected_fingerprint,
           expected_shapes=expected_shapes)
    masks, offset = [], header.payload_offset
    for index, (shape, size) in enumerate(zip(header.shapes, sizes)):
        masks.append(unpack_mask(data, offset, shape, f"mask message layer {index}"))
        offset += size
    return MaskMessage(sender=header.sender, round=header.round, fingerprint=header.fingerprint,
                       masks=tuple(masks))


def unpack_mask(data: bytes, offset: int, shape: tuple[int, ...], where: str) -> np.ndarray:
    """One layer's packed bits at ``offset`` as a bool array; nonzero padding bits are an error."""
    n = math.prod(shape)
    packed = np.frombuffer(data, dtype=np.uint8, count=(n + 7) // 8, offset=offset)
    if n % 8 and packed[-1] >> (n % 8):
        raise CodecError(f"{where}: nonzero padding bits")
    return np.unpackbits(packed, count=n, bitorder="little").view(np.bool_).reshape(shape)


def _as_bool_mask(raw: object, index: int) -> np.ndarray:
    mask = np.asarray(raw)
    if mask.dtype.kind not in "biuf":
        raise CodecError(f"mask layer {index} has dtype {mask.dtype}, expected bool or 0/1")
    if not 1 <= mask.ndim <= MAX_NDIM:
        raise CodecError(f"mask layer {index} has ndim {mask.ndim}, allowed 1 to {MAX_NDIM}")
    check_layer_shape(mask.shape, index, _KIND)
    if mask.dtype != np.bool_:
        if not np.all((mask == 0) | (mask == 1)):
            raise CodecError(f"mask layer {index} has values other than 0 and 1")
        mask = mask.astype(np.bool_)
    return mask
