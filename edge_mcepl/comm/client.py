"""MQTT clients for device labs: paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``), MQTT 5 or 3.1.1.

:class:`MqttConnection` is what agents, the lab coordinator and observers share: one paho client
with a background network thread, a synchronous :meth:`~MqttConnection.connect` that turns every
refusal into a one-line :class:`~edge_mcepl.errors.UserError`, and these rules (DESIGN.md, "MQTT"):

- **Never block in a paho callback**: handlers registered with :meth:`~MqttConnection.on` run in
  paho's thread and must only file what arrived.
- **Reconnect with backoff**: paho's network thread reconnects (exponential, ``reconnect_min_delay``
  … ``reconnect_max_delay``); agents use persistent sessions (MQTT 5 session expiry / 3.1.1
  ``clean_session=False``) so messages published while an agent was away are queued by the broker.
- **TCP_NODELAY** on every client socket (the socket-open callback): Nagle's algorithm costs
  40–90 ms per small message otherwise.
- **Bounded memory**: paho's outgoing queue is capped.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..errors import UserError

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, url: str, option: str = "--broker") -> BrokerAddress:
        """``mqtt://HOST[:PORT]`` (1883), ``mqtts://HOST[:PORT]`` (8883, TLS) or ``HOST:PORT``.

        A malformed one is a one-line error naming ``option``."""
        text = url if "://" in url else f"mqtt://{url}"
        parts = urlsplit(text)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise UserError(f"{option} {url}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise UserError(f"{option} {url}: invalid port") from None
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
        self.protocol: MQTTProtocolVersion | None = None
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
            refused = self._try_connect(protocol)
            if refused is None:
                self.protocol = protocol
                return self
            reason = refused
            if "Unsupported protocol version" not in reason:
                break
            log.info("%s: broker does not speak MQTT 5; retrying with MQTT 3.1.1", self.name)
        raise UserError(reason)

    def _try_connect(self, protocol: MQTTProtocolVersion) -> str | None:
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

    def _make_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
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
        # paho annotates int seconds, but waits for a float just as well (0.25 s matters on a lab LAN)
        client.reconnect_delay_set(o.reconnect_min_delay, o.reconnect_max_delay)  # type: ignore[arg-type]
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
                self._first_result = text + (" (check the username/password: the device's bundle)"
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
                   name: str = "client", stop: threading.Event | None = None) -> bytes | None:
    """The retained message on ``topic`` (a short clean-session connection), or None after ``timeout``.

    ``stop`` (a signal handler's event) ends the wait early, also with None.
    """
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
    deadline = time.monotonic() + timeout
    try:
        while not event.is_set() and not (stop is not None and stop.is_set()) and time.monotonic() < deadline:
            event.wait(min(0.2, max(deadline - time.monotonic(), 0.0)))
    finally:
        conn.close()
    return got[-1] if got else None


def status_payload(state: str, agent_id: int, **extra: Any) -> bytes:
    """An agent's retained status message (``online``, ``done`` or ``offline``, plus progress fields)."""
    return json.dumps({"state": state, "agent": agent_id, "time": round(time.time(), 3), **extra},
                      separators=(",", ":")).encode()

