"""The README's "Lab config (YAML)" block shows every key with its true default, so it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from edge_mcepl.config import LabConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def _flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = (type(value).__name__, value)  # 10 and 10.0, 1 and true differ here
    return out


def test_readme_lab_config_block_shows_every_default():
    section = README.read_text().split("### Lab config (YAML)", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block, "no yaml block under 'Lab config (YAML)'"
    shown, defaults = _flat(yaml.safe_load(block.group(1))), _flat(LabConfig().to_dict())
    assert sorted(set(defaults) - set(shown)) == [], "keys missing from the README block"
    assert sorted(set(shown) - set(defaults)) == [], "README keys that LabConfig does not have"
    wrong = {key: (shown[key], defaults[key]) for key in defaults if shown[key] != defaults[key]}
    assert wrong == {}, "README value vs LabConfig() default"
