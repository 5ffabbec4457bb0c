"""``edge-mcepl lab``: a whole device lab on one machine — a broker, one ``join`` process per agent.

The agents are real processes talking through a real broker, exactly as on separate devices; only
the machine is shared, so each gets ``cores ÷ agents`` threads (unless the lab sets ``threads``)
and data loading is serialised (``--load-lock``). The data is resolved once here first, so the
console says what the agents train on (or that they would not find it) before anything starts.
Progress comes from the agents' retained status messages; an agent whose process fails stops the
whole lab, since nobody here would restart it and its neighbours would wait on round deadlines.
At the end the agents' state folders are merged into one run directory in the simulator's format
(:func:`~edge_mcepl.run_dir.merge_lab_run`).

``lab.json`` records everything the run was started with; ``--resume`` restores it (options given
again must agree) and appends a session, so an interrupted lab continues from the agents'
checkpoints exactly as it began (:mod:`.session` plans a session; this module runs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..comm.broker.credentials import ADMIN_USER
from ..comm.broker.launcher import BrokerHandle, start_broker
from ..comm.client import BrokerAddress, MqttConnection, MqttOptions
from ..comm.topics import status_topic
from ..config import DataConfig, LabConfig
from ..dashboard.attached import attached_dashboard
from ..data.resolve import load_lab_data
from ..errors import UserError
from ..nn.zoo import build_model
from ..run_dir import FINAL_DIR, LOAD_LOCK, agent_dir, merge_lab_run
from .envelope import publish_envelope
from .limits import broker_limits
from .plan import lab_roster
from .session import LabOptions, begin_session, end_session, new_run_dir, plan_session
from .signature import sign_envelope

EXIT_INTERRUPTED = 130
STOPPED_BY_SIGNAL = {128 + signal.SIGINT: "SIGINT", 128 + signal.SIGTERM: "SIGTERM"}  # a join's exit status then
STOP_GRACE_S = 3.0  # after Ctrl-C: how long the joins may take to stop on their own (most stop at once)
ERROR_PREFIX = "edge-mcepl: error: "  # how the CLI prints a UserError: the line a failed join's log explains itself in


@dataclass
class _Lab:
    """What the agents' processes are started with."""

    config: LabConfig
    explicit: list[str]
    run_dir: Path
    run_id: str
    profiles: dict[int, str]
    broker: BrokerHandle
    verbose: bool
    log_offsets: dict[int, int] = field(default_factory=dict)  # where this session starts in each join.log


@dataclass
class _Ending:
    """How a session's join processes ended."""

    codes: dict[int, int]
    interrupted: bool = False
    failed: int | None = None  # the first agent whose process failed: the lab stopped the others then


def run_lab(config_path: str, overrides: dict[str, Any], opts: LabOptions) -> int:
    """A broker plus one ``join`` process per agent on this machine; one run directory at the end."""
    say = opts.log
    plan = plan_session(config_path, overrides, opts)
    config, envelope = plan.config, plan.envelope
    say(f"edge-mcepl lab: {config.name}: {config.agents} agents, {config.rounds} rounds, model {config.model}, "
        f"preset {config.algorithm.preset}, seed {config.seed}")
    used = _say_data(config, say)
    run_dir = plan.run_dir or new_run_dir(config, opts.out)
    say(f"{'resuming run' if plan.recorded else 'run'} {envelope['run_id']}; weights fingerprint "
        f"{envelope['fingerprint']}; run directory {run_dir}")
    limits = broker_limits(config, envelope, plan.settings.max_staleness)
    broker = start_broker(run_dir / "broker", config.name, config.agents, kind=plan.broker_kind, port=plan.port,
                          message_limit=limits.message_bytes, queue_messages=limits.queue_messages,
                          queue_bytes=limits.queue_bytes)
    record = begin_session(plan, broker, run_dir)
    say(f"broker: {broker.description} at {broker.url}; secrets {broker.credentials_file}, device bundles "
        f"{broker.bundle(0).parent}")
    # The run's config.yaml records the data the agents used (a fallback says synthetic, as in simulate).
    lab = _Lab(config.replace(data=used), plan.explicit, run_dir, record.run_id, plan.profiles, broker, plan.verbose)
    try:  # the dashboard lets go of the broker before the broker goes
        with attached_dashboard(broker, broker.url, opts.dashboard, say):
            ending = _run_agents(lab, envelope, say)
    finally:
        broker.stop()
    end_session(record, ending.codes, run_dir)
    resume = f"edge-mcepl lab {shlex.quote(config_path)} --out {shlex.quote(str(run_dir))} --resume"
    return _conclude(lab, ending, resume, say)


