"""mosquitto saves its persistence every couple of seconds: a kill -9 keeps what was retained before it."""

from __future__ import annotations

import time

import psutil

from edge_mcepl.comm.broker.credentials import ADMIN_USER
from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.comm.client import BrokerAddress, MqttOptions, fetch_retained
from edge_mcepl.comm.topics import config_topic

from labsupport import admin, needs_mosquitto, wait_until

LAB = "keep"
# autosave_interval 1: mosquitto saves once more than one whole second has passed, so every ~2 s; the
# slack covers its event loop and a busy machine (autosave_interval 30, as before, fails this).
SAVED_WITHIN_S = 4.0


@needs_mosquitto
def test_a_retained_message_survives_kill_9_a_few_seconds_after_it_was_published(tmp_path):
    handle = start_broker(tmp_path / "b", LAB, 1, kind="mosquitto", port=0)
    database = tmp_path / "b" / "persistence" / "mosquitto.db"
    try:
        conn = admin(handle)
        conn.publish(config_topic(LAB), b"the lab config", retain=True).wait_for_publish(5)
        conn.close()
        published = time.time()
        # The retained message reaches the disk on mosquitto's clock alone (autosave_interval 30 would miss this).
        wait_until(lambda: database.exists() and database.stat().st_mtime > published, SAVED_WITHIN_S,
                   "mosquitto to save its persistence")
        first = handle.pid
        psutil.Process(first).kill()  # SIGKILL: no save on the way out
        wait_until(lambda: handle.pid != first, 5, "the supervisor to restart mosquitto")
        options = MqttOptions(ADMIN_USER, handle.credentials.admin_password, connect_timeout=10)
        got = fetch_retained(BrokerAddress.parse(handle.url), options, config_topic(LAB), "keep-fresh-subscriber", 5)
    finally:
        handle.stop()
    assert got == b"the lab config"
