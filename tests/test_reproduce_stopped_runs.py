"""benchmarks/reproduce.py: a run cut short is reported only when marked, up to its last evaluated round."""

from __future__ import annotations

import json

from benchmarks.reproduction.experiments import Experiment
from benchmarks.reproduction.report import write_report
from benchmarks.reproduction.runner import run_experiment
from benchmarks.reproduction.runs import INTERRUPTED, archive
from benchmarks.reproduction.summary import summarize

from labsupport import tiny_raw


def _cut_short(run_dir, keep_rounds: int, half_round: bool) -> list[dict]:
    """Make a finished run look like one stopped after ``keep_rounds`` (and maybe half of the next)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kept = [r for r in rows if r["round"] <= keep_rounds]  # rows number rounds from 1
    if half_round:
        kept += [r for r in rows if r["round"] == keep_rounds + 1][:1]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    (run_dir / "wall_seconds.txt").unlink()
    return kept


def test_a_stopped_run_is_left_out_unless_marked(tmp_path):
    raw = tiny_raw(agents=3, rounds=6)
    exps = [Experiment("mcepl-k4", "main-k4", "MCE-PL"),
            Experiment("local-only-k4", "main-k4", "Local", {"algorithm.name": "local_only"})]
    out = tmp_path / "runs"
    for e in exps:
        run_experiment(e, raw, out / e.key, rerun=False, command="python benchmarks/reproduce.py --x")
    rows = _cut_short(out / "local-only-k4", keep_rounds=4, half_round=True)  # + 1 row of round 5
    assert (out / "local-only-k4" / "command.txt").read_text().strip() == "python benchmarks/reproduce.py --x"
    assert (out / "local-only-k4" / "hardware.txt").exists()  # recorded before the first round

    unmarked = write_report("quick", exps, out, tmp_path / "a", "cmd", "tiny").read_text()
    assert "| Local | not run (or unfinished) |" in unmarked

    (out / "local-only-k4" / INTERRUPTED).write_text("lease ended\n")
    text = write_report("quick", exps, out, tmp_path / "b", "cmd", "tiny").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("| Local |"))
    cells = [c.strip() for c in line.split("|")]
    at4 = [r["accuracy"] for r in rows if r["round"] == 4]
    assert cells[2] == "4 (stopped; 6 planned)"
    assert cells[3].startswith(f"{100 * sum(at4) / 3:.2f} %")
    assert cells[4] == f"{100 * sum(at4) / 3:.2f} %"  # compared with MCE-PL at the common round 4
    timing = next(ln for ln in text.splitlines() if ln.startswith("| local-only-k4 |"))
    assert "— (stopped: lease ended)" in timing and "reproduce.py --x" in timing

    archive(exps, out, tmp_path / "archive")
    assert (tmp_path / "archive" / "local-only-k4" / INTERRUPTED).read_text() == "lease ended\n"


def test_a_stopped_run_counts_bytes_only_up_to_its_last_evaluated_round(tmp_path):
    raw = tiny_raw(agents=3, rounds=6)
    exp = Experiment("mcepl-k4", "main-k4", "MCE-PL")
    run_dir = tmp_path / "mcepl-k4"
    run_experiment(exp, raw, run_dir, rerun=False)
    rows = _cut_short(run_dir, keep_rounds=4, half_round=True)
    (run_dir / INTERRUPTED).write_text("killed\n")
    summary = summarize(run_dir)
    assert summary["rounds_run"] == 4 and summary["stopped"] == "killed"
    assert summary["cum_bytes"] == sum(r["bytes_sent"] for r in rows if r["round"] <= 4)
