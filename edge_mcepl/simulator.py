"""The in-process lab simulator: N agents, one process, an in-memory transport, synchronous rounds.

It builds every agent exactly as a device would (same :class:`~edge_mcepl.agent.Agent`), so a
simulated run and a device lab with the same seed and config produce the same masks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .agent import Agent
from .algorithms.attacks import ATTACKS
from .algorithms.base import RuleContext
from .algorithms.params import Retention
from .algorithms.registry import rule_class
from .allocator import keep_freed_memory
from .comm.transport import InMemoryTransport, Transport
from .config import LabConfig
from .data.resolve import LabData, load_lab_data
from .metrics import MetricsLog, read_metrics, summary_table
from .nn.device import describe_device, resolve_device
from .nn.layers import MaskedConv2d
from .nn.weights import FixedWeights, generate_fixed_weights, load_fixed_weights
from .nn.zoo import build_model
from .run_dir import AgentEntry, AgentRecord, RunIdentity, write_config, write_final_state, write_summary
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
class Simulator:
    """A whole lab in one process. ``run_round`` / ``evaluate`` are public so benchmarks can time them."""

    config: LabConfig
    log: Callable[[str], None] = print
    transport: Transport = field(default_factory=InMemoryTransport)

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
        self.conv_layers = sum(isinstance(m, MaskedConv2d) for _, m in template.masked_layers())

    @property
    def learns_masks(self) -> bool:
        """Whether the agents' rule ends with masks export can read (written to ``final/``)."""
        return rule_class(self.config.algorithm.name).learns_masks

    def run_round(self, t: int) -> list[dict]:
        """Round index ``t`` (0-based, as in the wire header); a metrics row per agent (without accuracy).

        A row's ``round`` is the round's number, 1-based — what the console prints and what
        ``eval_every`` counts: the row of ``run_round(0)`` says round 1.
        """
        for agent in self.agents:
            agent.begin_round(t, self.transport)
        rows = []
        for agent in self.agents:
            report = agent.finish_round(t, self.transport)
            rows.append({"round": t + 1, "agent": agent.agent_id, **report.fields(),
                         "train_seconds": round(report.train_seconds, 6), **agent.rule.mask_stats()})
        return rows

    def evaluate(self) -> list[tuple[float, float]]:
        """(accuracy, loss) of every agent's personalized model on its own test set."""
        return [agent.evaluate() for agent in self.agents]

    def evaluation(self) -> list[dict[str, float]]:
        """Every agent's evaluation fields (test, and validation with a split): what a metrics row gets."""
        return [agent.evaluation() for agent in self.agents]

    def run(self, run_dir: Path, progress: bool = True) -> str:
        """All rounds, with metrics, final state and summary written to ``run_dir``; returns the summary."""
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, self.config)
        metrics = MetricsLog(run_dir / "metrics.jsonl")
        static = [{"classes": list(self.data.partitions[a.agent_id].classes),
                   "retention_conv": a.rule.retention.conv, "width": a.rule.retention.width,
                   "conv_layers": self.conv_layers,
                   "filters": [shape[0] for shape in a.layer_shapes]} for a in self.agents]
        bar = tqdm(range(self.config.rounds), desc=self.config.name, unit="round", disable=not progress)
        try:
            for t in bar:
                start = time.perf_counter()
                rows = self.run_round(t)
                round_s = time.perf_counter() - start
                if (t + 1) % self.config.eval_every == 0 or t == self.config.rounds - 1:
                    for row, fields in zip(rows, self.evaluation()):
                        row.update(fields)
                    accs = [r["accuracy"] for r in rows]
                    bar.set_postfix(acc=f"{sum(accs) / len(accs):.3f}")
                    (bar.write if progress else self.log)(
                        f"round {t + 1:>5}: mean personalized accuracy {sum(accs) / len(accs):.4f} "
                        f"(min {min(accs):.4f}, max {max(accs):.4f})")
                for row, extra in zip(rows, static):
                    row.update(extra, round_seconds=round(round_s, 6))  # the whole synchronous round, every agent
                metrics.write(rows)
        finally:
            metrics.close()
            bar.close()
        if self.learns_masks:  # export reads masks; weight-based baselines have none
            self.save_final_state(run_dir / "final")
        summary = summary_table(read_metrics(run_dir / "metrics.jsonl"))
        write_summary(run_dir, summary)
        return summary

    def save_final_state(self, directory: Path) -> None:
        """Everything export needs — seed, architecture, fingerprint, each agent's mask — no scores."""
        identity = RunIdentity(model=self.config.model, num_classes=self.data.train.num_classes,
                               weights_seed=self.config.seed, weights=self.config.weights,
                               fingerprint=self.fixed.fingerprint_hex,
                               rounds=self.config.rounds)
        agents = [(AgentEntry.of_record(agent_record(a, self.data.partitions[a.agent_id].classes)),
                   a.file_message(self.config.rounds)) for a in self.agents]
        write_final_state(directory, identity, agents)
