"""Control limits and period summaries (QC_SPEC section 2)."""

import doctest
import statistics

import numpy as np
import pandas as pd
import pytest

from qcwx.qcstats import limits
from qcwx.qcstats.limits import (
    InsufficientDataError,
    cumulative_limits,
    cv_percent,
    period_summary,
    provisional_limits,
)
from qcwx.qcstats.westgard import RULE_CODES

DAYS = pd.date_range("2025-03-01", periods=20, freq="D")


def test_docstring_examples_run():
    assert limits.__doc__
    assert doctest.testmod(limits).failed == 0


def test_provisional_limits_drop_an_outlier_beyond_3_sd_once_and_take_one_more_result():
    # The first 20 leave 19 after dropping 9.9, so the 21st result is taken as well.
    values = np.array([5.0, 5.2] * 9 + [4.8, 9.9, 5.1, 7.7])
    est = provisional_limits(values, pd.date_range("2025-03-01", periods=22))
    kept = np.r_[values[:19], values[20]]
    assert (est.n_taken, est.n_excluded, est.n_used) == (21, 1, 20)
    assert est.mean == pytest.approx(statistics.mean(kept))
    assert est.sd == pytest.approx(statistics.stdev(kept))
    assert est.cv == pytest.approx(100 * statistics.stdev(kept) / statistics.mean(kept))
    assert (str(est.first_day), str(est.last_day)) == ("2025-03-01", "2025-03-21")


def test_provisional_limits_drop_only_once():
    # After dropping 9.9 the value 5.6 lies beyond 3 SD of the rest; it is kept.
    values = np.array([5.0, 5.1] * 9 + [5.6, 9.9, 5.05])
    est = provisional_limits(values, pd.date_range("2025-03-01", periods=21))
    assert (est.n_excluded, est.n_used) == (1, 20)
    assert abs(5.6 - est.mean) > 3 * est.sd


def test_provisional_limits_keep_everything_without_outliers():
    values = np.linspace(4.0, 6.0, 20)
    est = provisional_limits(values, DAYS)
    assert (est.n_used, est.n_excluded) == (20, 0)
    assert est.sd == pytest.approx(values.std(ddof=1))


def test_provisional_limits_exclude_a_value_exactly_at_3_sd():
    # Mean 10 and sample SD 1 exactly in binary floating point; 13.0 has |z| == 3, so it
    # is dropped and only 19 results remain: not enough.
    base = [3.0] + [-1.0] * 4 + [1.0] + [-1.0, 1.0] * 2 + [-0.5, 0.5] * 2 + [0.0] * 6
    values = np.array(base) + 10.0
    assert (values.mean(), values.std(ddof=1)) == (10.0, 1.0)
    with pytest.raises(InsufficientDataError):
        provisional_limits(values, DAYS)
    assert provisional_limits(np.r_[values[1:], 10.0], DAYS).n_excluded == 0


# Issue 9 item 3: 20 days around 5.0, then 40 days around 5.5 (values as entered).
FIRST_20_DAYS = [4.93, 5.03, 5.0, 5.12, 5.01, 4.94, 5.03, 5.02, 4.96, 5.05,
                 5.11, 4.95, 5.06, 4.91, 4.99, 5.06, 4.96, 5.02, 4.94, 4.98]
NEXT_40_DAYS = [5.32, 5.55, 5.41, 5.58, 5.5, 5.47, 5.48, 5.33, 5.44, 5.5,
                5.56, 5.41, 5.38, 5.54, 5.47, 5.58, 5.74, 5.49, 5.55, 5.33,
                5.52, 5.41, 5.52, 5.62, 5.57, 5.64, 5.61, 5.51, 5.55, 5.42,
                5.36, 5.26, 5.46, 5.55, 5.53, 5.57, 5.36, 5.59, 5.54, 5.37]


