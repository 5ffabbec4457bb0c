"""Checkpoints of a simulated lab, so that a long run stopped by a crash or a session's end resumes.

Every ``checkpoint_every`` rounds each agent's state goes to one file in the device lab's format
(:mod:`edge_mcepl.checkpoint`: rule state, sampler, last sent and held masks — everything a resumed
agent needs to learn exactly what it would have), under ``RUN_DIR/checkpoints/round-NNNNNN/``. A set
is written into a temporary folder and renamed when complete, and only then is the previous set
removed: a crash while writing leaves the last complete set. Between two rounds of the simulator
no message is in flight, so the agents' files and those requests are the whole lab's state.

The files are bound to the run by a digest of its resolved config (``config.yaml``): a resumed run
reads that config, so it cannot continue with another one. A set also keeps the keyframe
requests made in its last round and not yet served (``requests.json``): a sender answers them in
the next round, resumed or not.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field

from ..agent import Agent
from ..atomic import atomic_write
from ..checkpoint import load_checkpoint, restore_agent, save_checkpoint
from ..config import LabConfig
from ..errors import UserError
from ..validation import AgentId, StrictModel, validate_json

CHECKPOINT_DIR = "checkpoints"
REQUESTS_FILE = "requests.json"
_SET = re.compile(r"^round-(\d{6})$")


def run_id_of(config: LabConfig) -> str:
    """16 hex digits naming the run by its resolved config — but for where its data is (the same
    images elsewhere are the same run: a Ray worker names the folder the driver found them in)."""
    raw = config.to_dict()
    raw["data"].pop("data_dir", None)
    text = yaml.safe_dump(raw, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_set(directory: Path, next_round: int) -> Path:
    """An empty folder for the set after ``next_round`` rounds; :func:`commit_set` makes it the latest."""
    partial = directory / f".partial-{next_round:06d}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def write_agents(agents: Sequence[Agent], folder: Path, next_round: int, config: LabConfig) -> None:
    """These agents' files of a set (a Ray worker writes its own shard's)."""
    run_id = run_id_of(config)
    for agent in agents:
        save_checkpoint(folder / _agent_file(agent), agent, next_round, lab=config.name, run_id=run_id)


def commit_set(directory: Path, folder: Path, next_round: int, requests: Mapping[int, int]) -> None:
    """Complete the set with the keyframe requests still to be served (sender → earliest round asked for),
    make it the latest, and remove the older ones."""
    atomic_write(folder / REQUESTS_FILE, _Requests(requests=dict(sorted(requests.items()))).model_dump_json())
    final = directory / f"round-{next_round:06d}"
    shutil.rmtree(final, ignore_errors=True)
    folder.rename(final)
    for older in _sets(directory):
        if older != final:
            shutil.rmtree(older)


def latest_set(directory: Path) -> tuple[Path, int]:
    """The latest complete set and the number of rounds it completed."""
    sets = _sets(directory)
    if not sets:
        raise UserError(f"--resume: no checkpoint in {directory} (one is written every --checkpoint-every rounds)")
    latest = sets[-1]
    return latest, int(_SET.match(latest.name).group(1))  # type: ignore[union-attr]


def read_agents(agents: Sequence[Agent], folder: Path, next_round: int, config: LabConfig) -> None:
    """Load these agents' files of the set ``folder`` into them."""
    run_id = run_id_of(config)
    for agent in agents:
        path = folder / _agent_file(agent)
        if not path.is_file():
            raise UserError(f"--resume: {path} is missing; the set in {folder} is not this run's")
        ckpt = load_checkpoint(path)
        if ckpt.next_round != next_round:
            raise UserError(f"{path}: written after round {ckpt.next_round}, but its set is round {next_round}")
        restore_agent(agent, ckpt, str(path), lab=config.name, run_id=run_id)


def read_requests(folder: Path) -> dict[int, int]:
    """The set's keyframe requests still to be served."""
    return dict(validate_json(_Requests, (folder / REQUESTS_FILE).read_bytes(), str(folder / REQUESTS_FILE)).requests)


def remove_checkpoints(directory: Path) -> None:
    """A finished run needs none (its final masks are in ``final/``)."""
    shutil.rmtree(directory, ignore_errors=True)


def _agent_file(agent: Agent) -> str:
    return f"agent_{agent.agent_id:03d}.npz"


class _Requests(StrictModel):
    """``requests.json``: sender → the earliest of its rounds a receiver asked for again."""

    requests: dict[AgentId, Annotated[int, Field(ge=0)]]


def _sets(directory: Path) -> list[Path]:
    """The complete sets in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and _SET.match(p.name))
