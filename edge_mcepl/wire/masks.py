"""Wire format v2: binary masks as real bytes, 1 bit per masked weight (or far fewer).

Agents share the fixed random weights (regenerated from a seed) and exchange only masks, so this
module is the whole of what crosses the network. Communication figures are counted from the bytes
it produces, and the decoder is the first thing that touches untrusted input: it must reject
anything malformed with a one-line :class:`CodecError` and never allocate more than the message
itself justifies. It imports numpy only, so a torch-free device can decode too. Never pickle.

Layout: the shared :mod:`.envelope` (header with the run id, shape records, then the sender's Ed25519
signature — or, for a file, a BLAKE2b integrity tag) with magic ``b"MCPL"``
and one of two payload codecs, named by the header's codec id:

- ``CODEC_PACKBITS`` (1, ``"packbits"``): per layer in model order,
  ``np.packbits(mask.ravel(), bitorder="little")``, each layer padded to whole bytes with zero
  bits — exactly 1 bit per weight. Per-layer padding costs at most 7 bits a layer but lets every
  layer be unpacked from its own byte slice, and checking that the padding is zero keeps the
  encoding canonical: one mask set has exactly one valid message.
- ``CODEC_RICE`` (2, ``"rice"``): per layer, the Golomb–Rice-coded gaps of :mod:`.rice` — about
  H(r) bits per weight (≈ 0.82 on the paper's masks), for the cost of a few milliseconds.
- ``CODEC_DELTA`` (3): the XOR with an earlier mask of the same sender (:mod:`.delta`), ≈ 0.02–0.04
  bits per weight. The ``"delta"`` setting sends these, with Rice-coded keyframes whenever there
  is no base every receiver holds (:func:`encode_masks` with ``base=None``).

A decoder reads all three (a delta only with the receiver's earlier masks, ``bases``); which one a
lab sends is ``algorithm.mask_codec``. Every decoded message carries the :func:`~.delta.mask_digest`
of its masks, whatever the codec: what a later delta names as its base, and what a receiver can
compare with the sender's own record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import delta, rice
from .delta import BaseLookup, MaskRecord, mask_digest
from .envelope import (
    FORMAT_VERSION,
    KINDS,
    MASK_MAGIC,
    Authenticator,
    CodecError,
    Header,
    check_layer_shape,
    check_length,
    header_size,
    pack_header,
    read_common_header,
    read_header,
    seal,
    trailer_size,
    verify,
)

__all__ = ["CODEC_DELTA", "CODEC_PACKBITS", "CODEC_RICE", "MASK_CODECS", "FORMAT_VERSION", "MAGIC", "CodecError",
           "MaskMessage", "decode_masks", "encode_masks", "header_size", "is_delta", "message_size", "unpack_masks"]

MAGIC = MASK_MAGIC
CODEC_PACKBITS: int = 1
CODEC_RICE: int = 2
CODEC_DELTA: int = 3
MASK_CODECS: dict[str, int] = {"packbits": CODEC_PACKBITS, "rice": CODEC_RICE, "delta": CODEC_DELTA}
_KIND = KINDS[MAGIC]


@dataclass(frozen=True, eq=False)
class MaskMessage:
    """One decoded mask message.

    Two messages are equal when they carry the same sender, round and masks (``digest``), whatever
    their codec: a keyframe sent again in place of the delta a receiver already holds is the same
    message, not a conflicting one. (A generated ``__eq__`` would compare the numpy arrays
    elementwise and raise.) The arrays are fresh and owned by the caller.
    """

    sender: int
    round: int
    fingerprint: bytes
    masks: tuple[np.ndarray, ...]
    digest: bytes  # mask_digest(masks)
    base_round: int | None = None  # the round a delta was relative to; None: it stood alone (a keyframe)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskMessage):
            return NotImplemented
        return (self.sender, self.round, self.digest) == (other.sender, other.round, other.digest)

    def __hash__(self) -> int:
        return hash((self.sender, self.round, self.digest))


def message_size(shapes: Sequence[Sequence[int]], signed: bool = False) -> int:
    """Exact encoded size of a packbits message for layers of these shapes: header + payload + trailer
    (a signature when ``signed``, else the file tag).

    (A Rice-coded message's size depends on the masks themselves.)"""
    payload = sum((math.prod(shape) + 7) // 8 for shape in shapes)
    return header_size(shapes) + payload + trailer_size(signed)


def encode_masks(
    masks: Sequence[np.ndarray],
    *,
    fingerprint: bytes,
    sender: int,
    round: int,
    auth: Authenticator | None = None,
    codec: str = "packbits",
    base: MaskRecord | None = None,
) -> bytes:
    """Encode one mask per masked layer (model order) into a wire-format v2 message (signed with ``auth``).

    Masks may be bool arrays, 0/1-valued numeric arrays, or anything ``np.asarray`` turns into
    one (e.g. CPU torch tensors). A value other than 0/1 is refused rather than rounded, because
    it means the caller sent scores instead of a mask. ``codec`` is ``"packbits"``, ``"rice"`` or
    ``"delta"``: with ``"delta"``, the XOR with ``base`` — an earlier message of this sender that
    its receivers hold — or a Rice keyframe when there is none (``base=None``) or the delta would
    not be smaller (a large change, another width).
    """
    if codec not in MASK_CODECS:
        raise CodecError(f"unknown mask codec {codec!r}, expected one of {', '.join(MASK_CODECS)}")
    bool_masks = [_as_bool_mask(raw, index) for index, raw in enumerate(masks)]
    if codec == "delta" and (base is None or not delta.worth_a_delta(bool_masks, base)):
        codec = "rice"
    header = pack_header(MAGIC, MASK_CODECS[codec], [m.shape for m in bool_masks], fingerprint=fingerprint,
                         sender=sender, round=round, auth=auth, kind=_KIND)
    if codec == "delta":
        assert base is not None
        payloads = [delta.encode_payload(bool_masks, base)]
    elif codec == "rice":
        payloads = [rice.encode_layer(m) for m in bool_masks]
    else:
        payloads = [np.packbits(m.ravel(), bitorder="little").tobytes() for m in bool_masks]
    return seal(b"".join([header, *payloads]), auth)


def decode_masks(
    data: bytes,
    *,
    expected_fingerprint: bytes | None = None,
    expected_shapes: Sequence[tuple[int, ...]] | None = None,
    auth: Authenticator | None = None,
    max_entries: int = 1 << 28,
    nested: bool = False,
    bases: BaseLookup | None = None,
) -> MaskMessage:
    """Decode and verify a wire-format v2 message; any defect raises :class:`CodecError`.

    Structure is checked first (so a truncated or future-version message says so rather than
    "tampered"), then the tag, then what the now-authentic content claims (fingerprint, shapes,
    padding). Nothing is allocated until the declared sizes match the bytes actually present,
    so a hostile header cannot make the decoder reserve memory. A delta needs its base from
    ``bases`` (the receiver's :class:`~.history.MaskHistory`); without it, :class:`~.delta.BaseMissing`.
    """
    data, header = read_header(data, magic=MAGIC, codec=tuple(MASK_CODECS.values()), kind=_KIND,
                               expected_fingerprint=expected_fingerprint, auth=auth)
    entries = sum(math.prod(shape) for shape in header.shapes)
    if entries > max_entries:
        raise CodecError(f"mask message declares {entries} entries, more than max_entries={max_entries}")
    if header.codec == CODEC_PACKBITS:
        check_length(data, header, sum((math.prod(shape) + 7) // 8 for shape in header.shapes), _KIND)
        verify(data, header, kind=_KIND, auth=auth, expected_fingerprint=expected_fingerprint,
               expected_shapes=expected_shapes, nested=nested)
        masks, _ = unpack_masks(data, header.payload_offset, header.shapes, "mask message")
        return _message(header, masks)
    # Rice and delta layer sizes are in the payload: authenticate first, then walk it with bounds checks.
    if len(data) - header.payload_offset < header.trailer_size:
        raise CodecError("mask message truncated: no room for the signature or tag")
    verify(data, header, kind=_KIND, auth=auth, expected_fingerprint=expected_fingerprint,
           expected_shapes=expected_shapes, nested=nested)
    body = data[:-header.trailer_size]
    base_round = None
    if header.codec == CODEC_DELTA:
        masks, base_round, offset = delta.decode_payload(body, header.payload_offset, header.sender, header.shapes,
                                                         bases)
    else:
        masks, offset = [], header.payload_offset
        for index, shape in enumerate(header.shapes):
            mask, offset = rice.decode_layer(body, offset, shape, f"mask message layer {index}")
            masks.append(mask)
    check_length(data, header, offset - header.payload_offset, _KIND)
    return _message(header, masks, base_round)


def _message(header: Header, masks: Sequence[np.ndarray], base_round: int | None = None) -> MaskMessage:
    masks = tuple(masks)
    return MaskMessage(sender=header.sender, round=header.round, fingerprint=header.fingerprint, masks=masks,
                       digest=mask_digest(masks), base_round=base_round)


def is_delta(message: bytes) -> bool:
    """Whether an encoded message is a mask delta (needs an earlier message to decode), not a stand-alone one."""
    header = read_common_header(message)
    return header.kind == _KIND and header.codec == CODEC_DELTA


def unpack_masks(data: bytes, offset: int, shapes: Sequence[tuple[int, ...]],
                 kind: str) -> tuple[list[np.ndarray], int]:
    """Every layer's packed bits from ``offset`` on; returns the masks and the offset after them."""
    masks = []
    for index, shape in enumerate(shapes):
        masks.append(unpack_mask(data, offset, shape, f"{kind} layer {index}"))
        offset += (math.prod(shape) + 7) // 8
    return masks, offset


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
    check_layer_shape(mask.shape, index, _KIND)
    if mask.dtype != np.bool_:
        if not np.all((mask == 0) | (mask == 1)):
            raise CodecError(f"mask layer {index} has values other than 0 and 1")
        mask = mask.astype(np.bool_)
    return mask
