"""The zero-install fallback broker: a small MQTT 3.1.1 broker, asyncio in a background thread.

Enough for demos and tests when mosquitto is not installed: QoS 0/1, retained messages, last will,
persistent sessions (in memory), username/password, the lab's :class:`~.credentials.LabAcl`, a
packet-size limit and per-session queues bounded like mosquitto's (messages and bytes). It keeps
nothing on disk and is slower than mosquitto. Clients asking for MQTT 5 are answered "unsupported
protocol version" and fall back to 3.1.1 (see :class:`~edge_mcepl.comm.client.MqttConnection`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import socket
import threading
from collections import deque
from dataclasses import dataclass, field

from ...errors import UserError
from .credentials import LabAcl

log = logging.getLogger(__name__)

# Defaults for both broker kinds; a lab passes values sized for its model (start_broker's parameters).
DEFAULT_MESSAGE_LIMIT = 1 << 20  # bytes per message; an AlexNet-CIFAR mask message is ≈ 153 kB
DEFAULT_QUEUE_MESSAGES = 2000  # QoS 1 messages queued per client (while it is away or slow)
DEFAULT_QUEUE_BYTES = 64 << 20  # bytes queued per client: ≈ 400 AlexNet-CIFAR masks


class _ProtocolError(Exception):
    pass


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` and ``#``; wildcards at the first level skip ``$`` topics."""
    if topic.startswith("$") and pattern[:1] in ("+", "#"):
        return False
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


def _valid_filter(pattern: str) -> bool:
    parts = pattern.split("/")
    return bool(pattern) and all(("#" not in x or (x == "#" and i == len(parts) - 1)) and ("+" not in x or x == "+")
                                 for i, x in enumerate(parts))


