"""The lab config envelope: the one retained message that tells every device what lab it joins.

A device has nothing but the broker's address and its credentials; everything else — the
validated config, small files it names, the weights fingerprint to check, the lab settings — comes
in this JSON message (never pickle), published retained on ``edge-mcepl/<lab>/config``::

    {"format": "edge-mcepl-lab/1", "lab": NAME, "run_id": HEX, "fingerprint": HEX, "num_classes": 10,
     "config": LabConfig.to_dict() with file paths replaced by null,
     "files": {"topology.file": {"name": "...", "text": "..."}, ...},   # small text files, embedded
     "explicit": ["retention.conv", ...],   # keys the lab's YAML (or CLI) set explicitly
     "settings": {"round_deadline_s": 60, "max_staleness": 1, "start_timeout_s": 600},
     "neighbours": {"0": [1, 3], ...},
     "published_at": "2026-01-01T12:00:00+0000"}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..atomic import atomic_write
from ..comm.client import MqttConnection
from ..comm.topics import check_lab_name, config_topic
from ..config import PATH_FIELDS, LabConfig, config_from_dict
from ..errors import UserError
from ..simulator import build_topology_for
from ..nn.weights import generate_fixed_weights
from ..nn.zoo import build_model

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


@dataclass(frozen=True)
class LabEnvelope:
    """A validated envelope, as a device uses it."""

    lab: str
    run_id: str
    fingerprint: str
    num_classes: int
    config: LabConfig
    explicit: frozenset[str]
    settings: LabSettings
    neighbours: dict[int, list[int]]


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
    """The fingerprint of the fixed weights every device of this lab must regenerate."""
    return generate_fixed_weights(build_model(config.model, NUM_CLASSES), config.model, config.seed).fingerprint_hex


def make_envelope(config: LabConfig, explicit: list[str], settings: LabSettings, run_id: str | None = None) -> dict:
    """The retained lab-config message for ``config`` (files embedded, neighbours listed)."""
    check_lab_name(config.name, "lab config name")
    settings.check()
    raw = config.to_dict()
    files = _embed_files(raw)
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


def publish_envelope(conn: MqttConnection, envelope: dict, timeout: float = 10.0) -> None:
    conn.publish_json(config_topic(envelope["lab"]), envelope, retain=True, wait=timeout)


def parse_envelope(payload: bytes, lab: str, files_dir: Path, data_dir: str | None = None) -> LabEnvelope:
    """Validate the retained config message; embedded files are written to ``files_dir``."""
    source = f"lab config on {config_topic(lab)}"
    env = _load(payload, source)
    try:
        if env["lab"] != lab:
            raise UserError(f"{source}: is for lab {env['lab']!r}")
        raw = env["config"]
        if not isinstance(raw, dict):
            raise UserError(f"{source}: config: expected a mapping")
        raw = json.loads(json.dumps(raw))  # a private copy
        _restore_files(env.get("files") or {}, raw, files_dir, source)
        lab_dir = (raw.get("data") or {}).get("data_dir")
        raw.setdefault("data", {})["data_dir"] = data_dir or (lab_dir if lab_dir and Path(lab_dir).is_dir() else None)
        config = config_from_dict(raw, source)
        neighbours = {int(k): [int(x) for x in v] for k, v in (env.get("neighbours") or {}).items()}
        return LabEnvelope(lab, str(env["run_id"]), str(env["fingerprint"]), int(env["num_classes"]), config,
                           frozenset(str(k) for k in env.get("explicit") or []),
                           _settings(env.get("settings") or {}, source), neighbours)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{source}: malformed ({type(exc).__name__}: {exc})") from None


def _embed_files(raw: dict) -> dict[str, dict[str, str]]:
    """Replace the config's file paths (``raw``, in place) by null; returns the files' names and texts."""
    files = {}
    for dotted in FILE_FIELDS:
        section, key = dotted.split(".")
        path = raw[section][key]
        if not path:
            continue
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > MAX_EMBEDDED_FILE:
                raise UserError(f"{p}: {size} bytes; files embedded in the lab config must be ≤ {MAX_EMBEDDED_FILE}")
            files[dotted] = {"name": p.name, "text": p.read_text()}
        except OSError as exc:
            raise UserError(f"{dotted}: cannot read {p} ({exc.strerror})") from None
        raw[section][key] = None
    return files


def _restore_files(files: dict, raw: dict, files_dir: Path, source: str) -> None:
    """Write the embedded files into ``files_dir`` and point the config (``raw``, in place) at them."""
    if files:
        files_dir.mkdir(parents=True, exist_ok=True)
    for dotted, entry in files.items():
        if dotted not in FILE_FIELDS or not isinstance(entry, dict):
            raise UserError(f"{source}: files: unexpected entry {dotted!r}")
        name = Path(str(entry["name"])).name or dotted
        path = files_dir / f"{dotted.replace('.', '_')}__{name}"
        atomic_write(path, str(entry["text"]))
        section, key = dotted.split(".")
        raw.setdefault(section, {})[key] = str(path)


def _load(payload: bytes, source: str) -> dict:
    try:
        env = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{source}: not JSON ({exc})") from None
    if not isinstance(env, dict) or env.get("format") != ENVELOPE_FORMAT:
        got = env.get("format") if isinstance(env, dict) else type(env).__name__
        raise UserError(f"{source}: format {got!r}, this edge-mcepl reads {ENVELOPE_FORMAT}")
    return env


def _settings(raw: dict, source: str) -> LabSettings:
    default = LabSettings()
    return LabSettings(float(raw.get("round_deadline_s", default.round_deadline_s)),
                       int(raw.get("max_staleness", default.max_staleness)),
                       float(raw.get("start_timeout_s", default.start_timeout_s))).check(source)
