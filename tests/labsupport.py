"""Helpers for the device-lab tests: a tiny lab config, join subprocesses, waiting with a timeout, comparisons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from edge_mcepl.comm.broker.credentials import ADMIN_USER, LabCredentials
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions
from edge_mcepl.config import config_from_dict
from edge_mcepl.devicelab.envelope import LabSettings, make_envelope, publish_envelope
from edge_mcepl.devicelab.plan import lab_roster
from edge_mcepl.devicelab.signature import sign_envelope
from edge_mcepl.nn.zoo import build_model
from edge_mcepl.simulator import Simulator
from edge_mcepl.wire.masks import decode_masks

# Real-broker tests fail (never skip) without mosquitto: see pytest_runtest_setup in conftest.py.
needs_mosquitto = pytest.mark.mosquitto
ROOT = Path(__file__).resolve().parents[1]


def tiny_raw(**overrides) -> dict:
    """A lab config mapping that runs a round in a few milliseconds (small-cnn, a little synthetic data)."""
    raw = {"name": "t", "seed": 5, "agents": 4, "rounds": 4, "eval_every": 2, "model": "small-cnn", "threads": 1,
           "data": {"dataset": "synthetic", "synthetic_train_per_class": 12, "synthetic_test_per_class": 4,
                    "classes_per_agent": 3},
           "topology": {"kind": "ring"}, "algorithm": {"batch_size": 8}}
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return raw


def write_yaml(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def profile_file(folder: Path, name: str, retention: float | str, gflops: float = 5.0) -> str:
    """A device profile with a retention ratio (a number, or auto: the structure policy) and one thread,
    written to ``folder/NAME.yaml``."""
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        hardware: {{cores: 1, memory_mb: 1024, gflops: {gflops}, uplink_mbps: 10.0}}
        budget: {{inference_latency_ms: 10.0, model_memory_mb: 16.0}}
        training: {{threads: 1, batch_size: null}}
        retention_ratio: {retention}
        """))
    return str(path)


def start_join(bundle: Path, state_dir: Path, *extra: str) -> subprocess.Popen:
    """``edge-mcepl join --bundle BUNDLE`` as a device runs it, logging to ``state_dir/join.log``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / "join.log", "a")
    cmd = [sys.executable, "-m", "edge_mcepl.cli", "join", "--bundle", str(bundle), "--state-dir", str(state_dir),
           "--config-timeout", "60", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    log.close()
    return proc


def wait_until(predicate, timeout: float, what: str, procs=()) -> None:
    """Poll ``predicate`` until true; fail (naming ``what``) after ``timeout`` s or if a process died badly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for p in procs:
            if p.poll() not in (None, 0):
                raise AssertionError(f"a join process exited with {p.returncode} while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def rows(state_dir: Path) -> list[dict]:
    path = state_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def log_text(state_dir: Path) -> str:
    path = state_dir / "join.log"
    return path.read_text(errors="replace") if path.exists() else ""


def stop_all(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


# Fields that depend on wall-clock time or exist only in a device lab (the rest must match the simulator).
TIMING_OR_DEVICE_ONLY = {"train_seconds", "round_seconds", "gather_seconds", "aggregate_seconds", "eval_seconds",
                         "published_at", "arrivals", "stale", "duplicates", "late", "dropped", "degree",
                         "rejected_reasons"}


def simulate(config, tmp_path):
    sim = Simulator(config, log=lambda _: None)
    sim.run(tmp_path / "sim", progress=False)
    return tmp_path / "sim"


def masks_of(run_dir):
    state = json.loads((run_dir / "final" / "state.json").read_text())
    shapes = build_model(state["model"], state["num_classes"]).layer_shapes()
    out = {}
    for agent in state["agents"]:
        data = (run_dir / "final" / agent["mask_file"]).read_bytes()
        msg = decode_masks(data, expected_fingerprint=bytes.fromhex(state["fingerprint"]), expected_shapes=shapes,
                           nested=True)
        assert (msg.sender, msg.round) == (agent["id"], state["rounds"])
        out[agent["id"]] = data
    return state, out


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_OR_DEVICE_ONLY} for r in rows]


def sent_digests(state_dirs) -> dict[tuple[int, int], str]:
    """(agent, wire round) → the digest of the masks it sent, from every agent's metrics rows."""
    return {(r["agent"], r["round"] - 1): r["sent_digest"] for d in state_dirs for r in rows(d)}


def assert_exact_reconstructions(state_dirs) -> int:
    """Every mask any agent used is exactly what its sender sent that round; returns how many were checked."""
    sent = sent_digests(state_dirs)
    checked = 0
    for d in state_dirs:
        for r in rows(d):
            for s, (t, digest) in r["heard_digests"].items():
                assert digest == sent[(int(s), t)], f"agent {r['agent']} round {r['round']}: sender {s}'s round {t}"
                checked += 1
    assert checked > 0
    return checked


def admin(handle) -> MqttConnection:
    """A lab-admin MQTT connection to a test broker."""
    return MqttConnection(BrokerAddress.parse(handle.url), MqttOptions(ADMIN_USER, handle.credentials.admin_password),
                          f"test-admin-{threading.get_ident()}", name="test admin").connect()


def signed_envelope(envelope: dict, config, explicit=(), profiles: dict[int, str] | None = None,
                    creds: LabCredentials | None = None) -> tuple[bytes, str]:
    """``envelope`` signed as a broker would (with ``config``'s roster; a fresh lab unless ``creds``), as the
    retained payload, and the lab public key a device's bundle holds to check it."""
    creds = creds or LabCredentials.generate(config.name, config.agents)
    signed = sign_envelope(envelope, lab_roster(config, list(explicit), profiles or {}, creds), creds.lab_key)
    return json.dumps(signed).encode(), creds.lab_public_key()


def publish_lab(handle, raw: dict, settings: LabSettings, profiles: dict[int, str] | None = None,
                **envelope_changes) -> dict:
    """Publish a lab config for ``raw`` on a test broker, signed with its roster, as `edge-mcepl broker` would."""
    config = config_from_dict(raw)
    envelope = make_envelope(config, ["retention.conv"], settings)
    envelope.update(envelope_changes)
    envelope = sign_envelope(envelope, lab_roster(config, ["retention.conv"], profiles or {}, handle.credentials),
                             handle.credentials.lab_key)
    conn = admin(handle)
    publish_envelope(conn, envelope)
    conn.close()
    return envelope

