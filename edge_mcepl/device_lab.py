"""The device lab: the lab config on the broker, one ``join`` process per device, the multi-process lab.

Roles:

- the **coordinator** (``edge-mcepl broker CONFIG`` or ``edge-mcepl lab CONFIG``) publishes the lab
  config envelope, retained, on ``edge-mcepl/<lab>/config`` (:func:`make_envelope`);
- each **device** runs ``edge-mcepl join`` (:func:`run_join`): it reads and validates the envelope,
  builds its agent with exactly :func:`~edge_mcepl.lab.build_agent` — the simulator's code, so the
  masks are the simulator's — refuses to train if the weights fingerprint differs, then runs rounds
  over MQTT with a round deadline, bounded staleness and a checkpoint after every round;
- ``edge-mcepl lab`` (:func:`run_lab`) does all of it on one machine: a broker, N join processes,
  and one run directory in the simulator's format.

The envelope (JSON, never pickle)::

    {"format": "edge-mcepl-lab/1", "lab": NAME, "run_id": HEX, "fingerprint": HEX, "num_classes": 10,
     "config": LabConfig.to_dict() with file paths replaced by null,
     "files": {"topology.file": {"name": "...", "text": "..."}, ...},   # small text files, embedded
     "explicit": ["retention.conv", ...],   # keys the lab's YAML (or CLI) set explicitly
     "settings": {"round_deadline_s": 60, "max_staleness": 1, "start_timeout_s": 600},
     "neighbours": {"0": [1, 3], ...}}

**Retention precedence** for agent i: (1) the lab config sets ``retention.conv`` explicitly → the
lab's value for i (a list is round-robin); (2) else the device profile's ``retention_ratio``
(a number); (3) else the profile's ``auto`` policy (:func:`~edge_mcepl.profiles.policy_retention`);
(4) no profile → the lab default (0.3). Linear layers always use the lab's ``retention.linear``.
A profile's ``training.batch_size`` likewise applies only when the lab does not set
``algorithm.batch_size``; threads: ``--threads`` > profile ``training.threads`` > lab ``threads``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .comm.mqtt import (TOPIC_ROOT, BrokerAddress, MqttConnection, MqttOptions, MqttTransport, check_lab_name,
                        config_topic, status_payload, status_topic)
from .config import PATH_FIELDS, LabConfig, RetentionConfig, config_from_dict, load_config
from .errors import UserError

ENVELOPE_FORMAT = "edge-mcepl-lab/1"
FILE_FIELDS = tuple(f for f in PATH_FIELDS if f != "data.data_dir")
MAX_EMBEDDED_FILE = 1 << 20
NUM_CLASSES = 10  # every dataset edge-mcepl reads (CIFAR-10, MNIST, synthetic) has 10 classes


@dataclass(frozen=True)
class LabSettings:
    """Device-lab knobs that are not part of the learning config."""

    round_deadline_s: float = 60.0  # how long an agent waits for its neighbours' masks after publishing
    max_staleness: int = 1  # a missing mask may be replaced by that neighbour's mask from ≤ this many rounds back
    start_timeout_s: float = 600.0  # before round 0, how long to wait for neighbours to come online

    def check(self, source: str = "lab settings") -> LabSettings:
        if not 0.01 <= self.round_deadline_s <= 1e6:
            raise UserError(f"{source}: round_deadline_s {self.round_deadline_s} is outside [0.01, 1e6]")
        if not 0 <= self.max_staleness <= 1000:
            raise UserError(f"{source}: max_staleness {self.max_staleness} is outside [0, 1000]")
        if not 0 <= self.start_timeout_s <= 1e6:
            raise UserError(f"{source}: start_timeout_s {self.start_timeout_s} is outside [0, 1e6]")
        return self


# ---------------------------------------------------------------------------------------------
# The lab config envelope


def explicit_keys(config_path: str | Path, overrides: dict[str, Any] | None = None) -> list[str]:
    """Dotted keys the YAML file (and CLI overrides) set explicitly — what the lab, not a profile, decides."""
    try:
        raw = yaml.safe_load(Path(config_path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        raw = {}
    keys: set[str] = set()
    if isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(value, dict):
                keys.update(f"{key}.{sub}" for sub in value)
            else:
                keys.add(str(key))
    keys.update(k for k, v in (overrides or {}).items() if v is not None)
    return sorted(keys)


def lab_fingerprint(config: LabConfig) -> str:
    from .nn.weights import generate_fixed_weights
    from .nn.zoo import build_model

    return generate_fixed_weights(build_model(config.model, NUM_CLASSES), config.model, config.seed).fingerprint_hex


def make_envelope(config: LabConfig, explicit: list[str], settings: LabSettings, run_id: str | None = None) -> dict:
    """The retained lab-config message for ``config`` (files embedded, neighbours listed)."""
    from .lab import build_topology_for

    check_lab_name(config.name, "lab config name")
    settings.check()
    raw = config.to_dict()
    files = {}
    for dotted in FILE_FIELDS:
        section, key = dotted.split(".")
        path = raw[section][key]
        if path:
            p = Path(path)
            try:
                size = p.stat().st_size
                if size > MAX_EMBEDDED_FILE:
                    raise UserError(f"{p}: {size} bytes; files embedded in the lab config must be ≤ {MAX_EMBEDDED_FILE}")
                files[dotted] = {"name": p.name, "text": p.read_text()}
            except OSError as exc:
                raise UserError(f"{dotted}: cannot read {p} ({exc.strerror})") from None
            raw[section][key] = None
    topology = build_topology_for(config)
    return {
        "format": ENVELOPE_FORMAT, "lab": config.name, "run_id": run_id or secrets.token_hex(8),
        "fingerprint": lab_fingerprint(config), "num_classes": NUM_CLASSES, "config": raw, "files": files,
        "explicit": sorted(explicit), "settings": dataclasses.asdict(settings),
        "neighbours": {str(i): list(topology.neighbours(i)) for i in range(config.agents)},
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def envelope_digest(envelope: dict) -> str:
    """Hash of what defines the run (everything but run id and publication time)."""
    core = {k: v for k, v in envelope.items() if k not in ("run_id", "published_at")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class LabEnvelope:
    lab: str
    run_id: str
    fingerprint: str
    num_classes: int
    config: LabConfig
    explicit: frozenset[str]
    settings: LabSettings
    neighbours: dict[int, list[int]]


def parse_envelope(payload: bytes, lab: str, files_dir: Path, data_dir: str | None = None) -> LabEnvelope:
    """Validate the retained config message; embedded files are written to ``files_dir``."""
    source = f"lab config on {config_topic(lab)}"
    try:
        env = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{source}: not JSON ({exc})") from None
    if not isinstance(env, dict) or env.get("format") != ENVELOPE_FORMAT:
        got = env.get("format") if isinstance(env, dict) else type(env).__name__
        raise UserError(f"{source}: format {got!r}, this edge-mcepl reads {ENVELOPE_FORMAT}")
    try:
        if env["lab"] != lab:
            raise UserError(f"{source}: is for lab {env['lab']!r}")
        raw = env["config"]
        if not isinstance(raw, dict):
            raise UserError(f"{source}: config: expected a mapping")
        raw = json.loads(json.dumps(raw))  # a private copy
        files = env.get("files") or {}
        if files:
            files_dir.mkdir(parents=True, exist_ok=True)
        for dotted, entry in files.items():
            if dotted not in FILE_FIELDS or not isinstance(entry, dict):
                raise UserError(f"{source}: files: unexpected entry {dotted!r}")
            name = Path(str(entry["name"])).name or dotted
            path = files_dir / f"{dotted.replace('.', '_')}__{name}"
            path.write_text(str(entry["text"]))
            section, key = dotted.split(".")
            raw.setdefault(section, {})[key] = str(path)
        lab_dir = (raw.get("data") or {}).get("data_dir")
        raw.setdefault("data", {})["data_dir"] = data_dir or (lab_dir if lab_dir and Path(lab_dir).is_dir() else None)
        config = config_from_dict(raw, source)
        s = env.get("settings") or {}
        settings = LabSettings(float(s.get("round_deadline_s", 60.0)), int(s.get("max_staleness", 1)),
                               float(s.get("start_timeout_s", 600.0))).check(source)
        neighbours = {int(k): [int(x) for x in v] for k, v in (env.get("neighbours") or {}).items()}
        return LabEnvelope(lab, str(env["run_id"]), str(env["fingerprint"]), int(env["num_classes"]), config,
                           frozenset(str(k) for k in env.get("explicit") or []), settings, neighbours)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{source}: malformed ({type(exc).__name__}: {exc})") from None


def publish_envelope(conn: MqttConnection, envelope: dict, timeout: float = 10.0) -> None:
    conn.publish_json(config_topic(envelope["lab"]), envelope, retain=True, wait=timeout)


# ---------------------------------------------------------------------------------------------
# Profiles → this agent's config


@dataclass(frozen=True)
class AgentPlan:
    config: LabConfig  # the lab config with this device's retention / batch size applied
    threads: int
    notes: tuple[str, ...]  # one line each: what decided retention, batch size, threads


def plan_agent(env: LabEnvelope, agent_id: int, profile=None, threads: int | None = None) -> AgentPlan:
    """Apply the documented precedence (lab explicit > profile > lab default) for one agent."""
    from .profiles import policy_retention

    config = env.config
    conv, linear = config.retention.for_agent(agent_id)
    notes = []
    if "retention.conv" in env.explicit:
        notes.append(f"retention {conv:g} (conv) / {linear:g} (linear): set by the lab config"
                     + (f"; profile {profile.name}'s retention_ratio not used" if profile else ""))
    elif profile is not None:
        decision = policy_retention(profile, config.model, linear)
        conv = decision.retention
        config = config.replace(retention=RetentionConfig(conv=conv, linear=config.retention.linear))
        notes.append(f"retention {conv:g} (conv) / {linear:g} (linear): {decision.detail}")
    else:
        notes.append(f"retention {conv:g} (conv) / {linear:g} (linear): lab default (no profile)")
    if profile is not None and profile.batch_size and "algorithm.batch_size" not in env.explicit:
        config = config.replace(algorithm=config.algorithm.replace(batch_size=profile.batch_size))
        notes.append(f"batch size {profile.batch_size}: from profile {profile.name}")
    chosen = threads or (profile.training_threads if profile is not None else config.threads)
    notes.append(f"threads {chosen}: " + ("--threads" if threads else f"profile {profile.name}" if profile else "lab config"))
    if config.device != "cpu":
        # A lab config is shared by every device (a Pi has no CUDA): `device` is the simulator's knob.
        config = config.replace(device="cpu")
        notes.append(f"device cpu: a device lab trains on each device's CPU (the lab's device {env.config.device!r} "
                     "applies to the simulator)")
    return AgentPlan(config, chosen, tuple(notes))


# ---------------------------------------------------------------------------------------------
# One device: edge-mcepl join


@dataclass
class JoinOptions:
    broker: str
    lab: str
    agent_id: int
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    profile: str | None = None
    data_dir: str | None = None
    state_dir: str | None = None
    threads: int | None = None
    fresh: bool = False
    config_timeout: float = 120.0
    load_lock: str | None = None
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


class StopFlag:
    """Set by SIGINT/SIGTERM: the round loop stops at the next safe point."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def install(self) -> dict:
        previous = {}

        def handler(signum, _frame):
            self.signum = signum
            self.event.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def __bool__(self) -> bool:
        return self.event.is_set()


