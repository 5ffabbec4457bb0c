"""The delta mask codec (wire/delta.py): exact round trips, ~flip-rate-entropy sizes, and strict refusals."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_mcepl.wire.delta import PREFIX, BaseMissing, MaskRecord
from edge_mcepl.wire.envelope import header_size
from edge_mcepl.wire.history import MaskHistory
from edge_mcepl.wire.masks import CodecError, decode_masks, encode_masks, is_delta

FP = bytes(range(16))
ALEXNET = [(64, 3, 5, 5), (128, 64, 5, 5), (256, 128, 5, 5), (192, 1024), (10, 192)]


def masks_and_moved(shapes, flip_rate, seed=0, density=0.3):
    """Top-k-like masks and the same masks with ``flip_rate`` of each layer's entries swapped (kept count unchanged)."""
    rng = np.random.default_rng(seed)
    old = [rng.random(shape) < density for shape in shapes]
    new = []
    for mask in old:
        flat = mask.ravel().copy()
        swaps = max(1, int(flat.size * flip_rate / 2))
        on, off = np.flatnonzero(flat), np.flatnonzero(~flat)
        flat[rng.choice(on, min(swaps, len(on)), replace=False)] = False
        flat[rng.choice(off, min(swaps, len(off)), replace=False)] = True
        new.append(flat.reshape(mask.shape))
    return old, new


def history_with(sender, record):
    history = MaskHistory()
    history.remember(sender, record)
    return history


def test_a_delta_decodes_to_exactly_the_new_masks_in_about_the_flip_entropy():
    old, new = masks_and_moved(ALEXNET, flip_rate=0.003)
    base = MaskRecord.of(7, old)
    data = encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta", base=base)
    assert is_delta(data)
    msg = decode_masks(data, expected_fingerprint=FP, expected_shapes=ALEXNET,
                       bases=history_with(2, base).lookup)
    assert all(np.array_equal(a, b) for a, b in zip(msg.masks, new))
    assert msg.base_round == 7 and msg.digest == MaskRecord.of(8, new).digest
    n = sum(math.prod(s) for s in ALEXNET)
    p = 0.003
    entropy_bits = n * -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert len(data) * 8 < 1.15 * entropy_bits  # Rice on geometric gaps: within a few % (+ headers)
    assert len(data) * 8 / n < 0.04


def test_without_a_base_delta_sends_a_stand_alone_rice_keyframe():
    old, new = masks_and_moved(ALEXNET[:2], flip_rate=0.003)
    data = encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta")
    assert not is_delta(data)
    assert all(np.array_equal(a, b) for a, b in zip(decode_masks(data).masks, new))