def test_provisional_limits_use_the_earliest_results_not_the_whole_history():
    values = FIRST_20_DAYS + NEXT_40_DAYS
    est = provisional_limits(values, pd.date_range("2025-03-01", periods=60))
    # Independently: the mean and SD of the first 20 days (none is beyond 3 SD).
    assert est.mean == pytest.approx(statistics.mean(FIRST_20_DAYS), abs=1e-12)
    assert est.sd == pytest.approx(statistics.stdev(FIRST_20_DAYS), abs=1e-12)
    assert (round(est.mean, 3), round(est.sd, 3)) == (5.003, 0.059)
    assert (est.n_used, est.n_excluded, str(est.first_day), str(est.last_day)) == (
        20, 0, "2025-03-01", "2025-03-20")
    # What the old code gave from the whole history (the 5.328 / 0.248).
    assert (round(statistics.mean(values), 3), round(statistics.stdev(values), 3)) == (
        5.328, 0.248)


def test_provisional_limits_count_the_days_left_after_exclusion():
    # 18 days, 2 runs on day 19, an outlier alone on day 20, then day 21: 21 results on 20
    # days leave 20 results on only 19 days, so the result of day 21 is needed too.
    days = [*pd.date_range("2025-03-01", periods=19), pd.Timestamp("2025-03-19"),
            pd.Timestamp("2025-03-20"), pd.Timestamp("2025-03-21")]
    values = np.r_[[5.0, 5.2] * 10, 9.9, 5.1]
    est = provisional_limits(values, days)
    assert (est.n_taken, est.n_used, est.n_excluded) == (22, 21, 1)
    assert str(est.last_day) == "2025-03-21"


def test_provisional_limits_report_what_is_missing():
    with pytest.raises(InsufficientDataError) as info:
        provisional_limits(np.arange(25.0), list(DAYS[:15]) + [DAYS[14]] * 10)
    assert (info.value.n_results, info.value.n_days) == (25, 15)
    with pytest.raises(InsufficientDataError, match="got 0 results on 0 days"):
        provisional_limits([], [])


def test_provisional_limits_need_results_in_measurement_order():
    with pytest.raises(ValueError, match="measurement order"):
        provisional_limits(np.arange(20.0), DAYS[::-1])


def test_provisional_limits_with_constant_values_drop_nothing():
    est = provisional_limits(np.full(20, 3.0), DAYS)
    assert (est.mean, est.sd, est.n_excluded, est.cv) == (3.0, 0.0, 0, 0.0)


def test_provisional_limits_need_20_distinct_days():
    days = list(DAYS[:19]) + [DAYS[18]]
    with pytest.raises(ValueError, match="got 20 results on 19 days"):
        provisional_limits(np.arange(20.0), days)


def test_provisional_limits_count_timestamps_by_calendar_day():
    stamps = [d + pd.Timedelta(hours=h) for d in DAYS[:10] for h in (8, 15)]
    with pytest.raises(ValueError, match="on 10 days"):
        provisional_limits(np.arange(20.0), stamps)


def test_provisional_limits_need_20_results():
    with pytest.raises(ValueError, match="got 19 results"):
        provisional_limits(np.arange(19.0), DAYS[:19])


@pytest.mark.parametrize(
    ("values", "days", "message"),
    [
        (np.arange(20.0), DAYS[:19], "differ in length"),
        (np.r_[np.arange(19.0), np.nan], DAYS, "finite"),
        (np.arange(20.0), [None] + list(DAYS[1:]), "needs a day"),
        (np.arange(20.0), [object()] * 20, "dates"),
    ],
)
def test_provisional_limits_reject_bad_input(values, days, message):
    with pytest.raises(ValueError, match=message):
        provisional_limits(values, days)


def test_cumulative_limits_use_only_in_control_results():
    values = [10.0, 11.0, 12.0, 30.0, 13.0]
    est = cumulative_limits(values, [False, False, False, True, False])
    assert est.mean == pytest.approx(11.5)
    assert est.sd == pytest.approx(np.std([10, 11, 12, 13], ddof=1))
    assert (est.n_used, est.n_excluded) == (4, 1)


def test_cumulative_limits_need_two_in_control_results():
    with pytest.raises(ValueError, match="at least 2"):
        cumulative_limits([1.0, 2.0], [True, False])


