"""From the lab's config and this device's profile to this agent's config: who decides what, and why.

**Retention precedence** for agent i: (1) the lab config sets ``retention.conv`` explicitly → the
lab's value for i (a list is round-robin); (2) else the device profile's ``retention_ratio``
(a number); (3) else the profile's ``auto`` policy (:func:`~edge_mcepl.profiles.policy_retention`);
(4) no profile → the lab default (0.3). Linear layers always use the lab's ``retention.linear``.
A profile's ``training.batch_size`` likewise applies only when the lab does not set
``algorithm.batch_size``; threads: ``--threads`` > profile ``training.threads`` > lab ``threads``.
A device lab always trains on each device's CPU: the config's ``device`` is the simulator's.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import LabConfig, RetentionConfig
from ..profiles import DeviceProfile, policy_retention
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
    notes = []
    if "retention.conv" in env.message.explicit:
        notes.append(f"retention {conv:g} (conv) / {linear:g} (linear): set by the lab config"
                     + (f"; profile {profile.name}'s retention_ratio not used" if profile else ""))
    elif profile is not None:
        decision = policy_retention(profile, config.model, linear)
        conv = decision.retention
        config = config.replace(retention=RetentionConfig(conv=conv, linear=config.retention.linear))
        notes.append(f"retention {conv:g} (conv) / {linear:g} (linear): {decision.detail}")
    else:
        notes.append(f"retention {conv:g} (conv) / {linear:g} (linear): lab default (no profile)")
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