@contextmanager
def _file_lock(path: str | None):
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def default_state_dir(lab: str, agent_id: int) -> Path:
    return Path("edge-mcepl-state") / lab / f"agent_{agent_id:03d}"


def run_join(opts: JoinOptions) -> int:
    """Join a lab and train until its last round (or a signal); returns the exit status."""
    stop = StopFlag()
    previous = stop.install() if threading.current_thread() is threading.main_thread() else {}
    try:
        return _join(opts, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fetch_envelope(opts: JoinOptions, address: BrokerAddress, stop: StopFlag) -> bytes:
    got: list[bytes] = []
    event = threading.Event()
    conn = MqttConnection(address, opts.mqtt, f"edge-mcepl-{opts.lab}-agent-{opts.agent_id}-cfg-{secrets.token_hex(3)}",
                          name=f"agent {opts.agent_id}")

    def handler(_topic: str, payload: bytes) -> None:
        if payload:
            got.append(payload)
            event.set()

    conn.on(config_topic(opts.lab), handler)
    conn.subscribe([config_topic(opts.lab)])
    conn.connect()
    try:
        deadline = time.monotonic() + opts.config_timeout
        while not event.is_set() and not stop and time.monotonic() < deadline:
            event.wait(0.2)
    finally:
        conn.close()
    if not got:
        if stop:
            raise KeyboardInterrupt
        raise UserError(f"no lab config for lab {opts.lab!r} on {address.url} after {opts.config_timeout:g} s "
                        f"(topic {config_topic(opts.lab)}; is `edge-mcepl broker CONFIG.yaml` running for this lab?)")
    return got[-1]


def _join(opts: JoinOptions, stop: StopFlag) -> int:
    import torch

    from .agent import Agent
    from .allocator import keep_freed_memory
    from .checkpoint import load_checkpoint, restore_agent, save_checkpoint
    from .data.resolve import load_lab_data
    from .lab import RUN_FORMAT, build_agent, build_topology_for
    from .metrics import MetricsLog
    from .nn.layers import MaskedConv2d
    from .nn.weights import generate_fixed_weights
    from .nn.zoo import build_model
    from .profiles import load_profile

    say, lab, me = opts.log, check_lab_name(opts.lab), opts.agent_id
    address = BrokerAddress.parse(opts.broker)
    profile = load_profile(opts.profile) if opts.profile else None
    state_dir = Path(opts.state_dir) if opts.state_dir else default_state_dir(lab, me)
    state_dir.mkdir(parents=True, exist_ok=True)
    say(f"agent {me}: joining lab {lab!r} at {address.url}" + (f" with profile {profile.name}" if profile else ""))

    env = parse_envelope(_fetch_envelope(opts, address, stop), lab, state_dir / "lab-files", opts.data_dir)
    if not 0 <= me < env.config.agents:
        raise UserError(f"--agent-id {me}: lab {lab!r} has agents 0..{env.config.agents - 1}")
    if env.config.algorithm.name != "mcepl":  # checkpoints and exports hold masks: baselines are simulator-only
        raise UserError(f"lab {lab!r}: algorithm.name {env.config.algorithm.name!r} runs in the simulator only; "
                        "device labs run mcepl")
    plan = plan_agent(env, me, profile, opts.threads)
    config, settings = plan.config, env.settings
    say(f"agent {me}: run {env.run_id}, {config.agents} agents, {config.rounds} rounds, model {config.model}, "
        f"deadline {settings.round_deadline_s:g} s, max staleness {settings.max_staleness}")
    for note in plan.notes:
        say(f"agent {me}: {note}")
    torch.set_num_threads(plan.threads)

    slot = f"{opts.load_lock}.{me % 2}" if opts.load_lock else None
    with _file_lock(slot):  # the lab runner serialises data loading: N copies of CIFAR-10 at once would not fit
        data = load_lab_data(config, build_model(config.model).input_shape, lambda line: say(f"agent {me}: {line}"))
        template = build_model(config.model, data.train.num_classes)
        fixed = generate_fixed_weights(template, config.model, config.seed)
        if fixed.fingerprint_hex != env.fingerprint:
            raise UserError(f"weights fingerprint mismatch: the lab's is {env.fingerprint}, this device generated "
                            f"{fixed.fingerprint_hex} (model {config.model}, seed {config.seed}, "
                            f"{data.train.num_classes} classes, torch {torch.__version__}) — refusing to train")
        topology = build_topology_for(config)
        if env.neighbours and list(topology.neighbours(me)) != env.neighbours.get(me):
            raise UserError(f"topology mismatch: the lab says agent {me}'s neighbours are {env.neighbours.get(me)}, "
                            f"this device computed {list(topology.neighbours(me))}")
        agent: Agent = build_agent(config, data, topology, fixed, me)
        # Keep only this agent's test images (same images, same order: identical evaluation).
        indices = agent.test_indices.cpu().numpy()
        agent.test_data = data.test.subset(indices)
        agent.test_indices = torch.arange(len(indices))
        classes = list(data.partitions[me].classes)
        say(f"agent {me}: {data.description}; {len(agent.train_data)} train / {len(indices)} test images, "
            f"classes {classes}; neighbours {list(agent.neighbours)}; fingerprint {fixed.fingerprint_hex} ✓")
        del data
    _release_memory()  # the full dataset is gone: give it back before the heap is tuned to keep memory
    keep_freed_memory()
    conv_layers = sum(isinstance(m, MaskedConv2d) for _, m in template.masked_layers())
    static = {"classes": classes, "retention_conv": agent.rule.retention.conv, "conv_layers": conv_layers,
              "filters": [shape[0] for shape in agent.layer_shapes]}

    ckpt_path, metrics_path = state_dir / "checkpoint.npz", state_dir / "metrics.jsonl"
    if opts.fresh:
        for p in (ckpt_path, metrics_path, state_dir / "final_mask.mcpl"):
            p.unlink(missing_ok=True)
    start = 0
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        restore_agent(agent, ckpt, str(ckpt_path), lab=lab, run_id=env.run_id)
        start = ckpt.next_round
        say(f"agent {me}: resuming from checkpoint {ckpt_path} after round {start} of {config.rounds}")
    rows = [r for r in _read_rows(metrics_path) if r["round"] < start]
    _atomic_write(metrics_path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode())

    offline = status_payload("offline", me, run_id=env.run_id, reason="connection lost")
    conn = MqttConnection(address, opts.mqtt, f"edge-mcepl-{lab}-{env.run_id[:8]}-agent-{me}", persistent=True,
                          will=(status_topic(lab, me), offline), name=f"agent {me}")
    transport = MqttTransport(conn, lab, me, validate=agent.check_message, max_staleness=settings.max_staleness)
    transport.stop = stop.event
    statuses: dict[int, dict] = {}

    def on_status(topic: str, payload: bytes) -> None:
        try:
            st = json.loads(payload)
            if isinstance(st, dict) and st.get("run_id") == env.run_id:
                statuses[int(st["agent"])] = st
        except (ValueError, KeyError, TypeError):
            pass

    run_changed: list[str] = []

    def on_config(_topic: str, payload: bytes) -> None:
        try:
            new_run = json.loads(payload).get("run_id")
        except (ValueError, AttributeError):
            return
        if new_run and new_run != env.run_id and not run_changed:
            run_changed.append(new_run)
            stop.event.set()

    conn.on(f"{TOPIC_ROOT}/{lab}/agent/+/status", on_status)
    conn.on(config_topic(lab), on_config)
    transport.listen(agent.neighbours)
    conn.subscribe([status_topic(lab, j) for j in agent.neighbours] + [config_topic(lab)])
    conn.connect()
    transport.set_round(start)
    info = {"run_id": env.run_id, "rounds": config.rounds, "retention": agent.rule.retention.conv,
            "profile": profile.name if profile else None, "pid": os.getpid()}
    conn.publish(status_topic(lab, me), status_payload("online", me, round=start, **info), retain=True)

    def finish(state: str, code: int, **extra: Any) -> int:
        if state == "done":  # a finished agent's persistent session should not queue more masks
            conn.unsubscribe([f"{TOPIC_ROOT}/{lab}/agent/{j}/mask" for j in agent.neighbours])
        conn.close(last=(status_topic(lab, me), status_payload(state, me, round=done_rounds, **info, **last_eval,
                                                                **extra)))
        return code

    done_rounds = start
    if start < config.rounds and not stop:
        began_waiting = time.monotonic()
        deadline = began_waiting + settings.start_timeout_s
        announced = False
        while not stop and time.monotonic() < deadline and any(j not in statuses for j in agent.neighbours):
            if not announced and time.monotonic() - began_waiting > 1.0:  # retained statuses arrive at once
                waiting = [j for j in agent.neighbours if j not in statuses]
                say(f"agent {me}: waiting up to {settings.start_timeout_s:g} s for neighbours {waiting} to come online")
                announced = True
            stop.event.wait(0.1)

    last_eval: dict[str, Any] = {}
    metrics = MetricsLog(metrics_path)
    try:
        for t in range(start, config.rounds):
            if stop:
                break
            began = time.time()
            agent.begin_round(t, transport)
            published = transport.published_at[t]
            report = agent.finish_round(t, transport, timeout=settings.round_deadline_s,
                                        max_staleness=settings.max_staleness)
            gathered = time.time()
            if stop:  # interrupted while gathering: this round is not complete; the checkpoint is the last one
                break
            stats = transport.take_stats()
            row: dict[str, Any] = {
                "round": t, "agent": me, "loss": report.loss, "bytes_sent": report.bytes_sent,
                "bytes_received": report.bytes_received, "neighbours_heard": report.neighbours_heard,
                "rejected": report.rejected + stats.rejected, **agent.rule.mask_stats()}
            evaluated = time.time()
            if (t + 1) % config.eval_every == 0 or t == config.rounds - 1:
                acc, loss = agent.evaluate()
                row.update(accuracy=acc, test_loss=loss)
            ended = time.time()
            arrivals = {str(j): round(a, 6) for j, a in transport.last_arrivals.items()}
            row.update(static, train_seconds=round(published - began, 6), round_seconds=round(ended - began, 6),
                       gather_seconds=round(transport.last_gather_end - published, 6),
                       aggregate_seconds=round(gathered - transport.last_gather_end, 6),
                       eval_seconds=round(ended - evaluated, 6),
                       published_at=round(published, 6),
                       arrivals=arrivals, stale=report.stale, duplicates=stats.duplicates, late=stats.late,
                       degree=len(agent.neighbours))
            metrics.write([row])
            save_checkpoint(ckpt_path, agent, t + 1, lab=lab, run_id=env.run_id)
            done_rounds = t + 1
            if "accuracy" in row:
                last_eval.update(accuracy=row["accuracy"], eval_round=t)
            conn.publish(status_topic(lab, me), status_payload("online", me, round=t + 1, **info, **last_eval),
                         retain=True)
            say(f"agent {me}: round {t + 1}/{config.rounds} loss {report.loss:.4f} heard "
                f"{report.neighbours_heard}/{len(agent.neighbours)}"
                + (f" ({report.stale} stale)" if report.stale else "")
                + (f" rejected {row['rejected']}" if row["rejected"] else "")
                + f" train {row['train_seconds']:.2f}s wait {row['gather_seconds']:.2f}s"
                + (f" accuracy {row['accuracy']:.4f}" if "accuracy" in row else ""))
    finally:
        metrics.close()

    if run_changed:
        say(f"agent {me}: the lab was restarted with a new config (run {run_changed[0]}); stopping after round "
            f"{done_rounds}. Rejoin with --fresh to take part in the new run.")
        return finish("offline", 3, reason="new run")
    if stop:
        name = signal.Signals(stop.signum).name if stop.signum else "signal"
        say(f"agent {me}: {name}: stopped after round {done_rounds}/{config.rounds}; checkpoint {ckpt_path} "
            "is current — run the same command again to resume")
        return finish("offline", 128 + (stop.signum or 2), reason=name)
    mask_path = state_dir / "final_mask.mcpl"
    _atomic_write(mask_path, agent.encode_message(config.rounds))
    _atomic_write(state_dir / "agent.json", json.dumps({
        "format": RUN_FORMAT, "id": me, "lab": lab, "run_id": env.run_id, "model": config.model,
        "num_classes": env.num_classes, "weights_seed": config.seed, "fingerprint": env.fingerprint,
        "rounds": config.rounds, "retention_conv": agent.rule.retention.conv,
        "retention_linear": agent.rule.retention.linear, "neighbours": list(agent.neighbours),
        "classes": classes, "profile": profile.name if profile else None, "notes": list(plan.notes)},
        indent=2).encode())
    say(f"agent {me}: done — {config.rounds} rounds; final mask {mask_path}")
    return finish("done", 0)


def _release_memory() -> None:
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass


def _read_rows(path: Path) -> list[dict]:
    """Metrics rows of a JSONL file; a torn last line (a crash mid-write) is skipped."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("round"), int):
                rows.append(row)
    return rows


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The multi-process lab on one machine: edge-mcepl lab


@dataclass
class LabOptions:
    out: str | None = None
    profiles: list[str] = field(default_factory=list)  # round-robin over agents; empty: no profiles
    broker_kind: str = "auto"
    port: int = 0
    settings: LabSettings = field(default_factory=LabSettings)
    data_dir: str | None = None
    resume: bool = False
    join_args: list[str] = field(default_factory=list)
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


def run_lab(config_path: str, overrides: dict[str, Any], opts: LabOptions) -> int:
    """A broker plus one ``join`` process per agent on this machine; one run directory at the end."""
    from .comm.broker import ADMIN_USER, start_broker
    from .profiles import load_profile

    say = opts.log
    config = load_config(config_path, overrides)
    check_lab_name(config.name, f"{config_path}: name")
    explicit = explicit_keys(config_path, overrides)
    for spec in opts.profiles:
        load_profile(spec)  # validate before starting anything
    run_dir = Path(opts.out) if opts.out else Path("runs") / f"{config.name}-lab-{time.strftime('%Y%m%d-%H%M%S')}"
    if opts.resume:
        if not (run_dir / "lab.json").is_file():
            raise UserError(f"--resume: {run_dir} is not a lab run directory (no lab.json)")
        run_id = json.loads((run_dir / "lab.json").read_text())["run_id"]
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(f"--out {run_dir}: directory exists and is not empty; choose a new run directory "
                            "(or --resume it)")
        run_id = secrets.token_hex(8)
    run_dir.mkdir(parents=True, exist_ok=True)
    envelope = make_envelope(config, explicit, opts.settings, run_id)
    profiles = {i: opts.profiles[i % len(opts.profiles)] for i in range(config.agents)} if opts.profiles else {}
    lab_info = {"run_id": run_id, "config": str(Path(config_path).resolve()), "settings": envelope["settings"],
                "profiles": {str(i): p for i, p in profiles.items()}}
    broker = start_broker(run_dir / "broker", config.name, config.agents, kind=opts.broker_kind, port=opts.port)
    lab_info.update(broker=broker.description, broker_url=broker.url)
    _atomic_write(run_dir / "lab.json", json.dumps(lab_info, indent=2).encode())
    say(f"edge-mcepl lab: {config.name}: {config.agents} agents, {config.rounds} rounds, model {config.model}; "
        f"run {run_id}; fingerprint {envelope['fingerprint']}")
    say(f"broker: {broker.description} at {broker.url}; credentials {broker.credentials_file}")
    address = BrokerAddress.parse(broker.url)
    admin = MqttConnection(address, MqttOptions(ADMIN_USER, broker.credentials.admin_password),
                           f"edge-mcepl-{config.name}-lab-{secrets.token_hex(3)}", name="lab")
    procs: dict[int, subprocess.Popen] = {}
    logs = []
    interrupted = False
    try:
        admin.connect()
        publish_envelope(admin, envelope)
        statuses: dict[int, dict] = {}

        def on_status(_topic: str, payload: bytes) -> None:
            try:
                st = json.loads(payload)
                if st.get("run_id") == run_id:
                    statuses[int(st["agent"])] = st
            except (ValueError, KeyError, TypeError, AttributeError):
                pass

        admin.on(f"{TOPIC_ROOT}/{config.name}/agent/+/status", on_status)
        admin.subscribe([f"{TOPIC_ROOT}/{config.name}/agent/+/status"])
        # The processes share this machine: the lab's `threads` if it sets it, else cores ÷ agents
        # (a profile's training.threads describes a real device, not a process among N on one CPU).
        threads = config.threads if "threads" in explicit else max(1, (os.cpu_count() or 1) // config.agents)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        lock = run_dir / ".data-load.lock"
        for i in range(config.agents):
            agent_dir = run_dir / "agents" / f"agent_{i:03d}"
            agent_dir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "edge_mcepl.cli", "join", "--broker", broker.url, "--lab", config.name,
                   "--agent-id", str(i), "--credentials", str(broker.credentials_file), "--state-dir", str(agent_dir),
                   "--load-lock", str(lock), "--threads", str(threads), *opts.join_args]
            if i in profiles:
                cmd += ["--profile", profiles[i]]
            if opts.data_dir:
                cmd += ["--data-dir", opts.data_dir]
            log_file = open(agent_dir / "join.log", "a")
            logs.append(log_file)
            procs[i] = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        say(f"started {len(procs)} join processes (logs: {run_dir}/agents/agent_NNN/join.log)")
        _watch(procs, statuses, config.rounds, say)
    except KeyboardInterrupt:
        interrupted = True
        say("edge-mcepl lab: interrupted — stopping the agents (they checkpoint) and the broker")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
        admin.close()
        broker.stop()
    codes = {i: p.returncode for i, p in procs.items()}
    lab_info["exit_codes"] = {str(i): c for i, c in codes.items()}
    _atomic_write(run_dir / "lab.json", json.dumps(lab_info, indent=2).encode())
    if interrupted:
        say(f"resume with: edge-mcepl lab {config_path} --out {run_dir} --resume")
        return 130
    summary = collect_run(run_dir, config)
    if summary:
        say(summary)
    failed = [i for i, c in codes.items() if c != 0]
    if failed:
        raise UserError(f"agents {failed} failed (exit codes {[codes[i] for i in failed]}); see "
                        f"{run_dir}/agents/agent_NNN/join.log")
    say(f"wrote {run_dir}/metrics.jsonl, {run_dir}/final/ (masks for export), {run_dir}/summary.txt")
    return 0


def _watch(procs: dict[int, subprocess.Popen], statuses: dict[int, dict], rounds: int, say) -> None:
    """Print progress from the agents' retained status messages until every process has exited."""
    shown_round, shown_eval = -1, -1
    step = max(1, rounds // 20)
    while any(p.poll() is None for p in procs.values()):
        time.sleep(0.5)
        current = dict(statuses)
        if len(current) == len(procs):
            low = min(int(s.get("round", 0)) for s in current.values())
            evals = [s for s in current.values() if "accuracy" in s]
            last_eval = min((int(s["eval_round"]) for s in evals), default=-1) if len(evals) == len(procs) else -1
            if last_eval > shown_eval:
                accs = [float(s["accuracy"]) for s in evals]
                say(f"round {last_eval + 1:>5}: mean personalized accuracy {sum(accs) / len(accs):.4f} "
                    f"(min {min(accs):.4f}, max {max(accs):.4f}) [latest evaluation of each agent]")
                shown_eval = last_eval
            elif low >= shown_round + step or (low == rounds and shown_round < rounds):
                states = sorted({s.get("state", "?") for s in current.values()})
                say(f"round {low:>5}/{rounds}: slowest agent's progress; states {', '.join(states)}")
                shown_round = low
        for i, p in procs.items():
            if p.poll() not in (None, 0) and not getattr(p, "_reported", False):
                p._reported = True  # type: ignore[attr-defined]
                say(f"agent {i}: join process exited with status {p.returncode} (see its join.log)")


def collect_run(run_dir: Path, config: LabConfig) -> str:
    """Merge the agents' state folders into the simulator's run format; returns the summary table."""
    from .lab import RUN_FORMAT
    from .metrics import summary_table

    rows, agents = [], []
    (run_dir / "final" / "masks").mkdir(parents=True, exist_ok=True)
    first: dict | None = None
    for i in range(config.agents):
        agent_dir = run_dir / "agents" / f"agent_{i:03d}"
        rows += _read_rows(agent_dir / "metrics.jsonl")
        info_path, mask_path = agent_dir / "agent.json", agent_dir / "final_mask.mcpl"
        if info_path.exists() and mask_path.exists():
            info = json.loads(info_path.read_text())
            first = first or info
            name = f"masks/agent_{i:03d}.mcpl"
            shutil.copyfile(mask_path, run_dir / "final" / (name + ".tmp"))
            os.replace(run_dir / "final" / (name + ".tmp"), run_dir / "final" / name)
            agents.append({"id": i, "mask_file": name, "retention_conv": info["retention_conv"],
                           "retention_linear": info["retention_linear"], "neighbours": info["neighbours"],
                           "classes": info["classes"], "profile": info.get("profile")})
    rows.sort(key=lambda r: (r["round"], r["agent"]))
    _atomic_write(run_dir / "metrics.jsonl", "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode())
    _atomic_write(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    if first is not None:
        state = {"format": RUN_FORMAT, "model": first["model"], "num_classes": first["num_classes"],
                 "weights_seed": first["weights_seed"], "fingerprint": first["fingerprint"],
                 "rounds": first["rounds"], "agents": agents}
        _atomic_write(run_dir / "final" / "state.json", json.dumps(state, indent=2).encode())
    summary = summary_table(rows) if rows else "no metrics were written"
    _atomic_write(run_dir / "summary.txt", (summary + "\n").encode())
    return summary
