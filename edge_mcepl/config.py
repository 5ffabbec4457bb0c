"""Lab configuration: YAML in, validated frozen pydantic models out.

YAML files and CLI overrides only say what differs from the defaults (the README's "Lab config"
block shows them all; a test keeps it true). Validation is strict — an unknown key, a wrong type
or an out-of-range value is a one-line :class:`UserError` naming the file and the dotted field
(:mod:`edge_mcepl.validation`) — because a typo that silently falls back to a default would
produce a plausible but wrong experiment. Bounds and choices are declared on the fields.

The models are :class:`~edge_mcepl.validation.StrictModel` s: immutable, and ``config.replace(...)``
gives a re-validated copy. This module imports neither torch nor any module that does, so a
coordinator, a report script or a test can read configs without loading the training stack.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .algorithms.registry import RULE_NAMES
from .errors import UserError
from .validation import AgentId, StrictModel, read_yaml, set_dotted, validate
from .wire.masks import MASK_CODECS

ALGORITHMS: tuple[str, ...] = RULE_NAMES  # each rule reads its own knobs from the algorithm section

PRESETS: dict[str, dict[str, Any]] = {
    # The authors' reference code: no group lasso, no filter drop, ELU on logits.
    "reference": {},
    # Structured sparsity for export: the filter-drop rule (docs/algorithm.md#filter-drop). Group lasso
    # (docs/algorithm.md#group-lasso) is off:
    # at λ = 1e-3 it cost 15–21 accuracy points on AlexNet-CIFAR while the filter drop alone removed
    # more filters within 0.4 points (docs/export.md).
    "structured": {"group_lasso": 0.0, "min_kept_per_filter": 20},
}
# How the fixed weights ``w`` are drawn (nn/weights.py, docs/algorithm.md#fixed-weight-distribution): PyTorch's
# default uniform(±1/√fan_in), the paper's; or a signed constant ±σ with that uniform's per-layer standard
# deviation σ = bound/√3 and the sign of the same draw (Ramanujan et al. 2020: signed constants make better
# supermasks).
WEIGHT_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "signed-constant")
# Path fields in a YAML file are relative to that file, so example configs work from any cwd.
PATH_FIELDS = ("data.data_dir", "data.classes_file", "data.train_counts_file", "data.test_counts_file", "topology.file")
DEVICE_PATTERN = r"cpu|cuda(:\d+)?"  # where the simulator computes; edge_mcepl/nn/device.py resolves it

Ratio = Annotated[float, Field(gt=0, le=1)]
Ratios = Ratio | Annotated[list[Ratio], Field(min_length=1)]  # one for all agents, or round-robin


class DataConfig(StrictModel):
    dataset: Literal["cifar10", "mnist", "synthetic"] = "synthetic"
    data_dir: str | None = None  # None: $EDGE_MCEPL_DATA, ./data, ../shared/data are searched
    # True: without the real dataset, run on synthetic data (data/resolve.py says so in a NOTE and keeps
    # the partition; a simulator run's saved config records dataset: synthetic).
    fallback_to_synthetic: bool = False
    partition: Literal["paper", "classes", "dirichlet"] = "classes"
    classes_per_agent: int = Field(4, ge=1, le=1000)
    dirichlet_alpha: float = Field(0.5, ge=1e-6, le=1e6)
    classes_file: str | None = None
    train_counts_file: str | None = None
    test_counts_file: str | None = None
    data_fraction: float = Field(0.2, gt=0, le=1)  # the paper partition's share of each shard
    # the classes / dirichlet partitions' share of each agent's images of each class (0.2: the paper's data volume)
    shard_fraction: float = Field(1.0, gt=0, le=1)
    # Each agent's share of its training shard held out for validation (seeded; never trained on): what
    # presets, hyperparameters and stopping rounds are chosen on, so the test set is only ever reported.
    validation_fraction: float = Field(0.0, ge=0, le=0.5)
    synthetic_train_per_class: int = Field(300, ge=1, le=1_000_000)
    synthetic_test_per_class: int = Field(100, ge=1, le=1_000_000)
    synthetic_noise: float = Field(0.6, ge=0, le=100)

    @field_validator("data_fraction")
    @classmethod
    def _fraction_needs_paper(cls, fraction: float, info: ValidationInfo) -> float:
        """Only the paper partition takes a share of its shards: with another one a fraction would be ignored."""
        partition = info.data.get("partition", "paper")  # absent: the partition itself was refused
        if partition != "paper" and fraction != cls.model_fields["data_fraction"].default:
            raise ValueError(f"{fraction:g} applies to partition 'paper' only, not {partition!r}; remove it")
        return fraction

    @field_validator("shard_fraction")
    @classmethod
    def _shard_fraction_not_paper(cls, fraction: float, info: ValidationInfo) -> float:
        """The paper partition has its own share (data_fraction, a prefix of the reference blocks)."""
        if info.data.get("partition", "paper") == "paper" and fraction != 1.0:
            raise ValueError(f"{fraction:g} applies to partitions 'classes' and 'dirichlet'; the paper partition "
                             "takes data_fraction")
        return fraction

    @model_validator(mode="after")
    def _paper_files(self) -> DataConfig:
        if self.partition == "paper" and not (self.classes_file and self.train_counts_file):
            raise ValueError("partition 'paper' needs classes_file and train_counts_file (the reference shard files)")
        return self


class TopologyConfig(StrictModel):
    kind: Literal["complete", "ring", "erdos-renyi", "k-regular", "file"] = "complete"
    p: float = Field(0.5, ge=0, le=1)
    k: int = Field(2, ge=1, le=10_000)
    file: str | None = None

    @model_validator(mode="after")
    def _file_given(self) -> TopologyConfig:
        if self.kind == "file" and not self.file:
            raise ValueError("kind 'file' needs file (an adjacency matrix)")
        return self


class RetentionConfig(StrictModel):
    """What each agent keeps. A list is assigned round-robin: agent i gets ``list[i % len]``.

    ``width``: the share of filters (ordered width, docs/algorithm.md#width; 1 = every filter, the
    paper's setting); ``conv`` / ``linear``: the fraction of weights kept inside those filters.
    """

    conv: Ratios = 0.3
    linear: Ratios = 0.9
    width: Ratios = 1.0

    def for_agent(self, agent_id: int) -> tuple[float, float]:
        """(conv, linear) retention ratios of agent ``agent_id``."""
        return _pick(self.conv, agent_id), _pick(self.linear, agent_id)

    def width_for(self, agent_id: int) -> float:
        return _pick(self.width, agent_id)


def _pick(value: float | list[float], agent_id: int) -> float:
    """A round-robin list's entry for ``agent_id``, or the single value everyone gets."""
    return value[agent_id % len(value)] if isinstance(value, list) else value


class AlgorithmConfig(StrictModel):
    """The learning rule and its knobs; defaults are the reference code's (the ``reference`` preset)."""

    lr: float = Field(10.0, ge=0, le=1e9)  # η, SGD on scores
    weight_decay: float = Field(5e-4, ge=0, le=1e3)
    momentum: float = Field(0.0, ge=0, lt=1)  # heavy-ball momentum on the score step; 0 = the reference's SGD
    # every step size over the run — lr and consensus_lr, or a baseline's weight_lr (cosine: to 0 at the end)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    consensus_lr: float = Field(10.0, ge=0, le=1e9)  # η₂; 0 = no consensus step
    batch_size: int = Field(128, ge=1, le=1_000_000)
    local_steps: int = Field(1, ge=1, le=100_000)
    # every rule's local-step batches: "crop-flip" = random 32×32 crop of the 4-pixel zero-padded image and a
    # horizontal flip (data/augment.py; CIFAR-style images — a flipped digit is another digit)
    augment: Literal["none", "crop-flip"] = "none"
    round0_prior: Literal["bernoulli", "zeros"] = "bernoulli"
    elu_logits: bool = True
    group_lasso: float = Field(0.0, ge=0, le=1e3)
    min_kept_per_filter: Annotated[int, Field(ge=0, le=1_000_000_000)] | None = None
    aggregation_tensor: bool = True
    # γ in |y| = |z| + γ·mean|z|·m̄ (docs/algorithm.md#aggregation-tensor): 1 is the paper's; 0 = no aggregation tensor
    aggregation_amplitude: float = Field(1.0, ge=0, le=1e6)
    # packbits (1 bit/weight), rice (wire/rice.py) or delta (what changed since the last round, wire/delta.py)
    mask_codec: Literal[tuple(MASK_CODECS)] = "delta"  # type: ignore[valid-type]
    keyframe_every: int = Field(100, ge=1, le=1_000_000)  # delta codec: a stand-alone message every N rounds
    # m̄ over every neighbour heard ("none"), or only those whose mask overlaps this agent's more than two
    # independent masks of their densities would ("overlap": drops anti-correlated, Byzantine masks).
    robust_aggregation: Literal["none", "overlap"] = "none"
    # m̄ as the plain mean of the masks heard ("uniform", the paper's) or weighted by each mask's overlap with
    # this agent's beyond chance ("overlap": neighbours with similar masks count more; docs/algorithm.md)
    neighbour_weighting: Literal["uniform", "overlap"] = "uniform"
    preset: Literal[tuple(PRESETS)] = "reference"  # type: ignore[valid-type]
    # Which rule the agents run (issue 5 baselines): see edge_mcepl/algorithms/. The knobs below
    # are read only by the weight-based baselines (dsgd, weight_training, dispfl).
    name: Literal[ALGORITHMS] = "mcepl"  # type: ignore[valid-type]
    weight_lr: float = Field(0.05, ge=0, le=1e9)
    mixing: Literal["metropolis", "uniform"] = "metropolis"
    prune: bool = False


class AttackConfig(StrictModel):
    """Byzantine agents, for robustness experiments (docs/security.md#byzantine-agents): each listed agent
    trains honestly but sends, with a valid signature and its declared kept count, the weights it ranks
    lowest instead of its mask."""

    agents: list[AgentId] = []
    kind: Literal["inverted_masks"] = "inverted_masks"


class LabConfig(StrictModel):
    name: str = "lab"
    seed: int = Field(1234, ge=0, le=2**63 - 1)
    agents: int = Field(8, ge=1, le=10_000)
    rounds: int = Field(50, ge=0, le=10_000_000)
    eval_every: int = Field(10, ge=1, le=10_000_000)
    model: str = "small-cnn"
    # the fixed weights' distribution (nn/weights.py): the paper's uniform, or signed constants of its std
    weights: Literal[tuple(WEIGHT_DISTRIBUTIONS)] = "uniform"  # type: ignore[valid-type]
    threads: int = Field(2, ge=1, le=1024)
    device: str = "cpu"  # or "cuda" / "cuda:N": where the simulator computes (nn/device.py)
    per_agent_scores: bool = False
    data: DataConfig = Field(default_factory=DataConfig)
    topology: TopologyConfig = Field(default_factory=TopologyConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)

    @model_validator(mode="after")
    def _attackers_exist(self) -> LabConfig:
        outside = [i for i in self.attack.agents if i >= self.agents]
        if outside:
            raise ValueError(f"attack.agents {outside}: the lab has agents 0..{self.agents - 1}")
        if self.attack.agents and self.algorithm.name != "mcepl":
            raise ValueError(f"attack.kind {self.attack.kind}: an attack on mask messages needs algorithm.name mcepl, "
                             f"not {self.algorithm.name}")
        return self

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, device):
            raise ValueError(f"{device!r} is not 'cpu', 'cuda' or 'cuda:N'")
        return device

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what ``config.yaml`` holds); :func:`config_from_dict` reads it back."""
        return self.model_dump()


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> LabConfig:
    """Read a YAML lab config, apply dotted-key ``overrides`` (CLI options), validate."""
    path = Path(path)
    raw = read_yaml(path, "config") or {}
    if isinstance(raw, dict):
        raw = _resolve_paths(raw, path.parent)
    return config_from_dict(raw, str(path), overrides)


def config_from_dict(raw: Any, source: str = "config", overrides: dict[str, Any] | None = None) -> LabConfig:
    """Validate a plain mapping (already path-resolved) into a :class:`LabConfig`; ``raw`` is not modified."""
    if isinstance(raw, dict):
        given = {dotted: value for dotted, value in (overrides or {}).items() if value is not None}  # CLI: None = unset
        raw = _with_preset(set_all(raw, given, source))  # after the overrides, so --preset brings its values too
    return validate(LabConfig, raw, source)


def set_all(raw: dict[str, Any], values: dict[str, Any], source: str) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted key of ``values`` set (None too); a one-line error names ``source``."""
    try:
        for dotted, value in values.items():
            raw = set_dotted(raw, dotted, value)
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from None
    return raw


def _with_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """The preset's values under the algorithm section's own (a bad preset is left for validation to name)."""
    algorithm = raw.get("algorithm", {})
    preset = algorithm.get("preset", "reference") if isinstance(algorithm, dict) else None
    if not isinstance(preset, str) or preset not in PRESETS:
        return raw
    return {**raw, "algorithm": {**PRESETS[preset], **algorithm}}


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    for dotted in PATH_FIELDS:
        section, key = dotted.split(".")
        sub = raw.get(section)
        if isinstance(sub, dict) and isinstance(sub.get(key), str):
            raw = set_dotted(raw, dotted, str((base / Path(sub[key]).expanduser()).resolve()))
    return raw
