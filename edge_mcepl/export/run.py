"""Reading what export needs from a run directory, and rebuilding the agent's masked model.

A run directory (:mod:`edge_mcepl.run_dir`, written by the simulator and the device lab alike)
holds ``config.yaml`` and ``final/state.json`` + ``final/masks/agent_NNN.mcpl``. Export never needs the training
state: the weights are regenerated from the seed and checked against the recorded fingerprint,
and the mask file is a wire-format message, decoded with the same strict decoder agents use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import LabConfig
from ..errors import UserError
from ..nn.layers import FixedMask
from ..nn.weights import FixedWeights, generate_fixed_weights, load_fixed_weights
from ..nn.zoo import MaskedNetwork, build_model
from ..run_dir import AgentEntry, RunState, final_mask_path, read_config, read_state
from ..nn.width import pad_to_full
from ..wire.masks import CodecError, decode_masks


@dataclass(frozen=True)
class RunInfo:
    run_dir: Path
    state: RunState
    config: LabConfig
    model_name: str
    num_classes: int
    weights_seed: int
    fingerprint: bytes

    @property
    def agent_ids(self) -> list[int]:
        return [a.id for a in self.state.agents]

    def agent(self, agent_id: int) -> AgentEntry:
        for entry in self.state.agents:
            if entry.id == agent_id:
                return entry
        raise UserError(f"{self.run_dir}: no agent {agent_id} in this run (agents: "
                        f"{', '.join(map(str, self.agent_ids))})")

    @property
    def elu_logits(self) -> bool:
        return bool(self.config.algorithm.elu_logits)


def load_run(run_dir: str | Path) -> RunInfo:
    """Parse and validate ``RUN_DIR/final/state.json`` and ``RUN_DIR/config.yaml``."""
    run_dir = Path(run_dir)
    state, config = read_state(run_dir), read_config(run_dir)
    if config.model != state.model:
        raise UserError(f"{run_dir}: config.yaml says model {config.model!r}, state.json {state.model!r}")
    return RunInfo(run_dir, state, config, state.model, state.num_classes, state.weights_seed,
                   bytes.fromhex(state.fingerprint))


def regenerate_weights(run: RunInfo) -> tuple[MaskedNetwork, FixedWeights]:
    """``w`` from the seed and architecture; refuses weights whose fingerprint differs from the run's."""
    template = build_model(run.model_name, run.num_classes)
    fixed = generate_fixed_weights(template, run.model_name, run.weights_seed, run.state.weights)
    if fixed.fingerprint != run.fingerprint:
        raise UserError(
            f"{run.run_dir}/final/state.json: weights fingerprint mismatch — the run has {run.fingerprint.hex()}, "
            f"regenerating {run.model_name} ({run.state.weights}) from seed {run.weights_seed} gives {fixed.fingerprint_hex} "
            "(different architecture or torch version); the masks would be meaningless on these weights")
    return template, fixed


def load_agent_masks(run: RunInfo, agent_id: int, template: MaskedNetwork) -> list[np.ndarray]:
    """Decode the agent's final mask message, checking fingerprint, layer shapes and sender."""
    path = final_mask_path(run.run_dir, run.agent(agent_id))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read agent {agent_id}'s mask ({exc.strerror})") from None
    try:
        msg = decode_masks(data, expected_fingerprint=run.fingerprint, expected_shapes=template.layer_shapes(),
                           nested=True)
    except CodecError as exc:
        raise UserError(f"{path}: {exc}") from None
    if msg.sender != agent_id:
        raise UserError(f"{path}: message was sent by agent {msg.sender}, expected agent {agent_id}")
    # an ordered-width agent's mask covers its block: zeros elsewhere are the filters it never held
    return [m.astype(np.float32) for m in pad_to_full(msg.masks, template.layer_shapes())]


def masked_model(model_name: str, num_classes: int, fixed: FixedWeights, masks: list[np.ndarray],
                 elu_logits: bool) -> MaskedNetwork:
    """The effective model ``v = w ⊙ m`` as the zoo network itself (its own forward pass).

    Each layer computes with its fixed mask (:class:`~edge_mcepl.nn.layers.FixedMask`), so the zoo
    forward computes exactly with ``v``: the reference every export is verified against.
    """
    model = build_model(model_name, num_classes)
    load_fixed_weights(model, fixed)
    for (_, layer), mask in zip(model.masked_layers(), masks):
        layer.use(FixedMask(torch.as_tensor(np.asarray(mask, dtype=np.float32))))
    model.elu_logits = elu_logits
    return model.eval()


def masked_zoo_model(run: RunInfo, fixed: FixedWeights, masks: list[np.ndarray]) -> MaskedNetwork:
    """The agent's masked model (see :func:`masked_model`)."""
    return masked_model(run.model_name, run.num_classes, fixed, masks, run.elu_logits)


def layer_arrays(template: MaskedNetwork, fixed: FixedWeights, masks: list[np.ndarray]
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(weights by tensor name, masks by layer name) as numpy, what :func:`.prune.prune_network` takes."""
    weights = {name: t.numpy() for name, t in fixed.tensors.items()}
    by_layer = {name: mask for (name, _), mask in zip(template.masked_layers(), masks)}
    return weights, by_layer
