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
from dataclasses import dataclass
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
from .options import describe_ids
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
    agents_per_process: int = 1


@dataclass
class _Process:
    """One ``join`` process and the agents it hosts; its log is in its first agent's folder."""

    agents: list[int]
    popen: subprocess.Popen
    log: Path
    log_offset: int  # where this session starts in its join.log


@dataclass
class _Ending:
    """How a session's join processes ended."""

    codes: dict[int, int]
    interrupted: bool = False
    failed: _Process | None = None  # the first process that failed: the lab stopped the others then


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
    lab = _Lab(config.replace(data=used), plan.explicit, run_dir, record.run_id, plan.profiles, broker, plan.verbose,
               opts.agents_per_process)
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
        say(f"after fixing {describe_ids(ending.failed.agents)}'s problem, resume with: {resume}")
        raise UserError(_failure(ending.failed))
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


def _failure(process: _Process) -> str:
    """One line: whose process failed, how, and the first error line of its log (this session's part)."""
    code = process.popen.returncode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    line = _error_line(process.log, process.log_offset)
    return (f"{describe_ids(process.agents)}: join process {how}" + (f": {line}" if line else "")
            + f" — the lab stopped its other agents (they checkpointed); see {process.log}")


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
    procs: list[_Process] = []
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
        hosting = "" if lab.agents_per_process == 1 else f", up to {lab.agents_per_process} agents each"
        plural = "es" if len(procs) > 1 else ""
        say(f"started {len(procs)} join process{plural}{hosting} (logs: {lab.run_dir}/agents/agent_NNN/join.log, "
            "in each process's first agent's folder)")
        first = _watch(procs, statuses, lab.config.agents, lab.config.rounds, say)
        if first is not None:
            ending = _stopping_early(first, say)
    except KeyboardInterrupt:
        ending.interrupted = True
        say("edge-mcepl lab: interrupted — stopping the agents (they checkpoint) and the broker")
    finally:
        _stop_joins(procs, logs, STOP_GRACE_S if ending.interrupted else 0.0)
        admin.close()
    ending.codes = {i: p.popen.returncode for p in procs for i in p.agents}
    return ending


def _stopping_early(process: _Process, say: Callable[[str], None]) -> _Ending:
    """Why the lab stops when ``process`` has ended early: a signal stopped it, or it failed.

    Stopped by SIGINT/SIGTERM (say a Ctrl-C the lab itself ignored), it has checkpointed: the run
    resumes as it is, like one interrupted here.
    """
    code, who = process.popen.returncode, describe_ids(process.agents)
    if code in STOPPED_BY_SIGNAL:
        say(f"edge-mcepl lab: {who}'s join process was stopped by {STOPPED_BY_SIGNAL[code]} — stopping the "
            "other agents (they checkpoint) and the broker")
        return _Ending({}, interrupted=True)
    say(f"edge-mcepl lab: {who}'s join process failed — stopping the other agents (they checkpoint) and the broker")
    return _Ending({}, failed=process)


def _file_status(statuses: dict[int, dict], run_id: str, payload: bytes) -> None:  # paho thread
    try:
        st = json.loads(payload)
        if st.get("run_id") == run_id:
            statuses[int(st["agent"])] = st
    except (ValueError, KeyError, TypeError, AttributeError):
        pass


def _start_joins(lab: _Lab, procs: list[_Process], logs: list[IO[str]]) -> None:
    """One ``edge-mcepl join`` per ``agents_per_process`` consecutive agents, each agent's state in the run directory.

    An agent alone gets its bundle; several share a process by ``--agent-id`` over the bundles folder
    (and a profile only when the lab assigns them all the same one — else each takes its roster's).
    """
    config, broker = lab.config, lab.broker
    k = lab.agents_per_process
    groups = [list(range(first, min(first + k, config.agents))) for first in range(0, config.agents, k)]
    # The processes share this machine: the lab's `threads` if it sets it, else cores ÷ processes
    # (a profile's training.threads describes a real device, not a process among N on one CPU).
    threads = config.threads if "threads" in lab.explicit else max(1, (os.cpu_count() or 1) // len(groups))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    lock = lab.run_dir / LOAD_LOCK
    for agents in groups:
        for i in agents:
            agent_dir(lab.run_dir, i).mkdir(parents=True, exist_ok=True)
        if len(agents) == 1:
            where = ["--bundle", str(broker.bundle(agents[0])), "--state-dir", str(agent_dir(lab.run_dir, agents[0]))]
        else:
            where = ["--bundle", str(broker.bundle(agents[0]).parent), "--agent-id", f"{agents[0]}-{agents[-1]}",
                     "--state-dir", str(agent_dir(lab.run_dir, agents[0]).parent)]
        cmd = [sys.executable, "-m", "edge_mcepl.cli", "join", *where, "--load-lock", str(lock),
               "--threads", str(threads)]
        profiles = {lab.profiles[i] for i in agents if i in lab.profiles}
        if len(profiles) == 1 and all(i in lab.profiles for i in agents):
            cmd += ["--profile", profiles.pop()]
        if config.data.data_dir:  # the folder the launcher read, even where it is missing (a fallback)
            cmd += ["--data-dir", config.data.data_dir]
        if lab.verbose:
            cmd.append("--verbose")
        log_path = agent_dir(lab.run_dir, agents[0]) / "join.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        log_file = open(log_path, "a")
        logs.append(log_file)
        procs.append(_Process(agents, subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env),
                              log_path, offset))


def _stop_joins(procs: list[_Process], logs: list[IO[str]], grace: float = 0.0) -> None:
    """SIGTERM whoever still runs after ``grace`` s (they checkpoint and say offline), then wait; kill after a minute.

    After Ctrl-C the joins, which the terminal signalled too, are given the grace to stop on their
    own: a second signal could reach one that has already put back the default handlers, and kill it.
    """
    popens = [p.popen for p in procs]
    deadline = time.monotonic() + grace
    for p in popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.0, deadline - time.monotonic()))
    for p in popens:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in popens:
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


def _watch(procs: list[_Process], statuses: dict[int, dict], agents: int, rounds: int,
           say: Callable[[str], None]) -> _Process | None:
    """Print progress from the agents' retained status messages until every process has exited or one failed.

    Returns the first process that exited non-zero: nobody here restarts it, so its agents'
    neighbours would only wait for them on every round's deadline.
    """
    progress = _Progress(agents, rounds)
    while (failed := _first_failed(procs)) is None and any(p.popen.poll() is None for p in procs):
        time.sleep(0.5)
        line = progress.line(dict(statuses))
        if line:
            say(line)
    return failed


def _first_failed(procs: list[_Process]) -> _Process | None:
    return next((p for p in procs if p.popen.poll() not in (None, 0)), None)
