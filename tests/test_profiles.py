"""Device profiles: strict schema, bundled files, the retention policy, and `profile detect`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import psutil
import pytest
import yaml

from edge_mcepl.cli import main
from edge_mcepl.errors import UserError
from edge_mcepl.profiles import (
    BUNDLED_DIR,
    R_MAX,
    R_MIN,
    bundled_profiles,
    load_profile,
    model_cost,
    policy_retention,
    profile_from_dict,
    resolve_profile_path,
)

ROOT = Path(__file__).resolve().parents[1]
VALID = textwrap.dedent("""\
    name: test-device
    description: a test device
    hardware:
      cores: 4
      memory_mb: 4096
      gflops: 9.0
      uplink_mbps: 40.0
    budget:
      inference_latency_ms: 10.0
      model_memory_mb: 64.0
    training:
      threads: 2
      batch_size: null
    retention_ratio: auto
    """)


def write_profile(tmp_path, text: str) -> Path:
    path = tmp_path / "device.yaml"
    path.write_text(text)
    return path


def test_bundled_profiles_ship_with_the_package_and_validate():
    names = bundled_profiles()
    assert {"rpi4", "rpi5", "jetson-orin-nano", "laptop", "gpu-workstation"} <= set(names)
    assert BUNDLED_DIR.parent.name == "edge_mcepl"  # package data, so a wheel install has them too
    top = ROOT / "device_profiles"  # the repository's top-level folder shows the same files
    assert sorted(p.stem for p in top.glob("*.yaml")) == names
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "device_profiles/*.yaml" in pyproject


@pytest.mark.parametrize("spec", ["rpi4", "rpi4.yaml"])
def test_bare_names_resolve_to_bundled_profiles(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not found relative to the working directory
    assert resolve_profile_path(spec) == BUNDLED_DIR / "rpi4.yaml"


def test_a_local_file_wins_over_a_bundled_name_and_unknown_names_list_the_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rpi4.yaml").write_text(VALID)
    assert load_profile("rpi4.yaml").name == "test-device"
    with pytest.raises(UserError, match="not a bundled profile .*rpi5"):
        load_profile("rpi9")


def test_policy_values_of_the_bundled_profiles_for_the_paper_model():
    got = {name: policy_retention(load_profile(name), "alexnet-cifar").retention for name in bundled_profiles()}
    assert got == {"rpi4": 0.3, "rpi5": 0.4, "jetson-orin-nano": 0.45, "laptop": 0.5, "gpu-workstation": 0.5}


def test_policy_formula(tmp_path):
    base = yaml.safe_load(VALID)
    cost = model_cost("alexnet-cifar")
    assert cost.conv_macs == 41_184_000 and cost.conv_weights == 1_028_800  # + fc: 41.4 M MACs

    def r(**hardware_budget):
        raw = yaml.safe_load(VALID)
        for key, value in hardware_budget.items():
            section, field = key.split("__")
            raw[section][field] = value
        return policy_retention(profile_from_dict(raw), "alexnet-cifar").retention

    # latency-bound: gflops·1e9·0.3·0.010 = 27 MFLOP → (27e6 − 2·198528·0.9) / (2·41184000) = 0.3234 → 0.30
    assert r() == 0.3
    # more compute (or a looser budget) never lowers the retention; tight budgets hit the floor
    values = [r(hardware__gflops=g) for g in (0.5, 2, 9, 20, 40, 1000)]
    assert values == sorted(values) and values[0] == R_MIN and values[-1] == R_MAX
    # memory-bound: 2 MB for ≈ 1.03 M conv weights in fp32 → (2·2^20 − 4·198528·0.9) / (4·1028800) = 0.336 → 0.3
    assert r(hardware__gflops=1000.0, budget__model_memory_mb=2.0) == 0.3
    base["retention_ratio"] = 0.37
    explicit = policy_retention(profile_from_dict(base), "alexnet-cifar")
    assert (explicit.retention, explicit.source) == (0.37, "profile")


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + "colour: red\n", "unknown key 'colour'"),
    (lambda t: t.replace("  cores: 4", "  cores: 4\n  cpus: 4"), "unknown key 'hardware.cpus'"),
    (lambda t: t.replace("cores: 4", "cores: 4.0"), "hardware.cores: expected an int, got 4.0"),
    (lambda t: t.replace("cores: 4", "cores: true"), "hardware.cores: expected an int, got True"),
    (lambda t: t.replace("gflops: 9.0", "gflops: fast"), "hardware.gflops: expected a number, got 'fast'"),
    (lambda t: t.replace("threads: 2", "threads: '2'"), "training.threads: expected an int or null"),
    (lambda t: t.replace("retention_ratio: auto", "retention_ratio: 1.5"), "retention_ratio: 1.5 is outside"),
    (lambda t: t.replace("retention_ratio: auto", "retention_ratio: automatic"), "retention_ratio: expected 'auto'"),
    (lambda t: t.replace("cores: 4", "cores: 0"), "hardware.cores: 0 is outside [1, 1024]"),
    (lambda t: t.replace("inference_latency_ms: 10.0", "inference_latency_ms: -1"),
     "budget.inference_latency_ms: -1.0 is outside"),
    (lambda t: t.replace("  uplink_mbps: 40.0\n", ""), "missing key 'hardware.uplink_mbps'"),
    (lambda t: t.replace("name: test-device", "name: my device!"), "name: expected a name"),
    (lambda t: t.replace("training:\n  threads: 2\n  batch_size: null\n", "training: 4\n"),
     "training: expected a mapping, got 4"),
    (lambda t: "- just\n- a list\n", "must be a mapping"),
    (lambda t: t + "budget: [\n", "invalid YAML"),
])
def test_validation_errors_are_one_line_naming_file_and_field(tmp_path, edit, message):
    path = write_profile(tmp_path, edit(VALID))
    with pytest.raises(UserError) as err:
        load_profile(str(path))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(str(path)), text
    assert message in text, text


def test_profile_show_cli_error_is_one_line_exit_2(tmp_path, capsys):
    path = write_profile(tmp_path, VALID.replace("cores: 4", "cores: many"))
    assert main(["profile", "show", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hardware.cores" in err[0] and str(path) in err[0]


def test_profile_detect_writes_a_profile_that_validates(tmp_path, capsys):
    out = tmp_path / "me.yaml"
    assert main(["profile", "detect", "--out", str(out), "--seconds", "0.1", "--name", "ci-box"]) == 0
    profile = load_profile(str(out))
    assert profile.name == "ci-box"
    assert profile.cores == (psutil.cpu_count(logical=False) or psutil.cpu_count())
    assert abs(profile.memory_mb - psutil.virtual_memory().total / 2**20) < 2
    assert profile.gflops > 0 and profile.retention_ratio == "auto"
    assert 0.05 <= policy_retention(profile, "small-cnn").retention <= 0.5
    # refuses to overwrite; stdout mode prints the same schema
    assert main(["profile", "detect", "--out", str(out), "--seconds", "0.1"]) == 2
    capsys.readouterr()
    assert main(["profile", "detect", "--seconds", "0.1"]) == 0
    assert profile_from_dict(yaml.safe_load(capsys.readouterr().out), "stdout").cores == profile.cores
