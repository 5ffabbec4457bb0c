"""What every learning rule is configured with: shared knobs, retention ratios, and how to read them.

Each rule declares its own frozen params dataclass (a subclass of :class:`RuleParams`) with only
the knobs it reads, so DSGD never receives MCE-PL's consensus step size and a reader sees at a
glance what a rule depends on. The lab config's ``algorithm`` section is one flat mapping (what
users write); :func:`params_from` picks a rule's fields out of it by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..nn.layers import LayerKind


@dataclass(frozen=True)
class RuleParams:
    """Knobs every rule reads: the local optimisation loop and the network head."""

    weight_decay: float = 5e-4
    batch_size: int = 128
    local_steps: int = 1
    elu_logits: bool = True  # the reference applies ELU to the logits
    augment: str = "none"  # the local steps' batch augmentation (data/augment.py): "none" or "crop-flip"
    lr_schedule: str = "constant"  # every step size over the run (schedule.py): "constant" or "cosine"


class _HasKind(Protocol):
    @property
    def kind(self) -> LayerKind: ...


@dataclass(frozen=True)
class Retention:
    """What one agent keeps: the share of filters (``width``) and, inside them, of weights per layer kind.

    ``width`` < 1 is ordered width (docs/algorithm.md#width): the agent holds, trains, sends and
    exports only the leading ⌈width·C⌉ filters of each layer; ``conv`` / ``linear`` are the
    fraction of weights kept *inside* that block (with width 1, the paper's unstructured ratios).
    """

    conv: float = 0.3
    linear: float = 0.9
    width: float = 1.0

    def for_layer(self, layer: _HasKind) -> float:
        return self.conv if layer.kind == "conv" else self.linear


P = TypeVar("P", bound=RuleParams)


def params_from(cls: type[P], section: Any) -> P:
    """``cls`` filled from the same-named attributes of ``section`` (the config's algorithm section)."""
    return cls(**{f.name: getattr(section, f.name) for f in dataclasses.fields(cls) if hasattr(section, f.name)})
