"""The run directory: one format, written by the simulator and the device lab alike, read by export.

::

    RUN_DIR/config.yaml                  the fully resolved config, as it ran (rerun it to reproduce the run)
    RUN_DIR/metrics.jsonl                one row per (round, agent)
    RUN_DIR/summary.txt                  the per-agent table printed at the end
    RUN_DIR/final/state.json             RUN_FORMAT: model, weights seed, fingerprint, rounds, one entry per agent
    RUN_DIR/final/masks/agent_NNN.mcpl   each agent's final mask, a wire-format message

A device lab adds ``lab.json``, ``broker/`` and ``agents/agent_NNN/``: each ``join`` process's own
state folder, where a finished agent leaves ``agent.json`` (what ``final/state.json`` needs from it)
and ``final_mask.mcpl``; :func:`merge_lab_run` turns those into the files above, so export cannot
tell a device lab's run from a simulated one. A lab's ``config.yaml`` says what its agents ran
(:func:`config_as_run`): their retention ratios, and their threads, batch size and device when they
all agree; a setting they do not agree on cannot be one config's value, so the file's first line
says which differ (each agent's ``agent.json`` has its own). Every file is written atomically, and
reading validates: a defect is one :class:`~edge_mcepl.errors.UserError` line naming the file and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field

from .atomic import atomic_write
from .config import DEVICE_PATTERN, WEIGHT_DISTRIBUTIONS, LabConfig, Ratio, config_from_dict
from .errors import UserError
from .metrics import read_completed_rows, summary_table, write_metrics
from .validation import AgentId, Fingerprint, StrictModel, read_yaml, validate_json

RUN_FORMAT = "edge-mcepl-run/1"
CONFIG_FILE, METRICS_FILE, SUMMARY_FILE = "config.yaml", "metrics.jsonl", "summary.txt"
FINAL_DIR, STATE_FILE = "final", "state.json"
AGENT_INFO_FILE, FINAL_MASK_FILE = "agent.json", "final_mask.mcpl"  # in a device's state folder
# `edge-mcepl lab` serialises its agents' data loading with this lock (join --load-lock), one file per slot
# (LOAD_LOCK.0, LOAD_LOCK.1); they are scratch, removed by the merge once every agent has exited.
LOAD_LOCK = ".data-load.lock"

_P = TypeVar("_P", bound="_Part")


class _Part(StrictModel):
    """A group of fields that the files' models extend (flat on disk); :meth:`of` takes it back out of one."""

    @classmethod
    def of(cls: type[_P], whole: BaseModel) -> _P:
        return cls.model_validate(whole.model_dump(include=set(cls.model_fields)))


class RunIdentity(_Part):
    """What gives a run's masks their meaning: the architecture, the fixed weights, how long they trained."""

    model: str
    num_classes: int = Field(ge=1)
    weights_seed: int = Field(ge=0, le=2**63 - 1)  # the lab config's seed
    weights: Literal[WEIGHT_DISTRIBUTIONS] = "uniform"  # type: ignore[valid-type]  # absent before it existed
    fingerprint: Fingerprint
    rounds: int = Field(ge=0)


class AgentRecord(_Part):
    """What a run keeps of one agent besides its mask."""

    id: AgentId
    retention_conv: Ratio
    retention_linear: Ratio
    width: Ratio = 1.0  # ordered width (docs/algorithm.md#width); runs before it existed are full width
    neighbours: list[AgentId]
    classes: list[int]


class AgentEntry(AgentRecord):
    """One element of ``final/state.json``'s ``agents``."""

    mask_file: str  # relative to final/
    profile: str | None = None  # the device profile, in a device lab's run (omitted when there is none)

    @classmethod
    def of_record(cls, record: AgentRecord, profile: str | None = None) -> AgentEntry:
        """``record``'s entry, with the mask file that follows from its id."""
        return cls(**dict(record), mask_file=mask_file(record.id), profile=profile)


class RunState(RunIdentity):
    """``final/state.json``: the run's identity and every agent whose mask it holds."""

    format: Literal[RUN_FORMAT]  # type: ignore[valid-type]
    agents: list[AgentEntry]


