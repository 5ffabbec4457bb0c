"""What a lab session starts from: the command line, ``lab.json``, and the plan checked before anything runs.

``lab.json`` (:class:`LabRecord`) records everything a run was started with, written once; each
start or ``--resume`` appends a :class:`LabSession`. :func:`plan_session` turns the command line
into a new run's plan, or restores the recorded run's, refusing options given again with another
value — so an interrupted lab continues exactly as it began. The launcher then only runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from ..atomic import atomic_write
from ..comm.broker.launcher import BrokerHandle
from ..comm.topics import check_lab_name
from ..config import LabConfig, load_config
from ..errors import UserError
from ..profiles import load_profile
from ..validation import AgentId, StrictModel, validate_json
from .envelope import envelope_digest, explicit_keys, make_envelope
from .schema import LabSettings

LAB_INFO_FILE = "lab.json"


@dataclass
class LabOptions:
    """What ``edge-mcepl lab`` was given besides the config and its overrides; None: not given."""

    out: str | None = None
    profiles: list[str] | None = None  # round-robin over agents; empty: no profiles
    broker_kind: str | None = None  # None or "auto": mosquitto when installed, else the built-in broker
    port: int | None = None  # None: a free one
    settings: LabSettings = field(default_factory=LabSettings)  # its model_fields_set: the ones given
    verbose: bool = False
    resume: bool = False
    dashboard: int | None = None  # serve the live dashboard on this loopback port
    agents_per_process: int = 1  # agents each join process hosts (not part of the run: a resume may change it)
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


class LabSession(StrictModel):
    """One start or resume of a lab: its broker and how its join processes ended."""

    started_at: str
    broker: str
    broker_url: str
    exit_codes: dict[AgentId, int] = {}  # empty until its processes have ended


class LabRecord(StrictModel):
    """``lab.json``: what the lab was started with — ``--resume`` restores all of it — and each session.

    The run's fields are written once, when it starts; a resume only appends a session (and repeats
    its broker and exit codes at the top, where readers of a finished run look).
    """

    run_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="16 hex digits")
    config: str  # the lab's YAML, resolved
    overrides: dict[str, Any]  # config keys set on the command line: "rounds" (--rounds), "data.data_dir", ...
    profiles: dict[AgentId, str]  # agent → --profile: a bundled name or a resolved file; none: no profiles
    broker_kind: str  # what ran: mosquitto or python
    port: int  # --port (0: a free one each session)
    settings: LabSettings
    verbose: bool
    digest: str  # envelope_digest: the config, the files it names, the settings — a resume must publish the same
    broker: str
    broker_url: str
    exit_codes: dict[AgentId, int] = {}
    sessions: list[LabSession]


@dataclass
class Plan:
    """One session of a lab, decided and checked before anything starts: a new run's, or a resumed run's."""

    config_path: str  # as given: the resume hint repeats it
    config: LabConfig
    overrides: dict[str, Any]  # the run's config keys from the command line
    explicit: list[str]
    profiles: dict[int, str]
    settings: LabSettings
    envelope: dict
    broker_kind: str
    port: int
    verbose: bool
    recorded: LabRecord | None = None  # the run --resume continues
    run_dir: Path | None = None  # its directory


def plan_session(config_path: str, overrides: dict[str, Any], opts: LabOptions) -> Plan:
    """A new run from the command line, or (``--resume``) the recorded run, with the options given checked."""
    recorded, run_dir = _read_record(opts.out) if opts.resume else (None, None)
    given = {k: v for k, v in overrides.items() if v is not None}
    run_overrides = recorded.overrides if recorded else given
    config = load_config(config_path, run_overrides)
    check_lab_name(config.name, f"{config_path}: name")
    profiles = assign_profiles(opts.profiles, config.agents) if opts.profiles is not None else None
    if recorded:
        _check_resume(recorded, opts, config_path, given, config, profiles)
    settings = recorded.settings if recorded else opts.settings
    explicit = explicit_keys(config_path, run_overrides)
    envelope = make_envelope(config, explicit, settings, recorded.run_id if recorded else None)
    if recorded and envelope_digest(envelope) != recorded.digest:
        raise UserError(f"--resume: {config_path} (or a file it names) changed since run {recorded.run_id} started; "
                        "restore it, or start a new run")
    return Plan(config_path=config_path, config=config, overrides=run_overrides, explicit=explicit,
                 profiles=recorded.profiles if recorded else profiles or {}, settings=settings, envelope=envelope,
                 broker_kind=recorded.broker_kind if recorded else opts.broker_kind or "auto",
                 port=opts.port if opts.port is not None else recorded.port if recorded else 0,
                 verbose=opts.verbose or bool(recorded and recorded.verbose), recorded=recorded, run_dir=run_dir)


def _read_record(out: str | None) -> tuple[LabRecord, Path]:
    """The ``lab.json`` of the run ``--resume`` continues, and its directory."""
    if not out:
        raise UserError("--resume needs --out RUN_DIR: the run directory of the lab to continue")
    path = Path(out) / LAB_INFO_FILE
    if not path.is_file():
        raise UserError(f"--resume: {out} is not a lab run directory (no {LAB_INFO_FILE})")
    return validate_json(LabRecord, path.read_bytes(), str(path)), Path(out)


def assign_profiles(specs: list[str], agents: int) -> dict[int, str]:
    """Agent → profile, round-robin, each validated now (before anything starts); files by their resolved path.

    A resolved path keeps ``lab.json`` valid from another directory and makes two spellings of one
    file the same profile when ``--resume`` compares them.
    """
    for spec in specs:
        load_profile(spec)
    resolved = [str(Path(s).resolve()) if Path(s).is_file() else s for s in specs]
    return {i: resolved[i % len(resolved)] for i in range(agents)} if resolved else {}


def _check_resume(record: LabRecord, opts: LabOptions, config_path: str, given: dict[str, Any], config: LabConfig,
                  profiles: dict[int, str] | None) -> None:
    """An option given with ``--resume`` must be the run's (a one-line error names it); the run's are used.

    Config keys compare with the value the run has (``--rounds 6`` is fine when the YAML said 6);
    ``--port`` and ``--verbose`` only concern this session's broker and logs.
    """
    values = config.to_dict()
    pairs: list[tuple[str, Any, Any]] = [("config", str(Path(config_path).resolve()), record.config)]
    pairs += [(_option(key), value, _dotted(values, key)) for key, value in given.items()]
    if profiles is not None and profiles != record.profiles:  # shown as given, and the run's per agent
        pairs.append(("--profiles", ",".join(opts.profiles or []) or "''", ",".join(record.profiles.values()) or "''"))
    if opts.broker_kind not in (None, "auto"):
        pairs.append(("--broker-kind", opts.broker_kind, record.broker_kind))
    pairs += [(_option(name.removesuffix("_s")), getattr(opts.settings, name), getattr(record.settings, name))
              for name in sorted(opts.settings.model_fields_set)]
    for option, value, was in pairs:
        if value != was:
            raise UserError(f"--resume: {option} {value} differs from the run's {was} ({opts.out}/{LAB_INFO_FILE}); "
                            "leave it out: a resumed lab keeps the options it started with")


def _option(key: str) -> str:
    """The command-line option for a dotted config key or a lab setting (``data.data_dir`` → ``--data-dir``)."""
    return "--" + key.rsplit(".", 1)[-1].replace("_", "-")


def _dotted(values: dict[str, Any], key: str) -> Any:
    """``values["data"]["data_dir"]`` for ``data.data_dir``."""
    for part in key.split("."):
        values = values[part]
    return values


def new_run_dir(config: LabConfig, out: str | None) -> Path:
    """A new, empty run directory."""
    run_dir = Path(out) if out else Path("runs") / f"{config.name}-lab-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"--out {run_dir}: directory exists and is not empty; choose a new run directory "
                        "(or --resume it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def begin_session(plan: Plan, broker: BrokerHandle, run_dir: Path) -> LabRecord:
    """``lab.json`` with this session appended (a new run's record first), written before the agents start."""
    session = LabSession(started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), broker=broker.description,
                         broker_url=broker.url)
    record = plan.recorded or LabRecord(
        run_id=plan.envelope["run_id"], config=str(Path(plan.config_path).resolve()), overrides=plan.overrides,
        profiles=plan.profiles, broker_kind=broker.kind, port=plan.port, settings=plan.settings, verbose=plan.verbose,
        digest=envelope_digest(plan.envelope), broker=broker.description, broker_url=broker.url, sessions=[])
    record = record.replace(broker=session.broker, broker_url=session.broker_url, exit_codes={},
                            sessions=[*record.sessions, session])
    atomic_write(run_dir / LAB_INFO_FILE, record.model_dump_json(indent=2))
    return record


def end_session(record: LabRecord, codes: dict[int, int], run_dir: Path) -> None:
    """The exit codes into ``lab.json``: the latest session's and the top level's."""
    *earlier, last = record.sessions
    record = record.replace(exit_codes=codes, sessions=[*earlier, last.replace(exit_codes=codes)])
    atomic_write(run_dir / LAB_INFO_FILE, record.model_dump_json(indent=2))
