"""A live lab as a dashboard source: the observer's read-only MQTT account, subscribed to what devices announce.

It subscribes to the lab config (retained, verified with the lab key before anything in it is
believed), every agent's retained status (each round's progress: docs/dashboard.md) and the
broker's ``$SYS`` byte counters — never to the masks, which neither the page nor this process
needs. The observer account can only read (docs/security.md), so a dashboard cannot disturb a lab.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import tempfile
import threading
from typing import Any

from ...comm.broker.bundles import Bundle
from ...comm.client import BrokerAddress, MqttConnection, MqttOptions
from ...comm.topics import config_topic, status_topic, topic_agent
from ...devicelab.signature import read_lab_message
from ...errors import UserError
from .base import LabSource

SYS_TOPICS = {"$SYS/broker/bytes/received": "bytes_received", "$SYS/broker/bytes/sent": "bytes_sent",
              "$SYS/broker/clients/connected": "clients"}


class MqttSource(LabSource):
    mode = "live"

    def __init__(self, bundle: Bundle, broker: str | None = None, options: MqttOptions | None = None) -> None:
        """``options``: TLS and protocol settings (the account is always the bundle's)."""
        self.bundle = bundle
        self.address = BrokerAddress.parse(broker or bundle.broker)
        self.options = dataclasses.replace(options or MqttOptions(), username=bundle.username,
                                           password=bundle.password)
        super().__init__()
        self._conn: MqttConnection | None = None
        self._ca_file: str | None = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None

    @property
    def where(self) -> str:
        return self.address.url

    def start(self) -> None:
        lab = self.bundle.lab
        options = self.options
        if self.bundle.ca and options.ca_file is None:  # pin the lab CA from the bundle, as join does
            fd, self._ca_file = tempfile.mkstemp(prefix="edge-mcepl-lab-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as f:
                f.write(self.bundle.ca)
            options = dataclasses.replace(options, ca_file=self._ca_file)
        conn = MqttConnection(self.address, options, f"edge-mcepl-{lab}-dashboard-{secrets.token_hex(3)}",
                              name="dashboard")
        conn.on(config_topic(lab), self._on_config)
        conn.on(status_topic(lab, "+"), self._on_status)
        conn.on("$SYS/broker/#", self._on_sys)
        # QoS 0: the broker sends each status once and the dashboard acknowledges nothing (docs/dashboard.md: traffic)
        conn.subscribe([config_topic(lab), status_topic(lab, "+"), *SYS_TOPICS], qos=0)
        self._conn = conn.connect()
        self.view.set_connected(True)
        self._watch = threading.Thread(target=self._watch_connection, name="dashboard-mqtt-watch", daemon=True)
        self._watch.start()

    def stop(self) -> None:
        self._stop.set()
        if self._conn is not None:
            self._conn.close()
        if self._ca_file:
            os.unlink(self._ca_file)
            self._ca_file = None

    # -- paho's thread ---------------------------------------------------------------------------

    def _on_config(self, _topic: str, payload: bytes) -> None:
        if not payload:
            return
        try:
            message = read_lab_message(payload, self.bundle.lab, self.bundle.lab_public_key)
        except UserError as exc:
            self.view.note("config", f"refused a lab config: {exc}")
            return
        self.view.set_lab(message)

    def _on_status(self, topic: str, payload: bytes) -> None:
        agent = topic_agent(topic)
        try:
            status: Any = json.loads(payload)
        except ValueError:
            return
        if agent is not None and isinstance(status, dict):
            self.view.observe_status(agent, status)

    def _on_sys(self, topic: str, payload: bytes) -> None:
        key = SYS_TOPICS.get(topic)
        if key is None:
            return
        try:
            self.view.set_traffic(key, int(payload))
        except ValueError:
            return

    def _watch_connection(self) -> None:
        """The header's broker state: the connection's, checked every half second (paho reconnects itself)."""
        was = True
        while not self._stop.wait(0.5):
            now = self._conn is not None and self._conn.connected
            if now != was:
                self.view.note("broker", f"connection to the broker {'back' if now else 'lost: reconnecting'}")
                self.view.set_connected(now)
                was = now
