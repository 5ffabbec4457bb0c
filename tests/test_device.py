"""``device``: a lab computes on the CPU or on a CUDA GPU, from the same seeded start.

The CUDA comparison needs a GPU, which CI does not have: it runs on the lent GPU machine
(``pytest tests/test_device.py`` there) and is skipped elsewhere; the CPU-side checks always run.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.reproduction import cli as reproduce
from edge_mcepl.cli import main
from edge_mcepl.errors import UserError
from edge_mcepl.nn.device import resolve_device
from edge_mcepl.simulator import Simulator

from conftest import tiny_lab_config

ALGORITHMS = ("mcepl", "local_only", "dsgd", "dispfl", "weight_training", "mask_averaging")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the lent GPU machine)")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CUDA", "cpu:0", ""])
def test_config_names_a_bad_device(bad):
    with pytest.raises(UserError, match=r"device: .* is not 'cpu', 'cuda' or 'cuda:N'"):
        tiny_lab_config(device=bad)


def test_cuda_without_a_gpu_is_a_one_line_user_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="sees no CUDA GPU; use device: cpu"):
        resolve_device("cuda")
    config = tmp_path / "lab.yaml"
    config.write_text("model: small-cnn\nagents: 2\nrounds: 1\ndata: {dataset: synthetic}\n")
    assert main(["simulate", str(config), "--device", "cuda", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device: 'cuda'" in err[0]


def test_agents_share_one_copy_of_the_fixed_weights_and_test_set():
    sim = Simulator(tiny_lab_config(device="cpu"), log=lambda _: None)
    first, second = (a.rule.model.masked_layers()[0][1].weight for a in sim.agents[:2])
    assert first.data_ptr() == second.data_ptr()
    assert sim.agents[0].test_data.images.data_ptr() == sim.agents[1].test_data.images.data_ptr()


def _first_rounds(algorithm: str, device: str) -> list[dict]:
    sim = Simulator(tiny_lab_config(device=device, **{"algorithm.name": algorithm}), log=lambda _: None)
    rows = [row for t in range(2) for row in sim.run_round(t)]
    for row, (acc, loss) in zip(rows[-len(sim.agents):], sim.evaluate()):
        row.update(accuracy=acc, test_loss=loss)
    return rows


@needs_cuda
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_gpu_run_matches_the_cpu_run(algorithm):
    """Same seeded start, same bytes on the wire; losses equal up to the kernels' rounding."""
    cpu, gpu = _first_rounds(algorithm, "cpu"), _first_rounds(algorithm, "cuda")
    assert [r["bytes_sent"] for r in gpu] == [r["bytes_sent"] for r in cpu]
    assert [r["density"] for r in gpu] == pytest.approx([r["density"] for r in cpu], abs=1e-3)
    assert [r["loss"] for r in gpu] == pytest.approx([r["loss"] for r in cpu], rel=1e-3, abs=1e-4)
    assert [r["test_loss"] for r in gpu[-4:]] == pytest.approx([r["test_loss"] for r in cpu[-4:]], rel=1e-3, abs=1e-4)


def test_reproduce_refuses_an_absent_gpu_before_any_run(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="^reproduce.py: device: 'cuda' asked for, but .* sees no CUDA GPU"):
        reproduce.main(["--quick", "--device", "cuda", "--only", "mcepl-k4", "--out", str(tmp_path / "runs"),
                        "--docs", str(tmp_path / "docs")])
    assert not (tmp_path / "runs").exists()
