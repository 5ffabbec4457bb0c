"""The dashboard's state: statuses become device rows, chart points and events; every change reaches listeners once."""

from __future__ import annotations

import itertools
import json

from edge_mcepl.dashboard.view import LabView
from edge_mcepl.devicelab.schema import LabMessage

KEY = "A" * 43 + "="
RUN, OTHER = "0123456789abcdef", "fedcba9876543210"


def message(run_id: str = RUN, agents: int = 3) -> LabMessage:
    return LabMessage.model_validate_json(json.dumps({
        "format": "edge-mcepl-lab/2", "lab": "t", "run_id": run_id, "fingerprint": "0" * 32, "num_classes": 10,
        "config": {"agents": agents, "rounds": 10, "model": "small-cnn", "data": {"dataset": "synthetic"},
                   "algorithm": {"name": "mcepl"}},
        "neighbours": {str(i): [(i - 1) % agents, (i + 1) % agents] for i in range(agents)},
        "roster": {str(i): {"public_key": KEY, "retention": {"conv": 0.3 + 0.1 * i, "linear": 0.9, "width": 1.0},
                            "profile": "rpi4" if i == 0 else None} for i in range(agents)}}))


def status(state: str, round: int, run_id: str = RUN, **extra) -> dict:
    return {"state": state, "agent": 0, "run_id": run_id, "round": round, "bytes_sent": 100 * round,
            "bytes_received": 90 * round, "rejected": {}, "round_seconds": 0.5, "gather_seconds": 0.1,
            "accuracy": None, "eval_round": None, **extra}


def view_with_listener() -> tuple[LabView, list[tuple[str, dict]]]:
    clock = itertools.count(1000.0)
    view = LabView("live", "mqtt://127.0.0.1:1883", clock=lambda: next(clock))
    got: list[tuple[str, dict]] = []
    view.subscribe(lambda kind, data: got.append((kind, data)))
    return view, got


def patch_events(got: list[tuple[str, dict]]) -> list[dict]:
    return [e for kind, data in got if kind == "patch" for e in data.get("events", [])]


def test_the_roster_becomes_the_device_table_and_the_neighbours_the_topology():
    view, got = view_with_listener()
    view.set_lab(message())
    state = view.snapshot()
    assert state["lab"]["name"] == "t" and state["lab"]["run_id"] == RUN and state["lab"]["rounds"] == 10
    assert state["topology"]["edges"] == [[0, 1], [0, 2], [1, 2]]
    assert [(d["agent"], d["state"], d["profile"]) for d in state["devices"].values()] == [
        (0, "unknown", "rpi4"), (1, "unknown", None), (2, "unknown", None)]
    assert state["devices"]["1"]["retention"] == 0.4
    assert [kind for kind, _ in got] == ["snapshot", "snapshot"]  # on subscribing, then the new lab


def test_a_status_updates_its_row_adds_a_point_and_logs_the_join():
    view, got = view_with_listener()
    view.set_lab(message())
    view.observe_status(0, status("online", 3, accuracy=0.5, eval_round=3))
    device = view.snapshot()["devices"]["0"]
    assert (device["state"], device["round"], device["bytes_sent"], device["accuracy"]) == ("online", 3, 300, 0.5)
    assert device["last_seen"] is not None
    assert view.snapshot()["points"] == [{"agent": 0, "round": 3, "round_seconds": 0.5, "gather_seconds": 0.1,
                                          "bytes_sent": 300, "bytes_received": 270, "accuracy": 0.5}]
    events = patch_events(got)
    assert [(e["kind"], e["agent"]) for e in events] == [("join", 0)] and "profile rpi4" in events[0]["text"]
    patches = [data for kind, data in got if kind == "patch" and "devices" in data]
    assert patches[-1]["devices"]["0"]["round"] == 3 and patches[-1]["points"][0]["round"] == 3


def test_a_point_has_an_accuracy_only_in_a_round_that_was_evaluated():
    view, _ = view_with_listener()
    view.set_lab(message())
    view.observe_status(0, status("online", 2, accuracy=0.5, eval_round=2))
    view.observe_status(0, status("online", 3, accuracy=0.5, eval_round=2))
    points = {p["round"]: p for p in view.snapshot()["points"]}
    assert "accuracy" in points[2] and "accuracy" not in points[3]


def test_drop_reconnect_and_done_are_events_and_a_will_keeps_the_last_round():
    view, got = view_with_listener()
    view.set_lab(message())
    view.observe_status(0, status("online", 2))
    seen = view.snapshot()["devices"]["0"]["last_seen"]
    view.observe_status(0, {"state": "offline", "agent": 0, "run_id": RUN, "reason": "connection lost"})
    device = view.snapshot()["devices"]["0"]
    assert (device["state"], device["round"], device["last_seen"]) == ("offline", 2, seen)
    view.observe_status(0, status("online", 2))
    view.observe_status(0, status("done", 10, accuracy=0.75, eval_round=10))
    events = patch_events(got)
    assert [e["kind"] for e in events] == ["join", "drop", "reconnect", "done"]
    assert "connection lost" in events[1]["text"] and "0.7500" in events[3]["text"]


def test_new_refusals_are_an_event_naming_the_reasons():
    view, got = view_with_listener()
    view.set_lab(message())
    view.observe_status(0, status("online", 1, rejected={"signature": 1}))
    view.observe_status(0, status("online", 2, rejected={"signature": 1}))  # nothing new
    view.observe_status(0, status("online", 3, rejected={"signature": 2, "early": 5}))
    refusals = [e["text"] for e in patch_events(got) if e["kind"] == "reject"]
    assert refusals == ["agent 0 refused 1 message(s) by round 1: signature 1",
                        "agent 0 refused 6 message(s) by round 3: early 5, signature 1"]


def test_statuses_before_the_config_are_kept_and_another_runs_are_ignored():
    view, _ = view_with_listener()
    view.observe_status(0, status("online", 4))  # retained messages arrive in any order
    view.observe_status(1, status("online", 9, run_id=OTHER) | {"agent": 1})
    view.set_lab(message())
    devices = view.snapshot()["devices"]
    assert (devices["0"]["state"], devices["0"]["round"]) == ("online", 4)
    assert devices["1"]["state"] == "unknown"
    view.observe_status(7, status("online", 1))  # not in the roster
    assert "7" not in view.snapshot()["devices"]


def test_a_new_run_starts_the_page_over():
    view, got = view_with_listener()
    view.set_lab(message())
    view.observe_status(0, status("online", 4))
    view.set_lab(message(OTHER))
    state = view.snapshot()
    assert state["lab"]["run_id"] == OTHER and state["points"] == []
    assert state["devices"]["0"]["state"] == "unknown"
    assert got[-1][0] == "snapshot" and "a new run" in state["events"][-1]["text"]


def test_a_late_subscriber_gets_everything_so_far_in_its_snapshot():
    view, _ = view_with_listener()
    view.set_lab(message())
    view.observe_status(0, status("online", 1))
    late: list[tuple[str, dict]] = []
    unsubscribe = view.subscribe(lambda kind, data: late.append((kind, data)))
    assert late[0][0] == "snapshot" and late[0][1]["devices"]["0"]["round"] == 1
    view.observe_status(0, status("online", 2))
    unsubscribe()
    view.observe_status(0, status("online", 3))
    rounds = [data["devices"]["0"]["round"] for kind, data in late[1:] if "devices" in data]
    assert rounds == [2]


def test_unchanged_broker_counters_are_not_resent():
    view, got = view_with_listener()
    view.set_traffic("bytes_sent", 10)
    view.set_traffic("bytes_sent", 10)
    view.set_traffic("bytes_sent", 12)
    none = {"bytes_received": None, "clients": None}
    assert [data["traffic"] for kind, data in got if "traffic" in data and kind == "patch"] == [
        {**none, "bytes_sent": 10}, {**none, "bytes_sent": 12}]
