"""An agent's resumable state after a completed round: one atomic ``.npz`` file, arrays only.

What a resumed agent needs to continue exactly where it stopped (same masks as if it had never
stopped, given the same neighbour masks): its learning rule's :meth:`state_dict` (MCE-PL: every
masked layer's ``scores_i`` and ``neighbour_mean_i``; a weight rule: ``weights_i`` and ``keep_i``),
its batch sampler (the torch generator state, the current epoch's order and position) and the
number of rounds completed; the last message it sent (``sent_mask_i``, its round), the base of
its next delta; and the neighbours' masks it holds (``heard_k_i``, packed bits, with sender, round
and digest in the metadata), the bases of *their* next deltas, so a restarted device still decodes
the messages queued for it. Plus, to refuse a checkpoint from another lab or run: lab, run id,
agent id, weights fingerprint, retention ratios and layer shapes.

Format: ``numpy.savez`` — plain arrays, with the metadata (:class:`CheckpointMeta`, validated like
every other file) as UTF-8 JSON bytes in a ``uint8`` array — read back with ``allow_pickle=False``,
so loading a checkpoint can never execute code. Writes go
to a temporary file in the same folder, are fsynced, and replace the old file atomically: a crash
leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from .agent import Agent
from .atomic import atomic_file
from .config import Ratio
from .errors import UserError
from .validation import AgentId, Fingerprint, StrictModel, validate_json
from .wire.history import HeldMasks

FORMAT = "edge-mcepl-checkpoint/1"
_SAMPLER = ("generator_state", "order")


def _sent_name(layer: int) -> str:
    return f"sent_mask_{layer}"


def _heard_name(entry: int, layer: int) -> str:
    return f"heard_{entry}_{layer}"

_FRESH = "delete it (or pass --fresh) to start this agent over"  # how the user gets past any refused checkpoint
Size = Annotated[int, Field(ge=0)]


class HeardMeta(StrictModel):
    """One neighbour's masks the agent held (:class:`~edge_mcepl.wire.history.HeldMasks`); bits in ``heard_k_i``."""

    sender: AgentId
    round: int = Field(ge=0)
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    shapes: list[list[Size]]


class CheckpointMeta(StrictModel):
    """The JSON in a checkpoint's ``meta`` array: whose state it is, and what its arrays must be."""

    format: Literal[FORMAT]  # type: ignore[valid-type]
    next_round: int = Field(ge=0)  # rounds completed
    agent_id: AgentId
    fingerprint: Fingerprint
    retention_conv: Ratio
    retention_linear: Ratio
    width: Ratio = 1.0  # ordered width (absent in checkpoints written before it existed: full width)
    layer_shapes: list[list[Size]]
    sampler_pos: int = Field(ge=0)
    sampler_n: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    rule_arrays: dict[str, tuple[str, list[Size]]]  # the rule's state_dict: name → (dtype.str, shape)
    sent_masks: list[list[Size]] | None = None  # shapes of the last sent mask per layer (None: not recorded)
    sent_round: int | None = Field(None, ge=0)  # the round of that message (None: none sent, or not recorded)
    heard: list[HeardMeta] = []  # the neighbours' masks held (none in checkpoints written before delta coding)
    lab: str
    run_id: str


@dataclass(frozen=True)
class Checkpoint:
    meta: CheckpointMeta
    rule_state: dict[str, np.ndarray]  # the rule's state_dict()
    sent_masks: list[np.ndarray] | None  # the agent's last sent mask per layer (for the flip count)
    heard: list[HeldMasks]  # the neighbours' masks held (the rule's history)
    generator_state: np.ndarray
    order: np.ndarray

    @property
    def next_round(self) -> int:
        return self.meta.next_round


