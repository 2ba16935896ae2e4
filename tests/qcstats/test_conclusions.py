"""Mutual-recognition criteria, the verdict rule and the generated conclusions (QC_SPEC §7)."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from qcwx.qcstats.conclusions import (
    IMPROVE,
    RECOMMENDED,
    UNQUALIFIED,
    RecognitionCriteria,
    explain,
    month_text,
    monthly_facts,
    monthly_facts_from_summary,
    recommend,
    window_months,
)

WINDOW = ("2026-07", "2026-08", "2026-09")


def month_row(month: str, **kw) -> dict:
    """A good month: every day judged, no rejection, two levels passing, grade A."""
    row = {"lab": 1, "analyte": 10, "month": month, "judged_days": 30, "expected_days": 30,
           "judged_runs": 40, "rejected_runs": 0, "levels_assessed": 2, "levels_failed": 0,
           "bias_failed": 0, "cv_failed": 0, "sdi": 0.4, "cvr": 1.0, "bias_pct": 0.5,
           "bias_limit": 2.0, "cv": 1.2, "cv_limit": 3.0, "sigma": 6.5, "grade": "A"}
    row.update(kw)
    return row


def facts_of(*rows: dict) -> pd.DataFrame:
    return monthly_facts_from_summary(pd.DataFrame(list(rows)))


def good(**latest) -> pd.DataFrame:
    return facts_of(month_row("2026-07"), month_row("2026-08"), month_row("2026-09", **latest))


def one(facts: pd.DataFrame, latest: str = "2026-09", **kw) -> dict:
    rows = recommend(facts, latest, **kw).to_dict("records")
    assert len(rows) == 1
    return rows[0]


# ------------------------------------------------------------------ criteria and months


def test_criteria_default_to_the_spec():
    c = RecognitionCriteria()
    assert (c.min_submission_pct, c.min_in_control_pct, c.window_months, c.passing_grades) == (
        90.0, 95.0, 3, ("A", "B"))
    with pytest.raises(AttributeError):
        c.window_months = 6  # frozen


@pytest.mark.parametrize("kw", [{"min_submission_pct": 101}, {"min_in_control_pct": -1},
                                {"window_months": 0}, {"passing_grades": ("E",)},
                                {"passing_grades": ()}, {"sdi_limit": 0}])
def test_criteria_refuse_impossible_thresholds(kw):
    with pytest.raises(ValueError):
        RecognitionCriteria(**kw)


def test_window_crosses_the_year_and_months_read_in_chinese():
    assert window_months("2026-02", 3) == ("2025-12", "2026-01", "2026-02")
    assert month_text("2025-12") == "2025年12月"
    with pytest.raises(ValueError):
        window_months("2026-13")


# ------------------------------------------------------------------ monthly facts


def test_monthly_facts_sum_systems_and_judge_every_level():
    levels = pd.DataFrame([
        # system 1, two levels: one passes, one fails the bias (|3.1| > 2)
        {"lab": 1, "analyte": 10, "month": "2026-09", "sdi": 0.2, "cvr": 0.9, "bias_pct": 0.3,
         "cv": 1.0, "tea_pct": 7.0, "allowable_cv": 3.0, "allowable_bias": 2.0, "sigma": 6.7,
         "grade": "A"},
        {"lab": 1, "analyte": 10, "month": "2026-09", "sdi": -2.6, "cvr": 1.2,
         "bias_pct": -3.1, "cv": 1.1, "tea_pct": 7.0, "allowable_cv": 3.0,
         "allowable_bias": 2.0, "sigma": 3.5, "grade": "C"},
        # an unpublished level: not assessed, no grade
        {"lab": 1, "analyte": 10, "month": "2026-09", "sdi": None, "cvr": None,
         "bias_pct": None, "cv": 1.4, "tea_pct": None, "allowable_cv": 3.0,
         "allowable_bias": 2.0, "sigma": None, "grade": None},
        # no allowable CV/bias: TEa/3 = 4 and TEa/2 = 6 apply, CV 4.5 fails
        {"lab": 1, "analyte": 11, "month": "2026-09", "sdi": 0.1, "cvr": 1.6, "bias_pct": 1.0,
         "cv": 4.5, "tea_pct": 12.0, "allowable_cv": None, "allowable_bias": None,
         "sigma": 2.4, "grade": "D"},
    ])
    systems = pd.DataFrame([
        {"lab": 1, "analyte": 10, "month": "2026-09", "judged_days": 27, "expected_days": 30,
         "judged_runs": 12, "rejected_runs": 1},
        {"lab": 1, "analyte": 10, "month": "2026-09", "judged_days": 30, "expected_days": 30,
         "judged_runs": 8, "rejected_runs": 0},
        {"lab": 1, "analyte": 11, "month": "2026-09", "judged_days": 20, "expected_days": 30,
         "judged_runs": 20, "rejected_runs": 0},
    ])
    rows = {r["analyte"]: r for r in monthly_facts(levels, systems).to_dict("records")}
    glu, other = rows[10], rows[11]
    assert glu["submission_pct"] == 95.0  # (27 + 30) / 60 = the mean of 90 % and 100 %
    assert glu["in_control_pct"] == 95.0  # 19 of 20, exactly
    assert (glu["levels_assessed"], glu["levels_failed"], glu["bias_failed"]) == (2, 1, 1)
    assert glu["nccl_pass"] is False and glu["grade"] == "C"
    assert glu["sdi"] == -2.6 and glu["bias_pct"] == -3.1 and glu["bias_limit"] == 2.0
    assert glu["systematic"] and not glu["imprecision"] and not glu["participation"]
    assert other["cv_limit"] == 4.0 and other["cv_failed"] == 1 and other["imprecision"]
    assert other["participation"] and other["low_grade"]


def test_a_month_without_an_assessable_level_has_no_nccl_verdict():
    facts = monthly_facts(None, pd.DataFrame([{
        "lab": 1, "analyte": 10, "month": "2026-09", "judged_days": 30, "expected_days": 30,
        "judged_runs": 30, "rejected_runs": 0}]))
    row = facts.to_dict("records")[0]
    assert row["nccl_pass"] is None and row["grade"] is None and math.isnan(row["sdi"])


def test_monthly_facts_refuse_a_frame_without_its_columns():
    with pytest.raises(ValueError, match="systems lacks"):
        monthly_facts(None, pd.DataFrame({"lab": [1]}))


# ------------------------------------------------------------------ the verdict rule


def test_every_criterion_met_is_recommended():
    rec = one(good())
    assert rec["verdict"] == RECOMMENDED and rec["tone"] == "ok"
    assert rec["failed"] == () and rec["unassessed"] == ()
    assert (rec["nccl_months_passed"], rec["nccl_months"]) == (3, 3)


def test_exactly_90_percent_submission_passes_and_just_below_fails():
    edge = facts_of(*(month_row(m, judged_days=27) for m in WINDOW))  # 81 / 90
    rec = one(edge)
    assert rec["submission_pct"] == 90.0 and rec["verdict"] == RECOMMENDED
    below = facts_of(month_row("2026-07", judged_days=26), month_row("2026-08", judged_days=27),
                     month_row("2026-09", judged_days=27))  # 80 / 90 = 88.9 %
    rec = one(below)
    assert rec["verdict"] == UNQUALIFIED and rec["failed"] == ("submission",)


def test_exactly_95_percent_in_control_passes_and_just_below_fails():
    edge = facts_of(*(month_row(m, judged_runs=20, rejected_runs=1) for m in WINDOW))  # 57 / 60
    rec = one(edge)
    assert rec["in_control_pct"] == 95.0 and rec["verdict"] == RECOMMENDED
    below = facts_of(month_row("2026-07", judged_runs=20, rejected_runs=2),
                     month_row("2026-08", judged_runs=20, rejected_runs=1),
                     month_row("2026-09", judged_runs=20, rejected_runs=1))  # 56 / 60
    rec = one(below)
    assert rec["verdict"] == UNQUALIFIED and rec["failed"] == ("in_control",)


def test_nccl_failed_in_an_earlier_month_only_needs_improvement():
    facts = facts_of(month_row("2026-07", levels_failed=1, bias_failed=1),
                     month_row("2026-08"), month_row("2026-09"))
    rec = one(facts)
    assert rec["verdict"] == IMPROVE and rec["failed"] == ("nccl",)
    assert rec["nccl_failed_months"] == ("2026-07",) and not rec["nccl_latest_failed"]


def test_nccl_failed_in_the_latest_month_is_unqualified():
    rec = one(good(levels_failed=1, cv_failed=1))
    assert rec["verdict"] == UNQUALIFIED and rec["nccl_latest_failed"]


@pytest.mark.parametrize("grade, verdict, failed, unassessed", [
    ("B", RECOMMENDED, (), ()), ("C", IMPROVE, ("grade",), ()),
    ("D", UNQUALIFIED, ("grade",), ()), (None, IMPROVE, (), ("grade",))])
def test_the_latest_grade_decides(grade, verdict, failed, unassessed):
    rec = one(good(grade=grade))
    assert (rec["verdict"], rec["failed"], rec["unassessed"]) == (verdict, failed, unassessed)


def test_a_month_that_could_not_be_assessed_blocks_the_recommendation():
    rec = one(facts_of(month_row("2026-07", levels_assessed=0), month_row("2026-08"),
                       month_row("2026-09")))
    assert rec["verdict"] == IMPROVE and rec["unassessed"] == ("nccl",)
    assert rec["nccl_unassessed_months"] == ("2026-07",)
    missing = one(facts_of(month_row("2026-08"), month_row("2026-09")))  # July has no data
    assert missing["verdict"] == IMPROVE and missing["nccl_unassessed_months"] == ("2026-07",)


def test_months_outside_the_window_do_not_count():
    facts = facts_of(month_row("2026-05", judged_days=0, rejected_runs=40, grade="D"),
                     month_row("2026-06", levels_failed=2), *(month_row(m) for m in WINDOW))
    assert one(facts)["verdict"] == RECOMMENDED


def test_a_severe_failure_wins_over_a_missing_assessment():
    rec = one(good(grade=None, judged_runs=10, rejected_runs=5))
    assert rec["verdict"] == UNQUALIFIED
    assert rec["failed"] == ("in_control",) and rec["unassessed"] == ("grade",)


def test_the_verdict_does_not_depend_on_row_order():
    rows = [month_row(m, lab=lab, analyte=a, judged_days=25 + lab + a % 3, grade="ABCD"[a % 4])
            for lab in (1, 2, 3) for a in (10, 11, 12, 13) for m in WINDOW]
    first = recommend(facts_of(*rows), "2026-09")
    random.Random(3).shuffle(rows)
    again = recommend(facts_of(*rows), "2026-09")
    pd.testing.assert_frame_equal(first, again)
    assert set(first["verdict"]) == {RECOMMENDED, IMPROVE, UNQUALIFIED}


def test_a_stricter_region_changes_the_verdict():
    facts = good()
    strict = RecognitionCriteria(passing_grades=("A",), min_submission_pct=100.0)
    assert one(facts, criteria=strict)["verdict"] == RECOMMENDED
    assert one(good(grade="B"), criteria=strict)["verdict"] == IMPROVE


# ------------------------------------------------------------------ conclusions


def reasons_of(facts: pd.DataFrame, latest: str = "2026-09") -> tuple[str, ...]:
    return explain(one(facts, latest), facts)


def test_a_systematic_error_is_dated_by_the_start_of_its_unbroken_run():
    facts = facts_of(
        month_row("2026-04", sdi=2.5),  # an older episode, broken by May
        month_row("2026-05"),
        month_row("2026-06", sdi=2.2),
        month_row("2026-07", sdi=2.4),
        month_row("2026-08", sdi=2.1, levels_failed=1, bias_failed=1, bias_pct=2.6),
        month_row("2026-09", sdi=-2.3, levels_failed=1, bias_failed=1, bias_pct=-2.9))
    reasons = reasons_of(facts)
    assert len(reasons) == 1
    text = reasons[0]
    assert text.startswith("系统误差（SDI -2.30，|SDI| ≥ 2；偏倚 -2.90% 超出允许偏倚 ±2.00%）")
    assert "自 2026年6月起" in text and "校准、试剂批号或方法" in text


def test_imprecision_from_the_cvr_alone_names_its_likely_causes():
    reasons = reasons_of(good(cvr=1.62))
    assert reasons == ("不精密度偏大（CVR 1.62 > 1.5），自 2026年9月起："
                       "可能与仪器维护、试剂稳定性或操作有关。",)


def test_a_cvr_of_exactly_1_5_is_not_imprecision():
    assert reasons_of(good(cvr=1.5))[0].endswith("各项指标均达标。")


def test_low_participation_names_the_criterion_and_when_it_started():
    facts = facts_of(month_row("2026-07"), month_row("2026-08", judged_days=20),
                     month_row("2026-09", judged_days=21))
    rec = one(facts)
    assert rec["verdict"] == UNQUALIFIED and rec["failed"] == ("submission",)
    (text,) = explain(rec, facts)
    assert text.startswith(f"填报率 {rec['submission_pct']:.1f}%，低于 90%，自 2026年8月起")
    assert "参与不足" in text


def test_frequent_rejections_name_the_in_control_rate():
    (text,) = reasons_of(good(judged_runs=40, rejected_runs=8))
    assert text.startswith("在控率 ") and "低于 95%，自 2026年9月起" in text
    assert "失控频繁" in text


def test_a_problem_of_an_earlier_month_lists_the_months_it_was_seen():
    facts = facts_of(month_row("2026-07", cv_failed=1, levels_failed=1, cv=3.4),
                     month_row("2026-08"), month_row("2026-09"))
    (text,) = reasons_of(facts)
    assert text == ("不精密度偏大（CV 3.40% 超出允许 CV 3.00%）（见于 2026年7月）："
                    "可能与仪器维护、试剂稳定性或操作有关。")


def test_a_low_grade_and_what_cannot_be_assessed_are_said():
    facts = facts_of(month_row("2026-07", levels_assessed=0), month_row("2026-08"),
                     month_row("2026-09", grade="C", sigma=3.4))
    reasons = reasons_of(facts)
    assert reasons[0] == ("最新月等级 C（σ 3.40），自 2026年9月起："
                          "偏倚与不精密度合计相对允许总误差偏大，需同时减小两者。")
    assert reasons[1].startswith("NCCL 无法评价（2026年7月：")


def test_a_recommended_analyte_gets_its_summary():
    (text,) = reasons_of(good())
    assert text == "填报率 100.0%，在控率 100.0%，NCCL 3/3 个月通过，最新月等级 A：各项指标均达标。"


def test_explain_reads_only_its_own_lab_and_analyte():
    mine = [month_row(m) for m in WINDOW]
    other = [month_row(m, lab=2, sdi=3.0, cvr=2.5) for m in WINDOW]
    facts = facts_of(*mine, *other)
    rec = next(r for r in recommend(facts, "2026-09").to_dict("records") if r["lab"] == 1)
    assert explain(rec, facts)[0].endswith("各项指标均达标。")


def test_facts_hold_no_nan_flags():
    facts = good()
    for col in ("systematic", "imprecision", "participation", "rejections", "low_grade"):
        assert facts[col].dtype == np.bool_
