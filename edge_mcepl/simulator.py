"""The in-process lab simulator: N agents, one process, an in-memory transport, synchronous rounds.

It builds every agent exactly as a device would (same :class:`~edge_mcepl.agent.Agent`), so a
simulated run and a device lab with the same seed and config produce the same masks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .agent import Agent
from .algorithms.attacks import ATTACKS
from .algorithms.base import RuleContext
from .algorithms.params import Retention
from .algorithms.registry import rule_class
from .allocator import keep_freed_memory
from .backends.base import SimulationBackend
from .backends.batched import begin_round_batched, check_batchable
from .backends.checkpoints import commit_set, latest_set, new_set, read_agents, read_requests, write_agents
from .comm.transport import InMemoryTransport, Transport
from .config import LabConfig
from .data.resolve import LabData, load_lab_data
from .nn.device import describe_device, resolve_device
from .nn.weights import FixedWeights, generate_fixed_weights, load_fixed_weights
from .nn.zoo import build_model
from .run_dir import AgentRecord
from .topology import Topology, build_topology
from .wire.envelope import RUN_ID_SIZE
from .wire.signing import MessageAuth, simulation_keys


def build_topology_for(config: LabConfig) -> Topology:
    t = config.topology
    by_kind: dict[str, dict[str, Any]] = {"erdos-renyi": {"p": t.p}, "k-regular": {"k": t.k}, "file": {"path": t.file}}
    params = by_kind.get(t.kind, {})
    return build_topology(t.kind, config.agents, config.seed, **params)


def declared_retention(config: LabConfig, agent_id: int) -> Retention:
    """What agent ``agent_id`` keeps under ``config`` (its round-robin entries): its declared retention."""
    return Retention(*config.retention.for_agent(agent_id), width=config.retention.width_for(agent_id))


def build_agent(config: LabConfig, data: LabData, topology: Topology, fixed: FixedWeights, agent_id: int,
                declared: Mapping[int, Retention] | None = None, auth: MessageAuth | None = None) -> Agent:
    """Agent ``agent_id`` of a lab, exactly as every process building it from the same config gets it.

    ``declared``: every agent's retention as the lab declares it (a device lab's roster); by default
    what ``config`` gives each agent (the simulator's lab). On a GPU (``config.device``) the model,
    the agent's data and the rule's tensors live there; ``fixed`` and ``data.test`` are moved once
    by the caller so that agents share them. An agent listed in ``config.attack`` runs the attack.
    ``auth`` signs its messages and verifies its neighbours' (None: unsigned, a rule tested alone).
    """
    device = resolve_device(config.device)
    fixed = fixed.to(device)
    model = build_model(config.model, data.train.num_classes).to(device)
    load_fixed_weights(model, fixed)
    byzantine = agent_id in config.attack.agents
    rule_cls = ATTACKS[config.attack.kind] if byzantine else rule_class(config.algorithm.name)
    graph_neighbours = topology.neighbours(agent_id)
    if declared is None:
        declared = {j: declared_retention(config, j) for j in range(config.agents)}
    rule = rule_cls.build(RuleContext(
        model=model, algorithm=config.algorithm, retention=declared_retention(config, agent_id),
        agent_id=agent_id, seed=config.seed, per_agent_scores=config.per_agent_scores,
        degrees={j: topology.degree(j) for j in (agent_id, *graph_neighbours)}, total_rounds=config.rounds,
        declared={j: declared[j] for j in graph_neighbours}))
    neighbours = graph_neighbours if rule_cls.exchanges_messages else ()
    part = data.partitions[agent_id]
    validation = data.train.subset(part.validation_indices).to(device) if part.validation_indices.size else None
    return Agent(agent_id, rule, neighbours, data.train.subset(part.train_indices).to(device), data.test.to(device),
                 part.test_indices, fixed.fingerprint, config.seed, auth=auth, validation=validation)


def agent_record(agent: Agent, classes: Sequence[int]) -> AgentRecord:
    """What a run directory keeps of ``agent`` besides its mask: the simulator's and a device's, built alike."""
    retention = agent.rule.retention
    return AgentRecord(id=agent.agent_id, retention_conv=retention.conv, retention_linear=retention.linear,
                       width=retention.width,
                       neighbours=list(agent.neighbours), classes=list(classes))


def simulation_auth(config: LabConfig) -> dict[int, MessageAuth]:
    """Every simulated agent's signing identity: keys from the lab seed (wire/signing.py), one made-up run."""
    keys = simulation_keys(config.seed, config.agents)
    roster = {i: key.public_key() for i, key in keys.items()}
    run_id = hashlib.blake2b(f"edge-mcepl simulation/{config.seed}".encode(), digest_size=RUN_ID_SIZE).digest()
    return {i: MessageAuth(run_id, key, roster) for i, key in keys.items()}


def build_agents(config: LabConfig, data: LabData, topology: Topology, fixed: FixedWeights) -> list[Agent]:
    """Every agent of the lab, sharing the fixed weights (one copy in memory), signing as a lab would."""
    auth = simulation_auth(config)
    return [build_agent(config, data, topology, fixed, i, auth=auth[i]) for i in range(len(data.partitions))]


@dataclass
class Simulator(SimulationBackend):
    """A whole lab in one process. ``run_round`` / ``evaluate`` are public so benchmarks can time them."""

    config: LabConfig
    log: Callable[[str], None] = print
    transport: InMemoryTransport = field(default_factory=InMemoryTransport)  # nothing in flight between rounds
    batched: bool = False  # the agents' local steps as one pass (backends/batched.py)

    def __post_init__(self) -> None:
        keep_freed_memory()
        torch.set_num_threads(self.config.threads)
        device = resolve_device(self.config.device)
        data = load_lab_data(self.config, build_model(self.config.model).input_shape, self.log)
        self.data = dataclasses.replace(data, test=data.test.to(device))  # one copy for every agent
        self.config = self.config.replace(data=data.config)  # what was used (a fallback says synthetic)
        self.log(f"data: {self.data.description}; computing on {describe_device(device)}")
        template = build_model(self.config.model, self.data.train.num_classes)
        self.topology = build_topology_for(self.config)
        config = self.config
        self.fixed = generate_fixed_weights(template, config.model, config.seed, config.weights).to(device)
        self.agents = build_agents(self.config, self.data, self.topology, self.fixed)
        for agent in self.agents:
            self.transport.listen(agent.agent_id, agent.neighbours, agent.decode_message)
        if self.batched:
            check_batchable(self.config, self.agents)

    @property
    def fingerprint_hex(self) -> str:
        return self.fixed.fingerprint_hex

    def run_round(self, t: int) -> list[dict]:
        if self.batched:
            begin_round_batched(self.agents, t, self.transport)
        else:
            for agent in self.agents:
                agent.begin_round(t, self.transport)
        return [finished_row(agent, t, self.transport) for agent in self.agents]

    def evaluate(self) -> list[tuple[float, float]]:
        """(accuracy, loss) of every agent's personalized model on its own test set."""
        return [agent.evaluate() for agent in self.agents]

    def evaluation(self) -> list[dict[str, float]]:
        return [agent.evaluation() for agent in self.agents]

    def final_messages(self) -> list[tuple[AgentRecord, bytes]]:
        return final_messages(self.agents, self.data, self.config.rounds)

    def static_fields(self) -> list[dict[str, Any]]:
        return static_fields(self.agents, self.data)

    def save_checkpoints(self, directory: Path, next_round: int) -> None:
        folder = new_set(directory, next_round)
        write_agents(self.agents, folder, next_round, self.config)
        commit_set(directory, folder, next_round, self.transport.pending_requests())

    def restore_checkpoints(self, directory: Path) -> int:
        folder, next_round = latest_set(directory)
        read_agents(self.agents, folder, next_round, self.config)
        self.transport.add_requests(read_requests(folder))
        return next_round

    def close(self) -> None:
        """Nothing to release: the agents are this process's objects."""


def finished_row(agent: Agent, t: int, transport: Transport) -> dict:
    """The second half of ``agent``'s round ``t`` (gather, aggregate, consensus) and its metrics row."""
    report = agent.finish_round(t, transport)
    return {"round": t + 1, "agent": agent.agent_id, **report.fields(),
            "train_seconds": round(report.train_seconds, 6), **agent.rule.mask_stats()}


def static_fields(agents: Sequence[Agent], data: LabData) -> list[dict[str, Any]]:
    """What every metrics row of an agent repeats: its classes, the retention its rule keeps (a dense
    baseline keeps everything, whatever the config declares), width, conv layers and filters per layer."""
    return [{"classes": list(data.partitions[a.agent_id].classes), "retention_conv": a.rule.retention.conv,
             "width": a.rule.retention.width,
             "conv_layers": sum(layer.kind == "conv" for _, layer in a.rule.model.masked_layers()),
             "filters": [shape[0] for shape in a.layer_shapes]} for a in agents]


def final_messages(agents: Sequence[Agent], data: LabData, rounds: int) -> list[tuple[AgentRecord, bytes]]:
    """Each agent's record and the mask message it would send after ``rounds`` rounds (for export)."""
    return [(agent_record(a, data.partitions[a.agent_id].classes), a.file_message(rounds)) for a in agents]
