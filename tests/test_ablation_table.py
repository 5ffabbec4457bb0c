"""benchmarks/ablation_table.py: runs side by side, chosen on validation, and refusing runs without a split."""

from __future__ import annotations

import statistics
import subprocess
import sys

from benchmarks.ablation_table import ROOT, best_validation, evaluations, paired_se
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config

SCRIPT = ROOT / "benchmarks" / "ablation_table.py"


def run(tmp_path, name, **overrides):
    Simulator(tiny_lab_config(rounds=4, eval_every=2, **overrides), log=lambda _: None).run(tmp_path / name,
                                                                                           progress=False)
    return tmp_path / name


def test_the_table_states_validation_and_test_with_differences_to_the_first_run(tmp_path):
    base = run(tmp_path, "base", **{"data.validation_fraction": 0.25})
    other = run(tmp_path, "other", **{"data.validation_fraction": 0.25, "algorithm.augment": "crop-flip"})
    out = tmp_path / "table.md"
    notes = tmp_path / "notes.md"
    notes.write_text("## What it means\n")
    done = subprocess.run([sys.executable, str(SCRIPT), str(base), str(other), "--title", "T", "--out", str(out),
                           "--notes", str(notes)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    b, o = evaluations(base), evaluations(other)
    assert f"{100 * b[4].val:.2f} / {100 * b[4].test:.2f}" in text
    se = 100 * paired_se(b[4].vals, o[4].vals)
    assert se > 0
    assert f"(Δ {100 * (o[4].val - b[4].val):+.2f} ± {se:.2f} / {100 * (o[4].test - b[4].test):+.2f})" in text
    assert "| round 2 val / test | round 4 val / test |" in text
    ob, bb = best_validation(o), best_validation(b)
    assert f"round {ob.round}: {100 * ob.val:.2f} / {100 * ob.test:.2f} (Δ {100 * (ob.val - bb.val):+.2f}" in text
    assert text.endswith("\n\n## What it means\n")


def test_every_keeps_only_the_rounds_it_names_and_the_best_round_column(tmp_path):
    base = run(tmp_path, "base", **{"data.validation_fraction": 0.25})
    done = subprocess.run([sys.executable, str(SCRIPT), str(base), "--every", "4"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| round 4 val / test | at its best val round: val / test |" in done.stdout
    assert "round 2 val / test" not in done.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), str(base), "--every", "0"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "--every must be ≥ 1" in bad.stderr and "Traceback" not in bad.stderr


def test_the_best_validation_round_is_the_earliest_on_a_tie(tmp_path):
    table = evaluations(run(tmp_path, "base", **{"data.validation_fraction": 0.25}))
    best = best_validation(table)
    assert best.val == max(e.val for e in table.values())
    assert best.round == min(t for t, e in table.items() if e.val == best.val)
    assert best.last_round == max(table)


def test_a_run_without_a_validation_split_is_refused(tmp_path):
    plain = run(tmp_path, "plain")
    done = subprocess.run([sys.executable, str(SCRIPT), str(plain)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "data.validation_fraction" in done.stderr


def test_the_paired_standard_error_is_that_of_the_per_agent_differences():
    a, b = [0.5, 0.6, 0.7, 0.4], [0.6, 0.6, 0.9, 0.4]
    diffs = [0.1, 0.0, 0.2, 0.0]
    assert abs(paired_se(a, b) - statistics.stdev(diffs) / 2) < 1e-12
