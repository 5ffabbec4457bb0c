"""``edge-mcepl lab``: a whole device lab on one machine — a broker, one ``join`` process per agent.

The agents are real processes talking through a real broker, exactly as on separate devices; only
the machine is shared, so each gets ``cores ÷ agents`` threads (unless the lab sets ``threads``)
and data loading is serialised (``--load-lock``). Progress comes from the agents' retained status
messages. At the end the agents' state folders are merged into one run directory in the
simulator's format (:func:`~edge_mcepl.run_dir.merge_lab_run`); an interrupted lab resumes from the
agents' checkpoints with ``--resume``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..atomic import atomic_write
from ..comm.broker.credentials import ADMIN_USER
from ..comm.broker.launcher import BrokerHandle, start_broker
from ..comm.client import BrokerAddress, MqttConnection, MqttOptions
from ..comm.topics import check_lab_name, status_topic
from ..config import LabConfig, load_config
from ..errors import UserError
from ..profiles import load_profile
from ..run_dir import FINAL_DIR, agent_dir, merge_lab_run
from .envelope import explicit_keys, make_envelope, publish_envelope
from .schema import LabSettings

LAB_INFO_FILE = "lab.json"
EXIT_INTERRUPTED = 130


@dataclass
class LabOptions:
    """What ``edge-mcepl lab`` was asked to do, beyond the config and its overrides."""

    out: str | None = None
    profiles: list[str] = field(default_factory=list)  # round-robin over agents; empty: no profiles
    broker_kind: str = "auto"
    port: int = 0
    settings: LabSettings = field(default_factory=LabSettings)
    data_dir: str | None = None
    resume: bool = False
    join_args: list[str] = field(default_factory=list)
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


@dataclass
class _Lab:
    """What the agents' processes are started with."""

    config: LabConfig
    explicit: list[str]
    run_dir: Path
    run_id: str
    profiles: dict[int, str]
    broker: BrokerHandle


def run_lab(config_path: str, overrides: dict[str, Any], opts: LabOptions) -> int:
    """A broker plus one ``join`` process per agent on this machine; one run directory at the end."""
    say = opts.log
    config = load_config(config_path, overrides)
    check_lab_name(config.name, f"{config_path}: name")
    explicit = explicit_keys(config_path, overrides)
    for spec in opts.profiles:
        load_profile(spec)  # validate before starting anything
    run_dir, run_id = _run_dir(config, opts)
    envelope = make_envelope(config, explicit, opts.settings, run_id)
    profiles = {i: opts.profiles[i % len(opts.profiles)] for i in range(config.agents)} if opts.profiles else {}
    lab_info = {"run_id": run_id, "config": str(Path(config_path).resolve()), "settings": envelope["settings"],
                "profiles": {str(i): p for i, p in profiles.items()}}
    broker = start_broker(run_dir / "broker", config.name, config.agents, kind=opts.broker_kind, port=opts.port)
    lab_info.update(broker=broker.description, broker_url=broker.url)
    atomic_write(run_dir / LAB_INFO_FILE, json.dumps(lab_info, indent=2))
    say(f"edge-mcepl lab: {config.name}: {config.agents} agents, {config.rounds} rounds, model {config.model}; "
        f"run {run_id}; fingerprint {envelope['fingerprint']}")
    say(f"broker: {broker.description} at {broker.url}; credentials {broker.credentials_file}")
    codes, interrupted = _run_agents(_Lab(config, explicit, run_dir, run_id, profiles, broker), envelope, opts)
    lab_info["exit_codes"] = {str(i): c for i, c in codes.items()}
    atomic_write(run_dir / LAB_INFO_FILE, json.dumps(lab_info, indent=2))
    if interrupted:
        say(f"resume with: edge-mcepl lab {config_path} --out {run_dir} --resume")
        return EXIT_INTERRUPTED
    summary = merge_lab_run(run_dir, config)
    if summary:
        say(summary)
    failed = [i for i, c in codes.items() if c != 0]
    if failed:
        raise UserError(f"agents {failed} failed (exit codes {[codes[i] for i in failed]}); see "
                        f"{run_dir}/agents/agent_NNN/join.log")
    final = (f"{run_dir}/final/ (masks for export)" if (run_dir / FINAL_DIR).is_dir()
             else f"no final/ ({config.algorithm.name} learns weights, not masks: nothing to export)")
    say(f"wrote {run_dir}/metrics.jsonl, {final}, {run_dir}/summary.txt")
    return 0


def _run_dir(config: LabConfig, opts: LabOptions) -> tuple[Path, str]:
    """The run directory (new and empty, or one to resume) and its run id."""
    run_dir = Path(opts.out) if opts.out else Path("runs") / f"{config.name}-lab-{time.strftime('%Y%m%d-%H%M%S')}"
    if opts.resume:
        if not (run_dir / LAB_INFO_FILE).is_file():
            raise UserError(f"--resume: {run_dir} is not a lab run directory (no {LAB_INFO_FILE})")
        run_id = json.loads((run_dir / LAB_INFO_FILE).read_text())["run_id"]
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(f"--out {run_dir}: directory exists and is not empty; choose a new run directory "
                            "(or --resume it)")
        run_id = secrets.token_hex(8)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, run_id