def _encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _str16(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _ProtocolError("packet shorter than its fields")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def bin16(self) -> bytes:
        return self.take(self.u16())

    def str16(self) -> str:
        try:
            return self.bin16().decode("utf-8")
        except UnicodeDecodeError:
            raise _ProtocolError("invalid UTF-8 string") from None

    def rest(self) -> bytes:
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


@dataclass
class _Session:
    client_id: str
    clean: bool
    username: str | None = None
    subs: dict[str, int] = field(default_factory=dict)
    queue: deque = field(default_factory=deque)  # (topic, payload, qos) while offline
    queued_bytes: int = 0  # the payloads in queue
    inflight: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    next_id: int = 0
    writer: asyncio.StreamWriter | None = None

    def packet_id(self) -> int:
        for _ in range(65535):
            self.next_id = self.next_id % 65535 + 1
            if self.next_id not in self.inflight:
                return self.next_id
        raise _ProtocolError("no free packet id")


class PythonBroker:
    """An in-process MQTT 3.1.1 broker (asyncio in a daemon thread) for demos and tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, users: dict[str, str] | None = None,
                 acl: LabAcl | None = None, max_packet_size: int = DEFAULT_MESSAGE_LIMIT,
                 max_queued: int = DEFAULT_QUEUE_MESSAGES, max_queued_bytes: int = DEFAULT_QUEUE_BYTES,
                 max_buffer: int = 256 << 20) -> None:
        self.host, self.port = host, port
        self.users, self.acl = users, acl
        self.max_packet_size, self.max_queued, self.max_buffer = max_packet_size, max_queued, max_buffer
        self.max_queued_bytes = max_queued_bytes
        self.sessions: dict[str, _Session] = {}
        self.retained: dict[str, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> PythonBroker:
        self._thread = threading.Thread(target=self._run, name="edge-mcepl-broker", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise UserError(f"built-in broker cannot listen on {self.host}:{self.port}: {self._error}")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            fut.result(5)
        except Exception:  # noqa: BLE001
            pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in self.sessions.values():
            if session.writer is not None:
                session.writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one connection ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        _set_nodelay(writer)
        session: _Session | None = None
        will: tuple[str, bytes, int, bool] | None = None
        graceful = False
        try:
            header, body = await asyncio.wait_for(self._read_packet(reader), 10)
            if header >> 4 != 1:
                raise _ProtocolError("first packet is not CONNECT")
            session, will, keepalive = self._connect(body, writer)
            if session is None:
                await writer.drain()
                return
            timeout = keepalive * 1.5 if keepalive else None
            while True:
                header, body = await asyncio.wait_for(self._read_packet(reader), timeout)
                if header >> 4 == 14:  # DISCONNECT
                    graceful = True
                    return
                self._handle(session, header, body, writer)
                if writer.transport.get_write_buffer_size() > self.max_buffer:
                    raise _ProtocolError("client too slow: output buffer over limit")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, _ProtocolError, OSError) as exc:
            if not isinstance(exc, (asyncio.IncompleteReadError, ConnectionError)):
                log.info("built-in broker: closing %s: %s", session.client_id if session else "client", exc)
        except asyncio.CancelledError:
            graceful = True
        finally:
            if session is not None and session.writer is writer:
                session.writer = None
                if session.clean:
                    self.sessions.pop(session.client_id, None)
                if will is not None and not graceful:
                    self._publish(session.username, will[0], will[1], will[2], will[3])
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _read_packet(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        header = (await reader.readexactly(1))[0]
        length, multiplier = 0, 1
        for _ in range(4):
            byte = (await reader.readexactly(1))[0]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                break
        else:
            raise _ProtocolError("malformed remaining length")
        if length > self.max_packet_size:
            raise _ProtocolError(f"packet of {length} bytes over the {self.max_packet_size}-byte limit")
        return header, await reader.readexactly(length)

    def _connect(self, body: bytes, writer: asyncio.StreamWriter):
        r = _Reader(body)
        name, level, flags, keepalive = r.str16(), r.u8(), r.u8(), r.u16()
        if name not in ("MQTT", "MQIsdp"):
            raise _ProtocolError(f"unknown protocol {name!r}")
        if level not in (3, 4):
            writer.write(bytes([0x20, 2, 0, 1]))  # unacceptable protocol version (e.g. MQTT 5)
            return None, None, 0
        client_id = r.str16()
        will = None
        if flags & 0x04:
            will_topic, will_payload = r.str16(), r.bin16()
            will = (will_topic, will_payload, min((flags >> 3) & 3, 1), bool(flags & 0x20))
        username = r.str16() if flags & 0x80 else None
        password = r.bin16() if flags & 0x40 else b""
        clean = bool(flags & 0x02)
        if self.users is not None:
            expected = self.users.get(username or "")
            if expected is None or not hmac.compare_digest(password, expected.encode()):
                log.info("built-in broker: refused %r: bad user name or password", client_id)
                writer.write(bytes([0x20, 2, 0, 4]))
                return None, None, 0
        if will is not None and self.acl is not None and not self.acl.allowed(username, will[0], "write"):
            writer.write(bytes([0x20, 2, 0, 5]))
            return None, None, 0
        if not client_id:
            if not clean:
                writer.write(bytes([0x20, 2, 0, 2]))
                return None, None, 0
            client_id = "auto-" + secrets.token_hex(8)
        old = self.sessions.get(client_id)
        if old is not None and old.writer is not None:
            old.writer.close()  # session takeover
            old.writer = None
        present = old is not None and not clean and not old.clean
        session = old if present and old is not None else _Session(client_id, clean)
        session.clean, session.username, session.writer = clean, username, writer
        self.sessions[client_id] = session
        writer.write(bytes([0x20, 2, 1 if present else 0, 0]))
        for pid, (topic, payload) in list(session.inflight.items()):  # resend unacknowledged, DUP set
            writer.write(self._publish_packet(topic, payload, 1, False, pid, dup=True))
        while session.queue:
            topic, payload, qos = session.queue.popleft()
            self._send(session, topic, payload, qos, False)
        session.queued_bytes = 0
        return session, will, keepalive

    def _handle(self, session: _Session, header: int, body: bytes, writer: asyncio.StreamWriter) -> None:
        kind = header >> 4
        r = _Reader(body)
        if kind == 3:  # PUBLISH
            self._on_publish(session, header, r, writer)
        elif kind == 4:  # PUBACK
            session.inflight.pop(r.u16(), None)
        elif kind == 6:  # PUBREL
            writer.write(bytes([0x70, 2]) + r.take(2))
        elif kind in (5, 7):  # PUBREC / PUBCOMP: we never send QoS 2
            pass
        elif kind == 8:  # SUBSCRIBE
            self._on_subscribe(session, r, writer)
        elif kind == 10:  # UNSUBSCRIBE
            pid = r.u16()
            while r.pos < len(body):
                session.subs.pop(r.str16(), None)
            writer.write(bytes([0xB0, 2]) + pid.to_bytes(2, "big"))
        elif kind == 12:  # PINGREQ
            writer.write(bytes([0xD0, 0]))
        else:
            raise _ProtocolError(f"unexpected packet type {kind}")

    def _on_publish(self, session: _Session, header: int, r: _Reader, writer: asyncio.StreamWriter) -> None:
        qos, retain = (header >> 1) & 3, bool(header & 1)
        topic = r.str16()
        pid = r.u16() if qos else 0
        payload = r.rest()
        if not topic or "+" in topic or "#" in topic:
            raise _ProtocolError(f"invalid topic name {topic!r}")
        if qos == 2:
            writer.write(bytes([0x50, 2]) + pid.to_bytes(2, "big"))  # PUBREC; delivered once here
        elif qos == 1:
            writer.write(bytes([0x40, 2]) + pid.to_bytes(2, "big"))
        self._publish(session.username, topic, payload, min(qos, 1), retain)

    def _on_subscribe(self, session: _Session, r: _Reader, writer: asyncio.StreamWriter) -> None:
        pid = r.u16()
        codes, new = [], []
        while r.pos < len(r.data):
            pattern, qos = r.str16(), r.u8() & 3
            if not _valid_filter(pattern):
                codes.append(0x80)
                continue
            session.subs[pattern] = min(qos, 1)
            codes.append(min(qos, 1))
            new.append(pattern)
        writer.write(bytes([0x90]) + _encode_length(2 + len(codes)) + pid.to_bytes(2, "big") + bytes(codes))
        for pattern in new:
            for topic, payload in self.retained.items():
                if topic_matches(pattern, topic) and self._may_read(session, topic):
                    self._send(session, topic, payload, session.subs[pattern], True)

    def _may_read(self, session: _Session, topic: str) -> bool:
        return self.acl is None or self.acl.allowed(session.username, topic, "read")

    def _publish(self, username: str | None, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if self.acl is not None and not self.acl.allowed(username, topic, "write"):
            log.info("built-in broker: denied publish by %s to %s", username, topic)
            return
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)
        for session in list(self.sessions.values()):
            granted = max((q for pattern, q in session.subs.items() if topic_matches(pattern, topic)), default=None)
            if granted is not None and self._may_read(session, topic):
                self._send(session, topic, payload, min(qos, granted), False)

    def _send(self, session: _Session, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if session.writer is None:
            if qos and not session.clean:
                self._queue(session, topic, payload, qos)
            return
        pid = 0
        if qos:
            pid = session.packet_id()
            session.inflight[pid] = (topic, payload)
        session.writer.write(self._publish_packet(topic, payload, qos, retain, pid))

    def _queue(self, session: _Session, topic: str, payload: bytes, qos: int) -> None:
        """Hold a message for an absent client; once either bound is reached, new ones are dropped (as mosquitto)."""
        if len(session.queue) >= self.max_queued or session.queued_bytes >= self.max_queued_bytes:
            log.info("built-in broker: queue of %s full; dropped a message for %s", session.client_id, topic)
            return
        session.queue.append((topic, payload, qos))
        session.queued_bytes += len(payload)

    @staticmethod
    def _publish_packet(topic: str, payload: bytes, qos: int, retain: bool, pid: int, dup: bool = False) -> bytes:
        variable = _str16(topic.encode()) + (pid.to_bytes(2, "big") if qos else b"")
        header = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
        return bytes([header]) + _encode_length(len(variable) + len(payload)) + variable + payload
