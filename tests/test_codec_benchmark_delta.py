"""benchmarks/mask_codec.py reads a delta-coded run: whole-run bits per weight that match its metrics."""

from __future__ import annotations

from benchmarks import mask_codec
from edge_mcepl.metrics import read_metrics
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config


def test_the_whole_run_figure_is_the_mean_message_size_of_the_runs_rows(tmp_path):
    config = tiny_lab_config(rounds=6, **{"algorithm.mask_codec": "delta", "algorithm.keyframe_every": 3})
    Simulator(config, log=lambda _: None).run(tmp_path / "run", progress=False)
    out = tmp_path / "codec.md"
    mask_codec.main([str(tmp_path / "run"), "--delta-run", str(tmp_path / "run"), "--repeats", "1",
                     "--out", str(out)])
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| `{tmp_path / 'run'}`"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    degree = {0: 2, 1: 2, 2: 2, 3: 2}  # the tiny lab's ring
    weights = 224_800
    want = 8 * sum(r["bytes_sent"] / degree[r["agent"]] for r in rows) / (len(rows) * weights)
    assert float(cells[3]) == round(want, 4)
    keyframes = sum(r["keyframe"] for r in rows)
    assert keyframes == 2 * 4  # rounds 0 and 3 for each of 4 agents
    assert cells[-3].startswith(f"{keyframes / len(rows):.1%}")
    assert (tmp_path / "codec.png").is_file()
    assert "| delta |" in text
