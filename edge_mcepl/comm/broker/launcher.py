"""Starting a lab's broker: mosquitto when it is installed, else the built-in Python broker.

:func:`start_broker` is the one entry point (``edge-mcepl broker``, ``edge-mcepl lab``, the tests):
it keeps the lab's secrets in ``lab-secrets.yaml`` (mode 0600, the broker host's only: passwords,
the lab key, every agent's signing key), writes one bundle per device under ``bundles/`` (what to
hand each device: :mod:`.bundles`) and returns a :class:`BrokerHandle` that says which broker runs
and stops it.
mosquitto runs as an unprivileged account, supervised (:mod:`.supervisor`: restarted when it
dies), and speaks TLS with the lab's own CA (:mod:`.tls`) when it listens beyond loopback.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError
from ..topics import check_lab_name
from .bundles import bundle_path, write_bundles
from .credentials import SECRETS_FILE, LabAcl, LabCredentials
from .mosquitto import Bridge, Limits, Listener, find_mosquitto, write_mosquitto_config
from .python_broker import DEFAULT_MESSAGE_LIMIT, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_MESSAGES, PythonBroker
from .supervisor import DEFAULT_RESTART, RestartPolicy, Supervisor

BROKER_KINDS = ("auto", "mosquitto", "python")
TLS_MODES = ("auto", "on", "off")
MAX_PORT = 65535
MAX_MESSAGE_LIMIT = 268_435_455  # MQTT's largest payload


@dataclass
class BrokerHandle:
    """A running broker, whichever kind: where it listens, its credentials, and how to stop it."""

    kind: str  # "mosquitto" or "python"
    description: str  # one line for the user: which broker, version, where
    host: str
    port: int
    directory: Path
    credentials: LabCredentials
    credentials_file: Path
    ca_file: Path | None = None  # the lab CA a client must pin (None: plain TCP, or a certificate of your own)
    tls: bool = False
    _stop: Callable[[], None] | None = field(repr=False, default=None)
    _supervisor: Supervisor | None = field(repr=False, default=None)  # mosquitto only

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """mosquitto's current process (it changes when the supervisor restarts it); None: in-process broker."""
        return self._supervisor.pid if self._supervisor is not None else None

    @property
    def failed(self) -> str | None:
        """Why the broker is down for good (mosquitto kept dying and supervision gave up), else None."""
        return self._supervisor.failed if self._supervisor is not None else None

    def wait_failed(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` s for the broker to fail for good; :attr:`failed` then."""
        if self._supervisor is None:
            time.sleep(timeout)  # the in-process broker has no process to lose
            return None
        return self._supervisor.wait_failed(timeout)

    @property
    def restart_notices(self) -> list[str]:
        """One line per mosquitto death and restart so far, oldest first."""
        return self._supervisor.notices if self._supervisor is not None else []

    def bundle(self, agent_id: int | None) -> Path:
        """Agent ``agent_id``'s bundle (None: the observer's): the one file ``join --bundle`` needs."""
        return bundle_path(self.directory, agent_id)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_broker(directory: str | Path, lab: str, n_agents: int, *, kind: str = "auto", host: str = "127.0.0.1",
                 port: int = 1883, message_limit: int = DEFAULT_MESSAGE_LIMIT,
                 queue_messages: int = DEFAULT_QUEUE_MESSAGES, queue_bytes: int = DEFAULT_QUEUE_BYTES,
                 tls: str = "auto", tls_cert: str | None = None, tls_key: str | None = None, sys_interval: int = 2,
                 restart: RestartPolicy = DEFAULT_RESTART, bridge: Bridge | None = None) -> BrokerHandle:
    """Start a broker for ``lab`` (``n_agents`` agents) with its files in ``directory``.

    Secrets in ``directory/lab-secrets.yaml`` are reused when they exist (a restarted broker keeps
    the passwords and keys devices already hold), else generated; the bundles are written anew.
    ``port=0`` picks a free port.

    Limits, per message and per client: ``message_limit`` bytes (default 1 MiB; mosquitto drops a
    larger message), and at most ``queue_messages`` QoS 1 messages (default 2000) or ``queue_bytes``
    (default 64 MiB) queued for a client that is away or slow; once either is reached, new ones are dropped.

    ``tls``: "auto" speaks TLS when ``host`` is not loopback, "on" always, "off" never. TLS uses
    ``tls_cert``/``tls_key`` when given, else a certificate from the lab's own CA (``ca_file`` on
    the handle: what clients pin). mosquitto is restarted by ``restart`` when it dies. ``bridge``:
    this is a site broker of a multi-site lab, linked to the central one (mosquitto only; its
    secrets file must be the central broker's copy, so both accept the same accounts).
    """
    check_lab_name(lab)
    # Checked before anything is written: a bad value must not leave a credentials folder behind.
    if not 0 <= port <= MAX_PORT:
        raise UserError(f"--port {port}: must be a TCP port, 1..{MAX_PORT} (or 0: any free port)")
    if kind not in BROKER_KINDS:
        raise UserError(f"--broker-kind {kind}: expected auto, mosquitto or python")
    limits = _limits(message_limit, queue_messages, queue_bytes)
    binary = find_mosquitto()
    if kind == "mosquitto" and binary is None:
        raise UserError("--broker-kind mosquitto: mosquitto is not installed (Debian: apt-get install mosquitto)")
    use_tls = _use_tls(tls, host, tls_cert, tls_key)
    if bridge is not None and (kind == "python" or binary is None):
        raise UserError("--bridge needs mosquitto (the built-in Python broker cannot bridge): apt-get install "
                        "mosquitto")
    if use_tls and (kind == "python" or binary is None):
        raise UserError(f"--host {host} --tls {tls}: TLS needs mosquitto; the built-in Python broker speaks plain "
                        "TCP only (apt-get install mosquitto, or --tls off to send passwords and masks in clear)")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    cred_file = directory / SECRETS_FILE
    if bridge is not None and not cred_file.exists():
        raise UserError(f"--bridge: {cred_file} is missing — a site broker accepts the central broker's accounts: "
                        f"copy the central broker's {SECRETS_FILE} there first (docs/bridging.md)")
    creds = _lab_credentials(cred_file, lab, n_agents)
    if port == 0:
        port = free_port(host)
    acl = LabAcl(lab, n_agents)
    if kind == "python" or binary is None:
        broker = PythonBroker(host, port, users=creds.users(), acl=acl, max_packet_size=limits.message_bytes,
                              max_queued=limits.queue_messages, max_queued_bytes=limits.queue_bytes).start()
        creds.broker_url = f"mqtt://{host}:{broker.port}"
        creds.save(cred_file)
        write_bundles(directory, creds, None)
        why = "" if kind == "python" else " — mosquitto not found (apt-get install mosquitto for the real broker)"
        return BrokerHandle("python", f"built-in Python broker (MQTT 3.1.1, in-process, no persistence){why}",
                            host, broker.port, directory, creds, cred_file, _stop=broker.stop)
    ca_file = None
    if use_tls and not tls_cert:
        from .tls import ensure_lab_ca  # cryptography is needed only here

        lab_tls = ensure_lab_ca(directory / "tls", tls_hosts(host))
        ca_file, tls_cert, tls_key = lab_tls.ca_file, str(lab_tls.cert_file), str(lab_tls.key_file)
    creds.broker_url = f"{'mqtts' if use_tls else 'mqtt'}://{host}:{port}"
    creds.save(cred_file)
    write_bundles(directory, creds, ca_file.read_text() if ca_file is not None else None)
    config = write_mosquitto_config(binary, directory, acl, creds, Listener(host, port, tls_cert, tls_key), limits,
                                    sys_interval, bridge)
    supervisor = Supervisor(config.launch, config.launch(), config.log_file, restart).start()
    return BrokerHandle("mosquitto", f"mosquitto {config.version} ({binary})", host, port, directory, creds,
                        cred_file, ca_file, use_tls, supervisor.stop, supervisor)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def tls_hosts(host: str) -> list[str]:
    """The names and addresses a client may use for a listener on ``host``: what its certificate must name.

    A wildcard listener (0.0.0.0, ::) is reached by this machine's names and any of its addresses.
    """
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    import psutil

    addresses = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                 if a.family in (socket.AF_INET, socket.AF_INET6) and "%" not in a.address]
    return [socket.gethostname(), socket.getfqdn(), "localhost", *addresses]


def _use_tls(tls: str, host: str, tls_cert: str | None, tls_key: str | None) -> bool:
    if tls not in TLS_MODES:
        raise UserError(f"--tls {tls}: expected auto, on or off")
    if tls_cert and not tls_key:
        raise UserError("--tls-cert needs --tls-key")
    if tls == "off" and tls_cert:
        raise UserError("--tls off contradicts --tls-cert: give one or the other")
    return tls == "on" or bool(tls_cert) or (tls == "auto" and not is_loopback(host))


def _limits(message_limit: int, queue_messages: int, queue_bytes: int) -> Limits:
    if not 1 <= message_limit <= MAX_MESSAGE_LIMIT:
        raise UserError(f"message limit {message_limit}: expected 1..{MAX_MESSAGE_LIMIT} bytes")
    if queue_messages < 1 or queue_bytes < 1:
        raise UserError(f"queue limits {queue_messages} messages, {queue_bytes} bytes: both must be ≥ 1 "
                        "(an unbounded queue lets one absent client exhaust the broker's memory)")
    return Limits(message_limit, queue_messages, queue_bytes)


def _lab_credentials(cred_file: Path, lab: str, n_agents: int) -> LabCredentials:
    if not cred_file.exists():
        return LabCredentials.generate(lab, n_agents)
    creds = LabCredentials.load(cred_file)
    if creds.lab != lab or set(creds.agents) != set(range(n_agents)):
        raise UserError(f"{cred_file}: belongs to lab {creds.lab!r} with {len(creds.agents)} agents, not "
                        f"{lab!r} with {n_agents}; use another --dir")
    return creds
