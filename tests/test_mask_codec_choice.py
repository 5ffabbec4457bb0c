"""algorithm.mask_codec changes only the bytes on the wire, never what is learned."""

from __future__ import annotations

import pytest

from benchmarks import mask_codec
from edge_mcepl.metrics import read_metrics
from edge_mcepl.simulator import Simulator
from edge_mcepl.wire.envelope import SIGNATURE_SIZE, TAG_SIZE
from edge_mcepl.wire.masks import decode_masks

from conftest import tiny_lab_config


def run(tmp_path, codec):
    config = tiny_lab_config(**{"algorithm.mask_codec": codec, "rounds": 4})
    Simulator(config, log=lambda s: None).run(tmp_path / codec, progress=False)
    return read_metrics(tmp_path / codec / "metrics.jsonl"), tmp_path / codec / "final" / "masks"


@pytest.mark.parametrize("codec", ["rice", "delta"])
def test_a_codec_learns_exactly_what_packbits_learns_with_fewer_bytes(tmp_path, codec):
    packed_rows, packed_masks = run(tmp_path, "packbits")
    rice_rows, rice_masks = run(tmp_path, codec)
    learned = ("round", "agent", "loss", "accuracy", "density", "neighbours_heard", "rejected", "sent_digest",
               "heard_digests")
    assert [{k: r.get(k) for k in learned} for r in rice_rows] == [{k: r.get(k) for k in learned}
                                                                   for r in packed_rows]
    assert sum(r["bytes_sent"] for r in rice_rows) < sum(r["bytes_sent"] for r in packed_rows)
    assert all(r["bytes_sent"] > 0 for r in rice_rows)
    for path in sorted(packed_masks.iterdir()):
        ours, theirs = decode_masks(path.read_bytes()), decode_masks((rice_masks / path.name).read_bytes())
        assert all((a == b).all() for a, b in zip(ours.masks, theirs.masks))


def test_codec_benchmark_reports_both_codecs_from_a_runs_masks(tmp_path):
    _, masks = run(tmp_path, "packbits")
    out = tmp_path / "codec.md"
    mask_codec.main([str(masks.parent.parent), "--repeats", "1", "--out", str(out)])
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.read_text().splitlines()
            if line.startswith("| packbits") or line.startswith("| rice")}
    sizes = {codec: float(cells[2].replace(",", "")) for codec, cells in rows.items()}
    # The run's files are unsigned (a 16-byte tag); the benchmark signs as a lab does (a 64-byte signature).
    files = [len(p.read_bytes()) for p in masks.iterdir()]
    expected = sum(files) / len(files) + SIGNATURE_SIZE - TAG_SIZE
    assert sizes["packbits"] == round(expected) and sizes["rice"] < sizes["packbits"]
