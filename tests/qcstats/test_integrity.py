"""Data-integrity signals: distributions against closed forms, flags on worked series."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from qcwx.qcstats import integrity as ig


@pytest.mark.parametrize("x", [0.1, 1.0, 3.0, 7.5, 20.0, 60.0])
def test_chi2_matches_the_closed_forms_for_even_df(x):
    # df = 2: 1 − e^(−x/2); df = 4: 1 − e^(−x/2)(1 + x/2)
    assert ig.chi2_cdf(x, 2) == pytest.approx(1 - math.exp(-x / 2), rel=1e-10, abs=1e-15)
    assert ig.chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-9)


def test_chi2_matches_table_points_for_nine_df():
    # published critical values of χ²₉
    assert ig.chi2_sf(16.919, 9) == pytest.approx(0.05, abs=2e-5)
    assert ig.chi2_sf(27.877, 9) == pytest.approx(0.001, abs=2e-6)
    assert ig.chi2_cdf(2.088, 9) == pytest.approx(0.01, abs=2e-5)


def test_binomial_tail_equals_the_exact_sum():
    for k, n, p in [(3, 10, 0.2), (30, 60, 0.197), (0, 5, 0.3), (6, 5, 0.3)]:
        exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert ig.binom_sf(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_score_is_ten_times_minus_log_p_capped():
    assert ig.score_of(1e-4) == 40 and ig.score_of(1e-12) == 100 and ig.score_of(0.5) == \
        pytest.approx(-10 * math.log10(0.5))


def test_too_smooth_series_is_flagged_and_an_honest_one_is_not():
    rng = np.random.default_rng(2)
    smooth = 5.5 + rng.normal(0, 0.02, 60)
    f = ig.sd_too_low(smooth, 0.12)
    s = float(np.std(smooth, ddof=1))
    assert f.evidence["ratio"] == pytest.approx(s / 0.12)
    assert f.p_value == pytest.approx(ig.chi2_cdf(59 * (s / 0.12) ** 2, 59))
    assert f.raised
    assert not ig.sd_too_low(5.5 + rng.normal(0, 0.1, 60), 0.12).raised
    assert ig.sd_too_low(smooth[:10], 0.12).score == 0  # too few to judge


def test_identical_run_worked_example():
    texts = ["5.50", "5.52", "5.49", *["5.51"] * 6, "5.47", *["5.53", "5.48"] * 8]
    f = ig.identical_runs(texts, sd=0.05, resolution=0.01)
    q = 0.01 / (2 * math.sqrt(math.pi) * 0.05)
    assert f.evidence["length"] == 6 and f.evidence["value"] == "5.51"
    assert f.p_value == pytest.approx((len(texts) - 6 + 1) * q**5)
    assert f.raised
    assert not ig.identical_runs(texts[:3] + texts[8:] * 2, sd=0.05, resolution=0.01).raised


def test_terminal_digit_preference_worked_counts():
    texts = [f"5.{d}0" for d in [0] * 30 + [5] * 30 + list(range(10)) * 4]  # last digit 0 only
    assert ig.digit_preference(texts, 0.3, 0.01).evidence["counts"][0] == 100
    # digits 0 and 5 favoured: counts 34, 4, 4, 4, 4, 34, 4, 4, 4, 4 over n = 100
    texts = [f"{d}" for d in [0] * 30 + [5] * 30 + list(range(10)) * 4]
    f = ig.digit_preference(texts, sd=10, resolution=1)
    stat = 2 * (34 - 10) ** 2 / 10 + 8 * (4 - 10) ** 2 / 10
    assert f.evidence["chi2"] == pytest.approx(stat)
    assert f.p_value == pytest.approx(ig.chi2_sf(stat, 9))
    assert f.raised and f.evidence["top_digit"] == 0
    uniform = [str(d) for d in list(range(10)) * 6]
    assert not ig.digit_preference(uniform, 10, 1).raised


def test_values_always_on_target():
    target = np.full(40, 5.50)
    values = np.where(np.arange(40) % 4 == 0, 5.56, 5.50)  # 30 of 40 read as the target
    f = ig.on_target(values, target, np.full(40, 0.12), 0.01)
    p0 = 0.01 / (0.12 * math.sqrt(2 * math.pi))
    assert f.evidence["hits"] == 30
    assert f.p_value == pytest.approx(ig.binom_sf(30, 40, p0))
    assert f.raised


def test_copied_series_found_by_values_and_by_pattern_honest_pair_not():
    rng = np.random.default_rng(4)
    days = pd.date_range("2026-09-01", periods=60)
    a = np.round(5.5 + rng.normal(0, 0.1, 60), 2)
    b = a.copy()                                   # copied values
    c = np.round(a * 1.03 + 0.01, 2)               # same day pattern, rescaled
    d = np.round(5.5 + rng.normal(0, 0.1, 60), 2)  # honest
    b[::7] = np.nan
    frame = pd.DataFrame({"A": a, "B": b, "C": c, "D": d}, index=days)
    pairs = {(p.a, p.b): p for p in ig.copied_pairs(frame)}
    assert set(pairs) == {("A", "B"), ("A", "C"), ("B", "C")}
    ab = pairs[("A", "B")]
    assert ab.n == 51 and ab.identical == 51
    ac = pairs[("A", "C")]
    ok = ~np.isnan(np.diff(a)) & ~np.isnan(np.diff(c))
    assert ac.r == pytest.approx(np.corrcoef(np.diff(a)[ok], np.diff(c)[ok])[0, 1])
    assert ac.flag.raised


def test_past_dated_results_entered_at_once():
    start = date(2026, 10, 1)
    runs = [start + timedelta(days=i) for i in range(15)]
    batch = datetime(2026, 10, 20, 9, 0)
    entered = [batch + timedelta(minutes=i) for i in range(15)]
    daily = [datetime(2026, 9, 1 + i, 9, 30) for i in range(20)]  # same-day entry: ignored
    f = ig.backdated_batches(runs + [d.date() for d in daily], entered + daily)
    assert f.evidence["days"] == 15 and f.evidence["first"] == start
    assert f.score == 60 and f.raised
    spread = [batch + timedelta(hours=i) for i in range(15)]  # an hour apart: no batch
    assert not ig.backdated_batches(runs, spread).raised