def test_cumulative_limits_need_a_boolean_mask_per_value():
    with pytest.raises(ValueError, match="booleans"):
        cumulative_limits([1.0, 2.0, 3.0], [0, 0, 1])


def test_cumulative_limits_give_the_days_of_the_results_taken():
    est = cumulative_limits([5.0, 5.2, 9.0, 5.1], [False, False, True, False],
                            pd.date_range("2025-04-01", periods=4))
    assert (str(est.first_day), str(est.last_day), est.n_used, est.n_excluded) == (
        "2025-04-01", "2025-04-04", 3, 1)


def test_cv_is_never_negative_and_undefined_at_a_zero_mean():
    assert cv_percent(-2.0, 0.1) == pytest.approx(5.0)
    assert np.isnan(cv_percent(0.0, 0.1))
    assert cumulative_limits([-2.0, -2.2, -1.8], np.zeros(3, bool)).cv == pytest.approx(10.0)


def make_results():
    """Two levels, January and February; run 3 of January rejected."""
    return pd.DataFrame({
        "level": [1, 1, 1, 1, 2, 2, 2, 2],
        "measured_at": pd.to_datetime(
            ["2025-01-02 09:00", "2025-01-03 09:00", "2025-01-04 09:00", "2025-02-01 09:00"] * 2
        ),
        "value": [10.0, 11.0, 30.0, 12.0, 100.0, 102.0, 130.0, 106.0],
        "rejected": [False, False, True, False] * 2,
        "rules": [frozenset(), (), frozenset({"1-2s", "1-3s"}), ["2-2s"]] * 2,
    })


def row(table, level, month):
    hit = table[(table["level"] == level) & (table["month"] == pd.Period(month, "M"))]
    assert len(hit) == 1
    return hit.iloc[0]


def test_period_summary_excludes_rejected_runs_and_computes_cv_percent():
    jan = row(period_summary(make_results()).monthly, 1, "2025-01")
    assert (jan["n_total"], jan["n_rejected"], jan["n"]) == (3, 1, 2)
    assert jan["mean"] == pytest.approx(10.5)
    assert jan["sd"] == pytest.approx(np.std([10, 11], ddof=1))
    assert jan["cv_pct"] == pytest.approx(100 * np.std([10, 11], ddof=1) / 10.5)
    assert jan["in_control_rate"] == pytest.approx(2 / 3)


def test_period_summary_counts_each_rule_fired_including_rejected_runs():
    summary = period_summary(make_results())
    jan = row(summary.monthly, 2, "2025-01")
    feb = row(summary.monthly, 2, "2025-02")
    assert (jan["1-2s"], jan["1-3s"], jan["2-2s"], jan["R-4s"]) == (1, 1, 0, 0)
    assert (feb["1-2s"], feb["2-2s"]) == (0, 1)
    assert list(summary.monthly.columns[-len(RULE_CODES):]) == list(RULE_CODES)


def test_period_summary_cumulative_runs_through_each_month():
    cum = row(period_summary(make_results()).cumulative, 2, "2025-02")
    in_control = [100.0, 102.0, 106.0]
    assert (cum["n_total"], cum["n_rejected"], cum["n"]) == (4, 1, 3)
    assert cum["mean"] == pytest.approx(np.mean(in_control))
    assert cum["sd"] == pytest.approx(np.std(in_control, ddof=1))
    assert cum["in_control_rate"] == pytest.approx(0.75)
    assert (cum["1-3s"], cum["2-2s"]) == (1, 1)


def test_period_summary_month_with_one_result_has_no_sd():
    feb = row(period_summary(make_results()).monthly, 1, "2025-02")
    assert feb["n"] == 1
    assert np.isnan(feb["sd"]) and np.isnan(feb["cv_pct"])


