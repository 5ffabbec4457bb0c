"""The run directory: one format, written by the simulator and the device lab alike, read by export.

::

    RUN_DIR/config.yaml                  the fully resolved config (rerun it to reproduce the run)
    RUN_DIR/metrics.jsonl                one row per (round, agent)
    RUN_DIR/summary.txt                  the per-agent table printed at the end
    RUN_DIR/final/state.json             RUN_FORMAT: model, weights seed, fingerprint, rounds, one entry per agent
    RUN_DIR/final/masks/agent_NNN.mcpl   each agent's final mask, a wire-format message

A device lab adds ``lab.json``, ``broker/`` and ``agents/agent_NNN/``: each ``join`` process's own
state folder, where a finished agent leaves ``agent.json`` (what ``final/state.json`` needs from it)
and ``final_mask.mcpl``; :func:`merge_lab_run` turns those into the files above, so export cannot
tell a device lab's run from a simulated one. Every file is written atomically, and reading
validates: a defect is one :class:`~edge_mcepl.errors.UserError` line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import yaml

from .atomic import atomic_write
from .config import LabConfig, config_from_dict
from .errors import UserError
from .metrics import read_completed_rows, summary_table, write_metrics

RUN_FORMAT = "edge-mcepl-run/1"
CONFIG_FILE, METRICS_FILE, SUMMARY_FILE = "config.yaml", "metrics.jsonl", "summary.txt"
FINAL_DIR, STATE_FILE = "final", "state.json"
AGENT_INFO_FILE, FINAL_MASK_FILE = "agent.json", "final_mask.mcpl"  # in a device's state folder


@dataclass(frozen=True)
class RunIdentity:
    """What gives a run's masks their meaning: the architecture, the fixed weights, how long they trained."""

    model: str
    num_classes: int
    weights_seed: int
    fingerprint: str  # hex
    rounds: int


@dataclass(frozen=True)
class AgentRecord:
    """One agent's entry in ``final/state.json`` (without its mask file name, which follows from the id)."""

    id: int
    retention_conv: float
    retention_linear: float
    neighbours: list[int]
    classes: list[int]

    def entry(self, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "mask_file": mask_file(self.id), "retention_conv": self.retention_conv,
                "retention_linear": self.retention_linear, "neighbours": list(self.neighbours),
                "classes": list(self.classes), **extra}


def mask_file(agent_id: int) -> str:
    """An agent's mask file, relative to ``final/``."""
    return f"masks/agent_{agent_id:03d}.mcpl"


def agent_dir(run_dir: Path, agent_id: int) -> Path:
    """A device lab's state folder for one agent (its ``join --state-dir``)."""
    return run_dir / "agents" / f"agent_{agent_id:03d}"


# -- writing --------------------------------------------------------------------------------------


def write_config(run_dir: Path, config: LabConfig) -> None:
    atomic_write(run_dir / CONFIG_FILE, yaml.safe_dump(config.to_dict(), sort_keys=False))


def write_summary(run_dir: Path, summary: str) -> None:
    atomic_write(run_dir / SUMMARY_FILE, summary + "\n")


def write_final_state(final_dir: Path, identity: RunIdentity, agents: list[tuple[dict[str, Any], bytes]]) -> None:
    """``final/``: each (entry, mask message) pair's mask file, then ``state.json`` naming them all."""
    (final_dir / "masks").mkdir(parents=True, exist_ok=True)
    for entry, mask in agents:
        atomic_write(final_dir / entry["mask_file"], mask)
    state = {"format": RUN_FORMAT, **dataclasses.asdict(identity), "agents": [entry for entry, _ in agents]}
    atomic_write(final_dir / STATE_FILE, json.dumps(state, indent=2))


def write_agent_result(state_dir: Path, identity: RunIdentity, record: AgentRecord, mask: bytes | None,
                       **extra: Any) -> Path | None:
    """A finished device's ``agent.json`` and final mask (``extra``: lab, run id, profile, notes).

    ``mask`` None: the agent's rule learns weights, not masks — there is nothing to export, and
    ``agent.json`` says so (``"mask": false``) so the merge does not mistake it for an unfinished agent.
    """
    mask_path = state_dir / FINAL_MASK_FILE
    if mask is not None:
        atomic_write(mask_path, mask)
    entry = {k: v for k, v in record.entry().items() if k != "mask_file"}
    atomic_write(state_dir / AGENT_INFO_FILE, json.dumps(
        {"format": RUN_FORMAT, **dataclasses.asdict(identity), **entry, "mask": mask is not None, **extra}, indent=2))
    return mask_path if mask is not None else None


