"""benchmarks/reproduce.py: a run that ends far below its best evaluated accuracy is called out."""

from __future__ import annotations

from benchmarks.reproduction.experiments import Experiment
from benchmarks.reproduction.findings import findings
from benchmarks.reproduction.summary import train_loss_at


def summary(accs: list[float], losses: list[float]) -> dict:
    curve = [{"round": 10 * (i + 1), "acc": a, "min": a, "max": a, "cum_bytes": 0} for i, a in enumerate(accs)]
    mean_loss = {10 * (i + 1): loss for i, loss in enumerate(losses)}
    s = {"curve": curve, "mean": accs[-1], "rounds_run": 10 * len(accs), "mean_loss": mean_loss}
    s["train_loss"] = train_loss_at(s, s["rounds_run"])
    return s


def test_a_collapse_is_a_finding_and_a_plateau_is_not():
    exps = [Experiment("dsgd-k4", "main-k4", "DSGD"), Experiment("local-only-k4", "main-k4", "L")]
    results = {"dsgd-k4": summary([0.40, 0.58, 0.10], [1.2, 1.0, 9000.0]),
               "local-only-k4": summary([0.40, 0.58, 0.56], [1.2, 1.0, 0.9])}  # 2 points down: noise
    lines = findings(exps, results)  # loss: mean over the 20 rounds before each point
    collapsed = [ln for ln in lines if "below its best" in ln]
    assert collapsed == ["- dsgd-k4 ends 48.00 points below its best: 58.00 % at round 20, 10.00 % at round 30 "
                         "(training loss 1.1 → 4.5e+03)."]
