"""Lab config: strict validation with file + dotted field in the message, presets, paths, retention lists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_mcepl.algorithms.mcepl import MCEPLParams
from edge_mcepl.algorithms.params import params_from
from edge_mcepl.config import config_from_dict, load_config
from edge_mcepl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name="lab.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, field",
    [
        ("agents: 4\nroundz: 3\n", "roundz"),
        ("algorithm:\n  lr: 1.0\n  learning_rate: 2.0\n", "algorithm.learning_rate"),
        ("data:\n  synthetic_noise: 0.5\n  noize: 1\n", "data.noize"),
        ("agents: four\n", "agents"),
        ("agents: 2.5\n", "agents"),
        ("per_agent_scores: 1\n", "per_agent_scores"),
        ("algorithm:\n  lr: fast\n", "algorithm.lr"),
        ("retention:\n  conv: [0.3, high]\n", "retention.conv"),
        ("retention:\n  conv: []\n", "retention.conv"),
        ("topology:\n  p: 1.5\n", "topology.p"),
        ("agents: 0\n", "agents"),
        ("retention:\n  conv: [0.3, 1.2]\n", "retention.conv"),
        ("algorithm:\n  batch_size: 0\n", "algorithm.batch_size"),
        ("topology:\n  kind: star\n", "topology.kind"),
        ("data:\n  dataset: imagenet\n", "data.dataset"),
        ("algorithm:\n  preset: fancy\n", "algorithm.preset"),
        ("algorithm:\n  round0_prior: ones\n", "algorithm.round0_prior"),
        ("data: 3\n", "data"),
    ],
)
def test_invalid_value_names_file_and_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert field in message
    assert "\n" not in message


def test_missing_file_and_invalid_yaml_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    path = write(tmp_path, "agents: [1, 2\n")
    with pytest.raises(UserError, match="lab.yaml"):
        load_config(path)


def test_valid_values_are_kept(tmp_path):
    config = load_config(write(tmp_path, "agents: 3\nalgorithm:\n  lr: 2\n  batch_size: 16\ntopology:\n  kind: ring\n"))
    assert (config.agents, config.algorithm.lr, config.algorithm.batch_size, config.topology.kind) == (
        3, 2.0, 16, "ring")
    assert isinstance(config.algorithm.lr, float)
    params = params_from(MCEPLParams, config.algorithm)
    assert params.lr == 2.0 and params.batch_size == 16


def test_reference_preset_is_the_default(tmp_path):
    config = load_config(write(tmp_path, "agents: 2\n"))
    assert config.algorithm.preset == "reference"
    assert config.algorithm.group_lasso == 0.0 and config.algorithm.min_kept_per_filter is None


def test_structured_preset_sets_group_lasso_and_filter_drop(tmp_path):
    config = load_config(write(tmp_path, "algorithm:\n  preset: structured\n"))
    assert config.algorithm.group_lasso == 0.0
    assert config.algorithm.min_kept_per_filter == 20
    params = params_from(MCEPLParams, config.algorithm)
    assert params.group_lasso == 0.0 and params.min_kept_per_filter == 20


def test_explicit_keys_override_the_preset(tmp_path):
    config = load_config(write(tmp_path, "algorithm:\n  preset: structured\n  group_lasso: 0.002\n"
                                         "  min_kept_per_filter: 3\n"))
    assert config.algorithm.group_lasso == 0.002 and config.algorithm.min_kept_per_filter == 3


def test_preset_given_as_override_applies_its_values(tmp_path):
    # What `edge-mcepl simulate lab.yaml --preset structured` does: the preset arrives as an override.
    config = load_config(write(tmp_path, "agents: 2\n"), {"algorithm.preset": "structured"})
    assert config.algorithm.preset == "structured"
    assert config.algorithm.group_lasso == 0.0 and config.algorithm.min_kept_per_filter == 20


def test_cli_overrides_are_validated_too(tmp_path):
    path = write(tmp_path, "agents: 2\n")
    assert load_config(path, {"rounds": 7, "seed": None}).rounds == 7
    with pytest.raises(UserError, match="agents"):
        load_config(path, {"agents": 0})


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path, monkeypatch):
    path = write(tmp_path / "configs" / "lab", "topology:\n  kind: file\n  file: ../graphs/adj.txt\n"
                 "data:\n  data_dir: data\n", name="lab.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert Path(config.topology.file) == (tmp_path / "configs" / "graphs" / "adj.txt").resolve()
    assert Path(config.data.data_dir) == (tmp_path / "configs" / "lab" / "data").resolve()
    absolute = write(tmp_path, f"topology:\n  kind: file\n  file: {tmp_path / 'a.txt'}\n", "abs.yaml")
    assert Path(load_config(absolute).topology.file) == (tmp_path / "a.txt").resolve()


def test_retention_lists_are_round_robin(tmp_path):
    config = load_config(write(tmp_path, "agents: 7\nretention:\n  conv: [0.2, 0.35, 0.5]\n  linear: 0.8\n"))
    assert [config.retention.for_agent(i) for i in range(7)] == [
        (0.2, 0.8), (0.35, 0.8), (0.5, 0.8), (0.2, 0.8), (0.35, 0.8), (0.5, 0.8), (0.2, 0.8)]
    config = load_config(write(tmp_path, "retention:\n  conv: 0.4\n  linear: [1, 0.6]\n", "b.yaml"))
    assert [config.retention.for_agent(i) for i in range(3)] == [(0.4, 1.0), (0.4, 0.6), (0.4, 1.0)]


def test_int_float_and_bool_fields_are_strict(tmp_path):
    refused = ("agents: 2.5\n", "agents: four\n", "agents: true\n", "per_agent_scores: 1\n", "algorithm:\n  lr: '2'\n")
    for text in refused:
        with pytest.raises(UserError):
            load_config(write(tmp_path, text))
    config = load_config(write(tmp_path, "algorithm:\n  weight_decay: 0\n  lr: 3\n"))
    assert isinstance(config.algorithm.weight_decay, float) and isinstance(config.algorithm.lr, float)


def test_bounds_and_unknown_keys_are_worded_from_the_fields(tmp_path):
    path = write(tmp_path, "topology:\n  p: 1.5\n")
    with pytest.raises(UserError, match=r"topology\.p: 1\.5 is outside \[0, 1\]$"):
        load_config(path)
    known = r"\(known: aggregation_amplitude, aggregation_tensor, "
    with pytest.raises(UserError, match=r"unknown key 'algorithm\.learning_rate' " + known):
        load_config(write(tmp_path, "algorithm:\n  learning_rate: 2.0\n"))


def test_configs_are_frozen_and_replace_revalidates():
    config = config_from_dict({})
    with pytest.raises(ValidationError):
        config.agents = 3
    smaller = config.replace(algorithm=config.algorithm.replace(batch_size=16))
    assert (smaller.algorithm.batch_size, config.algorithm.batch_size) == (16, 128)
    with pytest.raises(ValidationError):
        config.replace(agents=0)


def test_to_dict_round_trips():
    config = config_from_dict({"agents": 3, "retention": {"conv": [0.2, 0.5]}, "algorithm": {"preset": "structured"}})
    assert config_from_dict(config.to_dict()) == config


def test_params_are_the_rule_knobs_of_the_algorithm_section():
    config = config_from_dict({"algorithm": {"lr": 2, "mask_codec": "rice", "weight_lr": 0.2}})
    params = params_from(MCEPLParams, config.algorithm)
    assert (params.lr, params.mask_codec) == (2.0, "rice")
    assert not hasattr(params, "weight_lr")


def test_importing_the_config_does_not_import_torch():
    code = "import sys, edge_mcepl.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False"


def test_data_fraction_is_refused_outside_the_paper_partition(tmp_path):
    with pytest.raises(UserError) as err:
        load_config(write(tmp_path, "data:\n  partition: classes\n  data_fraction: 0.5\n"))
    assert "data.data_fraction: 0.5 applies to partition 'paper' only" in str(err.value)
    assert "\n" not in str(err.value)
    # its default, as every saved config.yaml holds it, is fine with any partition
    config = load_config(write(tmp_path, "data:\n  partition: dirichlet\n  data_fraction: 0.2\n"))
    assert config.data.partition == "dirichlet"


def test_paper_partition_is_accepted_for_any_dataset(tmp_path):
    files = "  classes_file: c.txt\n  train_counts_file: t.txt\n"
    for dataset in ("cifar10", "mnist", "synthetic"):
        config = load_config(write(tmp_path, f"data:\n  dataset: {dataset}\n  partition: paper\n{files}"))
        assert (config.data.dataset, config.data.partition) == (dataset, "paper")
    with pytest.raises(UserError, match="partition 'paper' needs classes_file and train_counts_file"):
        load_config(write(tmp_path, "data:\n  dataset: mnist\n  partition: paper\n"))
