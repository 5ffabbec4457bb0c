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
    WIDTHS,
    budget_macs,
    bundled_profiles,
    load_profile,
    policy_structure,
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


def test_policy_widths_of_the_bundled_profiles_for_the_paper_model():
    got = {name: policy_structure(load_profile(name), "alexnet-cifar").width for name in bundled_profiles()}
    assert got == {"rpi4": 0.5, "rpi5": 0.5625, "jetson-orin-nano": 0.625, "laptop": 0.9375, "gpu-workstation": 1.0}


@pytest.mark.parametrize("model", ["alexnet-cifar", "small-cnn"])
def test_every_bundled_profile_exports_within_its_budgets(model):
    """The hard check: the exported model's MACs and parameters (the exporter's count) fit the budgets."""
    for name in bundled_profiles():
        d = policy_structure(load_profile(name), model)
        assert d.exported_macs <= d.budget_macs and d.exported_params <= d.budget_params, (name, d)


def test_policy_formula():
    def decide(**hardware_budget):
        raw = yaml.safe_load(VALID)
        for key, value in hardware_budget.items():
            section, field = key.split("__")
            raw[section][field] = value
        return policy_structure(profile_from_dict(raw), "alexnet-cifar")

    # latency-bound: 9 GFLOP/s · 0.3 · 10 ms / 2 = 13.5 M MACs; width 0.5 exports 13.08 M, 0.5625 more
    d = decide()
    assert d.budget_macs == 13_500_000 and d.width == 0.5 and d.exported_macs == 13_084_992
    assert "latency-bound" in d.detail
    # more compute never narrows the model; a big enough budget keeps every filter
    widths = [decide(hardware__gflops=g).width for g in (0.01, 2, 9, 20, 40, 1000)]
    assert widths == sorted(widths) and widths[0] == WIDTHS[0] and widths[-1] == 1.0
    assert "no width meets the budgets" in decide(hardware__gflops=0.01).detail
    assert "full width" in decide(hardware__gflops=1000).detail
    # memory-bound: 1 MB holds 262,144 fp32 parameters; width 0.875 exports fewer, 0.9375 more
    m = decide(hardware__gflops=1000.0, budget__model_memory_mb=1.0)
    assert "memory-bound" in m.detail and m.exported_params <= 262_144 < policy_structure(
        profile_from_dict(yaml.safe_load(VALID.replace("gflops: 9.0", "gflops: 1000.0"))), "alexnet-cifar"
    ).exported_params
    raw = yaml.safe_load(VALID)
    raw["retention_ratio"] = 0.37
    explicit = policy_structure(profile_from_dict(raw), "alexnet-cifar")
    assert (explicit.retention, explicit.width, explicit.source) == (0.37, 1.0, "profile")
    assert budget_macs(profile_from_dict(raw)) == 13_500_000


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
    assert policy_structure(profile, "small-cnn").width in WIDTHS
    # refuses to overwrite; stdout mode prints the same schema
    assert main(["profile", "detect", "--out", str(out), "--seconds", "0.1"]) == 2
    capsys.readouterr()
    assert main(["profile", "detect", "--seconds", "0.1"]) == 0
    assert profile_from_dict(yaml.safe_load(capsys.readouterr().out), "stdout").cores == profile.cores
