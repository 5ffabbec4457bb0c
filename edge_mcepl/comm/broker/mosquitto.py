"""mosquitto for one lab, configured in a directory it owns (Debian: ``apt-get install mosquitto``).

Files written there:

- ``mosquitto.conf``: one listener (loopback unless told otherwise), ``allow_anonymous false``,
  ``set_tcp_nodelay true``, ``message_size_limit``, persistence saved every ~2 s (retained config,
  persistent sessions and their queued masks survive a broker restart, and a crash loses at most
  the last couple of seconds), bounded per-client queues (messages and bytes);
- ``passwd``: made with ``mosquitto_passwd`` (hashed, never plain text) from the lab's credentials;
- ``acl``: :meth:`~.credentials.LabAcl.mosquitto_acl`;
- ``listener.crt`` / ``listener.key``: a copy of the TLS certificate and key, when the listener speaks TLS;
- ``bridge-ca.crt``: the central broker's CA, when this is a site broker bridged to it over TLS
  (:class:`Bridge`; the bridge's password is in ``mosquitto.conf``, which is then root's alone, mode 0600).

**Least privilege.** Started as root, mosquitto drops to an unprivileged account (:func:`broker_user`)
right after binding its listener, and only then opens the password file, ACL, certificate, log and
persistence; so those belong to that account, and the configuration names them relative to the
broker directory, mosquitto's working directory: the account needs to enter that one folder, not
its parents (often private, like ``/root`` or pytest's temporary folders). The lab's secrets file
(the plain-text passwords) and the lab CA's key stay root's, unreadable by the broker.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ...atomic import atomic_file, atomic_write
from ...errors import UserError
from .credentials import LabAcl, LabCredentials

START_TIMEOUT_S = 15.0
_TIMESTAMP = re.compile(r"^\d+: ")  # mosquitto's stderr lines start with the Unix time
CONF_FILE = "mosquitto.conf"
LOG_FILE = "mosquitto.log"
# Debian's package creates "mosquitto"; mosquitto itself falls back to "nobody" when it is missing.
UNPRIVILEGED_USERS = ("mosquitto", "nobody")


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
                                              if os.access(p, os.X_OK)), None)


def find_mosquitto_passwd() -> str | None:
    return shutil.which("mosquitto_passwd") or next((p for p in ("/usr/bin/mosquitto_passwd",
                                                                 "/usr/sbin/mosquitto_passwd")
                                                     if os.access(p, os.X_OK)), None)


@dataclass(frozen=True)
class Listener:
    """Where mosquitto listens, and with which certificate (None: plain TCP)."""

    host: str
    port: int
    tls_cert: str | None = None
    tls_key: str | None = None


@dataclass(frozen=True)
class Limits:
    """What one client may cost the broker: its largest message, and its queue of QoS 1 messages.

    ``queue_messages`` / ``queue_bytes`` bound what mosquitto holds per client beyond the in-flight
    window (for an agent that is away, or too slow); once either is reached, new ones for it are dropped.
    """

    message_bytes: int
    queue_messages: int
    queue_bytes: int


@dataclass(frozen=True)
class Bridge:
    """A site broker's link to the lab's central broker: every topic of the lab, both ways, QoS 1.

    A multi-site lab runs one broker per site, each bridged to the central one (docs/bridging.md):
    devices join their site's broker, a mask crosses at most two bridges. The bridge signs in to the
    central broker as the lab admin (the only account that may write every agent's topics: it relays
    them; the masks stay signed by their agents). mosquitto's bridge mode (``try_private``) keeps
    retained messages retained across the bridge — the lab config and statuses are retained — and
    sends no message back where it came from.
    """

    host: str
    port: int
    ca_file: str | None = None  # the central broker's CA: the bridge speaks TLS (mqtts://)
    name: str = "site"  # this site, in the bridge's client id on the central broker


@dataclass(frozen=True)
class BrokerUser:
    """The account mosquitto runs as: it owns what mosquitto opens after dropping root."""

    name: str
    uid: int
    gid: int


def broker_user() -> BrokerUser:
    """Root → Debian's ``mosquitto`` account, else ``nobody``; anyone else → themselves (no switch possible)."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return BrokerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    for name in UNPRIVILEGED_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return BrokerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    raise UserError("running as root, but there is no mosquitto or nobody account to run mosquitto as "
                    "(Debian's mosquitto package creates one: apt-get install mosquitto)")