def _run_agents(lab: _Lab, envelope: dict, opts: LabOptions) -> tuple[dict[int, int], bool]:
    """Publish the config, run the join processes to the end (or Ctrl-C); their exit codes, and if interrupted."""
    name, broker = lab.config.name, lab.broker
    admin = MqttConnection(BrokerAddress.parse(broker.url), MqttOptions(ADMIN_USER, broker.credentials.admin_password),
                           f"edge-mcepl-{name}-lab-{secrets.token_hex(3)}", name="lab")
    procs: dict[int, subprocess.Popen] = {}
    logs: list[IO[str]] = []
    interrupted = False
    try:
        admin.connect()
        publish_envelope(admin, envelope)
        statuses: dict[int, dict] = {}
        admin.on(status_topic(name, "+"), lambda _topic, payload: _file_status(statuses, lab.run_id, payload))
        admin.subscribe([status_topic(name, "+")])
        _start_joins(lab, opts, procs, logs)
        opts.log(f"started {len(procs)} join processes (logs: {lab.run_dir}/agents/agent_NNN/join.log)")
        _watch(procs, statuses, lab.config.rounds, opts.log)
    except KeyboardInterrupt:
        interrupted = True
        opts.log("edge-mcepl lab: interrupted — stopping the agents (they checkpoint) and the broker")
    finally:
        _stop_joins(procs, logs)
        admin.close()
        broker.stop()
    return {i: p.returncode for i, p in procs.items()}, interrupted


def _file_status(statuses: dict[int, dict], run_id: str, payload: bytes) -> None:  # paho thread
    try:
        st = json.loads(payload)
        if st.get("run_id") == run_id:
            statuses[int(st["agent"])] = st
    except (ValueError, KeyError, TypeError, AttributeError):
        pass


def _start_joins(lab: _Lab, opts: LabOptions, procs: dict[int, subprocess.Popen], logs: list[IO[str]]) -> None:
    """One ``edge-mcepl join`` per agent, each with its state folder in the run directory."""
    config, broker = lab.config, lab.broker
    # The processes share this machine: the lab's `threads` if it sets it, else cores ÷ agents
    # (a profile's training.threads describes a real device, not a process among N on one CPU).
    threads = config.threads if "threads" in lab.explicit else max(1, (os.cpu_count() or 1) // config.agents)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    lock = lab.run_dir / ".data-load.lock"
    for i in range(config.agents):
        folder = agent_dir(lab.run_dir, i)
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "edge_mcepl.cli", "join", "--broker", broker.url, "--lab", config.name,
               "--agent-id", str(i), "--credentials", str(broker.credentials_file), "--state-dir", str(folder),
               "--load-lock", str(lock), "--threads", str(threads), *opts.join_args]
        if i in lab.profiles:
            cmd += ["--profile", lab.profiles[i]]
        if opts.data_dir:
            cmd += ["--data-dir", opts.data_dir]
        log_file = open(folder / "join.log", "a")
        logs.append(log_file)
        procs[i] = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)


def _stop_joins(procs: dict[int, subprocess.Popen], logs: list[IO[str]]) -> None:
    """SIGTERM whoever still runs (they checkpoint and say offline), then wait; kill after a minute."""
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


class _Progress:
    """Lab-wide progress lines: a new evaluation every agent has reached, else the slowest agent's round."""

    def __init__(self, n_agents: int, rounds: int) -> None:
        self.n_agents, self.rounds = n_agents, rounds
        self.step = max(1, rounds // 20)
        self.shown_round = self.shown_eval = -1

    def line(self, statuses: dict[int, dict]) -> str | None:
        if len(statuses) != self.n_agents:
            return None
        low = min(int(s.get("round", 0)) for s in statuses.values())
        evals = [s for s in statuses.values() if "accuracy" in s]
        last_eval = min((int(s["eval_round"]) for s in evals), default=-1) if len(evals) == self.n_agents else -1
        if last_eval > self.shown_eval:
            self.shown_eval = last_eval
            accs = [float(s["accuracy"]) for s in evals]
            return (f"round {last_eval:>5}: mean personalized accuracy {sum(accs) / len(accs):.4f} "
                    f"(min {min(accs):.4f}, max {max(accs):.4f}) [latest evaluation of each agent]")
        if low >= self.shown_round + self.step or (low == self.rounds and self.shown_round < self.rounds):
            self.shown_round = low
            states = sorted({s.get("state", "?") for s in statuses.values()})
            return f"round {low:>5}/{self.rounds}: slowest agent's progress; states {', '.join(states)}"
        return None


def _watch(procs: dict[int, subprocess.Popen], statuses: dict[int, dict], rounds: int,
           say: Callable[[str], None]) -> None:
    """Print progress from the agents' retained status messages until every process has exited."""
    progress, reported = _Progress(len(procs), rounds), set()
    while any(p.poll() is None for p in procs.values()):
        time.sleep(0.5)
        line = progress.line(dict(statuses))
        if line:
            say(line)
        for i, p in procs.items():
            if p.poll() not in (None, 0) and i not in reported:
                reported.add(i)
                say(f"agent {i}: join process exited with status {p.returncode} (see its join.log)")
