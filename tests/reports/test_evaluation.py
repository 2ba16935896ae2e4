"""The evaluation report: independent recomputation, anonymity, conclusions, frozen months."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest

from qcwx.errors import UserError
from qcwx.peer import queries, services
from qcwx.peer.filters import month_end, month_period
from qcwx.qcstats.conclusions import RECOMMENDED, UNQUALIFIED, month_text
from qcwx.reports.document import Report
from qcwx.reports.evaluation import build_evaluation
from tests.peer.conftest import add_run, expected, f, raw_values
from tests.reports.evaluation_world import (
    DRIFT_LAB,
    GAP_LAB,
    REJECT_LAB,
    build_evaluation_world,
)

PEER = ["r1", "r2", "r3", "r4", "r5"]
METHOD = PEER + ["b1", "b2"]
ALL = METHOD + ["s1"]
GROUPS = {"peer": ("同组", PEER), "method": ("同方法", METHOD), "all": ("全部", ALL)}
TEA, ALLOWABLE_CV, ALLOWABLE_BIAS = 7.0, 3.0, 2.0  # glucose, WS/T 403 (the peer world's spec)
COLUMNS = ("水平", "比对组", "组内实验室数", "组均值", "组SD", "本室结果数", "本室均值", "本室CV",
           "SDI", "CVR", "偏倚", "偏倚排名", "NCCL 通过", "σ", "等级", "TEa", "TEa 来源", "允许CV",
           "允许偏倚")


@pytest.fixture
def eval_world(session):
    built = build_evaluation_world()
    session.commit()  # as tests/peer/conftest.py: survive a request's rollback
    return built


def build(w, lab: str, month: str) -> Report:
    return build_evaluation(w.labs[lab], month, w.today)


def month_dates(w, month: str) -> tuple[date, date]:
    period = month_period(month, w.today)
    return period.start, period.end


def grade_of(sigma: float) -> str:
    return "A" if sigma >= 6 else "B" if sigma >= 4 else "C" if sigma >= 3 else "D"


def comparison_rows(report: Report) -> dict[str, dict]:
    (table,) = [t for s in report.sections if s.title == "同组比对" for t in s.tables]
    assert tuple(c.title for c in table.columns) == COLUMNS
    return {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in table.rows}


# ------------------------------------------------------------------ the comparison table


@pytest.mark.parametrize("which", ["current", "last"])
@pytest.mark.parametrize("lab, level", [("r1", "peer"), ("b1", "method"), ("s1", "all")])
def test_comparison_table_matches_an_independent_recomputation(eval_world, lab, level,
                                                              which):
    w = eval_world
    month = w.peer.month if which == "current" else w.month
    label, members = GROUPS[level]
    rows = comparison_rows(build(w, lab, month))
    start, end = month_dates(w, month)
    ids = [w.systems[name].id for name in members]
    assert set(rows) == {"水平1", "水平2"}
    for index in (1, 2):
        exp = expected(raw_values(ids, w.level(index).id, start, end), ids, w.systems[lab].id)
        row = rows[f"水平{index}"]
        assert row["比对组"] == label and row["组内实验室数"] == exp.n_labs == len(members)
        assert row["本室结果数"] == exp.n
        assert row["本室均值"] == pytest.approx(exp.lab_mean, rel=1e-12)
        assert row["本室CV"] == pytest.approx(exp.lab_cv, rel=1e-9)
        assert row["组均值"] == pytest.approx(exp.group_mean, rel=1e-9)
        assert row["组SD"] == pytest.approx(exp.group_sd, rel=1e-6)
        assert row["SDI"] == pytest.approx(exp.sdi, rel=1e-6, abs=1e-9)
        assert row["CVR"] == pytest.approx(exp.cvr, rel=1e-9)
        assert row["偏倚"] == pytest.approx(exp.bias, rel=1e-6, abs=1e-9)
        assert row["偏倚排名"] == f"第 {exp.bias_rank} / {exp.rank_size}"
        sigma = (TEA - abs(exp.bias)) / exp.lab_cv  # TEa 7 % above 3 mmol/L: both levels
        assert row["TEa"] == pytest.approx(TEA) and row["σ"] == pytest.approx(sigma, rel=1e-6)
        assert row["等级"] == grade_of(sigma)
        assert row["NCCL 通过"] is (exp.lab_cv <= ALLOWABLE_CV and abs(exp.bias) <= ALLOWABLE_BIAS)
        assert (row["允许CV"], row["允许偏倚"]) == (ALLOWABLE_CV, ALLOWABLE_BIAS)
        assert row["TEa 来源"].startswith("WS/T 403-2024")
        for name in ("本室均值", "组均值", "SDI", "σ"):
            assert type(row[name]) is float  # numbers stay numbers


def test_columns_use_the_analyte_decimals_and_tones_follow_the_bands(eval_world):
    w = eval_world
    report = build(w, DRIFT_LAB, w.month)
    (table,) = [t for s in report.sections if s.title == "同组比对" for t in s.tables]
    decimals = {c.title: c.decimals for c in table.columns}
    dec = w.glu.decimals
    assert (decimals["本室均值"], decimals["组均值"], decimals["组SD"]) == (dec, dec, dec + 1)
    assert decimals["SDI"] == decimals["CVR"] == decimals["偏倚"] == decimals["σ"] == 2
    # r4 drifted +6 %: its bias fails NCCL on both levels (in a group of five the outlier
    # widens the robust SD, so its SDI stays below 2)
    assert all(row[10] > ALLOWABLE_BIAS and row[12] is False for row in table.rows)
    assert table.tones == tuple(band_tone(row[8], row[9]) for row in table.rows)
    assert table.cell_text(0, 3) == f"{table.rows[0][3]:.{dec}f}"


def band_tone(sdi: float, cvr: float) -> str:
    """The worse of the SDI and CVR bands (QC_SPEC §3), as the page colours them."""
    tones = ["ok" if abs(sdi) < 1.25 else "warn" if abs(sdi) < 2 else "bad",
             "ok" if cvr <= 1.5 else "warn" if cvr <= 2 else "bad"]
    return next(t for t in ("bad", "warn", "ok") if t in tones)


# ------------------------------------------------------------------ anonymity


def test_other_labs_appear_only_by_anonymous_code(eval_world):
    w = eval_world
    report = build(w, "b1", w.month)
    text = json.dumps(report.to_dict(), ensure_ascii=False)
    for name, lab in w.labs.items():
        if name == "b1":
            continue
        assert lab.hospital.name not in text and lab.full_name not in text
        assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(lab.code)}(?![0-9])", text), name
    assert w.labs["x"].anon_code not in text  # region 2 never enters region 1's groups
    means = next(c for c in report.charts if c.chart_id.endswith("-means"))
    shown = set(means.options["xAxis"][0]["data"])
    assert shown == {w.labs[name].anon_code for name in METHOD}  # b1's group: the method
    own = [p for p in means.options["series"][0]["data"] if p["name"] == w.labs["b1"].anon_code]
    assert own and own[0]["label"]["formatter"] == "本室"


def test_at_most_three_charts_per_analyte_with_unique_ids(eval_world):
    w = eval_world
    report = build(w, "r1", w.month)
    ids = [c.chart_id for c in report.charts]
    assert len(ids) == len(set(ids)) == 3
    kinds = sorted(i.rsplit("-", 1)[-1] for i in ids)
    assert kinds == ["cv", "means", "trend"]
    trend = next(c for c in report.charts if c.chart_id.endswith("-trend"))
    names = [s["name"] for s in trend.options["series"]]
    assert names == ["水平1 SDI", "水平1 CVR", "水平2 SDI", "水平2 CVR"]
    months = trend.options["xAxis"][0]["data"]
    assert len(months) == 12 and months[-1] == w.month[2:]


# ------------------------------------------------------------------ conclusions


def conclusion(report: Report, heading: str = "葡萄糖"):
    (section,) = [s for s in report.sections if s.title == "结论"]
    return next(c for c in section.conclusions if c.heading == heading), section


def test_conclusions_name_the_failing_criterion(eval_world):
    w = eval_world
    drift, _ = conclusion(build(w, DRIFT_LAB, w.month))
    assert drift.verdict == UNQUALIFIED and drift.tone == "bad"
    assert drift.reasons[0].startswith("系统误差（偏倚 +")
    assert f"自 {month_text(w.window[1])}起" in drift.reasons[0]
    assert "校准、试剂批号或方法" in drift.reasons[0]

    gap, section = conclusion(build(w, GAP_LAB, w.month))
    assert gap.verdict == UNQUALIFIED and gap.reasons[0].startswith("填报率 ")
    assert f"自 {month_text(w.month)}起" in gap.reasons[0]
    (criteria,) = section.tables
    assert criteria.rows[0][0] == "葡萄糖" and criteria.rows[0][1] < 90
    assert criteria.rows[0][5] == UNQUALIFIED and criteria.rows[0][6] == "填报率"

    rejects, _ = conclusion(build(w, REJECT_LAB, w.month))
    assert rejects.verdict == UNQUALIFIED and rejects.reasons[0].startswith("在控率 ")
    assert f"自 {month_text(w.window[0])}起" in rejects.reasons[0]


def test_a_steady_lab_is_recommended_with_its_criteria(eval_world):
    w = eval_world
    report = build(w, "r3", w.month)
    found, section = conclusion(report)
    assert found.verdict == RECOMMENDED and found.tone == "ok"
    assert found.reasons[0].endswith("各项指标均达标。")
    row = section.tables[0].rows[0]
    assert row[1:4] == (100.0, 100.0, "3/3") and row[4] in ("A", "B")
    figures = {f.label: f for f in report.figures}
    assert figures["推荐互认 / 需改进 / 不合格"].value == "1 / 0 / 0"
    assert figures["在控率"].value == "100.0%" and figures["填报率"].value == "100.0%"


def test_the_current_month_counts_only_the_days_so_far(eval_world):
    w = eval_world
    report = build(w, "r3", w.peer.month)
    figures = {f.label: f for f in report.figures}
    # five runs on the 1st of this month: one day with QC out of the days so far
    assert figures["填报率"].value == f"{100 / w.today.day:.1f}%"
    if w.today < month_end(w.peer.month):
        assert report.period_label.endswith(f"（截至{w.today.month}月{w.today.day}日）")


# ------------------------------------------------------------------ the report as data


def test_title_description_and_params(eval_world):
    w = eval_world
    report = build(w, "r1", w.month)
    year, mon = int(w.month[:4]), int(w.month[5:])
    assert report.title == f"{w.labs['r1'].full_name} · {year}年{mon}月 质控评测报告"
    assert report.kind == "evaluation" and report.params == {"month": w.month}
    assert report.lab_id == w.labs["r1"].id and not report.frozen
    assert len(report.description) <= 120 and "推荐互认" in report.description
    assert "A/B 级项目 1/1（100.0%）" in report.description or "A/B 级项目 0/1" in \
        report.description
    assert any("ISO 13528" in n for n in report.footnotes)
    assert any("未发布" in n for n in report.footnotes)
    assert any("≥ 5 家实验室且 ≥ 20 个结果" in n for n in report.footnotes)


def test_the_report_round_trips_through_plain_json(eval_world):
    w = eval_world
    report = build(w, "s1", w.month)
    data = json.loads(json.dumps(report.to_dict(), ensure_ascii=False, allow_nan=False))
    assert Report.from_dict(data) == report
    assert Report.from_dict(report.to_dict()) == report


@pytest.mark.parametrize("month", ["2031-01", "2026-13", "26-01", ""])
def test_the_month_must_be_completed_or_current(eval_world, month):
    w = eval_world
    with pytest.raises(UserError) as err:
        build(w, "r1", month)
    assert err.value.field == "month"


def test_an_unpublished_level_is_shown_as_such(eval_world, session):
    w = eval_world
    # The month before the window: s1 alone has a result, no group can be published.
    month = (date.fromisoformat(w.window[0] + "-01") - timedelta(days=1)).strftime("%Y-%m")
    add_run(w.systems["s1"], date.fromisoformat(month + "-02"), {1: 5.4, 2: 15.5})
    session.commit()
    rows = comparison_rows(build(w, "s1", month))
    assert rows["水平1"]["比对组"] == "未发布" and rows["水平1"]["SDI"] is None
    assert rows["水平1"]["本室结果数"] == 1


def test_a_lab_without_systems_gets_an_empty_report(eval_world, session):
    w = eval_world
    lab = f.lab(f.hospital(w.region, "空白医院"))
    session.commit()
    report = build_evaluation(lab, w.month, w.today)
    assert report.tables == [] and report.charts == []
    figures = {fig.label: fig.value for fig in report.figures}
    assert figures["总体等级（A/B 占比）"] == "—" and figures["在控率"] == "—"
    assert figures["推荐互认 / 需改进 / 不合格"] == "0 / 0 / 0"
    assert Report.from_dict(report.to_dict()) == report


# ------------------------------------------------------------------ frozen months


def test_a_frozen_month_keeps_the_snapshot_numbers_after_a_late_result(eval_world,
                                                                      session):
    w = eval_world
    services.freeze_month(w.region.id, w.month, w.today)
    session.commit()
    before = build(w, "r1", w.month)
    assert any("冻结" in n for n in before.footnotes)

    late_day = month_end(w.month) - timedelta(days=1)
    add_run(w.systems["r1"], late_day, {1: 6.40, 2: 18.40}, run_no=8)  # +16 %: moves the mean
    session.commit()
    after = build(w, "r1", w.month)
    assert comparison_rows(after) == comparison_rows(before)
    assert [c.options for c in after.charts] == [c.options for c in before.charts]

    live = queries.compare_region(w.region.id, month_period(w.month, w.today))
    own = live[(live.ts_id == w.systems["r1"].id) & (live.qc_level_id == w.level(1).id)]
    assert float(own["mean"].iloc[0]) != pytest.approx(comparison_rows(before)["水平1"]["本室均值"],
                                                       rel=1e-6)
