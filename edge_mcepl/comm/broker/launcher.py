"""Starting a lab's broker: mosquitto when it is installed, else the built-in Python broker.

:func:`start_broker` is the one entry point (``edge-mcepl broker``, ``edge-mcepl lab``, the tests):
it keeps the lab's credentials in ``credentials.yaml`` (mode 0600: the plain-text passwords to hand
to each device) and returns a :class:`BrokerHandle` that says which broker runs and stops it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError
from ..topics import check_lab_name
from .credentials import LabAcl, LabCredentials
from .mosquitto import Listener, find_mosquitto, start_mosquitto
from .python_broker import DEFAULT_MESSAGE_LIMIT, PythonBroker

BROKER_KINDS = ("auto", "mosquitto", "python")
MAX_PORT = 65535


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
    _stop: Callable[[], None] | None = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_broker(directory: str | Path, lab: str, n_agents: int, *, kind: str = "auto", host: str = "127.0.0.1",
                 port: int = 1883, message_limit: int = DEFAULT_MESSAGE_LIMIT, tls_cert: str | None = None,
                 tls_key: str | None = None, sys_interval: int = 2) -> BrokerHandle:
    """Start a broker for ``lab`` (``n_agents`` agents) with its files in ``directory``.

    Credentials in ``directory/credentials.yaml`` are reused when they exist (a restarted broker
    keeps the passwords devices already hold), else generated. ``port=0`` picks a free port.
    """
    check_lab_name(lab)
    # Checked before anything is written: a bad value must not leave a credentials folder behind.
    if not 0 <= port <= MAX_PORT:
        raise UserError(f"--port {port}: must be a TCP port, 1..{MAX_PORT} (or 0: any free port)")
    if kind not in BROKER_KINDS:
        raise UserError(f"--broker-kind {kind}: expected auto, mosquitto or python")
    binary = find_mosquitto()
    if kind == "mosquitto" and binary is None:
        raise UserError("--broker-kind mosquitto: mosquitto is not installed (Debian: apt-get install mosquitto)")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    cred_file = directory / "credentials.yaml"
    creds = _lab_credentials(cred_file, lab, n_agents)
    if port == 0:
        port = free_port(host)
    acl = LabAcl(lab, n_agents)
    if kind == "python" or binary is None:
        if tls_cert:
            raise UserError("--tls-cert needs mosquitto; the built-in Python broker speaks plain TCP only")
        broker = PythonBroker(host, port, users=creds.users(), acl=acl, max_packet_size=message_limit).start()
        creds.broker_url = f"mqtt://{host}:{broker.port}"
        creds.save(cred_file)
        why = "" if kind == "python" else " — mosquitto not found (apt-get install mosquitto for the real broker)"
        return BrokerHandle("python", f"built-in Python broker (MQTT 3.1.1, in-process, no persistence){why}",
                            host, broker.port, directory, creds, cred_file, broker.stop)
    creds.broker_url = f"{'mqtts' if tls_cert else 'mqtt'}://{host}:{port}"
    creds.save(cred_file)
    mosquitto = start_mosquitto(binary, directory, acl, creds, Listener(host, port, tls_cert, tls_key), message_limit,
                                sys_interval)
    return BrokerHandle("mosquitto", f"mosquitto {mosquitto.version} ({binary})", host, port, directory, creds,
                        cred_file, mosquitto.stop)


def _lab_credentials(cred_file: Path, lab: str, n_agents: int) -> LabCredentials:
    if not cred_file.exists():
        return LabCredentials.generate(lab, n_agents)
    creds = LabCredentials.load(cred_file)
    if creds.lab != lab or set(creds.agents) != set(range(n_agents)):
        raise UserError(f"{cred_file}: belongs to lab {creds.lab!r} with {len(creds.agents)} agents, not "
                        f"{lab!r} with {n_agents}; use another --dir")
    return creds
