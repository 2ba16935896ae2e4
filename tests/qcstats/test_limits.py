"""Control limits and period summaries (QC_SPEC section 2)."""

import doctest

import numpy as np
import pandas as pd
import pytest

from qcwx.qcstats import limits
from qcwx.qcstats.limits import cumulative_limits, period_summary, provisional_limits
from qcwx.qcstats.westgard import RULE_CODES

DAYS = pd.date_range("2025-03-01", periods=20, freq="D")


def test_docstring_examples_run():
    assert limits.__doc__
    assert doctest.testmod(limits).failed == 0


def test_provisional_limits_drop_an_outlier_beyond_3_sd_once():
    values = np.array([5.0, 5.2] * 9 + [4.8, 9.9])
    est = provisional_limits(values, DAYS)
    kept = values[:-1]
    assert est.n_excluded == 1
    assert est.n_used == 19
    assert est.mean == pytest.approx(kept.mean())
    assert est.sd == pytest.approx(kept.std(ddof=1))
    assert est.cv == pytest.approx(100 * kept.std(ddof=1) / kept.mean())


def test_provisional_limits_drop_only_once():
    # After dropping 9.9 the value 5.6 lies beyond 3 SD of the rest; it is kept.
    values = np.array([5.0, 5.1] * 9 + [5.6, 9.9])
    est = provisional_limits(values, DAYS)
    assert est.n_excluded == 1
    assert est.n_used == 19
    assert abs(5.6 - est.mean) > 3 * est.sd


def test_provisional_limits_keep_everything_without_outliers():
    values = np.linspace(4.0, 6.0, 20)
    est = provisional_limits(values, DAYS)
    assert (est.n_used, est.n_excluded) == (20, 0)
    assert est.sd == pytest.approx(values.std(ddof=1))


def test_provisional_limits_exclude_a_value_exactly_at_3_sd():
    # Mean 10 and sample SD 1 exactly in binary floating point; 13.0 has |z| == 3.
    base = [3.0] + [-1.0] * 4 + [1.0] + [-1.0, 1.0] * 2 + [-0.5, 0.5] * 2 + [0.0] * 6
    values = np.array(base) + 10.0
    assert (values.mean(), values.std(ddof=1)) == (10.0, 1.0)
    est = provisional_limits(values, DAYS)
    assert est.n_excluded == 1
    assert est.mean == pytest.approx(values[1:].mean())


def test_provisional_limits_with_constant_values_drop_nothing():
    est = provisional_limits(np.full(20, 3.0), DAYS)
    assert (est.mean, est.sd, est.n_excluded, est.cv) == (3.0, 0.0, 0, 0.0)


def test_provisional_limits_need_20_distinct_days():
    days = list(DAYS[:19]) + [DAYS[18]]
    with pytest.raises(ValueError, match="20 distinct days; got 20 results on 19 days"):
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
