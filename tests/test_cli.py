"""`edge-mcepl simulate`: writes a complete run directory; user mistakes are one line and exit 2."""

from __future__ import annotations

import json

from edge_mcepl.cli import main

TINY = """\
name: cli-test
seed: 3
agents: 3
rounds: 2
eval_every: 1
model: small-cnn
threads: 1
data:
  dataset: synthetic
  synthetic_train_per_class: 8
  synthetic_test_per_class: 3
  classes_per_agent: 2
topology:
  kind: complete
algorithm:
  batch_size: 8
"""


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_simulate_writes_the_run_directory(tmp_path, capsys):
    config = tmp_path / "lab.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    assert main(["simulate", str(config), "--out", str(out), "--no-progress"]) == 0
    assert "cli-test" in capsys.readouterr().out
    for name in ("config.yaml", "metrics.jsonl", "final/state.json", "summary.txt"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    masks = sorted(p.name for p in (out / "final" / "masks").glob("*.mcpl"))
    assert masks == ["agent_000.mcpl", "agent_001.mcpl", "agent_002.mcpl"]
    state = json.loads((out / "final" / "state.json").read_text())
    assert state["rounds"] == 2 and state["model"] == "small-cnn" and len(state["agents"]) == 3
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3
    assert "mean personalized accuracy" in (out / "summary.txt").read_text()
    assert not list(out.rglob("*.tmp")), "no temporary files are left behind"


def test_cli_options_override_the_config(tmp_path, capsys):
    config = tmp_path / "lab.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    assert main(["simulate", str(config), "--out", str(out), "--no-progress", "--rounds", "1", "--agents", "2"]) == 0
    state = json.loads((out / "final" / "state.json").read_text())
    assert state["rounds"] == 1 and len(state["agents"]) == 2


def test_unknown_key_is_one_line_and_exit_2(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(TINY + "  nesterov: true\n")
    out = tmp_path / "run"
    assert main(["simulate", str(config), "--out", str(out), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert str(config) in line and "nesterov" in line
    assert not out.exists()


def test_missing_config_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "does-not-exist.yaml"
    assert main(["simulate", str(missing), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert str(missing) in one_error_line(capsys)


def test_non_empty_out_dir_is_refused(tmp_path, capsys):
    config = tmp_path / "lab.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["simulate", str(config), "--out", str(out), "--no-progress"]) == 2
    assert "--out" in one_error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_missing_data_says_which_command_fetches_it(tmp_path, capsys):
    (tmp_path / "empty").mkdir()  # a folder that exists but holds no dataset (a missing folder is its own error)
    for dataset in ("cifar10", "mnist"):
        config = tmp_path / f"{dataset}.yaml"
        config.write_text(TINY.replace("dataset: synthetic", f"dataset: {dataset}"))
        argv = ["simulate", str(config), "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / dataset)]
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert f"{dataset} not found (looked in {tmp_path / 'empty'})" in line
        assert f"`edge-mcepl download {dataset}`" in line