def merge_lab_run(run_dir: Path, config: LabConfig) -> str:
    """Merge a device lab's agent folders into the run format above; returns the summary table.

    Agents that did not finish contribute their metrics rows but no mask.
    """
    rows, agents, identity = [], [], None
    for i in range(config.agents):
        folder = agent_dir(run_dir, i)
        rows += read_completed_rows(folder / METRICS_FILE)
        result = read_agent_result(folder)
        if result is not None:
            info, mask = result
            identity = identity or _pick(RunIdentity, info)
            record: AgentRecord = _pick(AgentRecord, info)
            if mask is not None:
                agents.append((record.entry(profile=info.get("profile")), mask))
    rows.sort(key=lambda r: (r["round"], r["agent"]))
    write_metrics(run_dir / METRICS_FILE, rows)
    write_config(run_dir, config)
    if identity is not None and agents:
        write_final_state(run_dir / FINAL_DIR, identity, agents)
    summary = summary_table(rows) if rows else "no metrics were written"
    write_summary(run_dir, summary)
    return summary


# -- reading --------------------------------------------------------------------------------------


def read_state(run_dir: Path) -> dict[str, Any]:
    """``final/state.json``, validated: the fields export relies on are there and well-typed."""
    path = run_dir / FINAL_DIR / STATE_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: is {run_dir} a finished run directory (edge-mcepl simulate --out)?")
    state = _read_json(path, "state")
    for key in ("model", "num_classes", "weights_seed", "fingerprint", "agents"):
        if key not in state:
            raise UserError(f"{path}: missing field {key!r}")
    _check_fields(state, path, {"model": str, "num_classes": int, "weights_seed": int, "agents": list})
    try:
        bytes.fromhex(state["fingerprint"])
    except (TypeError, ValueError):
        raise UserError(f"{path}: fingerprint {state['fingerprint']!r} is not hex") from None
    for index, entry in enumerate(state["agents"]):
        if not isinstance(entry, dict):
            raise UserError(f"{path}: agents[{index}]: expected a mapping, got {type(entry).__name__}")
        _check_fields(entry, path, {"id": int, "mask_file": str}, f"agents[{index}].")
    return state


def read_config(run_dir: Path) -> LabConfig:
    """``config.yaml``, validated like any lab config."""
    path = run_dir / CONFIG_FILE
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: cannot read the run's config ({exc.strerror}); export needs it for "
                        "algorithm.elu_logits and the data") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    return config_from_dict(raw if isinstance(raw, dict) else {}, str(path))


def final_mask_path(run_dir: Path, entry: dict[str, Any]) -> Path:
    """Where an agent entry of ``read_state`` keeps its final mask."""
    return run_dir / FINAL_DIR / entry["mask_file"]


def read_agent_result(state_dir: Path) -> tuple[dict[str, Any], bytes | None] | None:
    """A finished device's ``agent.json`` (validated) and final mask (None for a weight rule); None if unfinished."""
    info_path, mask_path = state_dir / AGENT_INFO_FILE, state_dir / FINAL_MASK_FILE
    if not info_path.exists():
        return None
    info = _read_json(info_path, "agent result")
    _check_fields(info, info_path, _field_types(RunIdentity, AgentRecord))
    if not info.get("mask", True):
        return info, None
    return (info, mask_path.read_bytes()) if mask_path.exists() else None


def _pick(cls: type, info: dict[str, Any]) -> Any:
    """An instance of dataclass ``cls`` from the same-named keys of ``info`` (already checked)."""
    return cls(**{f.name: info[f.name] for f in dataclasses.fields(cls)})


def _field_types(*classes: type) -> dict[str, type]:
    """Field name → the plain type a JSON value must have (``list[int]`` → list)."""
    return {name: get_origin(kind) or kind for cls in classes for name, kind in get_type_hints(cls).items()}


def _check_fields(obj: dict[str, Any], path: Path, fields: dict[str, type], prefix: str = "") -> None:
    for name, kind in fields.items():
        if name not in obj:
            raise UserError(f"{path}: missing field {prefix + name!r}")
        value = obj[name]
        allowed = (int, float) if kind is float else (kind,)  # JSON may write a whole float as an int
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise UserError(f"{path}: field {prefix + name!r} is {value!r}, expected {kind.__name__}")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a {what} file")
    if data.get("format") != RUN_FORMAT:
        raise UserError(f"{path}: not a {RUN_FORMAT} {what} file (format {data.get('format')!r})")
    return data
