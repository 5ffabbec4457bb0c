"""The table of learning rules: config name → rule class. One entry per rule, nothing else names them.

Entries are ``"module:Class"`` paths imported on first use — like Flower's ``module:attr`` app
references — because the lab config validates ``algorithm.name`` against this table and must
stay importable without torch (a device running only ``infer`` never loads a rule). What a rule
*is* (mask-learning, message-exchanging) is declared on its class, not here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import LearningRule

RULES: dict[str, str] = {
    "mcepl": "edge_mcepl.algorithms.mcepl:MCEPL",
    "local_only": "edge_mcepl.algorithms.local_only:LocalOnly",
    "dsgd": "edge_mcepl.algorithms.dsgd:DSGD",
    "weight_training": "edge_mcepl.algorithms.weight_training:WeightTraining",
    "dispfl": "edge_mcepl.algorithms.dispfl:DisPFL",
    "mask_averaging": "edge_mcepl.algorithms.mask_averaging:MaskAveraging",
    "learned_filters": "edge_mcepl.algorithms.filter_selection:LearnedFilters",
    "heterofl": "edge_mcepl.algorithms.heterofl:HeteroFL",
}
RULE_NAMES: tuple[str, ...] = tuple(RULES)


def rule_class(name: str) -> type[LearningRule[Any, Any]]:
    """The class registered as ``name`` (config validation keeps unknown names from getting here)."""
    module, _, attr = RULES[name].partition(":")
    cls: type[LearningRule[Any, Any]] = getattr(importlib.import_module(module), attr)
    return cls
