"""Who may connect to a lab's broker, with which keys, and what each may touch: the lab's secrets and ACL.

The broker host keeps every secret of the lab in ``lab-secrets.yaml`` (mode 0600, never handed
out): the coordinator's password (``lab-admin``) and the lab key that signs the lab config; the
read-only observer's password (``lab-observer``); per agent (``agent-<id>``) a password and its own
Ed25519 signing key. A device receives only its bundle (:mod:`.bundles`) — its own password and
key, the lab's public key — so the admin secret never leaves the broker host and no device can sign
as another.

The ACL is least privilege, stated once (:class:`LabAcl`) for mosquitto's acl file and the built-in
broker: agent ``<id>`` writes only its own three topics (``mask``, ``status``, ``keyframe``: a topic
proves its publisher, and no agent can park retained messages elsewhere) and reads the lab's
topics; the observer reads the lab's topics and ``$SYS``; the coordinator reads and writes the
lab's topics and reads ``$SYS``. Signatures (docs/security.md) are what stop a forgery; the ACL
bounds what a stolen password can publish at all.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, model_validator

from ...atomic import atomic_write
from ...errors import UserError
from ...validation import AgentId, StrictModel, read_yaml, validate
from ..topics import AGENT_TOPICS, LAB_NAME_RE, agent_topic, lab_prefix

ADMIN_USER = "lab-admin"
OBSERVER_USER = "lab-observer"
SECRETS_FILE = "lab-secrets.yaml"
KEY_PATTERN = r"^[A-Za-z0-9+/]{43}=$"  # 32 bytes, base64


def agent_user(agent_id: int) -> str:
    return f"agent-{agent_id}"


def new_signing_key() -> str:
    """A fresh Ed25519 private key (its 32 random bytes, base64): the seed is all of it (RFC 8032)."""
    from ...wire.signing import encode_key

    return encode_key(secrets.token_bytes(32))


class _Account(StrictModel):
    username: str
    password: str = Field(min_length=1)


class _AgentSecrets(_Account):
    signing_key: str = Field(pattern=KEY_PATTERN, description="an Ed25519 private key, base64")


class SecretsFile(StrictModel):
    """The YAML shape of ``lab-secrets.yaml`` (the broker host's, never a device's)."""

    lab: str = Field(pattern=LAB_NAME_RE.pattern, description="a lab name of 1–64 letters, digits, '_', '.' or '-'")
    broker: str = ""  # the connection string the bundles carry
    admin: _Account
    observer: _Account
    lab_key: str = Field(pattern=KEY_PATTERN, description="an Ed25519 private key, base64: signs the lab config")
    agents: dict[AgentId, _AgentSecrets] = {}

    @model_validator(mode="after")
    def _usernames(self) -> SecretsFile:
        """Each user name is the one the ACL gives that role: a hand-edited name would not be used."""
        wanted = {"admin": (self.admin.username, ADMIN_USER), "observer": (self.observer.username, OBSERVER_USER),
                  **{f"agents.{i}": (entry.username, agent_user(i)) for i, entry in self.agents.items()}}
        for where, (got, want) in wanted.items():
            if got != want:
                raise ValueError(f"{where}.username: {got!r} is not the ACL's user {want!r}")
        return self


@dataclass
class LabCredentials:
    """Every secret of one lab: passwords, the lab key, each agent's signing key (base64 text)."""

    lab: str
    admin_password: str
    agents: dict[int, str]  # agent id → password
    signing_keys: dict[int, str]  # agent id → its Ed25519 private key
    observer_password: str
    lab_key: str
    broker_url: str = ""

    @classmethod
    def generate(cls, lab: str, n_agents: int) -> LabCredentials:
        return cls(lab, secrets.token_urlsafe(18), {i: secrets.token_urlsafe(18) for i in range(n_agents)},
                   {i: new_signing_key() for i in range(n_agents)}, secrets.token_urlsafe(18), new_signing_key())

    def users(self) -> dict[str, str]:
        return {ADMIN_USER: self.admin_password, OBSERVER_USER: self.observer_password,
                **{agent_user(i): p for i, p in self.agents.items()}}

    def lab_public_key(self) -> str:
        """The public half of the lab key (base64): what every bundle carries to verify the lab config."""
        from ...wire.signing import public_text

        return public_text(self.lab_key, "lab key")

    def for_agent(self, agent_id: int, source: str = "credentials") -> tuple[str, str]:
        if agent_id not in self.agents:
            raise UserError(f"{source}: no credentials for agent {agent_id} (has {len(self.agents)} agents)")
        return agent_user(agent_id), self.agents[agent_id]

    def save(self, path: Path) -> None:
        data = SecretsFile(
            lab=self.lab, broker=self.broker_url, admin=_Account(username=ADMIN_USER, password=self.admin_password),
            observer=_Account(username=OBSERVER_USER, password=self.observer_password), lab_key=self.lab_key,
            agents={i: _AgentSecrets(username=agent_user(i), password=p, signing_key=self.signing_keys[i])
                    for i, p in sorted(self.agents.items())})
        atomic_write(path, "# edge-mcepl lab secrets: keep on the broker host; hand each device its bundle only.\n"
                     + yaml.safe_dump(data.model_dump(), sort_keys=False), mode=0o600)

    @classmethod
    def load(cls, path: str | Path) -> LabCredentials:
        path = Path(path)
        data = validate(SecretsFile, read_yaml(path, "lab secrets"), str(path))
        return cls(data.lab, data.admin.password, {i: e.password for i, e in data.agents.items()},
                   {i: e.signing_key for i, e in data.agents.items()}, data.observer.password, data.lab_key,
                   data.broker)


Access = Literal["read", "write"]


class LabAcl:
    """Who may read/write which topic (the same rules for mosquitto's acl file and PythonBroker)."""

    def __init__(self, lab: str, n_agents: int) -> None:
        self.lab, self.n_agents = lab, n_agents
        self.prefix = lab_prefix(lab)

    def allowed(self, username: str | None, topic: str, access: Access) -> bool:
        if username in (ADMIN_USER, OBSERVER_USER):
            if access == "read" and topic.startswith("$SYS/"):
                return True
            return topic.startswith(self.prefix) and (access == "read" or username == ADMIN_USER)
        if username is None or not username.startswith("agent-") or not username[6:].isdigit():
            return False
        if access == "read":
            return topic.startswith(self.prefix)
        agent_id = int(username[6:])
        return agent_id < self.n_agents and topic in {agent_topic(self.lab, agent_id, t) for t in AGENT_TOPICS}

    def mosquitto_acl(self) -> str:
        lines = ["# generated by edge-mcepl broker: each agent writes only its own topics; the observer only reads",
                 "", f"user {ADMIN_USER}", f"topic readwrite {self.prefix}#", "topic read $SYS/#", "",
                 f"user {OBSERVER_USER}", f"topic read {self.prefix}#", "topic read $SYS/#", ""]
        for i in range(self.n_agents):
            lines += [f"user {agent_user(i)}", f"topic read {self.prefix}#",
                      *(f"topic write {agent_topic(self.lab, i, t)}" for t in AGENT_TOPICS), ""]
        return "\n".join(lines)
