"""The vectorised comparison core against plain re-computations and the qcstats scalars."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from qcwx.errors import UserError
from qcwx.peer import compute
from qcwx.peer.filters import describe, month_period, parse_filters, parse_period
from qcwx.qcstats import peer as qpeer
from qcwx.qcstats.sigma import tea_at_concentration
from qcwx.qcstats.specs import Tea
from tests.peer.conftest import algorithm_a_reference


def frame_from(values: dict[int, list[float]], attrs: dict[int, dict]) -> pd.DataFrame:
    rows = []
    for ts, vals in values.items():
        v = np.asarray(vals)
        rows.append({"ts_id": ts, "lab_id": attrs[ts].get("lab", ts), "qc_level_id": 1,
                     "analyte_id": 1, "unit": attrs[ts].get("unit", "mmol/L"),
                     "instrument_maker": attrs[ts]["maker"], "instrument_model": "m",
                     "reagent_maker": attrs[ts]["maker"], "method": attrs[ts]["method"],
                     "temperature": "37℃", "n": v.size, "total": v.sum(),
                     "total_sq": (v * v).sum()})
    return pd.DataFrame(rows)


def test_algorithm_a_reference_reproduces_the_spec_example():
    x = [5.02, 5.10, 4.95, 5.05, 5.20, 4.98, 5.01, 5.08, 4.90, 6.10, 5.03, 4.99]
    mean, sd = algorithm_a_reference(x)
    assert (round(mean, 4), round(sd, 4)) == (5.0413, 0.1009)


def test_system_stats_match_numpy_and_drop_empty_systems():
    rng = np.random.default_rng(1)
    values = {i: list(rng.normal(5, 0.2, 7 + i)) for i in range(1, 5)}
    frame = frame_from(values, {i: {"maker": "A", "method": "HK"} for i in values})
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "ts_id": 99, "n": 0, "total": 0.0,
                             "total_sq": 0.0}
    out = compute.system_stats(frame).set_index("ts_id")
    assert 99 not in out.index
    for ts, vals in values.items():
        assert out.loc[ts, "mean"] == pytest.approx(np.mean(vals), rel=1e-12)
        assert out.loc[ts, "sd"] == pytest.approx(np.std(vals, ddof=1), rel=1e-9)
        assert out.loc[ts, "cv"] == pytest.approx(100 * np.std(vals, ddof=1) / np.mean(vals),
                                                  rel=1e-9)


def test_single_result_has_no_sd_and_no_cv():
    out = compute.system_stats(frame_from({1: [5.0]}, {1: {"maker": "A", "method": "HK"}}))
    assert out.loc[0, "mean"] == 5.0 and math.isnan(out.loc[0, "sd"])
    assert math.isnan(out.loc[0, "cv"])


def test_level_stats_equal_an_independent_algorithm_a_per_group():
    rng = np.random.default_rng(2)
    attrs = {i: {"maker": "A" if i <= 6 else "B", "method": "HK"} for i in range(1, 10)}
    values = {i: list(rng.normal(5 + 0.05 * i, 0.1, 6)) for i in attrs}
    labs = compute.system_stats(frame_from(values, attrs))
    st = compute.level_stats(labs, ["qc_level_id", "analyte_id", "instrument_maker"])
    for maker in ("A", "B"):
        members = [i for i in attrs if attrs[i]["maker"] == maker]
        means = [np.mean(values[i]) for i in members]
        gm, gs = algorithm_a_reference(means)
        rows = st[labs["instrument_maker"] == maker]
        assert rows["g_mean"].to_numpy() == pytest.approx([gm] * len(members), rel=1e-12)
        assert rows["g_sd"].to_numpy() == pytest.approx([gs] * len(members), rel=1e-9)
        cvs = [100 * np.std(values[i], ddof=1) / np.mean(values[i]) for i in members]
        assert rows["g_cv"].iloc[0] == pytest.approx(np.mean(cvs), rel=1e-12)
        assert set(rows["n_labs"]) == {len(members)}
        assert set(rows["n_results"]) == {6 * len(members)}
        biases = [100 * (mu - gm) / gm for mu in means]
        ranks = [1 + sum(abs(b) < abs(x) for b in biases) for x in biases]
        assert rows["bias_rank"].astype(int).tolist() == ranks
        assert rows["sdi"].to_numpy() == pytest.approx([(mu - gm) / gs for mu in means], rel=1e-9)


def test_two_analysers_of_one_lab_count_once_for_publication():
    attrs = {i: {"maker": "A", "method": "HK", "lab": (i + 1) // 2} for i in range(1, 9)}
    values = {i: [5.0 + 0.01 * i + 0.001 * k for k in range(5)] for i in attrs}
    labs = compute.system_stats(frame_from(values, attrs))
    st = compute.level_stats(labs, ["qc_level_id"])
    assert set(st["n_systems"]) == {8} and set(st["n_labs"]) == {4}
    assert not st["publishable"].any()  # 8 points, but only 4 labs


def test_compare_reports_each_system_against_the_first_publishable_level():
    rng = np.random.default_rng(3)
    attrs = {**{i: {"maker": "Roche", "method": "HK"} for i in range(1, 6)},
             **{i: {"maker": "Beckman", "method": "HK"} for i in (6, 7)},
             8: {"maker": "Siemens", "method": "GOD"}}
    values = {i: list(rng.normal(5, 0.1, 5)) for i in attrs}
    labs = compute.compare(frame_from(values, attrs)).set_index("ts_id")
    for ts in attrs:
        sizes = {lv: (int(labs.loc[ts, f"{lv}_n_labs"]), int(labs.loc[ts, f"{lv}_n_results"]))
                 for lv in ("peer", "method", "all")}
        choice = qpeer.choose_group_level(sizes)
        assert labs.loc[ts, "group_level"] == choice.level
    assert labs.loc[1, "group_level"] == "peer" and labs.loc[6, "group_level"] == "method"
    assert labs.loc[8, "group_level"] == "all"
    assert labs.loc[6, "n_labs"] == 7 and labs.loc[8, "n_labs"] == 8


def test_nothing_is_published_when_no_level_has_five_labs():
    values = {i: [5.0, 5.1, 5.2, 5.0, 5.1, 5.3, 4.9] for i in range(1, 5)}
    labs = compute.compare(frame_from(values, {i: {"maker": "A", "method": "HK"}
                                                for i in values}))
    assert labs["group_level"].isna().all()
    assert labs[["g_mean", "sdi", "cvr", "bias_pct"]].isna().all().all()


def test_vectorised_grades_equal_qcstats_grade():
    sigmas = np.array([-1.0, 0.0, 2.99, 3.0, 3.5, 3.999, 4.0, 5.99, 6.0, 9.0])
    labs = pd.DataFrame({"analyte_id": 1, "unit": "%", "g_mean": 10.0,
                         "bias_pct": 0.0, "cv": 7.0 / np.where(sigmas > 0, sigmas, 1e-9)})
    labs.loc[sigmas <= 0, "bias_pct"] = 7.0 - sigmas[sigmas <= 0] * 1.0
    labs.loc[sigmas <= 0, "cv"] = 1.0
    spec = compute.SpecInfo(Tea(7.0), 3.0, 2.0, "t")
    compute.add_performance(labs, {1: spec})
    for sigma, got in zip(labs["sigma"], labs["grade"], strict=True):
        assert got == qpeer.grade(sigma)


def test_tea_follows_the_two_tier_spec_and_refuses_another_unit():
    tea = Tea(7.0, 0.21, "mmol/L", 3.0)
    spec = compute.SpecInfo(tea, 3.0, 2.0, "WS/T 403")
    assert compute.tea_pct_at(spec, "mmol/L", 2.5) == pytest.approx(
        tea_at_concentration(tea, 2.5).pct)
    assert compute.tea_pct_at(spec, "mmol/L", 5.5) == 7.0
    assert compute.tea_pct_at(spec, "mg/dL", 99.0) is None
    assert compute.tea_pct_at(compute.SpecInfo(Tea(12.0), None, None, "x"), "mg/dL", 5) == 12.0


def test_filters_parse_repeated_values_and_name_the_bad_field():
    from werkzeug.datastructures import MultiDict

    args = MultiDict([("instrument_maker", "罗氏"), ("instrument_maker", "贝克曼"),
                      ("instrument_maker", "罗氏"), ("unit", " "), ("calibrator", "12")])
    assert parse_filters(args) == {"instrument_maker": ["罗氏", "贝克曼"], "calibrator": ["12"]}
    assert describe({"unit": ["mmol/L"]}) == "单位：mmol/L"
    with pytest.raises(UserError) as err:
        parse_filters(MultiDict([("calibrator", "abc")]))
    assert err.value.field == "calibrator" and "校准品" in err.value.message


def test_periods_cover_the_month_rolling_window_and_cumulative():
    today = date(2026, 3, 15)
    assert parse_period({}, today) == month_period("2026-03", today)
    feb = parse_period({"period": "month", "month": "2026-02"}, today)
    assert (feb.start, feb.end) == (date(2026, 2, 1), date(2026, 2, 28))
    r30 = parse_period({"period": "r30"}, today)
    assert (r30.end - r30.start).days == 29 and r30.end == today
    assert parse_period({"period": "cum"}, today).start is None
    for args, fieldname in (({"period": "week"}, "period"), ({"month": "2026-13"}, "month"),
                            ({"month": "2026-04"}, "month")):
        with pytest.raises(UserError) as err:
            parse_period(args, today)
        assert err.value.field == fieldname
