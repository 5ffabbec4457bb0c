"""MQTT transport for device labs: paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``), MQTT 5 or 3.1.1.

Topics (``<lab>`` is the lab name, ``<id>`` an agent id)::

    edge-mcepl/<lab>/config              retained: the lab config envelope (JSON, never pickle)
    edge-mcepl/<lab>/agent/<id>/mask     QoS 1: the agent's encoded mask for a round (codec v1)
    edge-mcepl/<lab>/agent/<id>/status   retained JSON {"state": "online"|"done"|"offline", ...};
                                         the last will is {"state": "offline", ...}

Every agent writes only under its own ``agent/<id>/`` (the generated broker ACL enforces it) and
subscribes only to its neighbours' mask topics, so the broker forwards exactly one copy of each
mask to each neighbour — the simulator's byte count.

Rules this module keeps (DESIGN.md, "MQTT"):

- **Never block in a paho callback.** ``on_message`` parses the topic, checks the message (codec
  header and, when the agent gave one, the full decoder: a few hundred microseconds of CPU, no
  waiting) and files it under a lock; the agent's thread waits on a condition variable.
- **QoS 1 delivers duplicates**: messages are de-duplicated on (sender, round). A repeat with the
  same bytes is dropped as a redelivery; a *different* valid message for a (sender, round) already
  held is rejected as conflicting (first one wins).
- **Bounded memory**: messages older than the staleness window are dropped, the inbox has a byte
  budget, and paho's outgoing queue is capped.
- **Reconnect with backoff**: paho's network thread reconnects (exponential, ``reconnect_min_delay``
  … ``reconnect_max_delay``); agents use persistent sessions (MQTT 5 session expiry / 3.1.1
  ``clean_session=False``) so masks published while an agent was away are queued by the broker.
- **TCP_NODELAY** on every client socket (the socket-open callback): Nagle's algorithm costs
  40–90 ms per small message otherwise.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..errors import UserError
from ..wire.masks import MAGIC
from .transport import Transport

log = logging.getLogger(__name__)

TOPIC_ROOT = "edge-mcepl"
LAB_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Codec v1 fixed header up to the round field: magic, version, codec, flags, fingerprint, sender, round.
_HEADER = struct.Struct("<4sBBH16sII")


def check_lab_name(name: str, what: str = "lab name") -> str:
    if not isinstance(name, str) or not LAB_NAME_RE.match(name):
        raise UserError(f"{what} {name!r}: use 1–64 letters, digits, '_', '.' or '-' (it becomes an MQTT topic level)")
    return name


def config_topic(lab: str) -> str:
    return f"{TOPIC_ROOT}/{lab}/config"


def mask_topic(lab: str, agent_id: int) -> str:
    return f"{TOPIC_ROOT}/{lab}/agent/{agent_id}/mask"


def status_topic(lab: str, agent_id: int | str) -> str:
    return f"{TOPIC_ROOT}/{lab}/agent/{agent_id}/status"


def topic_agent(topic: str) -> int | None:
    """The agent id in ``edge-mcepl/<lab>/agent/<id>/...``, or None."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[2] == "agent" and parts[3].isdigit():
        return int(parts[3])
    return None


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://HOST[:PORT]`` (1883), ``mqtts://HOST[:PORT]`` (8883, TLS) or ``HOST:PORT``."""
        text = url if "://" in url else f"mqtt://{url}"
        parts = urlsplit(text)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise UserError(f"--broker {url}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise UserError(f"--broker {url}: invalid port") from None
        return cls(parts.hostname, port, tls)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


@dataclass(frozen=True)
class MqttOptions:
    """Client settings shared by agents, the lab coordinator and observers."""

    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False  # skip the server hostname check (self-signed lab certificates)
    protocol: str = "auto"  # "5", "3.1.1", or "auto": MQTT 5, falling back to 3.1.1
    keepalive: int = 15
    connect_timeout: float = 20.0
    reconnect_min_delay: float = 0.25
    reconnect_max_delay: float = 8.0
    session_expiry_s: int = 7 * 24 * 3600  # persistent sessions (MQTT 5)
    max_queued_out: int = 10_000  # paho's outgoing queue while disconnected


_AUTH_FAILURES = {"Bad user name or password", "Not authorized", "Bad username or password"}


def _set_nodelay(_client: Any, _userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (e.g. a unix socket or websocket wrapper)
        pass


class MqttConnection:
    """One paho client with a background network thread, automatic reconnects and a sync connect().

    ``persistent`` keeps the broker-side session (subscriptions and queued QoS 1 messages) across
    disconnects; ``will`` is ``(topic, payload)`` published retained by the broker if this client
    vanishes without a clean disconnect.
    """

    def __init__(self, address: BrokerAddress, options: MqttOptions, client_id: str, *,
                 persistent: bool = False, will: tuple[str, bytes] | None = None, name: str = "client") -> None:
        self.address, self.options, self.client_id = address, options, client_id
        self.persistent, self.will, self.name = persistent, will, name
        self.protocol: int | None = None
        self._client: mqtt.Client | None = None
        self._subscriptions: dict[str, int] = {}
        self._handlers: list[tuple[str, Callable[[str, bytes], None]]] = []
        self._lock = threading.Lock()
        self._first = threading.Event()
        self._first_result: str | None = None  # None = ok, else the refusal reason
        self._connected = threading.Event()
        self._closing = False
        self._ever_connected = False
        self.reconnects = 0

    # -- connection --------------------------------------------------------------------------

    def connect(self) -> MqttConnection:
        """Connect (blocking until CONNACK) or raise a one-line :class:`UserError`."""
        protocols = {"5": [mqtt.MQTTv5], "3.1.1": [mqtt.MQTTv311], "auto": [mqtt.MQTTv5, mqtt.MQTTv311]}.get(
            self.options.protocol)
        if protocols is None:
            raise UserError(f"--mqtt {self.options.protocol}: expected 5, 3.1.1 or auto")
        reason = "no attempt"
        for protocol in protocols:
            reason = self._try_connect(protocol)
            if reason is None:
                self.protocol = protocol
                return self
            if "Unsupported protocol version" not in reason:
                break
            log.info("%s: broker does not speak MQTT 5; retrying with MQTT 3.1.1", self.name)
        raise UserError(reason)

    def _try_connect(self, protocol: int) -> str | None:
        self._first.clear()
        self._first_result = None
        client = self._make_client(protocol)
        self._client = client
        kwargs: dict[str, Any] = {}
        if protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.options.session_expiry_s if self.persistent else 0
            kwargs = {"clean_start": not self.persistent, "properties": props}
        client.connect_async(self.address.host, self.address.port, self.options.keepalive, **kwargs)
        client.loop_start()
        if not self._first.wait(self.options.connect_timeout):
            self._stop_client(client)
            return f"cannot reach the MQTT broker at {self.address.url}: {_probe(self.address)}"
        if self._first_result is not None:
            self._stop_client(client)
            return f"broker {self.address.url} refused {self.name}: {self._first_result}"
        return None

    def _make_client(self, protocol: int) -> mqtt.Client:
        o = self.options
        clean_session = None if protocol == mqtt.MQTTv5 else not self.persistent
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol,
                             clean_session=clean_session, reconnect_on_failure=True)
        if o.username is not None:
            client.username_pw_set(o.username, o.password)
        if self.address.tls:
            client.tls_set(ca_certs=o.ca_file, certfile=o.cert_file, keyfile=o.key_file,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            client.tls_insecure_set(o.tls_insecure)
        if self.will is not None:
            client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        client.reconnect_delay_set(o.reconnect_min_delay, o.reconnect_max_delay)
        client.max_queued_messages_set(o.max_queued_out)
        client.on_socket_open = _set_nodelay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _stop_client(self, client: mqtt.Client) -> None:
        self._closing = True
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 — already gone
            pass
        client.loop_stop()
        self._closing = False

    def _on_connect(self, client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            text = str(reason_code)
            if not self._first.is_set():
                self._first_result = text + (" (check the username/password or the credentials file)"
                                             if text in _AUTH_FAILURES else "")
                self._first.set()
            else:
                log.error("%s: broker refused the reconnection: %s", self.name, text)
            return
        with self._lock:
            subs = list(self._subscriptions.items())
        if subs:  # re-subscribe: harmless when the session was kept, essential when it was not
            client.subscribe([(topic, qos) for topic, qos in subs])
        if self._ever_connected:
            self.reconnects += 1
            log.warning("%s: reconnected to %s (session kept: %s)", self.name, self.address.url,
                        bool(getattr(flags, "session_present", False)))
        self._ever_connected = True
        self._connected.set()
        self._first.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self._connected.clear()
        if not self._closing and self._ever_connected:
            log.warning("%s: connection to %s lost (%s); reconnecting with backoff", self.name,
                        self.address.url, reason_code)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        topic, payload = message.topic, bytes(message.payload)
        for pattern, handler in self._handlers:
            if mqtt.topic_matches_sub(pattern, topic):
                try:
                    handler(topic, payload)
                except Exception:  # noqa: BLE001 — a handler bug must not kill paho's thread
                    log.exception("%s: handler for %s failed", self.name, topic)

    # -- use ------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def on(self, pattern: str, handler: Callable[[str, bytes], None]) -> None:
        """Call ``handler(topic, payload)`` (in paho's thread: must not block) for matching messages."""
        self._handlers.append((pattern, handler))

    def subscribe(self, topics: Collection[str], qos: int = 1) -> None:
        with self._lock:
            for t in topics:
                self._subscriptions[t] = qos
        if self._client is not None and self.connected:
            self._client.subscribe([(t, qos) for t in topics])

    def unsubscribe(self, topics: Collection[str]) -> None:
        with self._lock:
            for t in topics:
                self._subscriptions.pop(t, None)
        if self._client is not None and self.connected and topics:
            self._client.unsubscribe(list(topics))

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        assert self._client is not None, "connect() first"
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            log.error("%s: outgoing queue full; dropped a message for %s", self.name, topic)
        return info

    def publish_json(self, topic: str, value: Any, *, retain: bool = False, wait: float | None = None) -> None:
        info = self.publish(topic, json.dumps(value, separators=(",", ":")).encode(), retain=retain)
        if wait:
            _wait_published(info, wait)

    def close(self, last: tuple[str, bytes] | None = None, timeout: float = 5.0) -> None:
        """Publish ``last`` (retained, e.g. an "offline" status), then disconnect cleanly."""
        client = self._client
        if client is None:
            return
        if last is not None and self.connected:
            _wait_published(self.publish(last[0], last[1], retain=True), timeout)
        self._stop_client(client)
        self._client = None
        self._connected.clear()


def _wait_published(info: mqtt.MQTTMessageInfo, timeout: float) -> bool:
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError):  # not connected / queue full
        return False
    return info.is_published()


def _probe(address: BrokerAddress) -> str:
    try:
        with socket.create_connection((address.host, address.port), timeout=2):
            return "TCP connects but no MQTT answer (wrong port, or TLS/plain mismatch?)"
    except OSError as exc:
        return exc.strerror or str(exc)


def fetch_retained(address: BrokerAddress, options: MqttOptions, topic: str, client_id: str, timeout: float,
                   name: str = "client") -> bytes | None:
    """The retained message on ``topic`` (a short clean-session connection), or None after ``timeout``."""
    got: list[bytes] = []
    event = threading.Event()
    conn = MqttConnection(address, options, client_id, persistent=False, name=name)

    def handler(_topic: str, payload: bytes) -> None:
        if payload:
            got.append(payload)
            event.set()

    conn.on(topic, handler)
    conn.subscribe([topic])
    conn.connect()
    try:
        event.wait(timeout)
    finally:
        conn.close()
    return got[-1] if got else None


def status_payload(state: str, agent_id: int, **extra: Any) -> bytes:
    return json.dumps({"state": state, "agent": agent_id, "time": round(time.time(), 3), **extra},
                      separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# The agent's transport


@dataclass
class TransportStats:
    """Counters an agent reports per round (read and reset with :meth:`MqttTransport.take_stats`)."""

    rejected: int = 0
    duplicates: int = 0
    late: int = 0
    reasons: list[str] = field(default_factory=list)


class MqttTransport(Transport):
    """Publishes this agent's masks and gathers its neighbours' over an :class:`MqttConnection`.

    ``validate(payload) -> (sender, round)`` is the full decoder (fingerprint, shapes, tag); without
    it only the codec header is read. ``gather`` waits until every sender's message for the round
    is in, the ``timeout`` (the round deadline) passes, or :attr:`stop` is set; for a sender still
    missing it falls back to that sender's newest message from the last ``max_staleness`` rounds.
    """

    def __init__(self, conn: MqttConnection, lab: str, agent_id: int, *,
                 validate: Callable[[bytes], tuple[int, int]] | None = None, max_staleness: int = 0,
                 max_message_bytes: int = 64 << 20, inbox_budget_bytes: int = 512 << 20) -> None:
        self.conn, self.lab, self.agent_id = conn, lab, agent_id
        self.validate, self.max_staleness = validate, max_staleness
        self.max_message_bytes, self.inbox_budget_bytes = max_message_bytes, inbox_budget_bytes
        self.stop = threading.Event()
        self._cond = threading.Condition()
        self._inbox: dict[tuple[int, int], bytes] = {}
        self._arrived: dict[tuple[int, int], float] = {}
        self._inbox_bytes = 0
        self._senders: set[int] = set()
        self._current = 0
        self._stats = TransportStats()
        self.published_at: dict[int, float] = {}
        self.last_arrivals: dict[int, float] = {}  # sender → arrival time of what the last gather returned
        self.last_stale: dict[int, int] = {}  # sender → round of a stale mask the last gather fell back on
        self.last_gather_end = 0.0  # when the last gather returned (time.time())
        self.bytes_published = 0
        conn.on(f"{TOPIC_ROOT}/{lab}/agent/+/mask", self._on_mask)

    def listen(self, senders: Collection[int]) -> None:
        """Subscribe to these agents' mask topics (the neighbours)."""
        self._senders = set(senders)
        self.conn.subscribe([mask_topic(self.lab, s) for s in sorted(self._senders)])

    def set_round(self, round: int) -> None:
        """Where this agent is: drops what is now too old (used when resuming)."""
        with self._cond:
            self._current = round
            self._evict()

    # -- paho thread --------------------------------------------------------------------------

    def _reject(self, topic: str, reason: str) -> None:
        log.warning("agent %d: rejected message on %s: %s", self.agent_id, topic, reason)
        with self._cond:
            self._stats.rejected += 1
            if len(self._stats.reasons) < 20:
                self._stats.reasons.append(reason)

    def _on_mask(self, topic: str, payload: bytes) -> None:
        now = time.time()
        sender = topic_agent(topic)
        if sender is None or sender not in self._senders:
            return  # not a neighbour (e.g. a wildcard subscription of someone else's): not ours
        if len(payload) > self.max_message_bytes:
            return self._reject(topic, f"{len(payload)} bytes exceeds the {self.max_message_bytes}-byte limit")
        if len(payload) < _HEADER.size:
            return self._reject(topic, f"truncated: {len(payload)} bytes, shorter than the {_HEADER.size}-byte header")
        magic, _v, _c, _f, _fp, claimed, round_ = _HEADER.unpack_from(payload)
        if magic != MAGIC:
            return self._reject(topic, f"not a mask message (bad magic {magic!r})")
        if claimed != sender:
            return self._reject(topic, f"message claims sender {claimed} on agent {sender}'s topic")
        key = (sender, round_)
        with self._cond:
            too_old = round_ < self._current - self.max_staleness
        if too_old:
            log.info("agent %d: late message (sender %d, round %d) dropped: this agent is at round %d "
                     "(max staleness %d)", self.agent_id, sender, round_, self._current, self.max_staleness)
            with self._cond:
                self._stats.late += 1
            return None
        if self.validate is not None:
            try:
                checked = self.validate(payload)
            except UserError as exc:  # CodecError
                return self._reject(topic, str(exc))
            if checked != key:
                return self._reject(topic, f"decoded (sender, round) {checked} differs from its header {key}")
        with self._cond:
            held = self._inbox.get(key)
        if held is not None:
            if held == payload:
                log.warning("agent %d: duplicate of (sender %d, round %d) ignored (QoS 1 redelivery)",
                         self.agent_id, sender, round_)
                with self._cond:
                    self._stats.duplicates += 1
                return None
            return self._reject(topic, f"conflicting second message for (sender {sender}, round {round_}); "
                                       "keeping the first")
        with self._cond:
            if key in self._inbox:  # raced with a redelivery of the same message
                self._stats.duplicates += 1
                return None
            if self._inbox_bytes + len(payload) > self.inbox_budget_bytes:
                log.warning("agent %d: inbox budget (%d bytes) full; dropped (sender %d, round %d)",
                            self.agent_id, self.inbox_budget_bytes, sender, round_)
                self._stats.late += 1
                return None
            self._inbox[key] = payload
            self._arrived[key] = now
            self._inbox_bytes += len(payload)
            self._cond.notify_all()
        return None

    # -- agent thread -------------------------------------------------------------------------

    def publish(self, sender: int, round: int, payload: bytes) -> None:
        with self._cond:
            self._current = max(self._current, round)
            self._evict()
        self.published_at[round] = time.time()
        self.bytes_published += len(payload)
        self.conn.publish(mask_topic(self.lab, sender), payload, qos=1)

    def gather(self, receiver: int, round: int, senders: Collection[int], timeout: float | None = None) -> dict[int, bytes]:
        deadline = None if timeout is None else time.monotonic() + timeout
        wanted = list(senders)
        with self._cond:
            while not self.stop.is_set():
                if all((s, round) in self._inbox for s in wanted):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(0.25 if remaining is None else min(remaining, 0.25))
            result: dict[int, bytes] = {}
            self.last_arrivals, self.last_stale = {}, {}
            for s in wanted:
                if (s, round) in self._inbox:
                    result[s] = self._inbox[(s, round)]
                    self.last_arrivals[s] = self._arrived[(s, round)]
                    continue
                older = [r for (who, r) in self._inbox if who == s and round - self.max_staleness <= r < round]
                if older:
                    r = max(older)
                    result[s] = self._inbox[(s, r)]
                    self.last_stale[s] = r
            missing = [s for s in wanted if s not in result]
        self.last_gather_end = time.time()
        if missing and not self.stop.is_set():
            log.warning("agent %d: round %d deadline passed without masks from %s%s", self.agent_id, round,
                        ", ".join(map(str, missing)),
                        f" (stale masks used for {dict(sorted(self.last_stale.items()))})" if self.last_stale else "")
        return result

    def take_stats(self) -> TransportStats:
        with self._cond:
            stats, self._stats = self._stats, TransportStats()
        return stats

    def _evict(self) -> None:
        # Bounded staleness: nothing older than max_staleness rounds can be used again.
        floor = self._current - self.max_staleness
        for key in [k for k in self._inbox if k[1] < floor]:
            self._inbox_bytes -= len(self._inbox.pop(key))
            self._arrived.pop(key, None)