def save_checkpoint(path: str | Path, agent: Agent, next_round: int, *, lab: str, run_id: str) -> None:
    """Atomically write ``agent``'s state after ``next_round`` completed rounds of run ``run_id`` of ``lab``."""
    path = Path(path)
    sampler = agent.sampler
    rule_state = agent.rule.state_dict()
    clash = set(rule_state) & ({"meta"} | set(_SAMPLER))
    assert not clash, f"rule state names {clash} collide with the checkpoint's own arrays"
    heard = agent.rule.history.entries() if agent.rule.history is not None else []
    meta = CheckpointMeta(
        format=FORMAT, next_round=next_round, agent_id=agent.agent_id, fingerprint=agent.fingerprint.hex(),
        retention_conv=agent.rule.retention.conv, retention_linear=agent.rule.retention.linear,
        width=agent.rule.retention.width, layer_shapes=[list(s) for s in agent.layer_shapes],
        sampler_pos=int(sampler._pos), sampler_n=int(sampler.n), batch_size=int(sampler.batch_size),
        rule_arrays={name: (a.dtype.str, list(a.shape)) for name, a in rule_state.items()}, lab=lab, run_id=run_id,
        sent_masks=None if agent.sent_masks is None else [list(m.shape) for m in agent.sent_masks],
        sent_round=agent.sent_round,
        heard=[HeardMeta(sender=h.sender, round=h.round, digest=h.digest.hex(), shapes=[list(x) for x in h.shapes])
               for h in heard])
    text = json.dumps(meta.model_dump(mode="json"))
    arrays: dict[str, np.ndarray] = {"meta": np.frombuffer(text.encode(), dtype=np.uint8), **rule_state}
    arrays.update({_sent_name(i): m for i, m in enumerate(agent.sent_masks or [])})
    arrays.update({_heard_name(k, i): np.frombuffer(bits, dtype=np.uint8)
                   for k, h in enumerate(heard) for i, bits in enumerate(h.layers)})
    arrays["generator_state"] = sampler._gen.get_state().numpy().copy()
    arrays["order"] = sampler._order.numpy().copy()
    with atomic_file(path, durable=True) as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub fears a key named allow_pickle


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and structurally check a checkpoint; any defect is a one-line :class:`UserError`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            meta = _read_meta(bytes(data["meta"]), path)
            declared = meta.rule_arrays
            sent_names = [_sent_name(i) for i in range(len(meta.sent_masks or []))]
            heard_names = [[_heard_name(k, i) for i in range(len(h.shapes))] for k, h in enumerate(meta.heard)]
            missing = sorted((set(_SAMPLER) | set(declared) | set(sent_names)
                              | {n for names in heard_names for n in names}) - files)
            if missing:
                raise ValueError(f"missing arrays {missing[:3]}")
            rule_state = {name: data[name] for name in declared}
            sent = [data[name] for name in sent_names] if meta.sent_masks is not None else None
            heard_bits = [[data[n] for n in names] for names in heard_names]
            state, order = data["generator_state"], data["order"]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); {_FRESH}") from None
    for name, (dtype, shape) in declared.items():
        array = rule_state[name]
        if array.dtype.str != dtype or list(array.shape) != list(shape):
            raise UserError(f"{path}: {name} is {array.dtype} {array.shape}, the checkpoint declares {dtype} "
                            f"{tuple(shape)}; {_FRESH}")
    if state.dtype != np.uint8 or order.dtype != np.int64:
        raise UserError(f"{path}: sampler state has the wrong dtype; {_FRESH}")
    shapes = meta.sent_masks or []
    if sent is not None and any(m.dtype != np.bool_ or list(m.shape) != list(s) for m, s in zip(sent, shapes)):
        raise UserError(f"{path}: the last sent mask does not match its declared shapes; {_FRESH}")
    heard = []
    for entry, bits in zip(meta.heard, heard_bits):
        if any(b.dtype != np.uint8 or b.shape != ((math.prod(s) + 7) // 8,) for b, s in zip(bits, entry.shapes)):
            raise UserError(f"{path}: agent {entry.sender}'s held masks do not match their declared shapes; {_FRESH}")
        heard.append(HeldMasks(entry.sender, entry.round, bytes.fromhex(entry.digest),
                               tuple(tuple(s) for s in entry.shapes), tuple(b.tobytes() for b in bits)))
    return Checkpoint(meta, rule_state, sent, heard, state, order)


def _read_meta(data: bytes, path: Path) -> CheckpointMeta:
    """The ``meta`` JSON, validated; its one-line error also says how to start over."""
    try:
        return validate_json(CheckpointMeta, data, str(path))
    except UserError as exc:
        raise UserError(f"{exc}; {_FRESH}") from None


def restore_agent(agent: Agent, ckpt: Checkpoint, source: str = "checkpoint", *, lab: str, run_id: str) -> None:
    """Load ``ckpt`` into ``agent`` after checking it belongs to this agent, lab and run."""
    meta = ckpt.meta
    checks = {"agent_id": agent.agent_id, "fingerprint": agent.fingerprint.hex(),
              "layer_shapes": [list(s) for s in agent.layer_shapes], "retention_conv": agent.rule.retention.conv,
              "retention_linear": agent.rule.retention.linear, "width": agent.rule.retention.width,
              "sampler_n": agent.sampler.n,
              "batch_size": agent.sampler.batch_size, "lab": lab, "run_id": run_id}
    for key, want in checks.items():
        if (got := getattr(meta, key)) != want:
            raise UserError(f"{source}: written for {key} {got!r}, but this agent has {want!r}; {_FRESH}")
    try:
        agent.rule.load_state_dict(ckpt.rule_state)
    except ValueError as exc:
        raise UserError(f"{source}: {exc}; {_FRESH}") from None
    # Written before flip counts existed: the first resumed round's count is unknown, never guessed.
    agent.restore_sent(None if ckpt.sent_masks is None else [m.copy() for m in ckpt.sent_masks], meta.sent_round)
    if agent.rule.history is not None:
        for held in ckpt.heard:
            agent.rule.history.add(held)
    sampler = agent.sampler
    sampler._gen.set_state(torch.from_numpy(ckpt.generator_state.copy()))
    sampler._order = torch.from_numpy(ckpt.order.copy())
    sampler._pos = meta.sampler_pos
