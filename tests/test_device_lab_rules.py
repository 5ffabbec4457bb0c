"""Any registered rule runs in a device lab and gives the simulator's result; weight rules leave no masks."""

from __future__ import annotations

import pytest

from edge_mcepl.cli import main
from edge_mcepl.metrics import read_metrics
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config
from labsupport import comparable, tiny_raw, write_yaml


@pytest.mark.parametrize("name, width", [("dsgd", 1.0), ("mask_averaging", 1.0),
                                         ("heterofl", [0.5, 1.0, 0.25])])
def test_a_baseline_lab_matches_the_simulator(tmp_path, capsys, name, width):
    settings = {"name": "rules", "agents": 3, "rounds": 2, "eval_every": 2, "topology.kind": "complete",
                "algorithm.name": name, "retention.width": width}
    out = tmp_path / "run"
    code = main(["lab", str(write_yaml(tmp_path / "lab.yaml", tiny_raw(**settings))), "--out", str(out),
                 "--broker-kind", "python", "--round-deadline", "120"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    Simulator(tiny_lab_config(**settings), log=lambda _: None).run(tmp_path / "sim", progress=False)
    sim_rows = read_metrics(tmp_path / "sim" / "metrics.jsonl")
    assert comparable(read_metrics(out / "metrics.jsonl")) == comparable(sim_rows)
    if name in ("dsgd", "heterofl"):
        assert not (out / "final").exists() and "learns weights, not masks" in printed
    else:
        sim_masks = sorted(p.read_bytes() for p in (tmp_path / "sim" / "final" / "masks").iterdir())
        assert sorted(p.read_bytes() for p in (out / "final" / "masks").iterdir()) == sim_masks
