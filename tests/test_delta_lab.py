"""Delta-coded masks in a real lab over mosquitto: lost messages, a killed and restarted agent and a late
joiner all lead back to exact masks within the stated bound (docs/wire-format.md#delta).

"Exact" is checked from the metrics rows: every mask a receiver used (``heard_digests``) must be the
one its sender sent that round (``sent_digest``). Waits are polls with generous timeouts.
"""

from __future__ import annotations

import re

from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.comm.mqtt_transport import ANSWER_ROUNDS, lost_on_purpose
from edge_mcepl.devicelab.schema import LabSettings

from labsupport import (
    assert_exact_reconstructions,
    log_text,
    needs_mosquitto,
    publish_lab,
    rows,
    start_join,
    stop_all,
    tiny_raw,
    wait_until,
)

pytestmark = needs_mosquitto
DROP = 0.3


def test_lost_messages_lead_back_to_exact_masks_within_the_answer_bound(tmp_path):
    lab, n, rounds = "dl", 4, 14
    handle = start_broker(tmp_path / "broker", lab, n, kind="mosquitto", port=0)
    dirs = [tmp_path / f"agent{i}" for i in range(n)]
    procs = {}
    try:
        publish_lab(handle, tiny_raw(name=lab, rounds=rounds, eval_every=100, **{"algorithm.mask_codec": "delta"}),
                    LabSettings(round_deadline_s=3.0, max_staleness=1, start_timeout_s=120))
        procs = {i: start_join(handle.bundle(i), dirs[i],
                               *(["--drop-incoming", str(DROP)] if i == 0 else [])) for i in range(n)}
        codes = {i: p.wait(300) for i, p in procs.items()}
    finally:
        stop_all(procs.values())
        handle.stop()
    assert set(codes.values()) == {0}
    lossy = rows(dirs[0])
    assert len(lossy) == rounds
    assert sum(r["dropped"] for r in lossy) > 0 and sum(r["missing_base"] for r in lossy) > 0
    assert_exact_reconstructions(dirs)
    # The bound: a message that was not lost but could not be used follows a loss of the same
    # sender by at most 1 + ANSWER_ROUNDS rounds (the delta after it, then until the keyframe asked for).
    neighbours = [int(s) for s in lossy[-1]["heard_digests"]] or [1, 3]
    lost = {(s, t) for s in neighbours for t in range(rounds) if lost_on_purpose(0, s, t, DROP)}
    assert lost
    for r in lossy:
        t = r["round"] - 1
        for s in neighbours:
            fresh = r["heard_digests"].get(str(s), [None])[0] == t
            if not fresh and (s, t) not in lost:
                assert any((s, u) in lost for u in range(t - 1 - ANSWER_ROUNDS, t)), (s, t)
    # The others lost nothing: they decoded every message, keyframes asked for included.
    assert all(r["missing_base"] == 0 and r["dropped"] == 0 for d in dirs[1:] for r in rows(d))
    assert any(not r["keyframe"] for d in dirs for r in rows(d))


def test_a_restarted_agent_and_a_late_joiner_decode_exactly_soon_after_starting(tmp_path):
    lab, n, rounds = "dr", 4, 12
    handle = start_broker(tmp_path / "broker", lab, n, kind="mosquitto", port=0)
    dirs = [tmp_path / f"agent{i}" for i in range(n)]
    procs = {}
    try:
        # The others start without agent 3 (start timeout), which joins two rounds late.
        publish_lab(handle, tiny_raw(name=lab, rounds=rounds, eval_every=100, **{"algorithm.mask_codec": "delta"}),
                    LabSettings(round_deadline_s=2.0, max_staleness=1, start_timeout_s=2))
        procs = {i: start_join(handle.bundle(i), dirs[i]) for i in range(3)}
        wait_until(lambda: len(rows(dirs[0])) >= 2, 120, "agent 0's second round", procs.values())
        procs[3] = start_join(handle.bundle(3), dirs[3])
        wait_until(lambda: len(rows(dirs[1])) >= 5, 120, "agent 1's fifth round", procs.values())
        procs[1].kill()  # a crash: no clean disconnect
        procs[1].wait()
        procs[1] = start_join(handle.bundle(1), dirs[1])  # resumes from its checkpoint
        codes = {i: p.wait(300) for i, p in procs.items()}
    finally:
        stop_all(procs.values())
        handle.stop()
    assert set(codes.values()) == {0}
    assert all(len(rows(d)) == rounds for d in dirs)
    assert_exact_reconstructions(dirs)
    # Each asked its neighbours on starting; only deltas sent before the answer can be refused: those
    # queued while it was away, and those on their way — all within ANSWER_ROUNDS of its first round.
    resumed = re.search(r"resuming from checkpoint \S+ after round (\d+) of", log_text(dirs[1]))
    assert resumed, log_text(dirs[1])[-2000:]
    for agent, first in ((1, int(resumed.group(1)) + 1), (3, 1)):
        refused = [r["round"] for r in rows(dirs[agent]) if r["missing_base"]]
        assert all(t <= first + ANSWER_ROUNDS for t in refused), (agent, first, refused)
    # and from then on they hear every neighbour's fresh mask again.
    for agent in (1, 3):
        last = rows(dirs[agent])[-3:]
        assert any(r["neighbours_heard"] == r["degree"] and r["stale"] == 0 for r in last)
