"""benchmarks/reproduce.py: every experiment's config of both presets is valid (nothing is run)."""

from __future__ import annotations

import pytest

from benchmarks.reproduction import configs, experiments
from edge_mcepl.config import config_from_dict


class Args:
    data_dir, threads, device, rounds, eval_every = None, 1, "cpu", None, None


def test_quick_experiments_are_unique_and_valid():
    exps = experiments.experiments("quick")
    assert len({e.key for e in exps}) == len(exps)
    raw, reduction = configs.base_config("quick", Args())
    assert "6 agents" in reduction
    names = {}
    for e in exps:
        config = config_from_dict(configs.with_overrides(raw, e.overrides))
        names[e.key] = config.algorithm.name
    assert names["mcepl-k4"] == "mcepl" and names["dsgd-k4"] == "dsgd" and names["local-only-k4"] == "local_only"
    assert names["dslth-weights-pruned"] == "weight_training"


@pytest.mark.skipif(not (experiments.REFERENCE / "adjacency_20.txt").exists(), reason="reference setting not present")
def test_full_experiments_follow_the_paper_setting():
    raw, _ = configs.base_config("full", Args())
    for e in experiments.experiments("full"):
        config = config_from_dict(configs.with_overrides(raw, e.overrides))
        assert (config.agents, config.rounds, config.topology.kind, config.data.partition) == (20, 400, "file", "paper")
        if e.key == "ablation-filter-drop":
            assert config.algorithm.min_kept_per_filter == 20 and config.algorithm.group_lasso == 0.0
        if e.key == "hetero-profiles":  # the archived unstructured mix, round-robin
            assert config.retention.conv == [r for _, r in experiments.UNSTRUCTURED_MIX]
        if e.key.startswith("structured-") or e.key == "heterofl-profiles":  # each profile's policy width
            mix = experiments.profile_mix()
            assert config.retention.width == [w for _, w in mix] and len({w for _, w in mix}) > 1
            assert [name for name, _ in mix] == list(experiments.PROFILE_MIX)
        if e.key == "mcepl-k4-rice":
            assert config.algorithm.mask_codec == "rice" and config.data.classes_file.endswith("_4.txt")
        if e.key in ("mcepl-k3", "mcepl-k4", "mcepl-k5"):
            assert config.data.classes_file.endswith(f"classes_per_agent_{e.key[-1]}.txt")
