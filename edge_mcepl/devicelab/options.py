"""What ``edge-mcepl join`` was asked to do: which agents this process hosts, where, and how it stops.

One process may host several agents of a lab (``join --agent-id 0-49``): each keeps its own
bundle (account, signing key) and state folder; everything else here is the process's.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..comm.broker.bundles import Bundle
from ..comm.client import MqttOptions
from ..errors import UserError

AGENT_IDS_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


@dataclass(frozen=True)
class HostedAgent:
    """One agent a join process runs: its bundle (who it is) and its state folder (checkpoint, metrics, mask)."""

    bundle: Bundle
    state_dir: Path

    @property
    def agent_id(self) -> int:
        assert self.bundle.agent_id is not None, "an agent's bundle"
        return self.bundle.agent_id


@dataclass
class JoinOptions:
    """The process's options (one field per ``join`` option); each agent's account and key come from its bundle."""

    agents: list[HostedAgent]
    broker: str
    mqtt: MqttOptions = field(default_factory=MqttOptions)  # TLS and protocol; username/password: each bundle's
    profile: str | None = None
    data_dir: str | None = None
    threads: int | None = None
    fresh: bool = False
    config_timeout: float = 120.0
    load_lock: str | None = None
    drop_incoming: float = 0.0  # lose this fraction of the neighbours' messages on arrival (robustness tests)
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


class StopFlag:
    """Why the round loop stops at its next safe point: a signal (SIGINT/SIGTERM), or the lab's new run.

    Shared by every agent of the process: one signal, or one agent hearing a new lab config, stops them all.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.new_run: str | None = None  # the run id of a newer lab config, when that is the reason

    def install(self) -> dict:
        previous = {}

        def handler(signum, _frame):
            if self.signum is None:  # the first one says why (Ctrl-C, then `lab`'s SIGTERM to stragglers)
                self.signum = signum
            self.event.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def stop_for_new_run(self, run_id: str) -> None:
        if self.new_run is None:
            self.new_run = run_id
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


def default_state_dir(lab: str, agent_id: int) -> Path:
    return Path("edge-mcepl-state") / lab / f"agent_{agent_id:03d}"


def parse_agent_ids(text: str) -> list[int]:
    """``0-49`` or ``0-9,20,30-39`` → the ids in that order, each once; a malformed list is a one-line error."""
    spec = text.replace(" ", "")
    if not AGENT_IDS_RE.match(spec):
        raise UserError(f"--agent-id {text!r}: expected ids and ranges such as 0-49 or 0-9,20,30-39")
    ids: list[int] = []
    for part in spec.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise UserError(f"--agent-id {text!r}: range {part} runs backwards")
        ids.extend(range(first, last + 1))
    if len(set(ids)) != len(ids):
        raise UserError(f"--agent-id {text!r}: an agent is listed twice")
    return ids


def describe_ids(ids: list[int]) -> str:
    """``agent 3`` or ``agents 0-49`` (runs of consecutive ids joined), for console lines."""
    if len(ids) == 1:
        return f"agent {ids[0]}"
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return "agents " + ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
