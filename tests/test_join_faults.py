"""`edge-mcepl join` processes against a real mosquitto: crashes, restarts, a broker restart, refusals.

Every test starts its own broker on a free loopback port and real join subprocesses; waits are
polls with generous timeouts (nothing asserts how long anything took).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import yaml

from edge_mcepl.cli import main
from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.comm.topics import config_topic
from edge_mcepl.devicelab.envelope import LabSettings
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config
from labsupport import (
    admin,
    assert_exact_reconstructions,
    log_text,
    needs_mosquitto,
    publish_lab,
    rows,
    start_join,
    stop_all,
    tiny_raw,
    wait_until,
)

pytestmark = needs_mosquitto


class StatusWatcher:
    """Collects the retained status states of the lab's agents."""

    def __init__(self, handle, lab: str) -> None:
        self.states: dict[int, list[str]] = {}
        self.conn = admin(handle)
        self.conn.on(f"edge-mcepl/{lab}/agent/+/status", self._on)
        self.conn.subscribe([f"edge-mcepl/{lab}/agent/+/status"])

    def _on(self, topic: str, payload: bytes) -> None:
        st = json.loads(payload)
        self.states.setdefault(int(st["agent"]), []).append(st["state"])


def test_killed_agent_others_finish_after_deadline_and_restart_resumes_from_checkpoint(tmp_path):
    lab, n, rounds = "f", 4, 10
    handle = start_broker(tmp_path / "broker", lab, n, kind="mosquitto", port=0)
    procs: dict[int, object] = {}
    dirs = [tmp_path / f"agent{i}" for i in range(n)]
    try:
        publish_lab(handle, tiny_raw(name=lab, rounds=rounds, eval_every=100),
                    LabSettings(round_deadline_s=1.5, max_staleness=1, start_timeout_s=120))
        watcher = StatusWatcher(handle, lab)
        procs = {i: start_join(handle.bundle(i), dirs[i]) for i in range(n)}
        wait_until(lambda: len(rows(dirs[3])) >= 2, 120, "agent 3's second round", procs.values())
        procs[3].kill()  # a crash: no clean disconnect, no final status
        procs[3].wait()
        wait_until(lambda: watcher.states.get(3, [])[-1:] == ["offline"], 30, "agent 3's last will")
        others = [procs[i] for i in range(3)]
        wait_until(lambda: any(r["neighbours_heard"] == 1 for r in rows(dirs[0])), 120,
                   "agent 0 to complete a round without agent 3", others)
        procs[3] = start_join(handle.bundle(3), dirs[3])  # the same command again
        codes = {i: p.wait(180) for i, p in procs.items()}
        watcher.conn.close()
    finally:
        stop_all(procs.values())
        handle.stop()
    assert codes == {0: 0, 1: 0, 2: 0, 3: 0}, {i: log_text(dirs[i])[-2000:] for i in codes}
    for i in range(n):
        assert [r["round"] for r in rows(dirs[i])] == list(range(1, rounds + 1)), f"agent {i}: every round once"
    # Agent 3's neighbours (0 and 2 on the ring) went on without it once the deadline passed.
    for i in (0, 2):
        assert any(r["neighbours_heard"] == 1 for r in rows(dirs[i])), f"agent {i}"
        assert "deadline passed without masks from 3" in log_text(dirs[i])
    # Agent 3 resumed from its checkpoint (not round 0) and rejoined: it hears both neighbours again.
    # (Masks the killed process had already received for its current and next round died with it —
    # QoS 1 acknowledges on receipt — so those two rounds may have finished on the deadline.)
    match = re.search(r"resuming from checkpoint \S+ after round (\d+) of 10", log_text(dirs[3]))
    assert match, log_text(dirs[3])[-2000:]
    resumed_at = int(match.group(1))
    assert resumed_at >= 1  # (killed after ≥ 2 rounds; the checkpoint follows each round's metrics row)
    later = [r for r in rows(dirs[3]) if r["round"] >= resumed_at + 3]  # round numbers are 1-based
    assert later and all(r["neighbours_heard"] == 2 for r in later)
    assert_exact_reconstructions(dirs)  # every mask anyone used is the one its sender sent (delta-coded)
    assert watcher.states[3][-1] == "done"


