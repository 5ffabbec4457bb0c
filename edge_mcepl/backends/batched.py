"""The batched engine: every agent's local step of a round as one forward and one backward pass.

``simulate --batched`` (docs/batched-engine.md). The agents' images go through one network — agent 0's
model, its masked layers bound for the step to a stack of every agent's effective weights
(:class:`~edge_mcepl.nn.stacked.StackedSource`) — so a convolution layer runs once as a grouped
convolution over all agents instead of once per agent. Each agent's scores get the gradient of its
own loss (its mean cross-entropy; the losses are summed, and no loss depends on another agent's
scores), and each rule then updates its own scores as in its own step. Only the floating-point
order of the convolution sums changes, so losses and gradients equal the per-agent loop's within
float tolerance (tests/test_batched_engine.py); a mask, a top-k over scores, may in time differ
where two scores were within rounding of each other.

Agents whose batches differ in size (the short last batch of an epoch) go in separate groups, one
pass per batch size. What it needs: one mask-learning rule of the MCE-PL family (its step split in
:meth:`~edge_mcepl.algorithms.mcepl.MCEPL.begin_step` / ``end_step``), every agent of one width.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..agent import Agent
from ..algorithms.mcepl import MCEPL
from ..comm.transport import Transport
from ..config import LabConfig
from ..errors import UserError
from ..nn.stacked import StackedSource


def check_batchable(config: LabConfig, agents: Sequence[Agent]) -> None:
    """A one-line error unless every agent runs an MCE-PL-family rule at one width."""
    rules = {type(agent.rule) for agent in agents}
    if not all(issubclass(rule, MCEPL) for rule in rules):
        raise UserError(f"--batched: algorithm {config.algorithm.name!r} has no batched step (the MCE-PL family has)")
    widths = {agent.rule.retention.width for agent in agents}
    if len(widths) > 1:
        raise UserError(f"--batched: the agents have widths {sorted(widths)}; one stacked pass needs one width")


def begin_round_batched(agents: Sequence[Agent], round: int, transport: Transport) -> None:
    """Every agent's :meth:`~edge_mcepl.agent.Agent.begin_round`, the local steps batched across agents."""
    began = time.perf_counter()
    losses = [0.0] * len(agents)
    for step in range(agents[0].rule.params.local_steps):
        batches = [agent.batch(round, step) for agent in agents]
        groups: dict[int, list[int]] = {}
        for i, (images, _) in enumerate(batches):
            groups.setdefault(len(images), []).append(i)
        for members in groups.values():
            for i, loss in zip(members, _step([agents[i] for i in members], [batches[i] for i in members])):
                losses[i] = loss
    share = (time.perf_counter() - began) / len(agents)  # each agent's part of the batched training time
    for agent, loss in zip(agents, losses):
        agent.publish_round(round, transport, loss, time.perf_counter() - share)


def _step(agents: Sequence[Agent], batches: Sequence[tuple[Tensor, Tensor]]) -> list[float]:
    """One local step of ``agents`` (equal batch sizes) as one pass; their losses."""
    rules: list[MCEPL] = [agent.rule for agent in agents]  # type: ignore[misc]  # checked by check_batchable
    model = rules[0].model
    layers = [layer for _, layer in model.masked_layers()]
    bound = [layer.source for layer in layers]
    befores = [rule.begin_step() for rule in rules]
    for i, layer in enumerate(layers):
        layer.use(StackedSource([rule.layers[i] for rule in rules]))
    try:
        images = torch.cat([images for images, _ in batches])
        labels = torch.cat([labels for _, labels in batches])
        per_image = F.cross_entropy(model.logits(images), labels, reduction="none")
        losses = per_image.reshape(len(agents), -1).mean(dim=1)
        losses.sum().backward()
    finally:
        for layer, source in zip(layers, bound):
            layer.use(source)
    for rule, before in zip(rules, befores):
        rule.end_step(before)
    return losses.tolist()