def test_period_summary_cumulative_sd_is_exact_for_large_offsets():
    rng = np.random.default_rng(3)
    values = 1e6 + rng.normal(0, 0.01, 90)
    df = pd.DataFrame({
        "level": 1,
        "date": pd.date_range("2025-01-01", periods=90, freq="D"),
        "value": values,
        "rejected": False,
        "rules": [()] * 90,
    })
    cum = period_summary(df).cumulative
    assert cum["sd"].iloc[-1] == pytest.approx(values.std(ddof=1), rel=1e-9)


def test_period_summary_takes_the_month_in_lab_local_time():
    df = make_results().iloc[:2].copy()
    df["measured_at"] = pd.to_datetime(["2025-01-31 20:00", "2025-01-15 00:00"]).tz_localize("UTC")
    months = period_summary(df).monthly["month"].astype(str).tolist()
    assert months == ["2025-01", "2025-02"]


def test_period_summary_prefers_the_run_date_column():
    df = make_results().rename(columns={"measured_at": "date"})
    df["measured_at"] = pd.Timestamp("2030-06-01")
    assert set(period_summary(df).monthly["month"].astype(str)) == {"2025-01", "2025-02"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="value"), "value"),
        (lambda df: df.drop(columns="measured_at"), "measured_at"),
        (lambda df: df.assign(rejected=df["rejected"].astype(int)), "boolean"),
        (lambda df: df.assign(rules=[("13s",)] * len(df)), "unknown rule code"),
    ],
)
def test_period_summary_rejects_bad_input(change, message):
    with pytest.raises(ValueError, match=message):
        period_summary(change(make_results()))


def with_pending():
    """One level in March: 2 accepted, 1 rejected, 3 pending (no target yet)."""
    return pd.DataFrame({
        "level": 1,
        "date": pd.date_range("2025-03-01", periods=6),
        "value": [10.0, 12.0, 30.0, 50.0, 60.0, 70.0],
        "rejected": [False, False, True, False, False, False],
        "pending": [False, False, False, True, True, True],
        "rules": [(), (), ("1-3s",), (), (), ()],
    })


def test_period_summary_pending_runs_are_neither_in_nor_out_of_control():
    summary = period_summary(with_pending())
    for table in (summary.monthly, summary.cumulative):
        mar = row(table, 1, "2025-03")
        assert (mar["n_total"], mar["n_pending"], mar["n_judged"], mar["n_rejected"]) == (
            6, 3, 3, 1)
        assert mar["in_control_rate"] == pytest.approx(1 - 1 / 3)
        assert mar["n"] == 2
        assert mar["mean"] == pytest.approx(11.0)
        assert mar["sd"] == pytest.approx(statistics.stdev([10.0, 12.0]))


def test_period_summary_without_judged_runs_has_no_in_control_rate():
    df = with_pending().assign(pending=True, rejected=False)
    mar = row(period_summary(df).monthly, 1, "2025-03")
    assert (mar["n_judged"], mar["n"]) == (0, 0)
    assert np.isnan(mar["in_control_rate"]) and np.isnan(mar["mean"])


def test_period_summary_cv_is_positive_for_a_negative_mean_and_undefined_at_zero():
    df = with_pending().assign(pending=False, rejected=False, rules=[()] * 6)
    df["value"] = [-2.0, -2.2, -1.8, -2.1, -1.9, -2.0]
    mar = row(period_summary(df).monthly, 1, "2025-03")
    assert mar["cv_pct"] == pytest.approx(100 * statistics.stdev(df["value"]) / 2.0)
    # A zero mean has no CV, even when float noise of the running sums leaves ~1e-16.
    df["value"] = [-1.0, 1.0, -0.5, 0.5, -1.7, -1.9]
    df["date"] = pd.to_datetime(["2025-03-01"] * 4 + ["2025-04-01"] * 2)
    mar = row(period_summary(df).cumulative, 1, "2025-03")
    assert mar["mean"] == 0.0 and np.isnan(mar["cv_pct"])
    assert np.isnan(cv_percent(1e-17, 0.5)) and cv_percent(3.0, 0.0) == 0.0


def test_period_summary_refuses_a_non_boolean_pending_column():
    with pytest.raises(ValueError, match="'pending' must be boolean"):
        period_summary(with_pending().assign(pending=1))