def _say_data(config: LabConfig, say: Callable[[str], None]) -> DataConfig:
    """Resolve the data once, as every agent will, to put its source on the console (simulate's lines).

    A missing dataset is thus a one-line error before anything starts, or the synthetic-fallback
    NOTE when the config allows it; the agents read the same folder (``join --data-dir``). The
    images are freed on return: each agent loads its own share. Returns the data config used.
    """
    data = load_lab_data(config, build_model(config.model).input_shape, say)
    say(f"data: {data.description}")
    return data.config


def _conclude(lab: _Lab, ending: _Ending, resume: str, say: Callable[[str], None]) -> int:
    """Merge a finished lab into the run directory; after Ctrl-C or a failed agent, how to resume."""
    run_dir = lab.run_dir
    if ending.failed is not None:
        say(f"after fixing agent {ending.failed}'s problem, resume with: {resume}")
        raise UserError(_failure(lab, ending.failed, ending.codes[ending.failed]))
    if ending.interrupted:
        say(f"resume with: {resume}")
        return EXIT_INTERRUPTED
    summary = merge_lab_run(run_dir, lab.config)
    if summary:
        say(summary)
    final = (f"{run_dir}/final/ (masks for export)" if (run_dir / FINAL_DIR).is_dir()
             else f"no final/ ({lab.config.algorithm.name} learns weights, not masks: nothing to export)")
    say(f"wrote {run_dir}/metrics.jsonl, {final}, {run_dir}/summary.txt")
    return 0


def _failure(lab: _Lab, agent: int, code: int) -> str:
    """One line: which agent's process failed, how, and the first error line of its log (this session's part)."""
    log = agent_dir(lab.run_dir, agent) / "join.log"
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    line = _error_line(log, lab.log_offsets.get(agent, 0))
    return (f"agent {agent}: join process {how}" + (f": {line}" if line else "")
            + f" — the lab stopped its other agents (they checkpointed); see {log}")


