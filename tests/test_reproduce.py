"""benchmarks/reproduce.py: every experiment's config is valid, and the report is computed from JSONL."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from edge_mcepl.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # spawned --jobs workers import the module by name
spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
reproduce = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = reproduce  # dataclasses look their module up
spec.loader.exec_module(reproduce)


class Args:
    data_dir, threads, device, rounds, eval_every = None, 1, "cpu", None, None


def tiny_raw(agents: int, rounds: int) -> dict:
    """A seconds-long synthetic lab for report tests."""
    return {"name": "t", "seed": 5, "agents": agents, "rounds": rounds, "eval_every": 2, "model": "small-cnn",
            "threads": 1, "topology": {"kind": "ring"}, "algorithm": {"batch_size": 8},
            "data": {"dataset": "synthetic", "synthetic_train_per_class": 12, "synthetic_test_per_class": 4,
                     "classes_per_agent": 3}}


def test_quick_experiments_are_unique_and_valid():
    exps = reproduce.experiments("quick")
    assert len({e.key for e in exps}) == len(exps)
    raw, reduction = reproduce.base_config("quick", Args())
    assert "6 agents" in reduction
    names = {}
    for e in exps:
        config = config_from_dict(reproduce.with_overrides(raw, e.overrides))
        names[e.key] = config.algorithm.name
    assert names["mcepl-k4"] == "mcepl" and names["dsgd-k4"] == "dsgd" and names["local-only-k4"] == "local_only"
    assert names["dslth-weights-pruned"] == "weight_training"


@pytest.mark.skipif(not (reproduce.REFERENCE / "adjacency_20.txt").exists(), reason="reference setting not present")
def test_full_experiments_follow_the_paper_setting():
    raw, _ = reproduce.base_config("full", Args())
    for e in reproduce.experiments("full"):
        config = config_from_dict(reproduce.with_overrides(raw, e.overrides))
        assert (config.agents, config.rounds, config.topology.kind, config.data.partition) == (20, 400, "file", "paper")
        if e.key == "ablation-filter-drop":
            assert config.algorithm.min_kept_per_filter == 20 and config.algorithm.group_lasso == 0.0
        if e.key == "hetero-profiles":  # each agent's ratio is its device profile's policy, round-robin
            mix = reproduce.profile_mix()
            assert config.retention.conv == [r for _, r in mix] and len({r for _, r in mix}) > 1
            assert [name for name, _ in mix] == list(reproduce.PROFILE_MIX)
        if e.key == "mcepl-k4-rice":
            assert config.algorithm.mask_codec == "rice" and config.data.classes_file.endswith("_4.txt")
        if e.key in ("mcepl-k3", "mcepl-k4", "mcepl-k5"):
            assert config.data.classes_file.endswith(f"classes_per_agent_{e.key[-1]}.txt")


def test_report_numbers_come_from_the_metrics(tmp_path):
    raw = tiny_raw(agents=4, rounds=4)
    exps = [reproduce.Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            reproduce.Experiment("dsgd-k4", "main-k4", "DSGD", {"algorithm.name": "dsgd"}),
            reproduce.Experiment("local-only-k4", "main-k4", "Local", {"algorithm.name": "local_only"})]
    out, docs = tmp_path / "runs", tmp_path / "docs"
    for e in exps:
        reproduce.run_experiment(e, raw, out / e.key, rerun=False)
    stamp = (out / "mcepl-k4" / "metrics.jsonl").stat().st_mtime_ns
    reproduce.run_experiment(exps[0], raw, out / "mcepl-k4", rerun=False)  # finished: reused, not rerun
    assert (out / "mcepl-k4" / "metrics.jsonl").stat().st_mtime_ns == stamp

    path = reproduce.write_report("quick", exps, out, docs, "python benchmarks/reproduce.py --quick", "tiny")
    text = path.read_text()
    rows = [json.loads(line) for line in (out / "dsgd-k4" / "metrics.jsonl").read_text().splitlines()]
    cumulative = sum(r["bytes_sent"] for r in rows)
    final = [r["accuracy"] for r in rows if r["round"] == 3]
    line = next(ln for ln in text.splitlines() if ln.startswith("| DSGD |"))
    assert f"{cumulative / 1e6:.1f}" in line and f"{100 * sum(final) / len(final):.2f} %" in line
    mcepl = next(ln for ln in text.splitlines() if ln.startswith("| MCE-PL |"))
    assert "×" in mcepl  # ratio to DSGD
    assert "Report: `python benchmarks/reproduce.py --quick`" in text and "Seed 5" in text
    local = [json.loads(line) for line in (out / "local-only-k4" / "metrics.jsonl").read_text().splitlines()]
    mcepl = [json.loads(line) for line in (out / "mcepl-k4" / "metrics.jsonl").read_text().splitlines()]
    gap = 100 * (sum(r["accuracy"] for r in local if r["round"] == 3) - sum(r["accuracy"] for r in mcepl
                                                                             if r["round"] == 3)) / 4
    assert f"- 4 classes, Local: {gap:+.2f} points vs MCE-PL at round 4" in text
    assert (docs / "results-quick-main-k4.png").stat().st_size > 1000


def test_runs_of_different_lengths_are_also_compared_at_the_common_round(tmp_path):
    raw = tiny_raw(agents=3, rounds=4)
    exps = [reproduce.Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            reproduce.Experiment("local-only-k4", "main-k4", "Local", {"algorithm.name": "local_only", "rounds": 2})]
    out = tmp_path / "runs"
    for e in exps:
        reproduce.run_experiment(e, raw, out / e.key, rerun=False)
    text = reproduce.write_report("quick", exps, out, tmp_path / "docs", "cmd", "tiny").read_text()
    assert "acc. @ round 2 |" in text
    rows = [json.loads(line) for line in (out / "mcepl-k4" / "metrics.jsonl").read_text().splitlines()]
    at2 = [r["accuracy"] for r in rows if r["round"] == 1]
    at4 = [r["accuracy"] for r in rows if r["round"] == 3]
    line = next(ln for ln in text.splitlines() if ln.startswith("| MCE-PL |"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[2] == "4" and cells[3].startswith(f"{100 * sum(at4) / 3:.2f} %")
    assert cells[4] == f"{100 * sum(at2) / 3:.2f} %"
    assert next(ln for ln in text.splitlines() if ln.startswith("| Local |")).split("|")[2].strip() == "2"


def test_parallel_jobs_give_the_same_runs_as_one_after_another(tmp_path):
    raw = tiny_raw(agents=3, rounds=2)
    exps = [reproduce.Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            reproduce.Experiment("dsgd-k4", "main-k4", "DSGD", {"algorithm.name": "dsgd"})]
    reproduce.run_all(exps, raw, tmp_path / "serial", rerun=False, command="c", jobs=1)
    reproduce.run_all(exps, raw, tmp_path / "parallel", rerun=False, command="c", jobs=2)

    def results(folder):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [(r["round"], r["agent"], r["loss"], r.get("accuracy"), r["bytes_sent"]) for r in rows]

    for e in exps:
        assert results(tmp_path / "parallel" / e.key) == results(tmp_path / "serial" / e.key)


def test_the_archive_regenerates_the_same_report(tmp_path):
    raw = tiny_raw(agents=3, rounds=2)
    exps = [reproduce.Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            reproduce.Experiment("local-only-k4", "main-k4", "Local", {"algorithm.name": "local_only"})]
    for e in exps:
        reproduce.run_experiment(e, raw, tmp_path / "runs" / e.key, rerun=False)
    reproduce.archive(exps, tmp_path / "runs", tmp_path / "archive")
    archived = tmp_path / "archive" / "mcepl-k4"
    assert sorted(p.name for p in archived.iterdir()) == ["command.txt", "config.yaml", "hardware.txt",
                                                          "metrics.jsonl.gz", "wall_seconds.txt"]
    live = reproduce.write_report("quick", exps, tmp_path / "runs", tmp_path / "a", "cmd", "tiny").read_text()
    kept = reproduce.write_report("quick", exps, tmp_path / "archive", tmp_path / "b", "cmd", "tiny").read_text()
    assert live.replace(str(tmp_path / "runs"), "X") == kept.replace(str(tmp_path / "archive"), "X")
