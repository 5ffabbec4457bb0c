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

from dataclasses import dataclass

from ..config import LabConfig, RetentionConfig
from ..profiles import DeviceProfile, policy_structure
from .envelope import LabEnvelope


@dataclass(frozen=True)
class AgentPlan:
    """This device's config and the reasons, which join prints: a lab's operator must see why."""

    config: LabConfig  # the lab config with this device's retention, batch size, threads and device: what it runs
    notes: tuple[str, ...]  # one line each: what decided retention, batch size, threads

    @property
    def threads(self) -> int:
        return self.config.threads


def plan_agent(env: LabEnvelope, agent_id: int, profile: DeviceProfile | None = None,
               threads: int | None = None) -> AgentPlan:
    """Apply the documented precedence (lab explicit > profile > lab default) for one agent."""
    config = env.config
    conv, linear = config.retention.for_agent(agent_id)
    width = config.retention.width_for(agent_id)
    explicit = env.message.explicit
    decision = policy_structure(profile, config.model) if profile is not None else None
    notes = []
    if decision is not None and decision.retention is not None and "retention.conv" not in explicit:
        conv, why_conv = decision.retention, decision.detail
    else:
        why_conv = "set by the lab config" if "retention.conv" in explicit else "lab default"
    if decision is not None and "retention.width" not in explicit:
        width, why_width = decision.width, decision.detail
    else:
        why_width = "set by the lab config" if "retention.width" in explicit else "lab default"
    config = config.replace(retention=RetentionConfig(conv=conv, linear=config.retention.linear, width=width))
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
