"""benchmarks/reproduce.py end to end: tiny runs, then the report is computed from their JSONL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.reproduction.experiments import Experiment
from benchmarks.reproduction.report import write_report
from benchmarks.reproduction.runner import run_all, run_experiment
from benchmarks.reproduction.runs import archive

from labsupport import tiny_raw

ROOT = Path(__file__).resolve().parents[1]


def test_report_numbers_come_from_the_metrics(tmp_path):
    raw = tiny_raw(agents=4, rounds=4)
    exps = [Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            Experiment("dsgd-k4", "main-k4", "DSGD", {"algorithm.name": "dsgd"}),
            Experiment("local-only-k4", "main-k4", "Local", {"algorithm.name": "local_only"})]
    out, docs = tmp_path / "runs", tmp_path / "docs"
    for e in exps:
        run_experiment(e, raw, out / e.key, rerun=False)
    stamp = (out / "mcepl-k4" / "metrics.jsonl").stat().st_mtime_ns
    run_experiment(exps[0], raw, out / "mcepl-k4", rerun=False)  # finished: reused, not rerun
    assert (out / "mcepl-k4" / "metrics.jsonl").stat().st_mtime_ns == stamp

    path = write_report("quick", exps, out, docs, "python benchmarks/reproduce.py --quick", "tiny")
    text = path.read_text()
    rows = [json.loads(line) for line in (out / "dsgd-k4" / "metrics.jsonl").read_text().splitlines()]
    cumulative = sum(r["bytes_sent"] for r in rows)
    final = [r["accuracy"] for r in rows if r["round"] == 4]
    line = next(ln for ln in text.splitlines() if ln.startswith("| DSGD |"))
    assert f"{cumulative / 1e6:.1f}" in line and f"{100 * sum(final) / len(final):.2f} %" in line
    mcepl = next(ln for ln in text.splitlines() if ln.startswith("| MCE-PL |"))
    assert "×" in mcepl  # ratio to DSGD
    assert "Report: `python benchmarks/reproduce.py --quick`" in text and "Seed 5" in text
    local = [json.loads(line) for line in (out / "local-only-k4" / "metrics.jsonl").read_text().splitlines()]
    mcepl = [json.loads(line) for line in (out / "mcepl-k4" / "metrics.jsonl").read_text().splitlines()]
    gap = 100 * (sum(r["accuracy"] for r in local if r["round"] == 4) - sum(r["accuracy"] for r in mcepl
                                                                             if r["round"] == 4)) / 4
    assert f"- 4 classes, Local: {gap:+.2f} points vs MCE-PL at round 4" in text
    assert (docs / "results-quick-main-k4.png").stat().st_size > 1000


def test_runs_of_different_lengths_are_also_compared_at_the_common_round(tmp_path):
    raw = tiny_raw(agents=3, rounds=4)
    exps = [Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            Experiment("local-only-k4", "main-k4", "Local", {"algorithm.name": "local_only", "rounds": 2})]
    out = tmp_path / "runs"
    for e in exps:
        run_experiment(e, raw, out / e.key, rerun=False)
    text = write_report("quick", exps, out, tmp_path / "docs", "cmd", "tiny").read_text()
    assert "acc. @ round 2 |" in text
    rows = [json.loads(line) for line in (out / "mcepl-k4" / "metrics.jsonl").read_text().splitlines()]
    at2 = [r["accuracy"] for r in rows if r["round"] == 2]
    at4 = [r["accuracy"] for r in rows if r["round"] == 4]
    line = next(ln for ln in text.splitlines() if ln.startswith("| MCE-PL |"))
    cells = [c.strip() for c in line.split("|")]
    assert cells[2] == "4" and cells[3].startswith(f"{100 * sum(at4) / 3:.2f} %")
    assert cells[4] == f"{100 * sum(at2) / 3:.2f} %"
    assert next(ln for ln in text.splitlines() if ln.startswith("| Local |")).split("|")[2].strip() == "2"


def test_parallel_jobs_give_the_same_runs_as_one_after_another(tmp_path):
    raw = tiny_raw(agents=3, rounds=2)
    exps = [Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            Experiment("dsgd-k4", "main-k4", "DSGD", {"algorithm.name": "dsgd"})]
    run_all(exps, raw, tmp_path / "serial", rerun=False, command="c", jobs=1)
    run_all(exps, raw, tmp_path / "parallel", rerun=False, command="c", jobs=2)

    def results(folder):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [(r["round"], r["agent"], r["loss"], r.get("accuracy"), r["bytes_sent"]) for r in rows]

    for e in exps:
        assert results(tmp_path / "parallel" / e.key) == results(tmp_path / "serial" / e.key)


def test_the_archive_regenerates_the_same_report(tmp_path):
    raw = tiny_raw(agents=3, rounds=2)
    exps = [Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            Experiment("local-only-k4", "main-k4", "Local", {"algorithm.name": "local_only"})]
    for e in exps:
        run_experiment(e, raw, tmp_path / "runs" / e.key, rerun=False)
    archive(exps, tmp_path / "runs", tmp_path / "archive")
    archived = tmp_path / "archive" / "mcepl-k4"
    assert sorted(p.name for p in archived.iterdir()) == ["command.txt", "config.yaml", "hardware.txt",
                                                          "metrics.jsonl.gz", "wall_seconds.txt"]
    live = write_report("quick", exps, tmp_path / "runs", tmp_path / "a", "cmd", "tiny").read_text()
    kept = write_report("quick", exps, tmp_path / "archive", tmp_path / "b", "cmd", "tiny").read_text()
    assert live.replace(str(tmp_path / "runs"), "X") == kept.replace(str(tmp_path / "archive"), "X")


def test_the_documented_command_renders_a_report_from_any_folder(tmp_path):
    """``python benchmarks/reproduce.py`` (the command README and every command.txt cite) is a thin entry
    point over the package: it must find it from another working folder, without PYTHONPATH."""
    exp = Experiment("mcepl-k4", "main-k4", "MCE-PL")
    run_experiment(exp, tiny_raw(agents=3, rounds=2), tmp_path / "runs" / exp.key, rerun=False)
    args = ["--quick", "--report-only", "--out", str(tmp_path / "runs"), "--docs", str(tmp_path / "docs")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "docs" / "results-quick.md").read_text()
    assert f"Report: `python benchmarks/reproduce.py {' '.join(args)}`" in text
    assert next(ln for ln in text.splitlines() if ln.startswith("| MCE-PL |")).split("|")[2].strip() == "2"
