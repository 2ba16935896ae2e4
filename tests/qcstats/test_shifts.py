"""CUSUM shift detection and cause attribution, checked against hand computation."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from qcwx.qcstats import shifts as sh


def _hand_cusum(x, k):
    up, lo, cu, cl = [], [], 0.0, 0.0
    for v in x:
        cu = max(0.0, cu + v - k)
        cl = max(0.0, cl - v - k)
        up.append(cu)
        lo.append(cl)
    return up, lo


def test_cusum_matches_the_worked_example():
    # Montgomery's recursion by hand: x = 1, 2, -1, -3 with k = 0.5
    up, lo = sh.cusum([1.0, 2.0, -1.0, -3.0], k=0.5)
    assert up.tolist() == [0.5, 2.0, 0.5, 0.0]
    assert lo.tolist() == [0.0, 0.0, 0.5, 3.0]


def test_cusum_equals_an_independent_loop_on_random_data():
    x = np.random.default_rng(3).normal(size=200)
    up, lo = sh.cusum(x, k=1.0)
    hu, hl = _hand_cusum(x, 1.0)
    assert np.allclose(up, hu) and np.allclose(lo, hl)


def test_moving_range_sigma_is_mean_range_over_d2():
    x = [1.0, 3.0, 2.0, 2.0, 6.0]
    # moving ranges 2, 1, 0, 4 -> mean 1.75 -> / 1.128
    assert sh.moving_range_sigma(x) == pytest.approx(1.75 / 1.128)
    with pytest.raises(ValueError):
        sh.moving_range_sigma([1.0])


def test_a_step_is_dated_and_sized():
    # alternating ±0.5 (σ̂ = 1/1.128) then +3 from day 40
    z = np.array([0.5 if i % 2 else -0.5 for i in range(80)])
    z[40:] += 3.0
    found = sh.detect_shifts(z)
    assert len(found) == 1
    s = found[0]
    assert s.start == 40 and s.direction == 1
    assert s.size == pytest.approx(float(z[40:].mean() - z[:40].mean()))
    assert s.n_after == 40
    # standardised day 40 is (2.5 - 0) * 1.128 = 2.82, minus k = 1 gives 1.82 per day
    # on average: alarm when the sum exceeds 5, i.e. on day 42 (1.82 + 0.69 + 2.82 = 5.3)
    std = (z - np.median(z[:20])) / sh.moving_range_sigma(z)
    up, _ = sh.cusum(std, k=1.0)
    assert s.alarm == int(np.argmax(up > 5.0))


def test_a_second_alarm_soon_after_in_the_same_direction_is_the_same_shift():
    z = np.array([0.5 if i % 2 else -0.5 for i in range(80)])
    z[40:42] += 1.5  # a mild start makes the first level estimate too low…
    z[42:] += 4.0    # …and the real level is higher: a second alarm five days later
    found = sh.detect_shifts(z)
    assert [(f.start, f.direction) for f in found] == [(40, 1)]
    assert found[0].size == pytest.approx(float(z[40:].mean() - z[:40].mean()))
    saved = sh.MERGE_DAYS, sh.LEVEL_DAYS
    try:  # re-centred on the alarm days alone and unmerged, it would be two shifts
        sh.MERGE_DAYS, sh.LEVEL_DAYS = 0, 1
        assert len(sh.detect_shifts(z)) == 2
    finally:
        sh.MERGE_DAYS, sh.LEVEL_DAYS = saved


def test_a_corrected_shift_shows_the_change_back():
    z = np.array([0.5 if i % 2 else -0.5 for i in range(100)])
    z[40:60] -= 3.0
    found = sh.detect_shifts(z)
    assert [(f.start, f.direction) for f in found] == [(40, -1), (60, 1)]
    assert found[0].size == pytest.approx(-3.0, abs=0.05)


def test_no_shift_in_a_flat_noisy_series_and_short_series_are_skipped():
    rng = np.random.default_rng(11)
    assert sh.detect_shifts(rng.normal(0, 0.8, 10)) == []
    assert sh.detect_shifts(np.zeros(50)) == []  # no scatter: nothing to judge against
    with pytest.raises(ValueError):
        sh.detect_shifts([0.0, np.nan] * 20)


def test_false_alarms_on_simulated_honest_series_are_rare():
    rng = np.random.default_rng(5)
    alarms = sum(bool(sh.detect_shifts(rng.normal(0, 0.8, 120))) for _ in range(300))
    assert alarms / 300 < 0.06


D0 = date(2026, 10, 1)


def _peer(sid, lab, reagent, shifted_on=None, direction=1, qc="QC1"):
    shifts = ((shifted_on, direction),) if shifted_on else ()
    return sh.PeerSystem(sid, lab, {"reagent_lot": reagent, "qc_lot": qc}, shifts)


def test_labs_on_one_reagent_lot_shifting_together_name_the_lot():
    me = _peer(1, 10, "R-2611", D0)
    peers = [me, _peer(2, 11, "R-2611", D0 + timedelta(days=1)),
             _peer(3, 12, "R-2611", D0 - timedelta(days=2)), _peer(4, 13, "R-2611"),
             *[_peer(5 + i, 20 + i, "R-OLD") for i in range(20)]]
    got = sh.attribute(me, D0, 1, peers, [])
    assert (got.scope, got.lot_kind, got.lot) == ("shared", "reagent_lot", "R-2611")
    assert (got.labs_shifted, got.labs_on_lot) == (3, 4)
    assert got.shifted_labs == (10, 11, 12)


def test_opposite_direction_or_far_dates_do_not_count_and_local_changes_are_listed():
    me = _peer(1, 10, "R-2611", D0)
    peers = [me, _peer(2, 11, "R-2611", D0, direction=-1),
             _peer(3, 12, "R-2611", D0 + timedelta(days=20)), _peer(4, 13, "R-2611")]
    changes = [sh.ChangeEvent(D0 - timedelta(days=1), "calibration", "校准"),
               sh.ChangeEvent(D0 - timedelta(days=30), "reagent_lot", "old"),
               sh.ChangeEvent(D0 + timedelta(days=1), "limits", "新靶值"),
               sh.ChangeEvent(D0 - timedelta(days=5), "maintenance", "更换灯泡")]
    got = sh.attribute(me, D0, 1, peers, changes)
    assert got.scope == "local"
    assert [(gap, c.kind) for gap, c in got.changes] == [
        (-1, "calibration"), (1, "limits"), (-5, "maintenance")]


def test_a_lot_shared_by_few_of_many_labs_is_not_blamed():
    me = _peer(1, 10, "R-A", D0, qc="QC1")
    peers = [me, _peer(2, 11, "R-B", D0, qc="QC1"), _peer(3, 12, "R-C", D0, qc="QC1"),
             *[_peer(4 + i, 30 + i, "R-D", qc="QC1") for i in range(10)]]
    got = sh.attribute(me, D0, 1, peers, [])
    assert got.scope == "local"  # 3 of 13 labs on QC1 is below half