@dataclass
class Mosquitto:
    """A running mosquitto process."""

    process: subprocess.Popen

    def stop(self) -> None:
        proc = self.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # SIGTERM: mosquitto writes its persistence file first
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class MosquittoConfig:
    """A lab's mosquitto files, written: what starting (and restarting) the broker needs."""

    binary: str
    directory: Path
    listener: Listener
    version: str

    @property
    def conf_file(self) -> Path:
        return self.directory / CONF_FILE

    @property
    def log_file(self) -> Path:
        return self.directory / LOG_FILE

    def launch(self) -> Mosquitto:
        """Start mosquitto on these files and wait until it listens (a one-line UserError if it cannot)."""
        proc = subprocess.Popen([self.binary, "-c", str(self.conf_file)], cwd=self.directory,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        _wait_listening(proc, self)
        return Mosquitto(proc)


def write_mosquitto_config(binary: str, directory: Path, acl: LabAcl, creds: LabCredentials, listener: Listener,
                           limits: Limits, sys_interval: int, bridge: Bridge | None = None) -> MosquittoConfig:
    """Write the lab's files into ``directory``, owned by the account mosquitto will run as."""
    if listener.tls_cert and not listener.tls_key:
        raise UserError("--tls-cert needs --tls-key")
    user = broker_user()
    _let_in(directory, user)
    _write_passwd(directory / "passwd", creds)
    atomic_write(directory / "acl", acl.mosquitto_acl(), mode=0o600)
    persistence = directory / "persistence"
    persistence.mkdir(mode=0o700, exist_ok=True)
    log_file = directory / LOG_FILE
    log_file.touch(mode=0o640)
    tls = _install_tls(directory, listener)
    bridge_ca = _install_bridge_ca(directory, bridge)
    for path in [directory / "passwd", directory / "acl", persistence, *persistence.iterdir(), log_file, *tls,
                 *bridge_ca]:
        _hand_over(path, user)  # persistence from a run before this account: mosquitto must read it back
    lines = _config_lines(acl, listener, limits, sys_interval, user)
    if bridge is not None:
        lines += _bridge_lines(acl, creds, bridge)
    # A bridge's password is in the config: then only root (who starts mosquitto) may read it.
    atomic_write(directory / CONF_FILE, "\n".join(lines) + "\n", mode=0o600 if bridge else 0o666)
    version = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    version = version.replace("mosquitto version ", "").strip() or "?"
    return MosquittoConfig(binary, directory, listener, version)


def _hand_over(path: Path, user: BrokerUser) -> None:
    """Give ``path`` to the broker account (only root can, and only root runs mosquitto as someone else)."""
    if os.geteuid() == 0:
        os.chown(path, user.uid, user.gid)


def _let_in(directory: Path, user: BrokerUser) -> None:
    """Let the broker account enter ``directory`` (search, not list): mosquitto opens its files from there."""
    if os.geteuid() != 0:
        return
    st = directory.stat()
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == user.uid or mode & stat.S_IXOTH or (st.st_gid == user.gid and mode & stat.S_IXGRP):
        return
    os.chown(directory, -1, user.gid)
    os.chmod(directory, (mode & ~stat.S_IRWXG) | stat.S_IXGRP)


def _install_tls(directory: Path, listener: Listener) -> list[Path]:
    """Copy the listener's certificate and key into ``directory``, where the broker account can read them."""
    if not (listener.tls_cert and listener.tls_key):
        return []
    copies = []
    for source, name, mode in ((listener.tls_cert, "listener.crt", 0o644), (listener.tls_key, "listener.key", 0o600)):
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise UserError(f"{source}: cannot read the TLS {'key' if mode == 0o600 else 'certificate'}: "
                            f"{exc.strerror}") from None
        atomic_write(directory / name, data, mode=mode)
        copies.append(directory / name)
    return copies


def _install_bridge_ca(directory: Path, bridge: Bridge | None) -> list[Path]:
    """Copy the central broker's CA into ``directory`` (mosquitto opens it after dropping root)."""
    if bridge is None or bridge.ca_file is None:
        return []
    try:
        data = Path(bridge.ca_file).read_bytes()
    except OSError as exc:
        raise UserError(f"--bridge-cafile {bridge.ca_file}: cannot read it: {exc.strerror}") from None
    atomic_write(directory / "bridge-ca.crt", data, mode=0o644)
    return [directory / "bridge-ca.crt"]


def _bridge_lines(acl: LabAcl, creds: LabCredentials, bridge: Bridge) -> list[str]:
    """The bridge section; the admin password is the site's copy of the central broker's secrets."""
    from .credentials import ADMIN_USER

    return [
        "",
        "# bridge to the lab's central broker: every lab topic both ways (docs/bridging.md)",
        f"connection edge-mcepl-{acl.lab}-{bridge.name}",
        f"address {bridge.host}:{bridge.port}",
        f"remote_username {ADMIN_USER}",
        f"remote_password {creds.admin_password}",
        f"remote_clientid edge-mcepl-{acl.lab}-bridge-{bridge.name}",
        f"topic {acl.prefix}# both 1",
        "cleansession false",  # the central broker queues what this site misses while the link is down
        "try_private true",  # mosquitto's bridge mode: retained stays retained, nothing is echoed back
        "notifications false",  # the admin may not write $SYS on the central broker
        "bridge_protocol_version mqttv311",
        "keepalive_interval 15",
        "restart_timeout 1 10",
        *(["bridge_cafile bridge-ca.crt"] if bridge.ca_file else []),
    ]


def _write_passwd(path: Path, creds: LabCredentials) -> None:
    passwd_tool = find_mosquitto_passwd()
    if passwd_tool is None:
        raise UserError("mosquitto_passwd not found (it ships with Debian's mosquitto package)")
    with atomic_file(path, mode=0o600) as f:  # mosquitto_passwd fills the temporary file, then it replaces passwd
        for user, password in creds.users().items():
            done = subprocess.run([passwd_tool, "-b", f.name, user, password], capture_output=True, text=True)
            if done.returncode != 0:
                raise UserError(f"mosquitto_passwd failed for {user}: {(done.stderr or done.stdout).strip()}")


def _config_lines(acl: LabAcl, listener: Listener, limits: Limits, sys_interval: int, user: BrokerUser) -> list[str]:
    tls = ["certfile listener.crt", "keyfile listener.key"] if listener.tls_cert and listener.tls_key else []
    return [
        "# generated by edge-mcepl broker — one device lab; the passwords are in the lab's secrets file",
        f"# lab: {acl.lab}, agents: {acl.n_agents}",
        "# Paths are relative to this folder, mosquitto's working directory: the account it runs as",
        "# needs to enter this folder only, not its parents.",
        f"user {user.name}",  # started as root, mosquitto drops to this account once its listener is bound
        "per_listener_settings false",
        f"listener {listener.port} {listener.host}",
        *tls,
        "allow_anonymous false",
        "password_file passwd",
        "acl_file acl",
        "set_tcp_nodelay true",
        f"message_size_limit {limits.message_bytes}",
        "persistence true",
        "persistence_location persistence/",
        # Saved on a clock, not per change (a full rewrite per queued mask would be quadratic): mosquitto
        # saves once more than autosave_interval whole seconds have passed, so a kill -9 loses ≤ ~2 s.
        "autosave_interval 1",
        "autosave_on_changes false",
        "persistent_client_expiration 7d",
        f"max_queued_messages {limits.queue_messages}",
        f"max_queued_bytes {limits.queue_bytes}",
        "max_inflight_messages 20",
        f"sys_interval {sys_interval}",
        f"log_dest file {LOG_FILE}",
        "log_type error", "log_type warning", "log_type notice",  # not information: a line per autosave
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]


def _wait_listening(proc: subprocess.Popen, config: MosquittoConfig) -> None:
    listener = config.listener
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            said = [_TIMESTAMP.sub("", line) for line in (err or last_log_line(config.log_file)).splitlines()]
            raise UserError(f"mosquitto exited at start-up (status {proc.returncode}): "
                            f"{' '.join(said[-3:]) or 'no output'} — config {config.conf_file}")
        try:
            with socket.create_connection((listener.host, listener.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise UserError(f"mosquitto did not start listening on {listener.host}:{listener.port} within "
                    f"{START_TIMEOUT_S:g} s (log {config.log_file})")


def last_log_line(path: Path) -> str:
    """The last line of mosquitto's log ("" when there is none): what it said before it stopped."""
    try:
        with open(path, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 4096, 0))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
