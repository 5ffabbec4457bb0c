"""The device lab's MQTT topic names, in one place: what agents publish, subscribe to and the ACL allows.

Topics (``<lab>`` is the lab name, ``<id>`` an agent id)::

    edge-mcepl/<lab>/config              retained: the lab config envelope (JSON, never pickle)
    edge-mcepl/<lab>/agent/<id>/mask     QoS 1: the agent's encoded message for a round (wire format v1)
    edge-mcepl/<lab>/agent/<id>/status   retained JSON {"state": "online"|"done"|"offline", ...};
                                         the last will is {"state": "offline", ...}
    edge-mcepl/<lab>/agent/<id>/keyframe retained JSON {"round": t, "senders": [...]}: the neighbours
                                         whose deltas agent <id> cannot decode (it lacks the base),
                                         asking each for a stand-alone message next

Every agent writes only under its own ``agent/<id>/`` (the generated broker ACL enforces it), which
is why a message's topic, not its claimed sender, says who sent it.
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


def mask_topic(lab: str, agent_id: int | str) -> str:
    return f"{lab_prefix(lab)}agent/{agent_id}/mask"


def status_topic(lab: str, agent_id: int | str) -> str:
    return f"{lab_prefix(lab)}agent/{agent_id}/status"


def keyframe_topic(lab: str, agent_id: int | str) -> str:
    return f"{lab_prefix(lab)}agent/{agent_id}/keyframe"


def topic_agent(topic: str) -> int | None:
    """The agent id in ``edge-mcepl/<lab>/agent/<id>/...``, or None."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[2] == "agent" and parts[3].isdigit():
        return int(parts[3])
    return None
