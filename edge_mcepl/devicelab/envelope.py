"""The lab config envelope: the one retained message that tells every device what lab it joins.

A device has nothing but the broker's address and its credentials; everything else — the
validated config, small files it names, the weights fingerprint to check, the lab settings — comes
in this JSON message (never pickle), published retained on ``edge-mcepl/<lab>/config``::

    {"format": "edge-mcepl-lab/2", "lab": NAME, "run_id": HEX, "fingerprint": HEX, "num_classes": 10,
     "config": LabConfig.to_dict() with file paths replaced by null,
     "files": {"topology.file": {"name": "...", "text": "..."}, ...},   # small text files, embedded
     "explicit": ["retention.conv", ...],   # keys the lab's YAML (or CLI) set explicitly
     "settings": {"round_deadline_s": 60.0, "max_staleness": 1, "start_timeout_s": 600.0},
     "neighbours": {"0": [1, 3], ...},
     "published_at": "2026-01-01T12:00:00+0000",
     "roster": {"0": {"public_key": B64, "retention": {"conv": 0.3, "linear": 0.9, "width": 1.0},
                      "profile": "rpi4"}, ...},
     "signature": B64}   # Ed25519 by the lab key over the canonical JSON of everything else

Its shape is :class:`~.schema.LabMessage`: :func:`make_envelope` dumps one (unsigned: what defines the
run, compared on ``lab --resume``), :func:`~.signature.sign_envelope` adds the roster and the lab key's signature,
and :func:`parse_envelope` verifies the signature with the lab public key of the device's bundle
*before* reading anything, then validates, so a defect is a one-line :class:`UserError` naming the
topic and the dotted field. The roster is the root of a lab's trust (docs/security.md#roster): who
may sign as which agent, and what each agent's masks must keep.
"""

from __future__ import annotations

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
from ..config import LabConfig, config_from_dict, set_all
from ..errors import UserError
from ..nn.weights import generate_fixed_weights
from ..nn.zoo import build_model
from ..simulator import build_topology_for
from .schema import ENVELOPE_FORMAT, FILE_FIELDS, EmbeddedFile, LabMessage, LabSettings
from .signature import read_lab_message

MAX_EMBEDDED_FILE = 1 << 20
NUM_CLASSES = 10  # every dataset edge-mcepl reads (CIFAR-10, MNIST, synthetic) has 10 classes


@dataclass(frozen=True)
class LabEnvelope:
    """A validated envelope, as a device uses it: the message, and its config as this device's LabConfig."""

    message: LabMessage
    config: LabConfig  # file fields pointing at the embedded files, written locally; the data folder resolved


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
    model = build_model(config.model, NUM_CLASSES)
    return generate_fixed_weights(model, config.model, config.seed, config.weights).fingerprint_hex


def make_envelope(config: LabConfig, explicit: list[str], settings: LabSettings, run_id: str | None = None) -> dict:
    """The retained lab-config message for ``config`` (files embedded, neighbours listed), as JSON-ready data."""
    check_lab_name(config.name, "lab config name")
    raw = config.to_dict()
    files = _embed_files(raw)
    topology = build_topology_for(config)
    return LabMessage(
        format=ENVELOPE_FORMAT, lab=config.name, run_id=run_id or secrets.token_hex(8),
        fingerprint=lab_fingerprint(config), num_classes=NUM_CLASSES, config=raw, files=files,
        explicit=sorted(explicit), settings=settings,
        neighbours={i: list(topology.neighbours(i)) for i in range(config.agents)},
        published_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    ).model_dump(mode="json")


def envelope_digest(envelope: dict) -> str:
    """Hash of what defines the run (everything but run id, publication time, roster and signature)."""
    core = {k: v for k, v in envelope.items() if k not in ("run_id", "published_at", "roster", "signature")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def publish_envelope(conn: MqttConnection, envelope: dict, timeout: float = 10.0) -> None:
    conn.publish_json(config_topic(envelope["lab"]), envelope, retain=True, wait=timeout)


def parse_envelope(payload: bytes, lab: str, files_dir: Path, data_dir: str | None = None, *,
                   lab_public_key: str) -> LabEnvelope:
    """Verify and validate the retained config message; embedded files are written to ``files_dir``.

    ``data_dir`` (``join --data-dir``) wins; else the coordinator's data folder if it exists here.
    """
    message = read_lab_message(payload, lab, lab_public_key)
    source = f"lab config on {config_topic(lab)}"
    local = _restore_files(message.files, files_dir)
    local["data.data_dir"] = data_dir or _local_folder(message.config)
    return LabEnvelope(message, config_from_dict(set_all(message.config, local, source), source))


def _embed_files(raw: dict) -> dict[str, EmbeddedFile]:
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
            files[dotted] = EmbeddedFile(name=p.name, text=p.read_text())
        except OSError as exc:
            raise UserError(f"{dotted}: cannot read {p} ({exc.strerror})") from None
        raw[section][key] = None
    return files


def _restore_files(files: dict[str, EmbeddedFile], files_dir: Path) -> dict[str, str | None]:
    """Write the embedded files into ``files_dir``; returns the config's file fields pointing at them."""
    if files:
        files_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str | None] = {}
    for dotted, entry in files.items():
        name = Path(entry.name).name or dotted  # a bare name: the coordinator's folders mean nothing here
        path = files_dir / f"{dotted.replace('.', '_')}__{name}"
        atomic_write(path, entry.text)
        paths[dotted] = str(path)
    return paths


def _local_folder(config: dict[str, Any]) -> str | None:
    """The config's ``data.data_dir`` (the coordinator's path) if that folder exists on this device too."""
    data = config.get("data")
    folder = data.get("data_dir") if isinstance(data, dict) else None
    return folder if isinstance(folder, str) and Path(folder).is_dir() else None
