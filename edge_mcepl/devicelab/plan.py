"""From the lab's config and this device's profile to this agent's config: who decides what, and why.

**Structure precedence** for agent i, per setting (a list in the lab config is round-robin):

- ``retention.width`` (ordered width, docs/algorithm.md#width): the lab config's, if it sets it;
  else the profile's ``auto`` policy (:func:`~edge_mcepl.profiles.policy_structure`: the widest
  width whose exported model fits the device's latency and memory budgets); else the lab default 1.
- ``retention.conv`` (inside the kept filters): the lab config's, if it sets it; else a profile's
  numeric ``retention_ratio`` (full width then); else the lab default (0.3). Linear layers always
  use the lab's ``retention.linear``.

A profile's ``training.batch_size`` likewise applies only when the lab does not set
``algorithm.batch_size``; threads: ``--threads`` > profile ``training.threads`` > lab ``threads``.
A device lab always trains on each device's CPU: the config's ``device`` is the simulator's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..comm.broker.credentials import LabCredentials
from ..config import LabConfig, RetentionConfig
from ..errors import UserError
from ..profiles import DeviceProfile, load_profile, policy_structure
from .envelope import LabEnvelope
from .schema import DeclaredRetention, RosterEntry


@dataclass(frozen=True)
class AgentPlan:
    """This device's config and the reasons, which join prints: a lab's operator must see why."""

    config: LabConfig  # the lab config with this device's retention, batch size, threads and device: what it runs
    notes: tuple[str, ...]  # one line each: what decided retention, batch size, threads

    @property
    def threads(self) -> int:
        return self.config.threads


@dataclass(frozen=True)
class Structure:
    """What one agent keeps and why (the documented precedence), before any device runs it."""

    conv: float
    linear: float
    width: float
    why_conv: str
    why_width: str

    @property
    def declared(self) -> DeclaredRetention:
        return DeclaredRetention(conv=self.conv, linear=self.linear, width=self.width)


def plan_structure(config: LabConfig, explicit: Collection[str], agent_id: int,
                   profile: DeviceProfile | None) -> Structure:
    """The precedence above (lab explicit > profile > lab default) for agent ``agent_id``'s retention.

    The coordinator runs it for every agent to declare the roster; a device runs it again and must
    get the roster's answer.
    """
    conv, linear = config.retention.for_agent(agent_id)
    width = config.retention.width_for(agent_id)
    decision = policy_structure(profile, config.model) if profile is not None else None
    if decision is not None and decision.retention is not None and "retention.conv" not in explicit:
        conv, why_conv = decision.retention, decision.detail
    else:
        why_conv = "set by the lab config" if "retention.conv" in explicit else "lab default"
    if decision is not None and "retention.width" not in explicit:
        width, why_width = decision.width, decision.detail
    else:
        why_width = "set by the lab config" if "retention.width" in explicit else "lab default"
    return Structure(conv, linear, width, why_conv, why_width)


def lab_roster(config: LabConfig, explicit: Collection[str], profiles: Mapping[int, str],
               creds: LabCredentials) -> dict[int, RosterEntry]:
    """Every agent's roster entry: its public key and the retention its profile (if any) gives it."""
    from ..wire.signing import public_text

    roster = {}
    for i in range(config.agents):
        spec = profiles.get(i)
        structure = plan_structure(config, explicit, i, load_profile(spec) if spec else None)
        roster[i] = RosterEntry(public_key=public_text(creds.signing_keys[i], f"agent {i}'s key"),
                                retention=structure.declared, profile=spec)
    return roster


def plan_agent(env: LabEnvelope, agent_id: int, profile: DeviceProfile | None = None,
               threads: int | None = None) -> AgentPlan:
    """Apply the documented precedence (lab explicit > profile > lab default) for one agent.

    The retention must be what the lab's roster declares for this agent (its neighbours check its
    masks against it): a device with another profile than the one it was enrolled with is refused.
    """
    config = env.config
    s = plan_structure(config, env.message.explicit, agent_id, profile)
    declared = env.message.roster.get(agent_id)
    if declared is not None and declared.retention != s.declared:
        enrolled = f"profile {declared.profile}" if declared.profile else "no profile"
        got = declared.retention
        raise UserError(f"agent {agent_id}: {'profile ' + profile.name if profile else 'no profile'} gives retention "
                        f"{s.conv:g}/{s.linear:g}, width {s.width:g}, but the lab's roster declares "
                        f"{got.conv:g}/{got.linear:g}, width {got.width:g} ({enrolled}); the coordinator assigns "
                        "profiles (`broker --profiles`, `lab --profiles`)")
    conv, linear, width, why_conv, why_width = s.conv, s.linear, s.width, s.why_conv, s.why_width
    notes = []
    config = config.replace(retention=RetentionConfig(conv=conv, linear=linear, width=width))
    notes.append(f"width {width:g}: {why_width}")
    notes.append(f"retention {conv:g} (conv) / {linear:g} (linear) inside the kept filters: {why_conv}")
    if profile is not None and profile.batch_size and "algorithm.batch_size" not in env.message.explicit:
        config = config.replace(algorithm=config.algorithm.replace(batch_size=profile.batch_size))
        notes.append(f"batch size {profile.batch_size}: from profile {profile.name}")
    chosen = threads or (profile.training_threads if profile is not None else config.threads)
    config = config.replace(threads=chosen)
    notes.append(f"threads {chosen}: "
                 + ("--threads" if threads else f"profile {profile.name}" if profile else "lab config"))
    if config.device != "cpu":
        # A lab config is shared by every device (a Pi has no CUDA): `device` is the simulator's knob.
        config = config.replace(device="cpu")
        notes.append(f"device cpu: a device lab trains on each device's CPU (the lab's device {env.config.device!r} "
                     "applies to the simulator)")
    return AgentPlan(config, tuple(notes))
