"""The full report's validation-protocol section: each run at its own best validation round, targets checked."""

from __future__ import annotations

from benchmarks.ablation_table import best_validation, evaluations
from benchmarks.reproduction.protocol import CANDIDATE, section
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config

TRAIN_ALONE = "train-alone-tuned-cosine-crop-flip-400"


def run(directory, name, **overrides):
    config = tiny_lab_config(rounds=4, eval_every=2, **{"data.validation_fraction": 0.25, **overrides})
    Simulator(config, log=lambda _: None).run(directory / name, progress=False)
    return directory / name


def test_each_run_is_read_at_its_best_validation_round_and_missing_ones_are_named(tmp_path):
    cand = best_validation(evaluations(run(tmp_path, CANDIDATE)))
    alone = best_validation(evaluations(run(tmp_path, TRAIN_ALONE, **{"algorithm.name": "weight_training"})))
    text = "\n".join(section(tmp_path))
    assert f"| `{CANDIDATE}` | " in text
    assert f"| {cand.round} | {100 * cand.val:.2f} | {100 * cand.test:.2f} | | |" in text
    assert (f"| {alone.round} | {100 * alone.val:.2f} | {100 * alone.test:.2f} | "
            f"{100 * (cand.val - alone.val):+.2f} ± ") in text
    lead = 100 * (cand.test - alone.test)
    assert f"- ≥ train alone + 3: {lead:+.2f} — **{'met' if lead >= 3 else 'missed'}**" in text
    assert "| `dispfl-cosine-crop-flip-400` | " in text and "not run yet" in text
    assert "- ≥ tuned Dis-PFL + 3: not run yet" in text
    assert f"- ≥ 70 %: {100 * cand.test:.2f} %" in text


def test_without_the_candidate_the_section_says_so(tmp_path):
    text = "\n".join(section(tmp_path))
    assert f"Not run yet: the candidate `{CANDIDATE}` has no archived run." in text
    assert "| run |" not in text
