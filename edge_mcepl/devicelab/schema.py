"""The lab config envelope as data: its JSON shape and the lab settings, as pydantic models, without torch.

:mod:`.envelope` makes and parses the envelope (making one needs torch, for the weights
fingerprint); this module only says what the message holds — docs/wire-format.md, "Lab config" —
so the writer and the reader share one definition, and the ``broker`` and ``lab`` commands can
check their ``--round-deadline``/``--max-staleness``/``--start-timeout`` without the training stack.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..comm.broker.credentials import KEY_PATTERN
from ..comm.topics import LAB_NAME_RE
from ..config import PATH_FIELDS
from ..validation import AgentId, Fingerprint, StrictModel

ENVELOPE_FORMAT = "edge-mcepl-lab/2"
FILE_FIELDS = tuple(f for f in PATH_FIELDS if f != "data.data_dir")  # the config's files travel in the envelope


class LabSettings(StrictModel):
    """Device-lab knobs that are not part of the learning config."""

    round_deadline_s: float = Field(60.0, ge=0.01, le=1e6)  # how long an agent waits for its neighbours' masks
    max_staleness: int = Field(1, ge=0, le=1000)  # a missing mask may be a neighbour's from ≤ this many rounds back
    start_timeout_s: float = Field(600.0, ge=0, le=1e6)  # before round 0, how long to wait for neighbours


class EmbeddedFile(StrictModel):
    """A small text file the config names (a topology's adjacency matrix, the paper's shard files)."""

    name: str  # the coordinator's file name; a device keeps only its last component
    text: str


class DeclaredRetention(StrictModel):
    """What an agent keeps, as the lab declares it: a receiver checks each of its masks against it."""

    conv: float = Field(gt=0, le=1)
    linear: float = Field(gt=0, le=1)
    width: float = Field(gt=0, le=1)


class RosterEntry(StrictModel):
    """One agent of the lab: the key its messages must verify with, and the structure they must have."""

    public_key: str = Field(pattern=KEY_PATTERN, description="an Ed25519 public key, base64")
    retention: DeclaredRetention
    profile: str | None = None  # the device profile the coordinator planned it with (None: the lab's retention)


class LabMessage(StrictModel):
    """The retained lab-config message, field for field (the JSON on ``edge-mcepl/<lab>/config``).

    ``config`` stays plain data here: a device first points its file fields at the embedded files
    and its data folder, then validates it as a :class:`~edge_mcepl.config.LabConfig`.
    """

    format: Literal[ENVELOPE_FORMAT]  # type: ignore[valid-type]
    lab: str = Field(pattern=LAB_NAME_RE.pattern, description="a lab name of 1–64 letters, digits, '_', '.' or '-'")
    run_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="16 hex digits")
    fingerprint: Fingerprint
    num_classes: int = Field(ge=1)
    config: dict[str, Any]
    files: dict[Literal[FILE_FIELDS], EmbeddedFile] = {}  # type: ignore[valid-type]
    explicit: list[str] = []  # dotted keys the lab's YAML or command line set: a profile may not override them
    settings: LabSettings = Field(default_factory=LabSettings)
    neighbours: dict[AgentId, list[AgentId]] = {}  # JSON keys are strings: {"0": [1, 3], ...}
    published_at: str = ""  # informational
    roster: dict[AgentId, RosterEntry] = {}  # every agent's public key and declared retention
    signature: str = ""  # Ed25519 by the lab key over the canonical JSON of every other field (envelope.py)
