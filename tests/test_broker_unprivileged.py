"""Started by root, mosquitto drops to an unprivileged account that owns only what it opens, and still serves."""

from __future__ import annotations

import os
import pwd
import stat

import psutil
import pytest

from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.comm.broker.mosquitto import UNPRIVILEGED_USERS
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions
from edge_mcepl.comm.topics import status_topic

from labsupport import needs_mosquitto, wait_until

LAB = "priv"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@needs_mosquitto
def test_mosquitto_runs_as_an_unprivileged_account_and_clients_still_publish_and_subscribe(tmp_path):
    os.chmod(tmp_path, 0o700)  # a private parent (like /root): the broker account must not need to enter it
    directory = tmp_path / "b"
    handle = start_broker(directory, LAB, 1, kind="mosquitto", port=0, tls="on")
    got: list[bytes] = []
    user, password = handle.credentials.for_agent(0)
    conn = MqttConnection(BrokerAddress.parse(handle.url), MqttOptions(user, password, ca_file=str(handle.ca_file),
                                                                       connect_timeout=10), "priv-agent-0")
    try:
        uids = psutil.Process(handle.pid).uids()
        conn.on(status_topic(LAB, 0), lambda _t, payload: got.append(payload))
        conn.subscribe([status_topic(LAB, 0)])
        conn.connect()  # over TLS: the account read the password file, the ACL and the certificate and key
        conn.publish(status_topic(LAB, 0), b"hello", retain=True).wait_for_publish(5)
        wait_until(lambda: got, 10, "the message back through mosquitto")
    finally:
        conn.close()
        handle.stop()  # SIGTERM: mosquitto saves its persistence, as the account it runs as
    assert got == [b"hello"]
    assert (directory / "persistence" / "mosquitto.db").stat().st_uid == uids.effective
    if os.geteuid() != 0:
        pytest.skip("not run as root: mosquitto keeps the invoking user (it cannot switch), so there is no "
                    "privilege to drop; publish/subscribe and persistence passed")
    assert 0 not in (uids.real, uids.effective, uids.saved)
    account = pwd.getpwuid(uids.effective)
    assert account.pw_name == next(name for name in UNPRIVILEGED_USERS if _exists(name))
    for name, expected in (("passwd", 0o600), ("acl", 0o600), ("listener.key", 0o600), ("persistence", 0o700)):
        path = directory / name
        assert (path.stat().st_uid, path.stat().st_gid, mode(path)) == (account.pw_uid, account.pw_gid, expected), name
    assert (directory / "mosquitto.log").stat().st_uid == account.pw_uid
    for secret in (handle.credentials_file, directory / "tls" / "ca.key"):  # never the broker's to read
        assert (secret.stat().st_uid, mode(secret)) == (0, 0o600), secret


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