def _error_line(log: Path, offset: int) -> str | None:
    """A failed join's first error line (the CLI's one-line error, or the last line of a traceback), or None."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    errors = [line.removeprefix(ERROR_PREFIX) for line in lines if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[0]
    return lines[-1] if any(line.startswith("Traceback") for line in lines) else None


def _run_agents(lab: _Lab, envelope: dict, say: Callable[[str], None]) -> _Ending:
    """Publish the config, run the join processes to the end, to Ctrl-C or to the first that fails."""
    name, broker = lab.config.name, lab.broker
    admin = MqttConnection(BrokerAddress.parse(broker.url), MqttOptions(ADMIN_USER, broker.credentials.admin_password),
                           f"edge-mcepl-{name}-lab-{secrets.token_hex(3)}", name="lab")
    procs: dict[int, subprocess.Popen] = {}
    logs: list[IO[str]] = []
    ending = _Ending({})
    try:
        admin.connect()
        roster = lab_roster(lab.config, lab.explicit, lab.profiles, broker.credentials)
        publish_envelope(admin, sign_envelope(envelope, roster, broker.credentials.lab_key))
        statuses: dict[int, dict] = {}
        admin.on(status_topic(name, "+"), lambda _topic, payload: _file_status(statuses, lab.run_id, payload))
        admin.subscribe([status_topic(name, "+")])
        _start_joins(lab, procs, logs)
        say(f"started {len(procs)} join processes (logs: {lab.run_dir}/agents/agent_NNN/join.log)")
        first = _watch(procs, statuses, lab.config.rounds, say)
        if first is not None:
            ending = _stopping_early(first, procs[first].returncode, say)
    except KeyboardInterrupt:
        ending.interrupted = True
        say("edge-mcepl lab: interrupted — stopping the agents (they checkpoint) and the broker")
    finally:
        _stop_joins(procs, logs, STOP_GRACE_S if ending.interrupted else 0.0)
        admin.close()
    ending.codes = {i: p.returncode for i, p in procs.items()}
    return ending


def _stopping_early(agent: int, code: int, say: Callable[[str], None]) -> _Ending:
    """Why the lab stops when ``agent``'s process has ended early: a signal stopped it, or it failed.

    Stopped by SIGINT/SIGTERM (say a Ctrl-C the lab itself ignored), it has checkpointed: the run
    resumes as it is, like one interrupted here.
    """
    if code in STOPPED_BY_SIGNAL:
        say(f"edge-mcepl lab: agent {agent}'s join process was stopped by {STOPPED_BY_SIGNAL[code]} — stopping the "
            "other agents (they checkpoint) and the broker")
        return _Ending({}, interrupted=True)
    say(f"edge-mcepl lab: agent {agent}'s join process failed — stopping the other agents (they checkpoint) and the "
        "broker")
    return _Ending({}, failed=agent)


def _file_status(statuses: dict[int, dict], run_id: str, payload: bytes) -> None:  # paho thread
    try:
        st = json.loads(payload)
        if st.get("run_id") == run_id:
            statuses[int(st["agent"])] = st
    except (ValueError, KeyError, TypeError, AttributeError):
        pass


def _start_joins(lab: _Lab, procs: dict[int, subprocess.Popen], logs: list[IO[str]]) -> None:
    """One ``edge-mcepl join`` per agent, each with its state folder in the run directory."""
    config, broker = lab.config, lab.broker
    # The processes share this machine: the lab's `threads` if it sets it, else cores ÷ agents
    # (a profile's training.threads describes a real device, not a process among N on one CPU).
    threads = config.threads if "threads" in lab.explicit else max(1, (os.cpu_count() or 1) // config.agents)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    lock = lab.run_dir / LOAD_LOCK
    for i in range(config.agents):
        folder = agent_dir(lab.run_dir, i)
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "edge_mcepl.cli", "join", "--bundle", str(broker.bundle(i)),
               "--state-dir", str(folder), "--load-lock", str(lock), "--threads", str(threads)]
        if i in lab.profiles:
            cmd += ["--profile", lab.profiles[i]]
        if config.data.data_dir:  # the folder the launcher read, even where it is missing (a fallback)
            cmd += ["--data-dir", config.data.data_dir]
        if lab.verbose:
            cmd.append("--verbose")
        log_path = folder / "join.log"
        lab.log_offsets[i] = log_path.stat().st_size if log_path.exists() else 0
        log_file = open(log_path, "a")
        logs.append(log_file)
        procs[i] = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)


def _stop_joins(procs: dict[int, subprocess.Popen], logs: list[IO[str]], grace: float = 0.0) -> None:
    """SIGTERM whoever still runs after ``grace`` s (they checkpoint and say offline), then wait; kill after a minute.

    After Ctrl-C the joins, which the terminal signalled too, are given the grace to stop on their
    own: a second signal could reach one that has already put back the default handlers, and kill it.
    """
    deadline = time.monotonic() + grace
    for p in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.0, deadline - time.monotonic()))
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
        evals = [s for s in statuses.values() if s.get("accuracy") is not None]  # null before the first
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
           say: Callable[[str], None]) -> int | None:
    """Print progress from the agents' retained status messages until every process has exited or one failed.

    Returns the first agent whose process exited non-zero: nobody here restarts it, so its
    neighbours would only wait for it on every round's deadline.
    """
    progress = _Progress(len(procs), rounds)
    while (failed := _first_failed(procs)) is None and any(p.poll() is None for p in procs.values()):
        time.sleep(0.5)
        line = progress.line(dict(statuses))
        if line:
            say(line)
    return failed


def _first_failed(procs: dict[int, subprocess.Popen]) -> int | None:
    return next((i for i, p in sorted(procs.items()) if p.poll() not in (None, 0)), None)
