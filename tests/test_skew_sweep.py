"""benchmarks/skew_sweep.py: every setting × method run from one base, read at its best validation round."""

from __future__ import annotations

import subprocess
import sys

import yaml

from benchmarks.ablation_table import best_validation, evaluations
from benchmarks.skew_sweep import ROOT
from edge_mcepl.config import load_config

from conftest import tiny_lab_config

SCRIPT = ROOT / "benchmarks" / "skew_sweep.py"


def test_the_sweep_runs_each_setting_and_method_and_reports_test_at_the_best_validation_round(tmp_path):
    base = tmp_path / "base.yaml"
    raw = tiny_lab_config(rounds=2, eval_every=1, **{"data.validation_fraction": 0.25,
                                                     "data.synthetic_train_per_class": 40,
                                                     "algorithm.lr_schedule": "cosine"}).to_dict()
    base.write_text(yaml.safe_dump(raw))
    out, doc, png = tmp_path / "runs", tmp_path / "skew.md", tmp_path / "skew.png"
    command = [sys.executable, str(SCRIPT), "--base", str(base), "--classes", "2", "--alphas", "1",
               "--shard-fraction", "0.5", "--jobs", "2", "--out", str(out), "--doc", str(doc), "--plot", str(png),
               "--archive", str(tmp_path / "archive")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    text = doc.read_text()
    for key in ("classes2", "dirichlet1"):
        for method, name in (("mcepl", "mcepl"), ("local-only", "local_only"), ("train-alone", "weight_training")):
            config = load_config(out / f"{key}-{method}" / "config.yaml")
            assert config.algorithm.name == name and config.data.shard_fraction == 0.5
            assert config.algorithm.lr_schedule == "cosine", "every method keeps the base's schedule"
            assert (tmp_path / "archive" / f"{key}-{method}" / "metrics.jsonl.gz").exists()
    assert load_config(out / "classes2-mcepl" / "config.yaml").data.classes_per_agent == 2
    assert load_config(out / "dirichlet1-mcepl" / "config.yaml").data.partition == "dirichlet"
    point = best_validation(evaluations(out / "classes2-mcepl"))
    assert f"{100 * point.test:.2f} ({100 * point.val:.2f}) @ {point.round}" in text
    assert "| 2 classes per agent |" in text and "| Dirichlet α = 1 |" in text
    assert png.stat().st_size > 1000
    # a second call reuses the finished runs and renders the same table from the archive alone
    again = subprocess.run(command[:-2] + ["--report-only", "--out", str(tmp_path / "archive")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert doc.read_text().split("\n", 3)[3] == text.split("\n", 3)[3]


def test_an_unknown_method_or_a_bad_list_is_refused_in_one_line(tmp_path):
    for extra, said in ((["--methods", "mcepl,dsgdx"], "unknown method(s) dsgdx"),
                        (["--classes", "2,x"], "not a comma-separated list")):
        done = subprocess.run([sys.executable, str(SCRIPT), "--base", "b.yaml", *extra], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr
