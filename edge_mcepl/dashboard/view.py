"""What the dashboard page shows, built from what a lab says about itself, and every change as a patch.

A :class:`LabView` holds the page's whole state (the JSON of docs/dashboard.md, "State"): the lab,
its topology, one entry per device, the per-round points the charts plot, the broker's counters
and an event list. Sources (:mod:`.sources`) feed it observations — the signed lab config, each
agent's retained status, a finished run's metrics rows — from whatever thread they run in; it
turns each into a *patch* (the same JSON shape, only what changed) and hands it to every listener,
so a browser gets a snapshot once and then only patches. Snapshot and subscription are taken under
one lock, so a listener never misses or doubles a change. The view never holds a mask: statuses
and rows are all the browser ever sees.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..devicelab.progress import Progress
from ..devicelab.schema import LabMessage

MAX_EVENTS = 500  # the page lists the newest 200; a reconnecting page gets these

# listener(kind, data): kind "snapshot" (replace the whole state) or "patch" (merge it)
Listener = Callable[[str, dict[str, Any]], None]

DEVICE_STATES = ("online", "offline", "done", "unknown")
# what a device row takes from an agent's status (devicelab/join.py publishes them; devicelab/progress.py)
STATUS_FIELDS = ("round", "bytes_sent", "bytes_received", "rejected", "round_seconds", "gather_seconds", "accuracy",
                 "eval_round")


def lab_fields(message: LabMessage) -> dict[str, Any]:
    """The header's fields of a lab config (the envelope's config is plain data)."""
    config = message.config
    return {"name": message.lab, "run_id": message.run_id, "model": config.get("model"),
            "dataset": (config.get("data") or {}).get("dataset"),
            "algorithm": (config.get("algorithm") or {}).get("name"),
            "agents": config.get("agents"), "rounds": config.get("rounds")}


def edges_of(neighbours: dict[int, list[int]]) -> list[list[int]]:
    """Each undirected edge once, smaller id first."""
    pairs = {(min(i, j), max(i, j)) for i, js in neighbours.items() for j in js if i != j}
    return [list(pair) for pair in sorted(pairs)]


def new_device(agent: int, profile: str | None, retention: float | None, width: float | None) -> dict[str, Any]:
    """A device row before it is heard from: its structure as the roster (or the run) declares it."""
    return {"agent": agent, "profile": profile, "retention": retention, "width": width, "state": "unknown",
            "last_seen": None, "round": 0, **Progress().fields()}


class LabView:
    """The dashboard's state; thread-safe. ``mode`` is "live" (a broker) or "run" (a finished run directory)."""

    def __init__(self, mode: str, where: str, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._listeners: list[Listener] = []
        self._lab: dict[str, Any] = {"name": None, "run_id": None, "mode": mode, "where": where,
                                     "broker_connected": None}
        self._topology: dict[str, Any] = {"edges": []}
        self._devices: dict[int, dict[str, Any]] = {}
        self._points: dict[tuple[int, int], dict[str, Any]] = {}
        self._traffic: dict[str, Any] = {"bytes_received": None, "bytes_sent": None, "clients": None}
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._pending: dict[int, dict[str, Any]] = {}  # statuses heard before the lab config (live mode)

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener("snapshot", state)`` now and with every change after; returns the unsubscriber."""
        with self._lock:
            listener("snapshot", self._snapshot())
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    @property
    def run_id(self) -> str | None:
        return self._lab["run_id"]

    # -- observations --------------------------------------------------------------------------

    def set_lab(self, message: LabMessage) -> None:
        """A (new) verified lab config: the roster becomes the device table. Another run id starts over."""
        with self._lock:
            if self._lab["run_id"] == message.run_id:
                return
            restart = self._lab["run_id"] is not None
            self._reset(lab_fields(message), edges_of(message.neighbours), {
                i: new_device(i, e.profile, e.retention.conv, e.retention.width) for i, e in message.roster.items()})
            self._event("config", None, f"run {message.run_id} of lab {message.lab}"
                        + (" (a new run)" if restart else "")
                        + f": {message.config.get('agents')} agents, {message.config.get('rounds')} rounds",
                        broadcast=False)  # the snapshot carries it
            self._broadcast("snapshot", self._snapshot())
            pending, self._pending = self._pending, {}
        for agent, status in sorted(pending.items()):
            self.observe_status(agent, status)

    def set_run(self, lab: dict[str, Any], edges: list[list[int]], devices: dict[int, dict[str, Any]]) -> None:
        """A finished run's lab, topology and devices (``devices``: agent → profile, retention and width)."""
        with self._lock:
            self._reset(lab, edges, {i: new_device(i, d.get("profile"), d.get("retention"), d.get("width"))
                                     for i, d in devices.items()})
            self._broadcast("snapshot", self._snapshot())

    def observe_status(self, agent: int, status: dict[str, Any]) -> None:
        """An agent's retained status message (live mode): state, round, totals, last round's times."""
        with self._lock:
            if self._lab["run_id"] is None:
                self._pending[agent] = status
                return
            device = self._devices.get(agent)
            if device is None or status.get("run_id") != self._lab["run_id"]:
                return  # another run's retained status, or an agent the roster does not name
            now = self._clock()
            state = status.get("state") if status.get("state") in DEVICE_STATES else "unknown"
            change: dict[str, Any] = {k: status[k] for k in STATUS_FIELDS if k in status}
            change["state"] = state
            if state != "offline":
                change["last_seen"] = now
            self._status_events(device, change, status)
            point = self._point(agent, {**device, **change}) if state == "online" else None
            self._apply_device(agent, change, point)

    def observe_row(self, row: dict[str, Any], progress: Progress, state: str) -> None:
        """One metrics row of a finished run, with the agent's totals up to it (``progress``, row folded in)."""
        agent = int(row["agent"])
        change = {"round": int(row["round"]), "state": state, **progress.fields()}
        with self._lock:
            before = self._devices.get(agent)
            if before is None:
                return
            if sum(progress.rejected.values()) > sum(before["rejected"].values()):
                self._event("reject", agent, _refusals(agent, progress.rejected, before["rejected"],
                                                       round=int(row["round"])))
            self._apply_device(agent, change, self._point(agent, {**before, **change}))

    def note(self, kind: str, text: str, agent: int | None = None) -> None:
        """An event the source saw itself (the broker connection lost or back, a refused config)."""
        with self._lock:
            self._event(kind, agent, text)

    def set_connected(self, connected: bool) -> None:
        with self._lock:
            if self._lab["broker_connected"] == connected:
                return
            self._lab["broker_connected"] = connected
            self._broadcast("patch", {"lab": {"broker_connected": connected, "server_time": self._clock()}})

    def set_traffic(self, key: str, value: int) -> None:
        """A broker counter (``$SYS``): bytes_received, bytes_sent or clients."""
        with self._lock:
            if self._traffic.get(key) == value:
                return
            self._traffic[key] = value
            self._broadcast("patch", {"traffic": dict(self._traffic)})  # the page replaces it whole

    # -- internals (the lock held) --------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {"lab": {**self._lab, "server_time": self._clock()}, "topology": dict(self._topology),
                "devices": {str(i): dict(d) for i, d in sorted(self._devices.items())},
                "points": [dict(p) for _, p in sorted(self._points.items(), key=lambda kv: (kv[0][1], kv[0][0]))],
                "traffic": dict(self._traffic), "events": list(self._events)}

    def _reset(self, lab: dict[str, Any], edges: list[list[int]], devices: dict[int, dict[str, Any]]) -> None:
        self._lab.update(lab)
        self._topology = {"edges": [list(e) for e in edges]}
        self._devices, self._points = devices, {}
        self._events.clear()

    def _broadcast(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(kind, data)

    def _event(self, kind: str, agent: int | None, text: str, broadcast: bool = True) -> None:
        event = {"time": self._clock(), "kind": kind, "agent": agent, "text": text}
        self._events.append(event)
        if broadcast:
            self._broadcast("patch", {"events": [event], "lab": {"server_time": event["time"]}})

    def _apply_device(self, agent: int, change: dict[str, Any], point: dict[str, Any] | None) -> None:
        self._devices[agent].update(change)
        patch: dict[str, Any] = {"devices": {str(agent): change}, "lab": {"server_time": self._clock()}}
        if point is not None:
            self._points[(agent, point["round"])] = point
            patch["points"] = [point]
        self._broadcast("patch", patch)

    @staticmethod
    def _point(agent: int, device: dict[str, Any]) -> dict[str, Any] | None:
        """The charts' point of a device's completed round (None before its first round)."""
        if not device.get("round"):
            return None
        point = {"agent": agent, "round": device["round"], "round_seconds": device.get("round_seconds"),
                 "gather_seconds": device.get("gather_seconds"), "bytes_sent": device.get("bytes_sent", 0),
                 "bytes_received": device.get("bytes_received", 0)}
        if device.get("eval_round") == device["round"] and device.get("accuracy") is not None:
            point["accuracy"] = device["accuracy"]
        return point

    def _status_events(self, device: dict[str, Any], change: dict[str, Any], status: dict[str, Any]) -> None:
        agent, before, after = device["agent"], device["state"], change["state"]
        if after != before:
            at = f" at round {change.get('round', device['round'])}"
            if after == "online":
                if before == "offline":
                    self._event("reconnect", agent, f"agent {agent} is back{at}")
                elif before == "unknown":
                    profile = f" (profile {device['profile']})" if device.get("profile") else ""
                    self._event("join", agent, f"agent {agent} joined{profile}{at}")
            elif after == "offline":
                reason = status.get("reason")
                self._event("drop", agent, f"agent {agent} went offline{at}" + (f": {reason}" if reason else ""))
            elif after == "done":
                acc = change.get("accuracy")
                self._event("done", agent, f"agent {agent} finished {change.get('round', device['round'])} rounds"
                            + (f", accuracy {acc:.4f}" if isinstance(acc, float) else ""))
        rejected = change.get("rejected")
        if isinstance(rejected, dict) and sum(rejected.values()) > sum(device["rejected"].values()):
            self._event("reject", agent, _refusals(agent, rejected, device["rejected"], change.get("round")))


def _refusals(agent: int, now: dict[str, int], before: dict[str, int], round: int | None) -> str:
    new = {k: v - before.get(k, 0) for k, v in sorted(now.items()) if v > before.get(k, 0)}
    what = ", ".join(f"{k} {v}" for k, v in new.items())
    return f"agent {agent} refused {sum(new.values())} message(s) by round {round}: {what}"