class AgentSettings(StrictModel):
    """What a device's plan (devicelab/plan.py) chose besides its retention: the torch threads, batch size, device."""

    threads: int = Field(ge=1, le=1024)
    batch_size: int = Field(ge=1, le=1_000_000)
    device: Annotated[str, Field(pattern=f"^({DEVICE_PATTERN})$")]

    @classmethod
    def of_config(cls, config: LabConfig) -> AgentSettings:
        return cls(threads=config.threads, batch_size=config.algorithm.batch_size, device=config.device)


SETTING_KEYS = {"threads": "threads", "batch_size": "algorithm.batch_size", "device": "device"}  # in a LabConfig


class AgentResult(AgentRecord, RunIdentity):
    """A finished device's ``agent.json``: the run's identity as that device saw it, its record, and notes."""

    format: Literal[RUN_FORMAT]  # type: ignore[valid-type]
    mask: bool  # False: the agent's rule learns weights, so there is no mask file to expect
    lab: str = ""
    run_id: str = ""
    profile: str | None = None
    notes: list[str] = []  # how its retention, batch size and threads were decided
    settings: AgentSettings | None = None  # None: written before edge-mcepl recorded them (the lab config's)


def mask_file(agent_id: int) -> str:
    """An agent's mask file, relative to ``final/``."""
    return f"masks/agent_{agent_id:03d}.mcpl"


def agent_dir(run_dir: Path, agent_id: int) -> Path:
    """A device lab's state folder for one agent (its ``join --state-dir``)."""
    return run_dir / "agents" / f"agent_{agent_id:03d}"


# -- writing --------------------------------------------------------------------------------------


def write_config(run_dir: Path, config: LabConfig, comments: list[str] | None = None) -> None:
    """``config.yaml``; ``comments`` become its first lines (``# …``), which a reader of the YAML skips."""
    header = "".join(f"# {line}\n" for line in comments or [])
    atomic_write(run_dir / CONFIG_FILE, header + yaml.safe_dump(config.to_dict(), sort_keys=False))


def write_summary(run_dir: Path, summary: str) -> None:
    atomic_write(run_dir / SUMMARY_FILE, summary + "\n")


def write_final_state(final_dir: Path, identity: RunIdentity, agents: list[tuple[AgentEntry, bytes]]) -> None:
    """``final/``: each (entry, mask message) pair's mask file, then ``state.json`` naming them all."""
    (final_dir / "masks").mkdir(parents=True, exist_ok=True)
    for entry, mask in agents:
        atomic_write(final_dir / entry.mask_file, mask)
    state = RunState(format=RUN_FORMAT, **dict(identity), agents=[entry for entry, _ in agents])
    atomic_write(final_dir / STATE_FILE, json.dumps(state.model_dump(mode="json", exclude_none=True), indent=2))


def write_agent_result(state_dir: Path, identity: RunIdentity, record: AgentRecord, mask: bytes | None,
                       **extra: Any) -> Path | None:
    """A finished device's ``agent.json`` and final mask; ``extra``: :class:`AgentResult`'s lab, run_id, profile, notes.

    ``mask`` None: the agent's rule learns weights, not masks — there is nothing to export, and
    ``agent.json`` says so (``"mask": false``) so the merge does not mistake it for an unfinished agent.
    """
    mask_path = state_dir / FINAL_MASK_FILE
    if mask is not None:
        atomic_write(mask_path, mask)
    result = AgentResult(format=RUN_FORMAT, **dict(identity), **dict(record), mask=mask is not None, **extra)
    atomic_write(state_dir / AGENT_INFO_FILE, json.dumps(result.model_dump(mode="json"), indent=2))
    return mask_path if mask is not None else None


