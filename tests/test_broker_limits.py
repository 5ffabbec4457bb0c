"""Per-message and per-client limits: a message over the size limit is not forwarded, queues are bounded."""

from __future__ import annotations

import time

import pytest

from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.comm.broker.python_broker import DEFAULT_MESSAGE_LIMIT
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions
from edge_mcepl.comm.topics import status_topic
from edge_mcepl.errors import UserError

from labsupport import needs_mosquitto, wait_until

LAB = "lim"
KINDS = [pytest.param("mosquitto", marks=needs_mosquitto), "python"]


def agent(handle, i: int, protocol: str = "auto", **kw) -> MqttConnection:
    user, password = handle.credentials.for_agent(i)
    options = MqttOptions(user, password, protocol=protocol, connect_timeout=10)
    return MqttConnection(BrokerAddress.parse(handle.url), options, f"{LAB}-agent-{i}", name=f"agent {i}", **kw)


def test_the_default_message_limit_is_a_mebibyte():
    assert DEFAULT_MESSAGE_LIMIT == 1 << 20


@needs_mosquitto
def test_mosquitto_does_not_forward_a_message_over_the_limit_and_forwards_one_at_it(tmp_path):
    handle = start_broker(tmp_path / "b", LAB, 2, kind="mosquitto", port=0, message_limit=1000)
    got: list[bytes] = []
    # The sender speaks MQTT 3.1.1: mosquitto 2.0.11 answers an MQTT 5 publish over the limit with PUBACK
    # reason 0x95, which is not a PUBACK code; paho 2.2 then drops the connection and resends it forever.
    listener, sender = agent(handle, 1), agent(handle, 0, protocol="3.1.1")
    try:
        assert "message_size_limit 1000" in (tmp_path / "b" / "mosquitto.conf").read_text()
        listener.on(status_topic(LAB, 0), lambda _t, payload: got.append(payload))
        listener.subscribe([status_topic(LAB, 0)])
        listener.connect()
        sender.connect()
        for payload in (b"x" * 1001, b"y" * 1000, b"end"):  # in order: "end" arriving means 1001 bytes never will
            sender.publish(status_topic(LAB, 0), payload).wait_for_publish(5)
        wait_until(lambda: b"end" in got, 10, "the last message")
    finally:
        listener.close()
        sender.close()
        handle.stop()
    assert got == [b"y" * 1000, b"end"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("queue_messages", "queue_bytes", "kept"), [(4, 1 << 20, 4), (100, 250, 3)])
def test_an_absent_clients_queue_stops_at_the_first_limit_reached(tmp_path, kind, queue_messages, queue_bytes, kept):
    handle = start_broker(tmp_path / "b", LAB, 2, kind=kind, port=0, queue_messages=queue_messages,
                          queue_bytes=queue_bytes)
    got: list[bytes] = []
    listener, sender = agent(handle, 1, persistent=True), agent(handle, 0)
    try:
        listener.on(status_topic(LAB, 0), lambda _t, payload: got.append(payload))
        listener.subscribe([status_topic(LAB, 0)])
        listener.connect()
        listener.close()  # away: the broker queues its QoS 1 messages
        sender.connect()
        for k in range(10):  # 100-byte payloads: 250 bytes are reached at the third
            sender.publish(status_topic(LAB, 0), bytes([k]) * 100).wait_for_publish(5)
        listener.connect()
        wait_until(lambda: len(got) >= kept, 10, "the queued messages")
        time.sleep(0.5)  # any more than kept would arrive now
    finally:
        listener.close()
        sender.close()
        handle.stop()
    assert [payload[0] for payload in got] == list(range(kept))  # the first ones; the newer were dropped


def test_limits_must_be_positive_before_anything_is_written(tmp_path):
    for bad in ({"message_limit": 0}, {"queue_messages": 0}, {"queue_bytes": -1}):
        with pytest.raises(UserError, match="message limit|queue limits"):
            start_broker(tmp_path / "b", LAB, 1, kind="python", port=0, **bad)
    assert not (tmp_path / "b").exists()
