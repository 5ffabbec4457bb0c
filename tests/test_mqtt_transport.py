"""The MQTT transport against a real broker on loopback: credentials, ACL, last will, and hostile messages.

Two agents run in this process, each with its own MQTT client, exactly as the simulator drives
them (everyone publishes, then everyone gathers). Bad messages injected on their mask topics must
be rejected with a logged reason, and the masks must stay bit-identical to the in-memory simulator.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time

import numpy as np
import pytest

from edge_mcepl.cli import main
from edge_mcepl.comm.broker.credentials import ADMIN_USER
from edge_mcepl.comm.broker.launcher import free_port, start_broker
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions, fetch_retained, status_payload
from edge_mcepl.comm.mqtt_transport import MqttTransport
from edge_mcepl.comm.topics import config_topic, mask_topic, status_topic
from edge_mcepl.errors import UserError
from edge_mcepl.simulator import Simulator
from edge_mcepl.wire.dense import decode_weights, encode_weights
from edge_mcepl.wire.envelope import read_common_header
from edge_mcepl.wire.masks import encode_masks
from edge_mcepl.wire.signing import MessageAuth

from conftest import tiny_lab_config
from labsupport import needs_mosquitto, wait_until

LAB = "t"
KINDS = [pytest.param("mosquitto", marks=needs_mosquitto), "python"]


@pytest.fixture(params=KINDS)
def broker(request, tmp_path):
    handle = start_broker(tmp_path / "broker", LAB, 2, kind=request.param, port=0)
    yield handle
    handle.stop()


def connect(broker, user, password, client_id, **kw) -> MqttConnection:
    return MqttConnection(BrokerAddress.parse(broker.url), MqttOptions(user, password, connect_timeout=10), client_id,
                          name=client_id, **kw).connect()


def agent_conn(broker, i, **kw) -> MqttConnection:
    user, password = broker.credentials.for_agent(i)
    return connect(broker, user, password, f"agent-{i}-{time.monotonic_ns()}", **kw)


def admin_conn(broker) -> MqttConnection:
    return connect(broker, ADMIN_USER, broker.credentials.admin_password, f"admin-{time.monotonic_ns()}")


def test_wrong_credentials_are_refused(broker):
    with pytest.raises(UserError) as err:
        connect(broker, "agent-0", "not-the-password", "intruder")
    assert "refused" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="refused"):
        connect(broker, "nobody", "x", "intruder-2")
    # the right password for the same user is accepted: the refusal was about the password
    agent_conn(broker, 0).close()


@pytest.mark.parametrize("port", [99999, -1])
def test_a_bad_port_is_one_line_and_writes_nothing(tmp_path, capsys, port):
    folder = tmp_path / "broker"
    assert main(["broker", "--lab", LAB, "--agents", "2", "--port", str(port), "--dir", str(folder)]) == 2
    assert capsys.readouterr().err == (f"edge-mcepl: error: --port {port}: must be a TCP port, 1..65535 "
                                       "(or 0: any free port)\n")
    assert not folder.exists()  # no credentials folder left behind


def test_unreachable_broker_is_one_line(tmp_path):
    address = BrokerAddress.parse(f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(UserError, match="cannot reach the MQTT broker") as err:
        MqttConnection(address, MqttOptions(connect_timeout=1.0), "x").connect()
    assert "\n" not in str(err.value)


def test_acl_agents_write_only_their_own_topics_and_retained_config_reaches_them(broker):
    received = []
    a1 = agent_conn(broker, 1)
    a1.on("edge-mcepl/#", lambda topic, payload: received.append((topic, payload)))
    a1.subscribe([mask_topic(LAB, 0), mask_topic(LAB, 1)])
    a0 = agent_conn(broker, 0)
    a0.publish(mask_topic(LAB, 1), b"forged by agent 0").wait_for_publish(5)  # agent 1's topic: denied
    a0.publish(mask_topic(LAB, 0), b"agent 0's own").wait_for_publish(5)
    wait_until(lambda: received, 10, "agent 0's own message")
    time.sleep(0.3)  # give a wrongly forwarded forgery the same chance to arrive
    assert received == [(mask_topic(LAB, 0), b"agent 0's own")]
    admin = admin_conn(broker)
    admin.publish_json(config_topic(LAB), {"hello": 1}, retain=True, wait=5)
    user, password = broker.credentials.for_agent(1)
    got = fetch_retained(BrokerAddress.parse(broker.url), MqttOptions(user, password), config_topic(LAB), "probe", 10)
    assert json.loads(got) == {"hello": 1}
    for c in (a0, a1, admin):
        c.close()


def test_last_will_marks_a_vanished_agent_offline(broker):
    statuses = []
    watcher = admin_conn(broker)
    watcher.on(status_topic(LAB, 0), lambda topic, payload: statuses.append(json.loads(payload)["state"]))
    watcher.subscribe([status_topic(LAB, 0)])
    a0 = agent_conn(broker, 0, will=(status_topic(LAB, 0), status_payload("offline", 0)))
    a0.publish(status_topic(LAB, 0), status_payload("online", 0), retain=True).wait_for_publish(5)
    wait_until(lambda: "online" in statuses, 10, "the online status")
    client = a0._client
    client.loop_stop()  # no more keepalives or DISCONNECT: the broker must see a dead client
    client.socket().close()
    wait_until(lambda: statuses[-1:] == ["offline"], 20, "the last will")
    watcher.close()


def _two_agents():
    config = tiny_lab_config(agents=2, rounds=4, **{"topology.kind": "complete"})
    return config, Simulator(config, log=lambda _: None)


def test_hostile_messages_are_rejected_with_reasons_and_masks_match_the_simulator(broker, caplog):
    caplog.set_level(logging.WARNING, logger="edge_mcepl")
    config, sim = _two_agents()
    reference = Simulator(config, log=lambda _: None)
    for t in range(config.rounds):
        reference.run_round(t)

    admin = admin_conn(broker)
    wire: list[tuple[str, bytes]] = []  # everything on the mask topics, forgeries included
    admin.on("edge-mcepl/t/agent/+/mask", lambda topic, payload: wire.append((topic, payload)))
    admin.subscribe(["edge-mcepl/t/agent/+/mask"])
    conns, transports = [], []
    for agent in sim.agents:
        conn = agent_conn(broker, agent.agent_id, persistent=True)
        transport = MqttTransport(conn, LAB, agent.agent_id, max_staleness=1)
        transport.listen(agent.agent_id, agent.neighbours, agent.decode_message)
        conns.append(conn)
        transports.append(transport)

    fp = sim.agents[0].fingerprint
    shapes = sim.agents[0].layer_shapes
    key0 = sim.agents[0].auth  # agent 0's own key: these forgeries get past the signature to each later check
    other_run = MessageAuth(bytes(8 * [7]), key0.signer, key0.roster)
    rng = np.random.default_rng(0)
    random_masks = [rng.random(s) < 0.5 for s in shapes]
    injected: set[bytes] = set()
    for t in range(config.rounds):
        # Before the real messages: forgeries claiming agent 0's round t (agent 1 must reject them all).
        good = encode_masks(random_masks, fingerprint=fp, sender=0, round=t, auth=key0)
        flipped = bytearray(good)
        flipped[len(flipped) // 2] ^= 0x01
        bad = {
            "truncated header": good[:20],
            "truncated payload": good[: len(good) // 2],
            "corrupt": bytes(flipped),
            "unsigned": encode_masks(random_masks, fingerprint=fp, sender=0, round=t),
            "another run": encode_masks(random_masks, fingerprint=fp, sender=0, round=t, auth=other_run),
            "wrong fingerprint": encode_masks(random_masks, fingerprint=bytes(16), sender=0, round=t, auth=key0),
            "wrong sender": encode_masks(random_masks, fingerprint=fp, sender=1, round=t, auth=key0),
            "wrong density": good,  # half the weights; agent 0 declares 0.3 (conv) / 0.9 (linear)
        }
        for payload in bad.values():
            injected.add(payload)
            admin.publish(mask_topic(LAB, 0), payload).wait_for_publish(5)
        for agent, transport in zip(sim.agents, transports):
            agent.begin_round(t, transport)
        reports = [agent.finish_round(t, transport, timeout=30)
                   for agent, transport in zip(sim.agents, transports)]
        assert [r.neighbours_heard for r in reports] == [1, 1]
        assert [r.stale for r in reports] == [0, 0]

    # A QoS 1 redelivery (same bytes) and a conflicting message for a (sender, round) already held.
    def real(t: int) -> bytes:
        return next(p for topic, p in wire if topic == mask_topic(LAB, 0) and p not in injected
                    and read_common_header(p).round == t)

    last = real(config.rounds - 1)
    admin.publish(mask_topic(LAB, 0), last).wait_for_publish(5)
    first = reference.agents[1].decode_message(real(0))  # a valid mask of agent 0's, of another round
    conflicting = encode_masks(list(first.masks), fingerprint=fp, sender=0, round=config.rounds - 1, auth=key0)
    admin.publish(mask_topic(LAB, 0), conflicting).wait_for_publish(5)
    wait_until(lambda: "duplicate of (sender 0" in caplog.text and "conflicting" in caplog.text, 10,
               "the duplicate and the conflicting message")
    # The same masks in another encoding (a keyframe sent again in place of a delta) are a duplicate too.
    same = sim.agents[1].decode_message(last)
    again = encode_masks(list(same.masks), fingerprint=fp, sender=0, round=config.rounds - 1, codec="rice",
                         auth=key0)
    assert again != last
    admin.publish(mask_topic(LAB, 0), again).wait_for_publish(5)
    wait_until(lambda: "again with the same content" in caplog.text, 10, "the same masks, another encoding")
    stats = transports[1].take_stats()
    for conn in conns + [admin]:
        conn.close()

    text = caplog.text
    for reason in ("shorter than the", "truncated: header says", "forged or tampered", "unsigned: this lab accepts",
                   "this lab runs", "weights fingerprint mismatch", "claims sender 1 on agent 0's topic",
                   "declared retention 0.3 keeps exactly", "duplicate of (sender 0, round 3) ignored",
                   "conflicting second message"):
        assert reason in text, f"no logged reason containing {reason!r}"
    assert stats.duplicates >= 2 and stats.rejected >= len(bad) * config.rounds  # redelivery + re-encoding; forgeries
    assert {k: stats.reasons[k] for k in ("signature", "run", "density", "sender", "conflict")} == {
        "signature": 2 * config.rounds, "run": config.rounds, "density": config.rounds, "sender": config.rounds,
        "conflict": 1}
    # The forgeries did not touch training: bit-identical to the in-memory simulator.
    for ours, theirs in zip(sim.agents, reference.agents):
        assert ours.encode_message(config.rounds) == theirs.encode_message(config.rounds)


def test_gather_waits_for_the_deadline_then_uses_a_stale_mask(broker):
    """A neighbour that misses round 1 is replaced by its round-0 mask (max_staleness 1), not dropped."""
    config, sim = _two_agents()
    conns = [agent_conn(broker, i, persistent=True) for i in range(2)]
    transports = [MqttTransport(c, LAB, i, max_staleness=1) for i, c in enumerate(conns)]
    for tr, agent in zip(transports, sim.agents):
        tr.listen(agent.agent_id, agent.neighbours, agent.decode_message)
    a0, a1 = sim.agents
    for agent, tr in zip(sim.agents, transports):
        agent.begin_round(0, tr)
    assert [agent.finish_round(0, tr, timeout=30).neighbours_heard
            for agent, tr in zip(sim.agents, transports)] == [1, 1]
    a1.begin_round(1, transports[1])  # agent 0 sits round 1 out
    report = a1.finish_round(1, transports[1], timeout=0.5)
    assert (report.neighbours_heard, report.stale) == (1, 1)
    assert transports[1].last_stale == {0: 0}
    # With staleness 0 (the transport's window: the one place staleness is decided) the same situation hears nobody.
    transports[1].max_staleness = 0
    a1.begin_round(2, transports[1])
    report = a1.finish_round(2, transports[1], timeout=0.3)
    assert (report.neighbours_heard, report.stale) == (0, 0)
    for c in conns:
        c.close()


def test_the_transport_carries_any_codecs_bytes_and_decodes_each_message_once(broker, caplog):
    """A weight message (not a mask) travels like any other; a redelivery is not decoded again."""
    caplog.set_level(logging.WARNING, logger="edge_mcepl")
    fp, values = bytes(range(16)), [np.arange(6, dtype=np.float32).reshape(2, 3)]
    decoded: list[bytes] = []

    def decode(payload: bytes):
        decoded.append(payload)
        return decode_weights(payload, expected_fingerprint=fp, expected_shapes=[(2, 3)])

    sender, receiver = agent_conn(broker, 0), agent_conn(broker, 1, persistent=True)
    transport = MqttTransport(receiver, LAB, 1)
    transport.listen(1, [0], decode)
    message = encode_weights(values, fingerprint=fp, sender=0, round=0)
    # The subscription becomes active asynchronously: publish until the first copy is in.
    deadline = time.monotonic() + 10
    while not decoded and time.monotonic() < deadline:
        sender.publish(mask_topic(LAB, 0), message).wait_for_publish(5)
        time.sleep(0.2)
    assert decoded, "the message never arrived"
    sender.publish(mask_topic(LAB, 0), message).wait_for_publish(5)
    wait_until(lambda: "duplicate of (sender 0, round 0)" in caplog.text, 10, "the redelivered copy")
    gathered = transport.gather(1, 0, timeout=10)
    for conn in (sender, receiver):
        conn.close()
    delivery = gathered.deliveries[0]
    assert (delivery.size, delivery.stale, delivery.message.sender) == (len(message), False, 0)
    assert np.array_equal(delivery.message.tensors[0], values[0])
    assert decoded == [message]  # once, in the network thread; gather handed over the decoded message


def test_broker_url_parsing():
    assert BrokerAddress.parse("mqtt://127.0.0.1:1884") == BrokerAddress("127.0.0.1", 1884, False)
    assert BrokerAddress.parse("mqtts://lab.example") == BrokerAddress("lab.example", 8883, True)
    assert BrokerAddress.parse("localhost:1999").url == "mqtt://localhost:1999"
    with pytest.raises(UserError, match="expected mqtt://"):
        BrokerAddress.parse("http://x:1")


@needs_mosquitto
def test_generated_mosquitto_config(tmp_path):
    handle = start_broker(tmp_path / "b", "cfg", 3, kind="mosquitto", port=0)
    try:
        conf = (tmp_path / "b" / "mosquitto.conf").read_text()
        for line in ("allow_anonymous false", "set_tcp_nodelay true", "persistence true", "message_size_limit",
                     f"listener {handle.port} 127.0.0.1", "password_file", "acl_file"):
            assert line in conf
        acl = (tmp_path / "b" / "acl").read_text()
        assert ("user agent-2\ntopic read edge-mcepl/cfg/#\ntopic write edge-mcepl/cfg/agent/2/mask\n"
                "topic write edge-mcepl/cfg/agent/2/status\ntopic write edge-mcepl/cfg/agent/2/keyframe\n") in acl
        passwd = (tmp_path / "b" / "passwd").read_text()
        assert passwd.count("\n") == 5 and "agent-2:$" in passwd  # admin, observer, 3 agents: hashed, never plain
        assert "lab-observer:$" in passwd and handle.credentials.agents[2] not in passwd
        assert oct((tmp_path / "b" / "lab-secrets.yaml").stat().st_mode & 0o777) == "0o600"
        assert handle.kind == "mosquitto" and handle.description.startswith("mosquitto")
    finally:
        handle.stop()


@needs_mosquitto
def test_tls_listener_with_a_lab_ca(tmp_path):
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=edge-mcepl test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (tmp_path / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "1", "-extfile", "ext")
    handle = start_broker(tmp_path / "b", LAB, 1, kind="mosquitto", port=0, tls_cert=str(tmp_path / "server.crt"),
                          tls_key=str(tmp_path / "server.key"))
    try:
        url = handle.credentials.broker_url
        assert url.startswith("mqtts://")
        user, password = handle.credentials.for_agent(0)
        good = MqttOptions(user, password, ca_file=str(tmp_path / "ca.crt"), connect_timeout=10)
        got = []
        conn = MqttConnection(BrokerAddress.parse(url), good, "tls-client", name="tls client")
        conn.on(status_topic(LAB, 0), lambda _t, payload: got.append(payload))
        conn.subscribe([status_topic(LAB, 0)])
        conn.connect()
        conn.publish(status_topic(LAB, 0), b"over TLS").wait_for_publish(5)
        wait_until(lambda: got, 10, "the message over TLS")
        conn.close()
        assert got == [b"over TLS"]
        untrusted = MqttOptions(user, password, connect_timeout=2)  # the system CAs do not know the lab CA
        with pytest.raises(UserError, match="cannot reach the MQTT broker"):
            MqttConnection(BrokerAddress.parse(url), untrusted, "tls-untrusted").connect()
    finally:
        handle.stop()


# The built-in broker speaks MQTT 3.1.1 only, so it is not paired with protocol 5.
@pytest.mark.parametrize(("broker", "protocol"), [pytest.param("mosquitto", "5", marks=needs_mosquitto),
                                                  pytest.param("mosquitto", "3.1.1", marks=needs_mosquitto),
                                                  ("python", "3.1.1")], indirect=["broker"])
def test_persistent_session_queues_masks_while_an_agent_is_away(broker, protocol):
    user, password = broker.credentials.for_agent(1)
    options = MqttOptions(user, password, protocol=protocol, connect_timeout=10)
    address = BrokerAddress.parse(broker.url)
    client_id = f"away-{protocol}-{time.monotonic_ns()}"
    got: list[bytes] = []

    def listener() -> MqttConnection:
        conn = MqttConnection(address, options, client_id, persistent=True, name="agent 1")
        conn.on(mask_topic(LAB, 0), lambda _t, payload: got.append(payload))
        conn.subscribe([mask_topic(LAB, 0)])
        return conn.connect()

    away = listener()
    sock = away._client.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1  # Nagle off (socket-open callback)
    away.close()  # a clean disconnect: the broker keeps the session and queues for it
    sender = agent_conn(broker, 0)
    for i in range(3):
        sender.publish(mask_topic(LAB, 0), f"mask {i}".encode()).wait_for_publish(5)
    sender.close()
    assert got == []
    back = listener()
    wait_until(lambda: len(got) == 3, 10, "the three queued messages")
    back.close()
    assert got == [b"mask 0", b"mask 1", b"mask 2"]
