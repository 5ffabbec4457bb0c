"""A lab over two bridged mosquitto brokers (a central one and a site's): still the simulator's masks.

The central broker holds the lab config; the site broker, started with ``--bridge`` from a copy of
the central broker's secrets, relays every lab topic both ways. Agents 0-1 join the central broker
(one process each), agents 2-3 the site's (one process hosting both): every mask crosses the
bridge to somebody, and every agent must end with the simulator's masks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from edge_mcepl.cli import main
from edge_mcepl.comm.broker.credentials import SECRETS_FILE
from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.comm.broker.mosquitto import Bridge
from edge_mcepl.devicelab.envelope import LabSettings
from edge_mcepl.run_dir import FINAL_MASK_FILE

from conftest import tiny_lab_config
from labsupport import (
    ROOT,
    masks_of,
    needs_mosquitto,
    publish_lab,
    rows,
    simulate,
    start_join,
    stop_all,
    tiny_raw,
    write_yaml,
)

pytestmark = needs_mosquitto
LAB, N, ROUNDS = "br", 4, 5


def test_agents_on_a_central_and_a_bridged_site_broker_learn_the_simulators_masks(tmp_path):
    central = start_broker(tmp_path / "central", LAB, N, kind="mosquitto", port=0)
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    shutil.copy(central.credentials_file, site_dir / SECRETS_FILE)
    site = start_broker(site_dir, LAB, N, kind="mosquitto", port=0,
                        bridge=Bridge("127.0.0.1", central.port, name="site-a"))
    procs = []
    try:
        assert site.url != central.url and f"127.0.0.1:{site.port}" in site.bundle(2).read_text()
        publish_lab(central, tiny_raw(name=LAB, agents=N, rounds=ROUNDS, eval_every=100),
                    LabSettings(round_deadline_s=60, max_staleness=0, start_timeout_s=120))
        procs = [start_join(central.bundle(i), tmp_path / f"agent_{i:03d}") for i in (0, 1)]
        procs.append(start_join(site.bundle(2).parent, tmp_path, "--agent-id", "2-3"))
        codes = [p.wait(300) for p in procs]
    finally:
        stop_all(procs)
        site.stop()
        central.stop()
    assert codes == [0, 0, 0], [log.read_text()[-2000:] for log in sorted(tmp_path.rglob("join.log"))]
    sim = masks_of(simulate(tiny_lab_config(name=LAB, agents=N, rounds=ROUNDS, eval_every=100), tmp_path))[1]
    assert {i: (tmp_path / f"agent_{i:03d}" / FINAL_MASK_FILE).read_bytes() for i in range(N)} == sim
    # every agent heard both ring neighbours every round: agents 1 and 2 (and 3 and 0) talk across the bridge
    assert all(r["neighbours_heard"] == 2 for i in range(N) for r in rows(tmp_path / f"agent_{i:03d}"))


def test_a_site_broker_needs_the_central_brokers_secrets_and_a_sound_bridge(tmp_path, capsys):
    site = tmp_path / "site"
    for args, expected in [
        ([], f"--bridge: {site.resolve() / SECRETS_FILE} is missing — a site broker accepts the central broker's"),
        (["--bridge-cafile", "ca.crt"], "--bridge-cafile is for an mqtts:// bridge"),
        (["--site", "a b"], "--site 'a b': letters, digits, '-' and '_' only"),
        (["--new-run"], "--new-run: a site broker publishes no config"),
    ]:
        code = main(["broker", "--lab", LAB, "--agents", "2", "--dir", str(site), "--port", "0",
                     "--bridge", "mqtt://127.0.0.1:1", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], (args, err)
    assert main(["broker", "--lab", LAB, "--agents", "2", "--bridge", "mqtts://127.0.0.1:1"]) == 2
    assert "an mqtts:// bridge needs --bridge-cafile" in capsys.readouterr().err
    assert main(["broker", "--lab", LAB, "--agents", "2", "--bridge", "ftp://x"]) == 2
    assert "--bridge ftp://x: expected mqtt://HOST:PORT" in capsys.readouterr().err
    assert main(["broker", "--lab", LAB, "--agents", "2", "--site", "a"]) == 2
    assert "--site needs --bridge URL" in capsys.readouterr().err


def test_the_site_broker_command_relays_the_central_config(tmp_path):
    """`edge-mcepl broker --bridge` as an operator runs it: the site's bundles fetch the central broker's config."""
    from edge_mcepl.comm.broker.bundles import load_bundle
    from edge_mcepl.comm.client import BrokerAddress, MqttOptions, fetch_retained
    from edge_mcepl.comm.topics import config_topic

    central = start_broker(tmp_path / "central", LAB, N, kind="mosquitto", port=0)
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    shutil.copy(central.credentials_file, site_dir / SECRETS_FILE)
    lab_yaml = write_yaml(tmp_path / "lab.yaml", tiny_raw(name=LAB, agents=N))
    console = tmp_path / "site-console.txt"
    with open(console, "w") as f:
        # given the lab's YAML too (for its limits), a site broker still publishes no config of its own
        proc = subprocess.Popen([sys.executable, "-m", "edge_mcepl.cli", "broker", str(lab_yaml), "--dir",
                                 str(site_dir), "--port", "0", "--bridge", central.url, "--site", "lab2"],
                                stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        envelope = publish_lab(central, tiny_raw(name=LAB, agents=N), LabSettings())
        deadline = time.monotonic() + 30
        while "Ctrl-C stops the broker." not in console.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, console.read_text()
            time.sleep(0.1)
        bundle = load_bundle(site_dir / "bundles" / "agent-3.yaml")
        got = fetch_retained(BrokerAddress.parse(bundle.broker), MqttOptions(bundle.username, bundle.password),
                             config_topic(LAB), "test-site-reader", 30)
        assert got is not None and envelope["run_id"].encode() in got
    finally:
        proc.terminate()
        proc.wait(30)
        central.stop()
    out = console.read_text()
    assert f"bridged to:        {central.url}" in out and "edge-mcepl broker: stopped" in out, out
    assert "lab config:" not in out  # a site broker publishes none
