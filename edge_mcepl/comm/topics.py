"""The device lab's MQTT topic names, in one place: what agents publish, subscribe to and the ACL allows.

Topics (``<lab>`` is the lab name, ``<id>`` an agent id)::

    edge-mcepl/<lab>/config              retained: the lab config envelope (JSON, never pickle), signed
                                         by the lab key, with the roster of agents' public keys
    edge-mcepl/<lab>/agent/<id>/mask     QoS 1: the agent's signed message for a round (wire format v2)
    edge-mcepl/<lab>/agent/<id>/status   retained JSON {"state": "online"|"done"|"offline", ...};
                                         the last will is {"state": "offline", ...}
    edge-mcepl/<lab>/agent/<id>/keyframe retained JSON {"lacking": [[sender, since], ...]}: the
                                         neighbours whose deltas agent <id> cannot decode (it lacks
                                         the base), asking each for stand-alone messages

Every agent writes only these three topics of its own (the generated broker ACL enforces it), so a
message's topic says which account published it; its signature says which agent wrote it.
"""

from __future__ import annotations

import re

from ..errors import UserError

TOPIC_ROOT = "edge-mcepl"
LAB_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_lab_name(name: str, what: str = "lab name") -> str:
    """``name`` if it can be one MQTT topic level (no ``/``, wildcards or spaces), else a one-line error."""
    if not isinstance(name, str) or not LAB_NAME_RE.match(name):
        raise UserError(f"{what} {name!r}: use 1–64 letters, digits, '_', '.' or '-' (it becomes an MQTT topic level)")
    return name


def lab_prefix(lab: str) -> str:
    """Every topic of the lab starts with this (the ACL's unit)."""
    return f"{TOPIC_ROOT}/{lab}/"


def config_topic(lab: str) -> str:
    return f"{lab_prefix(lab)}config"


AGENT_TOPICS = ("mask", "status", "keyframe")  # all an agent may publish (the ACL allows no other)


def agent_topic(lab: str, agent_id: int | str, name: str) -> str:
    return f"{lab_prefix(lab)}agent/{agent_id}/{name}"


def mask_topic(lab: str, agent_id: int | str) -> str:
    return agent_topic(lab, agent_id, "mask")


def status_topic(lab: str, agent_id: int | str) -> str:
    return agent_topic(lab, agent_id, "status")


def keyframe_topic(lab: str, agent_id: int | str) -> str:
    return agent_topic(lab, agent_id, "keyframe")


def topic_agent(topic: str) -> int | None:
    """The agent id in ``edge-mcepl/<lab>/agent/<id>/...``, or None."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[2] == "agent" and parts[3].isdigit():
        return int(parts[3])
    return None
