"""A neighbour's masks must keep what its declared retention keeps, per layer — else WrongDensity, and no base."""

from __future__ import annotations

import numpy as np
import pytest

from edge_mcepl.algorithms.density import WrongDensity, check_density
from edge_mcepl.algorithms.mcepl import MCEPL, MCEPLParams
from edge_mcepl.algorithms.params import Retention
from edge_mcepl.wire.masks import encode_masks

FP = bytes(16)


def keeping(shape, k):
    flat = np.zeros(int(np.prod(shape)), bool)
    flat[:k] = True
    return flat.reshape(shape)


def test_the_kept_count_is_exact_or_a_bound():
    declared = Retention(conv=0.3, linear=0.9)
    masks = [keeping((10, 10), 30), keeping((10,), 9)]
    check_density(masks, ["conv", "linear"], declared, sender=2, exact=True)
    with pytest.raises(WrongDensity, match="agent 2's mask keeps 31 of 100 weights in layer 0; its declared "
                                           "retention 0.3 keeps exactly 30"):
        check_density([keeping((10, 10), 31), masks[1]], ["conv", "linear"], declared, sender=2, exact=True)
    check_density([keeping((10, 10), 12), masks[1]], ["conv", "linear"], declared, sender=2, exact=False)  # fewer
    with pytest.raises(WrongDensity, match="keeps at most 9"):
        check_density([masks[0], np.ones(10, bool)], ["conv", "linear"], declared, sender=2, exact=False)
    assert WrongDensity.reason == "density"


def test_a_rule_refuses_a_neighbours_wrong_density_and_keeps_no_base_of_it(tiny_net):
    receiver = MCEPL(tiny_net, MCEPLParams(elu_logits=False), Retention(0.3, 0.3), seed=3,
                     declared={1: Retention(0.3, 0.3)})
    shapes = tiny_net.layer_shapes()
    good = [m.cpu().numpy().astype(bool) for m in receiver.masks()]  # same seed, same retention: a valid count
    msg = receiver.decode_message(encode_masks(good, fingerprint=FP, sender=1, round=0), fingerprint=FP,
                                  shapes=shapes, auth=None)
    assert receiver.history.newest_round(1) == 0 and msg.sender == 1
    inverted = encode_masks([~m for m in good], fingerprint=FP, sender=1, round=1)
    all_ones = encode_masks([np.ones(s, bool) for s in shapes], fingerprint=FP, sender=1, round=1)
    for payload in (all_ones, inverted):
        with pytest.raises(WrongDensity):
            receiver.decode_message(payload, fingerprint=FP, shapes=shapes, auth=None)
    assert receiver.history.newest_round(1) == 0  # a refused mask is nobody's base
    with pytest.raises(WrongDensity, match="agent 2 has no declared retention"):
        receiver.decode_message(encode_masks(good, fingerprint=FP, sender=2, round=0), fingerprint=FP,
                                shapes=shapes, auth=None)