def test_a_large_change_or_a_base_of_other_shapes_is_sent_as_a_keyframe():
    old, new = masks_and_moved(ALEXNET[:2], flip_rate=0.9)
    assert not is_delta(encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta",
                                     base=MaskRecord.of(7, old)))
    narrow = MaskRecord.of(7, [m[:32] for m in old])
    assert not is_delta(encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta", base=narrow))


def test_a_receiver_without_the_base_refuses_with_base_missing():
    old, new = masks_and_moved(ALEXNET[:2], flip_rate=0.01)
    data = encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta", base=MaskRecord.of(7, old))
    with pytest.raises(BaseMissing, match="round 7"):
        decode_masks(data)
    with pytest.raises(BaseMissing):  # holds the round from another sender only
        decode_masks(data, bases=history_with(3, MaskRecord.of(7, old)).lookup)


def test_the_same_round_with_other_masks_is_not_the_base():
    """A sender that restarted and computed round 7 differently: the digest, not the round, decides."""
    old, new = masks_and_moved(ALEXNET[:2], flip_rate=0.01)
    other, _ = masks_and_moved(ALEXNET[:2], flip_rate=0.01, seed=5)
    data = encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta", base=MaskRecord.of(7, old))
    with pytest.raises(BaseMissing):
        decode_masks(data, bases=history_with(2, MaskRecord.of(7, other)).lookup)


def retag(body: bytes) -> bytes:
    return body + hashlib.blake2b(body, digest_size=16).digest()


def test_a_kept_count_that_does_not_match_the_decoded_mask_is_refused_naming_the_layer():
    old, new = masks_and_moved([(20, 30), (40,)], flip_rate=0.05)
    base = MaskRecord.of(7, old)
    data = bytearray(encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta", base=base)[:-16])
    at = header_size([(20, 30), (40,)]) + PREFIX.size
    data[at] ^= 1  # layer 0's declared kept count, with a valid tag
    with pytest.raises(CodecError, match="layer 0: decodes to .* kept entries, the message declares"):
        decode_masks(retag(bytes(data)), bases=history_with(2, base).lookup)


def test_a_base_of_other_shapes_is_refused():
    old, new = masks_and_moved([(20, 30)], flip_rate=0.05)
    base = MaskRecord.of(7, old)
    data = encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta", base=base)
    lying = MaskHistory()
    lying.remember(2, MaskRecord(7, (old[0][:10],), base.digest))  # same digest, other shape
    with pytest.raises(CodecError, match="its base"):
        decode_masks(data, bases=lying.lookup)


def test_every_truncation_and_every_flipped_byte_is_a_codec_error():
    old, new = masks_and_moved([(6, 7), (9,)], flip_rate=0.1)
    base = MaskRecord.of(1, old)
    bases = history_with(0, base).lookup
    data = encode_masks(new, fingerprint=FP, sender=0, round=2, codec="delta", base=base)
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            decode_masks(data[:cut], bases=bases)
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x10
        with pytest.raises(CodecError):
            decode_masks(bytes(flipped), bases=bases)
    with pytest.raises(CodecError, match="trailing"):
        decode_masks(retag(data[:-16] + b"\0"), bases=bases)


def test_a_keyframe_and_a_delta_of_the_same_masks_are_the_same_message():
    old, new = masks_and_moved([(20, 30)], flip_rate=0.02)
    base = MaskRecord.of(7, old)
    delta = decode_masks(encode_masks(new, fingerprint=FP, sender=2, round=8, codec="delta", base=base),
                         bases=history_with(2, base).lookup)
    keyframe = decode_masks(encode_masks(new, fingerprint=FP, sender=2, round=8, codec="rice"))
    packed = decode_masks(encode_masks(new, fingerprint=FP, sender=2, round=8))
    assert delta == keyframe == packed
    assert delta != decode_masks(encode_masks(old, fingerprint=FP, sender=2, round=8))


def test_the_history_keeps_the_newest_few_rounds_per_sender():
    history = MaskHistory(depth=2)
    records = [MaskRecord.of(r, [np.arange(12).reshape(3, 4) % (r + 2) == 0]) for r in range(3)]
    for record in records:
        history.remember(5, record)
    assert history.lookup(5, 0, records[0].digest) is None
    for record in records[1:]:
        got = history.lookup(5, record.round, record.digest)
        assert got is not None and np.array_equal(got[0], record.masks[0])
    assert history.newest_round(5) == 2 and history.newest_round(6) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=4),
       st.floats(0.0, 0.6), st.floats(0.0, 1.0), st.integers(0, 2**16))
def test_any_masks_round_trip_exactly_through_keyframe_or_delta(shapes, flip_rate, density, seed):
    rng = np.random.default_rng(seed)
    old = [rng.random(s) < density for s in shapes]
    new = [m ^ (rng.random(m.shape) < flip_rate) for m in old]
    base = MaskRecord.of(3, old)
    data = encode_masks(new, fingerprint=FP, sender=1, round=4, codec="delta", base=base)
    msg = decode_masks(data, bases=history_with(1, base).lookup)
    assert all(np.array_equal(a, b) for a, b in zip(msg.masks, new))