def test_broker_restart_mid_run_everyone_reconnects_and_finishes(tmp_path):
    lab, n, rounds = "b", 3, 15
    raw = tiny_raw(name=lab, agents=n, rounds=rounds, eval_every=100, **{
        "topology.kind": "complete", "data.synthetic_train_per_class": 30, "algorithm.batch_size": 48})
    handle = start_broker(tmp_path / "broker", lab, n, kind="mosquitto", port=0)
    procs: dict[int, object] = {}
    dirs = [tmp_path / f"agent{i}" for i in range(n)]
    try:
        envelope = publish_lab(handle, raw, LabSettings(round_deadline_s=20, max_staleness=1, start_timeout_s=120))
        procs = {i: start_join(handle.bundle(i), dirs[i]) for i in range(n)}
        wait_until(lambda: min(len(rows(d)) for d in dirs) >= 3, 120, "three rounds everywhere", procs.values())
        port = handle.port
        handle.stop()  # SIGTERM: mosquitto saves retained messages and persistent sessions
        assert all(p.poll() is None for p in procs.values()), "agents survive a broker outage"
        handle = start_broker(tmp_path / "broker", lab, n, kind="mosquitto", port=port)
        codes = {i: p.wait(180) for i, p in procs.items()}
        # the retained lab config survived the restart (persistence)
        conn = admin(handle)
        got: list[bytes] = []
        conn.on(config_topic(lab), lambda _t, payload: got.append(payload))
        conn.subscribe([config_topic(lab)])
        wait_until(lambda: got, 20, "the retained config after the restart")
        conn.close()
    finally:
        stop_all(procs.values())
        handle.stop()
    assert codes == {0: 0, 1: 0, 2: 0}, {i: log_text(dirs[i])[-2000:] for i in codes}
    assert json.loads(got[0])["run_id"] == envelope["run_id"]
    for i in range(n):
        assert "reconnected to" in log_text(dirs[i]), f"agent {i} did not log a reconnect"
        assert [r["round"] for r in rows(dirs[i])] == list(range(1, rounds + 1))
    assert_exact_reconstructions(dirs)  # a broker restart loses no base for good


def test_sigterm_exits_cleanly_and_the_same_command_resumes_to_the_simulators_masks(tmp_path):
    lab, rounds = "s", 60
    raw = tiny_raw(name=lab, agents=1, rounds=rounds, eval_every=20, **{"topology.kind": "complete"})
    handle = start_broker(tmp_path / "broker", lab, 1, kind="mosquitto", port=0)
    state = tmp_path / "agent0"
    proc = None
    try:
        publish_lab(handle, raw, LabSettings(round_deadline_s=5, max_staleness=0, start_timeout_s=10))
        watcher = StatusWatcher(handle, lab)
        proc = start_join(handle.bundle(0), state)
        wait_until(lambda: len(rows(state)) >= 5, 120, "five rounds", [proc])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
        wait_until(lambda: watcher.states.get(0, [])[-1:] == ["offline"], 20, "the offline status")
        done = len(rows(state))
        assert 5 <= done < rounds
        assert (state / "checkpoint.npz").exists() and not list(state.glob("*.tmp"))
        assert f"stopped after round {done}/{rounds}" in log_text(state)
        proc = start_join(handle.bundle(0), state)
        assert proc.wait(180) == 0, log_text(state)[-2000:]
        watcher.conn.close()
    finally:
        stop_all([proc] if proc else [])
        handle.stop()
    assert f"resuming from checkpoint {state / 'checkpoint.npz'} after round {done} of {rounds}" in log_text(state)
    assert [r["round"] for r in rows(state)] == list(range(1, rounds + 1))
    config = tiny_lab_config(agents=1, rounds=rounds, eval_every=20, **{"topology.kind": "complete"})
    sim = Simulator(config, log=lambda _: None)
    for t in range(rounds):
        sim.run_round(t)
    assert (state / "final_mask.mcpl").read_bytes() == sim.agents[0].file_message(rounds)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_join_refuses_a_lab_whose_weights_fingerprint_differs(tmp_path, capsys):
    handle = start_broker(tmp_path / "broker", "w", 4, kind="mosquitto", port=0)
    try:
        publish_lab(handle, tiny_raw(name="w"), LabSettings(), fingerprint="00" * 16)
        code = main(["join", "--bundle", str(handle.bundle(1)), "--state-dir", str(tmp_path / "a1"),
                     "--config-timeout", "20"])
    finally:
        handle.stop()
    assert code == 2
    line = one_error_line(capsys)
    assert "weights fingerprint mismatch" in line and "refusing to train" in line
    assert not (tmp_path / "a1" / "checkpoint.npz").exists()


