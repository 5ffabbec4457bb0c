"""Checkpoints of a simulated lab, so that a long run stopped by a crash or a session's end resumes.

Every ``checkpoint_every`` rounds each agent's state goes to one file in the device lab's format
(:mod:`edge_mcepl.checkpoint`: rule state, sampler, last sent and held masks — everything a resumed
agent needs to learn exactly what it would have), under ``RUN_DIR/checkpoints/round-NNNNNN/``. A set
is written into a temporary folder and renamed when complete, and only then is the previous set
removed: a crash while writing leaves the last complete set. Between two rounds of the simulator
no message is in flight, so the agents' files are the whole lab's state.

The files are bound to the run by a digest of its resolved config (``config.yaml``): a resumed run
reads that config, so it cannot continue with another one.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..agent import Agent
from ..checkpoint import load_checkpoint, restore_agent, save_checkpoint
from ..config import LabConfig
from ..errors import UserError

CHECKPOINT_DIR = "checkpoints"
_SET = re.compile(r"^round-(\d{6})$")


def run_id_of(config: LabConfig) -> str:
    """16 hex digits naming the run by its resolved config."""
    text = yaml.safe_dump(config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_lab_checkpoints(agents: Sequence[Agent], directory: Path, next_round: int, config: LabConfig) -> None:
    """Every agent's state after ``next_round`` completed rounds, as one complete set (older sets removed)."""
    final = directory / f"round-{next_round:06d}"
    partial = directory / f".partial-{next_round:06d}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run_id = run_id_of(config)
    for agent in agents:
        save_checkpoint(partial / f"agent_{agent.agent_id:03d}.npz", agent, next_round, lab=config.name, run_id=run_id)
    partial.rename(final)
    for older in _sets(directory):
        if older != final:
            shutil.rmtree(older)


def restore_lab_checkpoints(agents: Sequence[Agent], directory: Path, config: LabConfig) -> int:
    """Load the latest complete set into ``agents``; the number of rounds it completed."""
    sets = _sets(directory)
    if not sets:
        raise UserError(f"--resume: no checkpoint in {directory} (one is written every --checkpoint-every rounds)")
    latest = sets[-1]
    next_round = int(_SET.match(latest.name).group(1))  # type: ignore[union-attr]
    run_id = run_id_of(config)
    for agent in agents:
        path = latest / f"agent_{agent.agent_id:03d}.npz"
        if not path.is_file():
            raise UserError(f"--resume: {path} is missing; the set in {latest} is not this run's")
        ckpt = load_checkpoint(path)
        if ckpt.next_round != next_round:
            raise UserError(f"{path}: written after round {ckpt.next_round}, but its set is round {next_round}")
        restore_agent(agent, ckpt, str(path), lab=config.name, run_id=run_id)
    return next_round


def remove_checkpoints(directory: Path) -> None:
    """A finished run needs none (its final masks are in ``final/``)."""
    shutil.rmtree(directory, ignore_errors=True)


def _sets(directory: Path) -> list[Path]:
    """The complete sets in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and _SET.match(p.name))
