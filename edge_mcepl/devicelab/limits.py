"""A lab's size limits, derived from what its agents can legitimately send — never "64 MiB, just in case".

The broker refuses a message larger than any the lab's rule can produce (so a 50 MB garbage
payload is not forwarded to every subscriber), bounds what it queues for a client that is away,
and each agent bounds its inbox and its round window by the same arithmetic: twice the
``max_staleness`` + 2 rounds of its neighbours' messages that can still be used plus the
``RESEND_DEPTH`` copies a keyframe request brings — enough for a restarted agent to catch up on
what was queued for it without waiting, no more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..agent import RESEND_DEPTH
from ..algorithms.registry import rule_class
from ..config import LabConfig
from ..nn.zoo import build_model
from ..simulator import build_topology_for
from ..wire.dense import message_size as weight_message_size
from ..wire.masks import message_size as mask_message_size

MIN_MESSAGE_LIMIT = 64 << 10  # room for any control message (status, keyframe requests, a small lab config)
SLACK = 4096  # per-layer Rice headers and the delta's base record, above twice the packed bits


@dataclass(frozen=True)
class LabLimits:
    """Per-message and per-client byte and message bounds for one lab."""

    message_bytes: int  # the largest message an agent of this lab may send
    inbox_bytes: int  # what one agent holds of its neighbours' messages at most
    queue_messages: int  # QoS 1 messages the broker queues for one client that is away
    queue_bytes: int
    ahead_rounds: int  # how far ahead of an agent its neighbours' messages are still held: what the queue holds


def largest_message(config: LabConfig) -> int:
    """The largest message this lab's rule can send: a mask never codes to more than twice its packed bits
    (Rice with k = 0 spends at most two bits a weight; a delta falls back to Rice when it would be larger);
    a weight rule sends fp32 (and Dis-PFL its mask bits besides)."""
    shapes = build_model(config.model).layer_shapes()
    if rule_class(config.algorithm.name).learns_masks:
        return 2 * mask_message_size(shapes, signed=True) + SLACK
    return weight_message_size(shapes, signed=True) + mask_message_size(shapes, signed=True)


def lab_limits(config: LabConfig, degree: int, max_staleness: int, envelope_bytes: int = 0) -> LabLimits:
    """The limits for a lab whose agents have at most ``degree`` neighbours (``envelope_bytes``: the lab
    config message, which the broker must carry too)."""
    largest = largest_message(config)
    message = max(largest, envelope_bytes, MIN_MESSAGE_LIMIT)
    rounds = 2 * (max_staleness + 2 + RESEND_DEPTH)  # of every neighbour's messages, for an agent that is away
    queue = rounds * max(degree, 1) + 2 * degree + 16  # plus the neighbours' status and keyframe topics, the config
    return LabLimits(message_bytes=message, inbox_bytes=rounds * max(degree, 1) * largest,
                     queue_messages=queue, queue_bytes=queue * message, ahead_rounds=rounds)


ROSTER_ENTRY_BYTES = 256  # one agent's public key, declared retention and profile in the signed lab config


def broker_limits(config: LabConfig, envelope: dict, max_staleness: int) -> LabLimits:
    """The limits a lab's broker enforces: its busiest agent's queue, its largest message or config."""
    topology = build_topology_for(config)
    degree = max((topology.degree(i) for i in range(config.agents)), default=0)
    envelope_bytes = len(json.dumps(envelope)) + ROSTER_ENTRY_BYTES * (config.agents + 1)
    return lab_limits(config, degree, max_staleness, 2 * envelope_bytes)