def test_join_with_wrong_credentials_or_a_malformed_config_is_a_one_line_error(tmp_path, capsys):
    handle = start_broker(tmp_path / "broker", "m", 2, kind="mosquitto", port=0)
    try:
        base = ["join", "--state-dir", str(tmp_path / "a0"), "--config-timeout", "10"]
        wrong = tmp_path / "wrong-password.yaml"
        wrong.write_text(yaml.safe_dump({**yaml.safe_load(handle.bundle(0).read_text()), "password": "wrong"}))
        assert main(base + ["--bundle", str(wrong)]) == 2
        assert "refused" in one_error_line(capsys)
        conn = admin(handle)
        conn.publish(config_topic("m"), b"\x80 not json", retain=True).wait_for_publish(5)
        conn.close()
        assert main(base + ["--bundle", str(handle.bundle(0))]) == 2
        assert "not signed by this lab's key" in one_error_line(capsys)
    finally:
        handle.stop()


def test_agents_stopped_a_round_apart_resume_to_the_simulators_masks(tmp_path):
    """Agent 1 stops after receiving agent 0's mask for round t but before completing t; agent 0 completed t.

    Agent 1's inbox died with it (QoS 1 acknowledged the mask on arrival) and agent 0 resumes at
    t + 1: only agent 0 sending its last completed round's mask again lets agent 1 redo round t
    with it — else agent 1 waits out the deadline and goes on without, and the masks differ.
    """
    lab, rounds = "a", 40
    raw = tiny_raw(name=lab, agents=2, rounds=rounds, eval_every=100, **{"topology.kind": "complete"})
    handle = start_broker(tmp_path / "broker", lab, 2, kind="mosquitto", port=0)
    dirs = [tmp_path / f"agent{i}" for i in range(2)]
    procs: dict[int, subprocess.Popen] = {}
    try:
        publish_lab(handle, raw, LabSettings(round_deadline_s=10, max_staleness=1, start_timeout_s=60))
        procs = {i: start_join(handle.bundle(i), dirs[i]) for i in range(2)}
        wait_until(lambda: min(len(rows(d)) for d in dirs) >= 2, 120, "two rounds each", procs.values())
        procs[0].send_signal(signal.SIGSTOP)
        time.sleep(0.5)  # agent 1 publishes its mask for round t and waits for agent 0's
        procs[1].send_signal(signal.SIGSTOP)
        procs[0].send_signal(signal.SIGCONT)  # agent 0 completes round t and waits for agent 1's mask for t + 1
        wait_until(lambda: len(rows(dirs[0])) == len(rows(dirs[1])) + 1, 20, "agent 0 a round ahead")
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(30) == 128 + signal.SIGTERM
        # Pending until it runs again, so round t is not completed; but agent 0's mask for it, waiting
        # on its socket, is read (and acknowledged) on the way out.
        procs[1].send_signal(signal.SIGTERM)
        procs[1].send_signal(signal.SIGCONT)
        assert procs[1].wait(30) == 128 + signal.SIGTERM
        stopped = [len(rows(d)) for d in dirs]
        procs = {i: start_join(handle.bundle(i), dirs[i]) for i in range(2)}
        codes = {i: p.wait(120) for i, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
        stop_all(procs.values())
        handle.stop()
    assert codes == {0: 0, 1: 0}, {i: log_text(dirs[i])[-2000:] for i in codes}
    assert stopped[0] == stopped[1] + 1, stopped
    assert "deadline passed" not in log_text(dirs[1])
    sim = Simulator(tiny_lab_config(name=lab, agents=2, rounds=rounds, eval_every=100, **{"topology.kind": "complete"}),
                    log=lambda _: None)
    for t in range(rounds):
        sim.run_round(t)
    for i in range(2):
        assert (dirs[i] / "final_mask.mcpl").read_bytes() == sim.agents[i].file_message(rounds), f"agent {i}"
