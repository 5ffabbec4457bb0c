"""A flooding sender fills only its share of a receiver's inbox, and nothing beyond the round window."""

from __future__ import annotations

import numpy as np

from edge_mcepl.comm.mqtt_transport import MqttTransport
from edge_mcepl.comm.topics import mask_topic
from edge_mcepl.wire.masks import decode_masks, encode_masks

from authsupport import receiver, signer

LAB = "t"


class Wire:
    """The part of an MQTT connection the transport uses; a test delivers messages as paho would."""

    def __init__(self) -> None:
        self.handlers: list = []

    def on(self, pattern, handler) -> None:
        self.handlers.append(handler)

    def subscribe(self, topics, qos=1) -> None:
        pass

    def publish(self, topic, payload, qos=1, retain=False) -> None:
        pass

    def deliver(self, topic: str, payload: bytes) -> None:
        for handler in self.handlers:
            handler(topic, payload)


def message(sender: int, round_: int) -> bytes:
    masks = [np.arange(64).reshape(8, 8) % (round_ + 2) == 0]
    return encode_masks(masks, fingerprint=bytes(16), sender=sender, round=round_, auth=signer(sender), codec="rice")


def test_a_flood_fills_the_senders_share_only_and_nothing_past_the_window():
    wire = Wire()
    size = len(message(1, 0))
    transport = MqttTransport(wire, LAB, 0, max_staleness=1, inbox_budget_bytes=2 * 5 * size, max_ahead=20)
    transport.listen(0, [1, 2], lambda p: decode_masks(p, auth=receiver()))
    for t in range(12):  # rounds 0..11: inside the window, more than sender 1's share (≈ 5 messages)
        wire.deliver(mask_topic(LAB, 1), message(1, t))
    wire.deliver(mask_topic(LAB, 1), message(1, 21))  # past round 0 + max_ahead
    wire.deliver(mask_topic(LAB, 2), message(2, 0))  # the other neighbour is not crowded out
    stats = transport.take_stats()
    assert 5 <= 12 - stats.reasons["inbox_full"] <= 6 and stats.reasons["early"] == 1
    gathered = transport.gather(0, 0, timeout=0.5)
    assert sorted(gathered.deliveries) == [1, 2]
