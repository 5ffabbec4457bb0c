"""The protocol section's tuning table: each baseline's step-size trials; a final off the best one is flagged."""

from __future__ import annotations

from benchmarks.ablation_table import best_validation, evaluations
from benchmarks.reproduction.protocol import CANDIDATE, section
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def run(directory, name, **overrides):
    config = tiny_lab_config(rounds=4, eval_every=2, **{"data.validation_fraction": 0.25, **overrides})
    Simulator(config, log=lambda _: None).run(directory / name, progress=False)
    return directory / name


def alone(directory, name, lr):
    return run(directory, name, **{"algorithm.name": "weight_training", "algorithm.weight_lr": lr})


def test_trials_are_listed_with_the_chosen_step_and_a_final_off_the_choice_is_flagged(tmp_path):
    run(tmp_path, CANDIDATE)
    scores = {lr: best_validation(evaluations(alone(tmp_path, f"train-alone-lr{lr}-cf-100", lr))).val
              for lr in (0.01, 0.3)}
    assert scores[0.01] != scores[0.3], "the fixture needs two trials that a choice can tell apart"
    chosen, other = sorted(scores, key=lambda lr: -scores[lr])
    alone(tmp_path, "train-alone-tuned-cosine-crop-flip-400", other)
    text = "\n".join(section(tmp_path))
    row = next(line for line in text.splitlines() if line.startswith("| train alone |"))
    assert f"**{chosen:g}: {100 * scores[chosen]:.2f}**" in row
    assert f"| {chosen:g} (at the grid's edge) |" in row
    assert f"uses weight_lr {other:g}, **not the chosen {chosen:g}**" in row
    assert "| Dis-PFL | no trial archived | | |" in text


def test_a_final_with_the_chosen_step_is_named_and_a_missing_one_said(tmp_path):
    run(tmp_path, CANDIDATE)
    alone(tmp_path, "train-alone-lr0.05-cf-100", 0.05)
    text = "\n".join(section(tmp_path))
    assert "| 0.05 (at the grid's edge) | not run yet (`train-alone-tuned-cosine-crop-flip-400`) |" in text
    alone(tmp_path, "train-alone-tuned-cosine-crop-flip-400", 0.05)
    text = "\n".join(section(tmp_path))
    assert "| `train-alone-tuned-cosine-crop-flip-400`, weight_lr 0.05 |" in text