def merge_lab_run(run_dir: Path, config: LabConfig) -> str:
    """Merge a device lab's agent folders into the run format above (its agents have exited); returns the summary.

    Agents that did not finish contribute their metrics rows but no mask.
    """
    rows: list[dict[str, Any]] = []
    agents: list[tuple[AgentEntry, bytes]] = []
    finished: dict[int, AgentResult] = {}
    identity: RunIdentity | None = None
    for i in range(config.agents):
        folder = agent_dir(run_dir, i)
        rows += read_completed_rows(folder / METRICS_FILE)
        result = read_agent_result(folder)
        if result is not None:
            info, mask = result
            finished[i], identity = info, identity or RunIdentity.of(info)
            if mask is not None:
                agents.append((AgentEntry.of_record(AgentRecord.of(info), info.profile), mask))
    rows.sort(key=lambda r: (r["round"], r["agent"]))
    write_metrics(run_dir / METRICS_FILE, rows)
    for lock in run_dir.glob(f"{LOAD_LOCK}.*"):
        lock.unlink()
    as_run, differences = config_as_run(config, finished)
    write_config(run_dir, as_run, [f"NOT reproducible by `edge-mcepl simulate` of this file: {d}" for d in differences])
    if identity is not None and agents:
        write_final_state(run_dir / FINAL_DIR, identity, agents)
    summary = summary_table(rows) if rows else "no metrics were written"
    if differences:
        summary += f"\nNOTE: {run_dir / CONFIG_FILE} cannot reproduce this run: " + "; ".join(differences)
    write_summary(run_dir, summary)
    return summary


def config_as_run(config: LabConfig, finished: Mapping[int, AgentResult]) -> tuple[LabConfig, list[str]]:
    """The lab's ``config`` with what its finished agents ran, and one line per setting they did not agree on.

    A profile may give an agent its own retention (a per-agent ``retention.conv`` list says that),
    batch size or threads, and every device trains on its CPU; an agent that did not finish is
    taken to have run the lab config's values. Threads matter: torch's CPU kernels split their sums
    by thread, and the rounding can flip which weights a mask keeps.
    """
    values: dict[str, Any] = {}
    conv = [finished[i].retention_conv if i in finished else config.retention.for_agent(i)[0]
            for i in range(config.agents)]
    if any(r != config.retention.for_agent(i)[0] for i, r in enumerate(conv)):
        values["retention.conv"] = conv[0] if len(set(conv)) == 1 else conv
    width = [finished[i].width if i in finished else config.retention.width_for(i) for i in range(config.agents)]
    if any(w != config.retention.width_for(i) for i, w in enumerate(width)):
        values["retention.width"] = width[0] if len(set(width)) == 1 else width
    differences = []
    for name, key in SETTING_KEYS.items():
        chosen = {i: getattr(r.settings, name) for i, r in finished.items() if r.settings is not None}
        if len(set(chosen.values())) == 1:
            values[key] = next(iter(chosen.values()))
        elif chosen:
            differences.append(f"the agents ran different {key} (" + ", ".join(
                f"agent {i}: {v}" for i, v in sorted(chosen.items())) + ")")
    return config_from_dict(config.to_dict(), "the lab's config as it ran", values), differences


# -- reading --------------------------------------------------------------------------------------


def read_state(run_dir: Path) -> RunState:
    """``final/state.json``, validated: export relies on every field being there and well-typed."""
    path = run_dir / FINAL_DIR / STATE_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: is {run_dir} a finished run directory (edge-mcepl simulate --out)?")
    return validate_json(RunState, _read(path), str(path))


def read_config(run_dir: Path) -> LabConfig:
    """``config.yaml``, validated like any lab config."""
    path = run_dir / CONFIG_FILE
    raw = read_yaml(path, "the run's config", "; export needs it for algorithm.elu_logits and the data")
    return config_from_dict(raw if isinstance(raw, dict) else {}, str(path))


def final_mask_path(run_dir: Path, entry: AgentEntry) -> Path:
    """Where an agent entry of ``read_state`` keeps its final mask."""
    return run_dir / FINAL_DIR / entry.mask_file


def read_agent_result(state_dir: Path) -> tuple[AgentResult, bytes | None] | None:
    """A finished device's ``agent.json`` (validated) and final mask (None for a weight rule); None if unfinished."""
    info_path, mask_path = state_dir / AGENT_INFO_FILE, state_dir / FINAL_MASK_FILE
    if not info_path.exists():
        return None
    info = validate_json(AgentResult, _read(info_path), str(info_path))
    if not info.mask:
        return info, None
    return (info, mask_path.read_bytes()) if mask_path.exists() else None


def _read(path: Path) -> bytes:
    """A run file's bytes: the JSON is validated from them (:func:`~edge_mcepl.validation.validate_json`)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
