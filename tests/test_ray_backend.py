"""``simulate --backend ray``: shards of agents on Ray workers give the in-process simulator's run, masks included.

A real Ray cluster: a head started on the loopback interface by ``ray start`` with token
authentication (as on the first machine of a cluster, docs/cluster.md), the CLI connecting to it
by address from another process, two workers holding three agents each.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edge_mcepl.backends.ray_backend import shard_ranges, worker_config
from edge_mcepl.cli import main
from edge_mcepl.comm.broker.launcher import free_port

from conftest import tiny_lab_config

pytest.importorskip("ray")
RAY = str(Path(sys.executable).with_name("ray"))
TIMING = {"train_seconds", "round_seconds"}


@pytest.fixture(scope="module")
def ray_head():
    """(address, environment) of a one-machine Ray cluster on 127.0.0.1 with its own token (stopped at the end).

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps Ray from swapping 127.0.0.1 for the machine's
    external address: every socket stays on loopback.
    """
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32))
    port = free_port()
    subprocess.run([RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True,
                   timeout=180, env=env)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=env)


def rows(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_ray_run_is_the_in_process_run(ray_head, tmp_path, capsys):
    config = tiny_lab_config(name="ray", agents=6, rounds=4, eval_every=2, **{"retention.width": [1.0, 0.5],
                                                                               "algorithm.keyframe_every": 3})
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert main(["simulate", str(path), "--no-progress", "--out", str(tmp_path / "local")]) == 0
    address, env = ray_head
    ray_run = subprocess.run([sys.executable, "-m", "edge_mcepl.cli", "simulate", str(path), "--no-progress",
                              "--out", str(tmp_path / "ray"), "--backend", "ray", "--workers", "2",
                              "--ray-address", address, "--worker-cpus", "1"],
                             capture_output=True, text=True, timeout=600, env=env)
    assert ray_run.returncode == 0, ray_run.stderr[-3000:]
    assert "2 Ray workers × 1 CPU (agents 0–2, 3–5)" in ray_run.stdout
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert rows(ray) == rows(local)  # losses, bytes, keyframes and every mask digest sent and used
    for name in ["final/state.json", "summary.txt", *(f"final/masks/agent_{i:03d}.mcpl" for i in range(6))]:
        assert (ray / name).read_bytes() == (local / name).read_bytes(), name
    assert (ray / "config.yaml").read_text() == (local / "config.yaml").read_text()


@pytest.mark.parametrize(("agents", "workers", "expected"), [
    (6, 2, [[0, 1, 2], [3, 4, 5]]), (5, 2, [[0, 1, 2], [3, 4]]), (2, 5, [[0], [1]]), (3, 1, [[0, 1, 2]])])
def test_shards_are_contiguous_and_as_equal_as_can_be(agents, workers, expected):
    assert shard_ranges(agents, workers) == expected


@pytest.mark.parametrize(("option", "message"), [
    (["--workers", "2"], "--workers applies to --backend ray only"),
    (["--backend", "ray", "--workers", "0"], "--workers 0: at least 1"),
    (["--backend", "ray", "--worker-gpus", "-1"], "--worker-gpus -1: must be ≥ 0")])
def test_bad_ray_options_are_one_line(tmp_path, capsys, option, message):
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(tiny_lab_config().to_dict()))
    assert main(["simulate", str(path), "--out", str(tmp_path / "run"), *option]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_workers_read_the_dataset_where_the_driver_found_it(tmp_path):
    from edge_mcepl.data.resolve import LabData

    config = tiny_lab_config(**{"data.dataset": "mnist"})
    found = LabData(None, None, [], "mnist", config.data, tmp_path / "data")  # type: ignore[arg-type]
    assert worker_config(config, found)["data"]["data_dir"] == str((tmp_path / "data").resolve())
    named = config.replace(data=config.data.replace(data_dir="/elsewhere"))
    assert worker_config(named, found)["data"]["data_dir"] == "/elsewhere"
    assert worker_config(config, LabData(None, None, [], "synthetic", config.data))["data"]["data_dir"] is None  # type: ignore[arg-type]


def test_a_ray_run_checkpoints_and_resumes_to_the_uninterrupted_run(ray_head, tmp_path):
    """Each worker writes its shard's agents into the driver's checkpoint set; `--resume` on Ray continues it.

    The Ray run's driver is killed (SIGKILL: a crash, or the end of a session) once it has done 5
    rounds — its latest complete set is then that of round 4 or a later one, depending on when the
    signal lands, of 120 rounds: long before the end; whichever it is, the resumed run is the
    uninterrupted one.
    """
    from edge_mcepl.simulator import Simulator

    address, env = ray_head
    config = tiny_lab_config(name="rayck", agents=4, rounds=120, eval_every=60)
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    Simulator(config, log=lambda _: None).run(whole, progress=False, checkpoint_every=0)
    ray_options = ["--no-progress", "--backend", "ray", "--workers", "2", "--ray-address", address,
                   "--worker-cpus", "1"]
    first = subprocess.Popen([sys.executable, "-m", "edge_mcepl.cli", "simulate", str(path), "--out", str(stopped),
                              "--checkpoint-every", "2", *ray_options], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    metrics = stopped / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not metrics.exists() or len(metrics.read_text().splitlines()) < 5 * config.agents:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-3000:]
        time.sleep(0.05)
    first.kill()
    assert first.wait(120) == -signal.SIGKILL
    (done,) = (p for p in (stopped / "checkpoints").iterdir() if p.name.startswith("round-"))  # a partial one aside
    assert sorted(p.name for p in done.iterdir()) == [f"agent_{i:03d}.npz" for i in range(4)] + ["requests.json"]
    resumed = subprocess.run([sys.executable, "-m", "edge_mcepl.cli", "simulate", "--resume", str(stopped),
                              *ray_options], capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after round {int(done.name.removeprefix('round-'))} of 120" in resumed.stdout
    assert rows(stopped) == rows(whole)
    for name in ["final/state.json", "summary.txt", *(f"final/masks/agent_{i:03d}.mcpl" for i in range(4))]:
        assert (stopped / name).read_bytes() == (whole / name).read_bytes(), name
