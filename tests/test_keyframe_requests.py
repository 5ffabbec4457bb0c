"""A receiver that lost a sender's base refuses its delta (counted) and gets the masks again, standing alone."""

from __future__ import annotations

from edge_mcepl.simulator import Simulator
from edge_mcepl.wire.history import MaskHistory

from conftest import tiny_lab_config


def test_a_receiver_that_lost_its_bases_is_exact_again_one_round_later():
    config = tiny_lab_config(rounds=6, **{"algorithm.mask_codec": "delta", "algorithm.keyframe_every": 100})
    sim = Simulator(config, log=lambda _: None)
    rows = [sim.run_round(t) for t in range(3)]
    forgetful = sim.agents[1]
    forgetful.rule.history = MaskHistory()  # as after a restart: nothing of its neighbours' is held
    rows += [sim.run_round(t) for t in range(3, 6)]
    sent = {(r["agent"], r["round"] - 1): r["sent_digest"] for round_rows in rows for r in round_rows}
    degree = len(forgetful.neighbours)

    lost = rows[3][1]
    assert (lost["missing_base"], lost["rejected"], lost["neighbours_heard"]) == (degree, degree, 0)
    assert lost["heard_digests"] == {}
    for j in forgetful.neighbours:  # asked: the refused round's masks again, standing alone, and a keyframe next
        assert [rows[t][j]["keyframe"] for t in range(6)] == [True, False, False, False, True, False]
        assert [rows[t][j]["resent"] for t in range(6)] == [0, 0, 0, 0, 1, 0]
    for round_rows in rows[4:]:
        assert round_rows[1]["neighbours_heard"] == degree and round_rows[1]["missing_base"] == 0
    # Every mask anybody used is exactly the one its sender sent that round.
    for round_rows in rows:
        for r in round_rows:
            for s, (t, digest) in r["heard_digests"].items():
                assert digest == sent[(int(s), t)]
