"""A shard of a simulated lab: some of its agents, built and run in one process that is not the driver's.

A Ray worker (:mod:`.ray_backend`) holds one. A shard builds its agents exactly as the in-process
simulator does (same seeds, keys, data partition and fixed weights, each from the lab config), so
the lab's masks do not depend on how its agents are spread. Messages between shards are the same
encoded, signed bytes an in-process lab passes around: the driver routes them, a shard's
:class:`ShardTransport` delivers them to its agents as if their sender were local.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..allocator import keep_freed_memory
from ..comm.transport import InMemoryTransport
from ..config import LabConfig, config_from_dict
from ..data.resolve import load_lab_data
from ..nn.device import resolve_device
from ..nn.weights import generate_fixed_weights
from ..nn.zoo import build_model
from ..simulator import build_agent, build_topology_for, final_messages, finished_row, simulation_auth, static_fields
from .checkpoints import read_agents, write_agents

Published = tuple[int, int, bytes]  # (sender, round, payload): one message as it travels between shards


class ShardTransport(InMemoryTransport):
    """In-memory delivery for a shard's own agents, keeping what they publish for the other shards.

    A keyframe request for a sender on another shard is kept until the driver forwards it there.
    """

    def __init__(self, local: Sequence[int]) -> None:
        super().__init__()
        self.local = frozenset(local)
        self.outbox: list[Published] = []

    def publish(self, sender: int, round: int, payload: bytes) -> None:
        super().publish(sender, round, payload)
        if sender in self.local:
            self.outbox.append((sender, round, bytes(payload)))

    def deliver(self, messages: Sequence[Published]) -> None:
        """Messages from the other shards' agents, available to this shard's listeners."""
        for sender, round, payload in messages:
            super().publish(sender, round, payload)

    def take_outbox(self) -> list[Published]:
        out, self.outbox = self.outbox, []
        return out

    def remote_requests(self) -> dict[int, int]:
        """Keyframe requests for senders on other shards (sender → earliest round lacked), taken."""
        return {s: self._keyframe_requests.pop(s) for s in [s for s in self._keyframe_requests if s not in self.local]}


class Shard:
    """Agents ``agent_ids`` of the lab ``config`` (plain data: it crosses a process boundary)."""

    def __init__(self, config: dict[str, Any], agent_ids: Sequence[int]) -> None:
        keep_freed_memory()
        self.config: LabConfig = config_from_dict(config)
        torch.set_num_threads(self.config.threads)
        device = resolve_device(self.config.device)
        data = load_lab_data(self.config, build_model(self.config.model).input_shape, lambda _: None)
        self.data = dataclasses.replace(data, test=data.test.to(device))
        template = build_model(self.config.model, self.data.train.num_classes)
        fixed = generate_fixed_weights(template, self.config.model, self.config.seed, self.config.weights).to(device)
        self.fingerprint_hex = fixed.fingerprint_hex
        topology = build_topology_for(self.config)
        auth = simulation_auth(self.config)
        self.agents = [build_agent(self.config, self.data, topology, fixed, i, auth=auth[i]) for i in agent_ids]
        self.transport = ShardTransport(agent_ids)
        for agent in self.agents:
            self.transport.listen(agent.agent_id, agent.neighbours, agent.decode_message)

    def fingerprint(self) -> str:
        """The fixed weights this process generated (every shard's must be the same)."""
        return self.fingerprint_hex

    def begin(self, t: int, requests: dict[int, int]) -> list[Published]:
        """The first half of round ``t`` for every agent here; what they published, for the other shards."""
        self.transport.add_requests(requests)
        for agent in self.agents:
            agent.begin_round(t, self.transport)
        return self.transport.take_outbox()

    def finish(self, t: int, messages: Sequence[Published]) -> tuple[list[dict], dict[int, int]]:
        """The second half of round ``t`` with the other shards' ``messages``: the agents' metrics rows, and
        the keyframe requests their receivers made of senders elsewhere."""
        self.transport.deliver(messages)
        rows = [finished_row(agent, t, self.transport) for agent in self.agents]
        return rows, self.transport.remote_requests()

    def static_fields(self) -> list[dict[str, Any]]:
        return static_fields(self.agents, self.data)

    def save(self, folder: str, next_round: int) -> dict[int, int]:
        """This shard's agents' files of a checkpoint set; the keyframe requests its senders still owe."""
        write_agents(self.agents, Path(folder), next_round, self.config)
        return self.transport.pending_requests()

    def restore(self, folder: str, next_round: int) -> None:
        read_agents(self.agents, Path(folder), next_round, self.config)

    def evaluation(self) -> list[dict[str, float]]:
        return [agent.evaluation() for agent in self.agents]

    def final_messages(self) -> list[tuple[dict[str, Any], bytes]]:
        """(record as plain data, final mask message) per agent here."""
        return [(record.model_dump(), message)
                for record, message in final_messages(self.agents, self.data, self.config.rounds)]
