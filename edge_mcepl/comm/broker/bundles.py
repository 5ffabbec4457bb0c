"""Per-device bundles: the one file a device needs to join a lab, and all it ever holds of the lab's secrets.

``edge-mcepl broker`` writes ``bundles/agent-<id>.yaml`` for every agent and ``bundles/observer.yaml``
(mode 0600) from the broker host's secrets (:mod:`.credentials`). An agent's bundle holds the broker's
address, its own MQTT account, its own Ed25519 signing key, the lab's public key (which verifies the
signed lab config and its roster) and, when the broker speaks TLS, the lab CA to pin. The observer's
holds a read-only account and the lab's public key, no signing key: a dashboard or ``mosquitto_sub``
can watch, never publish. No bundle holds the admin password, another agent's key, or the lab key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from ...atomic import atomic_write
from ...errors import UserError
from ...validation import AgentId, StrictModel, read_yaml, validate
from ..topics import LAB_NAME_RE
from .credentials import KEY_PATTERN, OBSERVER_USER, LabCredentials, agent_user

BUNDLE_FORMAT = "edge-mcepl-bundle/1"
BUNDLES_DIR = "bundles"


class Bundle(StrictModel):
    """What one device holds: ``edge-mcepl join --bundle`` (role agent) or an observer's connection."""

    format: Literal[BUNDLE_FORMAT]  # type: ignore[valid-type]
    lab: str = Field(pattern=LAB_NAME_RE.pattern, description="a lab name of 1–64 letters, digits, '_', '.' or '-'")
    role: Literal["agent", "observer"]
    agent_id: AgentId | None = None
    broker: str = Field(min_length=1)
    username: str
    password: str = Field(min_length=1)
    signing_key: str | None = Field(None, pattern=KEY_PATTERN)  # the agent's Ed25519 private key, base64
    lab_public_key: str = Field(pattern=KEY_PATTERN)  # verifies the lab config's signature
    ca: str | None = None  # the lab CA (PEM) a TLS broker's certificate must chain to

    @model_validator(mode="after")
    def _role(self) -> Bundle:
        if self.role == "agent" and (self.agent_id is None or self.signing_key is None):
            raise ValueError("an agent bundle needs agent_id and signing_key")
        if self.role == "observer" and (self.agent_id is not None or self.signing_key is not None):
            raise ValueError("an observer bundle holds no agent_id and no signing key")
        return self


def agent_bundle_name(agent_id: int) -> str:
    """Agent ``agent_id``'s bundle file name in ``bundles/``."""
    return f"agent-{agent_id}.yaml"


def bundle_path(directory: Path, agent_id: int | None) -> Path:
    """Where the broker writes agent ``agent_id``'s bundle (None: the observer's)."""
    return directory / BUNDLES_DIR / ("observer.yaml" if agent_id is None else agent_bundle_name(agent_id))


def write_bundles(directory: Path, creds: LabCredentials, ca_pem: str | None) -> Path:
    """Every agent's bundle and the observer's, under ``directory/bundles/``; returns that folder."""
    common: dict[str, Any] = {"format": BUNDLE_FORMAT, "lab": creds.lab, "broker": creds.broker_url,
                              "lab_public_key": creds.lab_public_key(), "ca": ca_pem}
    bundles: dict[int | None, Bundle] = {
        None: Bundle(role="observer", username=OBSERVER_USER, password=creds.observer_password, **common)}
    for i, password in creds.agents.items():
        bundles[i] = Bundle(role="agent", agent_id=i, username=agent_user(i), password=password,
                            signing_key=creds.signing_keys[i], **common)
    (directory / BUNDLES_DIR).mkdir(mode=0o700, exist_ok=True)
    for agent_id, bundle in bundles.items():
        who = "the observer (read-only)" if agent_id is None else f"agent {agent_id}"
        atomic_write(bundle_path(directory, agent_id),
                     f"# edge-mcepl bundle for {who} of lab {creds.lab}: give it to that device only.\n"
                     + yaml.safe_dump(bundle.model_dump(), sort_keys=False), mode=0o600)
    return directory / BUNDLES_DIR


def load_bundle(path: str | Path) -> Bundle:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--bundle {path}: no such file (edge-mcepl broker writes one per device under "
                        f"{BUNDLES_DIR}/)")
    return validate(Bundle, read_yaml(path, "bundle"), str(path))
