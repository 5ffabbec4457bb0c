"""A supervised mosquitto: restarted on its port when it dies, given up (loudly) when it keeps dying."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import psutil

from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.comm.broker.supervisor import RestartPolicy
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions
from edge_mcepl.comm.topics import status_topic

from labsupport import ROOT, needs_mosquitto, wait_until

LAB = "sup"
BAD_CONFIG = "no_such_option true\n"  # mosquitto refuses to start on it: every restart fails


def agent(handle, i: int, **kw) -> MqttConnection:
    user, password = handle.credentials.for_agent(i)
    options = MqttOptions(user, password, connect_timeout=10, reconnect_max_delay=0.5)
    return MqttConnection(BrokerAddress.parse(handle.url), options, f"{LAB}-agent-{i}", name=f"agent {i}", **kw)


def listens_on(pid: int, port: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in psutil.Process(pid).net_connections())
    except psutil.NoSuchProcess:
        return False


@needs_mosquitto
def test_a_killed_mosquitto_comes_back_on_its_port_and_a_persistent_client_reconnects(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edge_mcepl.comm.broker.supervisor")
    handle = start_broker(tmp_path / "b", LAB, 2, kind="mosquitto", port=0)
    got: list[bytes] = []
    listener = agent(handle, 1, persistent=True)
    sender = agent(handle, 0)
    try:
        listener.on(status_topic(LAB, 0), lambda _t, payload: got.append(payload))
        listener.subscribe([status_topic(LAB, 0)])
        listener.connect()
        sender.connect()
        first = handle.pid
        assert first is not None and listens_on(first, handle.port)
        assert handle.wait_failed(0.2) is None
        psutil.Process(first).kill()  # SIGKILL: no goodbye, no persistence save
        wait_until(lambda: handle.pid != first and listens_on(handle.pid, handle.port), 5,
                   "a new mosquitto listening on the same port")
        assert psutil.Process(handle.pid).name() == "mosquitto"
        wait_until(lambda: listener.reconnects >= 1 and listener.connected and sender.connected, 10,
                   "both clients to reconnect")
        sender.publish(status_topic(LAB, 0), b"after the restart").wait_for_publish(5)
        wait_until(lambda: got, 10, "a message through the restarted broker")
    finally:
        last = handle.pid
        listener.close()
        sender.close()
        handle.stop()
    assert not psutil.pid_exists(last), "stop() stops the supervisor and the mosquitto it restarted"
    assert got == [b"after the restart"]
    assert handle.failed is None
    assert [n.split(" (")[0] for n in handle.restart_notices] == ["mosquitto exited", "mosquitto restarted"]
    assert "killed by SIGKILL" in handle.restart_notices[0] and "last log line:" in handle.restart_notices[0]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("killed by SIGKILL" in m and "restarting in 0.5 s" in m for m in logged), logged


@needs_mosquitto
def test_a_mosquitto_that_keeps_dying_is_given_up_and_the_handle_says_why(tmp_path, caplog):
    policy = RestartPolicy(first_delay_s=0.05, max_delay_s=0.2, max_deaths=3, window_s=60)
    handle = start_broker(tmp_path / "b", LAB, 1, kind="mosquitto", port=0, restart=policy)
    try:
        (tmp_path / "b" / "mosquitto.conf").write_text(BAD_CONFIG)
        psutil.Process(handle.pid).kill()
        why = handle.wait_failed(20)
    finally:
        handle.stop()
    assert why is not None and handle.failed == why
    assert "Unknown configuration variable" in why and "died 3 times within 60 s" in why and "\n" not in why
    assert [r.levelno for r in caplog.records if r.name.endswith("supervisor")] == [logging.WARNING] * 2 + [
        logging.ERROR]
    assert len(handle.restart_notices) == 3  # two deaths with a restart planned, then the one that gave up


def mosquitto_child(cli: subprocess.Popen) -> psutil.Process:
    children = [p for p in psutil.Process(cli.pid).children() if p.name() == "mosquitto"]
    assert len(children) == 1, children
    return children[0]


@needs_mosquitto
def test_the_broker_command_prints_each_restart_and_exits_with_one_line_when_mosquitto_stays_down(tmp_path):
    directory, out, err = tmp_path / "b", tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "edge_mcepl.cli", "broker", "--lab", "x", "--agents", "2", "--port", "0",
           "--dir", str(directory), "--broker-kind", "mosquitto"]
    with open(out, "w") as stdout, open(err, "w") as stderr:
        cli = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        wait_until(lambda: "Ctrl-C stops the broker" in out.read_text(), 30, "the broker command to start", [cli])
        first = mosquitto_child(cli)
        first.kill()
        wait_until(lambda: "mosquitto restarted" in out.read_text(), 10, "the restart line", [cli])
        assert mosquitto_child(cli).pid != first.pid
        (directory / "mosquitto.conf").write_text(BAD_CONFIG)
        mosquitto_child(cli).kill()
        code = cli.wait(30)  # the default policy: 5 deaths within 60 s, 1 + 2 + 4 s of backoff after this one
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    printed, complaints = out.read_text(), err.read_text()
    errors = [line for line in complaints.splitlines() if line.startswith("edge-mcepl: error:")]
    assert code == 2, complaints
    assert len(errors) == 1 and "the broker is down" in errors[0] and "Unknown configuration variable" in errors[0]
    assert "Traceback" not in complaints
    assert printed.count("broker: mosquitto restarted") == 1 and printed.count("killed by SIGKILL") == 2
    assert printed.rstrip().endswith("edge-mcepl broker: stopped")
