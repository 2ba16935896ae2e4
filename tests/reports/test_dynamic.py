"""The dynamic QC report as plain data, checked against an independent re-computation.

Lab A runs glucose (2 decimals) and uric acid (0 decimals), two levels each, through the real
submit service over January and February 2025; the report covers February (built "today"
2025-03-10). Glucose has a January reject, a February warning, a February reject whose record
is signed, one whose record is open, a corrected (superseded) value and a new target version
from 16 February; uric acid has no target before 10 February, so its earlier runs stay
pending, and one reject whose record awaits signature. Lab B's glucose system is foreign.

Every summary number is recomputed here from the raw rows with :mod:`statistics`, never by
calling the code under test.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc import actions, services, targets
from qcwx.reports import periods
from qcwx.reports.document import Report
from qcwx.reports.dynamic import build_dynamic
from tests import factories as f
from tests.fixtures.app import rolled_back

TODAY = date(2025, 3, 10)
FEB = periods.resolve({"kind": "last_month"}, TODAY)
# z of successive runs: alternating sides, |z| < 1, so no rule fires on its own.
PATTERN = (0.5, -0.4, 0.8, -0.6, 0.3, -0.2, 0.9, -0.7)
GLU_TARGETS = ((5.0, 0.2), (15.0, 0.5))
UA_TARGETS = ((300.0, 10.0), (500.0, 10.0))
SUPERSEDED, CORRECTED = "15.90", "15.10"
# Glucose runs whose values differ from the pattern: (date, run_no) -> (level 1, level 2).
GLU_SPECIAL = {
    (date(2025, 1, 22), 1): ("4.92", "13.40"),   # 1-3s on level 2: January reject
    (date(2025, 2, 5), 1): ("5.06", SUPERSEDED),  # corrected afterwards to CORRECTED
    (date(2025, 2, 8), 1): ("5.44", "14.65"),    # 1-2s warning: in control
    (date(2025, 2, 10), 1): ("5.70", "14.80"),   # 1-3s reject: record signed
    (date(2025, 2, 15), 1): ("4.30", "15.45"),   # 1-3s + R-4s reject: record open
}
UA_REJECT = (date(2025, 2, 12), 1)


@dataclass
class DynWorld:
    lab: m.Lab
    glu: m.TestSystem
    ua: m.TestSystem
    foreign: m.TestSystem
    users: dict[str, m.User] = field(default_factory=dict)
    actions: dict[str, m.CorrectiveAction] = field(default_factory=dict)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def _pattern_values(i: int, targets_: tuple, decimals: int) -> tuple[str, str]:
    z = PATTERN[i % len(PATTERN)]
    return tuple(f"{mean + z * sd:.{decimals}f}" for mean, sd in targets_)


def _submit(tech, ts, day, run_no, values) -> services.RunVerdict:
    return services.submit_run(tech, test_system_id=ts.id, run_date=day, run_no=run_no,
                               values={"1": values[0], "2": values[1]}, notify=False)


def _set_targets(sup, ts, pairs, since, reason="说明书靶值"):
    for lv, (mean, sd) in zip(ts.levels, pairs, strict=True):
        targets.set_control_limit(sup, ts, lv, mean=mean, sd=sd, kind="fixed",
                                  effective_from=since, reason=reason)


def _complete(tech, action_id, cause):
    actions.complete_action(tech, action_id, cause_category=cause, description="校准过期",
                            action_taken="重新校准后复测", rerun_result="复测在控")


def build_world() -> DynWorld:
    region = f.region("报告区")
    lab, other = f.lab(f.hospital(region, "报告第一医院")), f.lab(f.hospital(region))
    glu = f.analyte()
    ua = f.analyte(code="UA", name="尿酸", unit="µmol/L", decimals=0, high=2000.0)
    w = DynWorld(lab, f.test_system(lab, glu, f.qc_lot(2)),
                 f.test_system(lab, ua, f.qc_lot(2), maker="贝克曼库尔特", model="AU5800"),
                 f.test_system(other, glu, f.qc_lot(2)))
    sup, tech = f.user("supervisor", lab_=lab, name="张主管"), f.user("technician", lab_=lab)
    w.users = {"supervisor": sup, "technician": tech}
    _set_targets(sup, w.glu, GLU_TARGETS, date(2025, 1, 1))
    targets.set_control_limit(sup, w.glu, w.glu.levels[1], mean=15.05, sd=0.5, kind="fixed",
                              effective_from=date(2025, 2, 16), reason="累积靶值更新")
    _set_targets(sup, w.ua, UA_TARGETS, date(2025, 2, 10))
    glu_runs = ([(d, 1) for d in _days(date(2025, 1, 2), date(2025, 1, 22))]
                + [(d, 1) for d in _days(date(2025, 2, 1), date(2025, 2, 20))]
                + [(date(2025, 2, 20), 2)])
    verdicts = {}
    for i, key in enumerate(glu_runs):
        values = GLU_SPECIAL.get(key) or _pattern_values(i, GLU_TARGETS, 2)
        verdicts[key] = _submit(tech, w.glu, *key, values)
    ua_runs = [(d, 1) for d in _days(date(2025, 1, 6), date(2025, 1, 10))
               + _days(date(2025, 2, 3), date(2025, 2, 7)) + _days(date(2025, 2, 10),
                                                                   date(2025, 2, 20))]
    for i, key in enumerate(ua_runs):
        values = ("333", "505") if key == UA_REJECT else _pattern_values(i, UA_TARGETS, 0)
        verdicts[("ua", *key)] = _submit(tech, w.ua, *key, values)
    _submit(f.user("technician", lab_=other), w.foreign, date(2025, 2, 3), 1, ("5.01", "15.02"))
    run = db.session.get(m.QcRun, verdicts[(date(2025, 2, 5), 1)].run_id)
    wrong = next(r for r in run.results if r.value_text == SUPERSEDED)
    services.correct_result(tech, wrong.id, CORRECTED, "录入错误，按仪器打印结果更正")
    for name, key in (("signed", (date(2025, 2, 10), 1)), ("open", (date(2025, 2, 15), 1)),
                      ("january", (date(2025, 1, 22), 1)), ("submitted", ("ua", *UA_REJECT))):
        w.actions[name] = db.session.get(m.CorrectiveAction, verdicts[key].action_id)
    _complete(tech, w.actions["signed"].id, "calibration")
    actions.sign_action(sup, w.actions["signed"].id, approve=True, comment="同意")
    _complete(tech, w.actions["submitted"].id, "reagent")
    db.session.flush()
    return w


@pytest.fixture(scope="module")
def dyn(app):
    """Build the world once per backend in one outer transaction, rolled back afterwards."""
    with rolled_back(app):
        yield build_world()


@pytest.fixture(scope="module")
def report(dyn) -> Report:
    return build_dynamic(dyn.lab, None, FEB, TODAY)


# ------------------------------------------------------------------ independent re-computation


def raw_results(ts: m.TestSystem) -> list[tuple]:
    """Return (run_id, run_date, run_no, status, level_id, value) of current results."""
    return db.session.execute(
        select(m.QcRun.id, m.QcRun.run_date, m.QcRun.run_no, m.QcRun.status,
               m.QcResult.qc_level_id, m.QcResult.value)
        .join(m.QcResult, m.QcResult.run_id == m.QcRun.id)
        .where(m.QcRun.test_system_id == ts.id, m.QcResult.is_current.is_(True))
        .order_by(m.QcRun.run_date, m.QcRun.run_no)).all()


def raw_rules(ts: m.TestSystem) -> dict[tuple[int, int], list[str]]:
    """Return the active rule codes per (run id, level id) straight from the violations."""
    out: dict[tuple[int, int], list[str]] = {}
    for run_id, code, levels in db.session.execute(
            select(m.Violation.run_id, m.Violation.rule_code, m.Violation.levels)
            .join(m.QcRun, m.QcRun.id == m.Violation.run_id)
            .where(m.QcRun.test_system_id == ts.id, m.Violation.active.is_(True))):
        for level in levels:
            out.setdefault((run_id, level), []).append(code)
    return out


def expected_row(rows, rules, level_id: int, start: date | None, end: date) -> dict:
    mine = [r for r in rows if r[4] == level_id and (start is None or r[1] >= start)
            and r[1] <= end]
    judged = [r for r in mine if r[3] != "pending"]
    values = [r[5] for r in judged if r[3] != "reject"]
    rejected = sum(r[3] == "reject" for r in judged)
    counts: dict[str, int] = {}
    for r in mine:
        for code in rules.get((r[0], level_id), []):
            counts[code] = counts.get(code, 0) + 1
    mean = statistics.fmean(values) if values else None
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"n": len(values), "mean": mean, "sd": sd,
            "cv": 100 * sd / abs(mean) if sd is not None else None,
            "judged": len(judged), "rejected": rejected,
            "rate": 100 * (1 - rejected / len(judged)) if judged else None, "rules": counts}


def section_of(report: Report, ts: m.TestSystem):
    return next(s for s in report.sections if s.anchor == f"ts-{ts.id}")


def summary_rows(report: Report, ts: m.TestSystem) -> dict[tuple[str, str], dict]:
    table = section_of(report, ts).tables[0]
    titles = [c.title for c in table.columns]
    return {(row[0], row[1]): dict(zip(titles, row, strict=True)) for row in table.rows}


def parse_rules(text: str | None) -> dict[str, int]:
    if not text:
        return {}
    return {code: int(n) for code, n in (part.split("×") for part in text.split(", "))}


# ------------------------------------------------------------------ tests


def test_summary_numbers_match_an_independent_recomputation(dyn, report):
    for ts in (dyn.glu, dyn.ua):
        rows, rules = raw_results(ts), raw_rules(ts)
        got = summary_rows(report, ts)
        assert len(got) == 2 * len(ts.levels)
        for lv in ts.levels:
            for scope, start in ((FEB.label, FEB.start), ("批号累积", None)):
                want = expected_row(rows, rules, lv.id, start, FEB.end)
                cells = got[(lv.name, scope)]
                assert (cells["n"], cells["判定批数"], cells["失控批数"]) == (
                    want["n"], want["judged"], want["rejected"])
                for key, col in (("mean", "均值"), ("sd", "SD"), ("cv", "CV"),
                                 ("rate", "在控率")):
                    if want[key] is None:
                        assert cells[col] is None
                    else:
                        assert cells[col] == pytest.approx(want[key], rel=1e-12, abs=1e-12)
                assert parse_rules(cells["触发规则"]) == want["rules"]
                for value in (cells["n"], cells["均值"], cells["SD"], cells["CV"]):
                    assert value is None or type(value) in (int, float)


def test_summary_uses_the_corrected_value_and_leaves_out_rejected_runs(dyn, report):
    glu = summary_rows(report, dyn.glu)
    level1, level2 = (lv.name for lv in dyn.glu.levels)
    # 21 February runs (20 days + a second run on the 20th), 2 rejected, 1 warning.
    assert (glu[(level1, FEB.label)]["判定批数"], glu[(level1, FEB.label)]["n"]) == (21, 19)
    assert glu[(level1, FEB.label)]["在控率"] == pytest.approx(100 * 19 / 21)
    assert glu[(level1, FEB.label)]["触发规则"] == "1-2s×3, 1-3s×2, R-4s×1"
    feb_l2 = [v for _, d, _, s, lv, v in raw_results(dyn.glu)
              if lv == dyn.glu.levels[1].id and d >= FEB.start and s != "reject"]
    assert float(CORRECTED) in feb_l2 and float(SUPERSEDED) not in feb_l2
    assert glu[(level2, FEB.label)]["均值"] == pytest.approx(statistics.fmean(feb_l2))
    # the January reject counts cumulatively only
    assert glu[(level2, "批号累积")]["失控批数"] == 3 and glu[(level2, FEB.label)]["失控批数"] == 2


def test_in_control_rate_leaves_out_pending_runs(dyn, report):
    ua = summary_rows(report, dyn.ua)
    level1 = dyn.ua.levels[0].name
    # 16 February runs: 5 pending (no target before the 10th), 11 judged, 1 rejected.
    assert ua[(level1, FEB.label)]["判定批数"] == 11
    assert ua[(level1, FEB.label)]["在控率"] == pytest.approx(100 * 10 / 11)
    assert ua[(level1, "批号累积")]["判定批数"] == 11  # January's 5 runs are all pending
    figures = {fig.label: fig for fig in section_of(report, dyn.ua).figures}
    assert figures["判定批数"].value == "11" and figures["在控率"].value == "90.9%"


def test_headline_title_and_share_text(dyn, report):
    assert report.kind == "dynamic" and report.lab_id == dyn.lab.id
    assert report.title == f"{dyn.lab.full_name} · 2025年2月 动态质控报告"
    assert report.params == {"ts_ids": None}
    figures = {fig.label: fig.value for fig in report.figures}
    judged, rejected = 21 + 11, 3
    assert figures == {"检测系统": "2", "判定批数": str(judged),
                       "在控率": f"{100 * (1 - rejected / judged):.1f}%",
                       "失控批数": "3", "未关闭记录": "2"}
    assert report.description == "2 个检测系统 · 在控率 90.6% · 失控 3 次（已处理 1）"
    assert len(report.description) <= 120
    assert report.generated_at.endswith("+00:00")
    assert [s.title for s in report.sections] == [
        f"葡萄糖 · Roche cobas c702 · 批号 {dyn.glu.qc_lot.lot_number}",
        f"尿酸 · 贝克曼库尔特 AU5800 · 批号 {dyn.ua.qc_lot.lot_number}"]


def test_summary_columns_use_the_analytes_decimals(dyn, report):
    """Mean with the analyte's decimals, SD with one more (as every QC page shows them)."""
    for ts, dec in ((dyn.glu, 2), (dyn.ua, 0)):
        columns = {c.title: c for c in section_of(report, ts).tables[0].columns}
        assert (columns["均值"].decimals, columns["SD"].decimals) == (dec, dec + 1)
        assert (columns["CV"].decimals, columns["在控率"].decimals) == (2, 1)
        assert columns["均值"].unit == ts.unit


def _points(chart) -> list[dict]:
    return chart.options["series"][0]["data"]


def _label(day: date, run_no: int) -> str:
    return f"{day:%m-%d}" + (f" #{run_no}" if run_no > 1 else "")


def test_lj_charts_hold_every_point_of_the_period_and_mark_rejects(dyn, report):
    ids = [c.chart_id for c in report.charts]
    assert len(ids) == len(set(ids)) == 4
    for ts in (dyn.glu, dyn.ua):
        rows = [r for r in raw_results(ts) if FEB.start <= r[1] <= FEB.end]
        charts = {c.chart_id: c for c in section_of(report, ts).charts}
        for lv in ts.levels:
            mine = [r for r in rows if r[4] == lv.id]
            items = _points(charts[f"lj-{ts.id}-{lv.id}"])
            assert [i["name"] for i in items] == [_label(r[1], r[2]) for r in mine]
            assert [i["value"] for i in items] == pytest.approx([r[5] for r in mine])
            for item, r in zip(items, mine, strict=True):
                assert (item["symbol"] == "diamond") == (r[3] == "reject"), item["name"]
    glu_l1 = {i["name"]: i for i in _points(next(
        c for c in report.charts if c.chart_id == f"lj-{dyn.glu.id}-{dyn.glu.levels[0].id}"))}
    assert glu_l1["02-10"]["itemStyle"]["color"] == "#fa5151"          # signed: filled red
    assert glu_l1["02-15"]["itemStyle"]["borderColor"] == "#fa5151"    # open: hollow red
    assert glu_l1["02-15"]["itemStyle"]["color"] == "#ffffff"
    assert glu_l1["02-08"]["itemStyle"]["color"] == "#fa9d3b"          # warning
    ua_l1 = _points(next(c for c in report.charts
                         if c.chart_id == f"lj-{dyn.ua.id}-{dyn.ua.levels[0].id}"))
    assert ua_l1[0]["itemStyle"]["color"] == "#b2b2b2"                  # pending: grey


def test_a_target_change_in_the_period_draws_stepped_limits(dyn, report):
    glu = {c.chart_id: c for c in section_of(report, dyn.glu).charts}
    stepped = glu[f"lj-{dyn.glu.id}-{dyn.glu.levels[1].id}"].options
    means = next(s for s in stepped["series"] if s.get("name") == "均值")
    assert {d["value"] for d in means["data"]} == {15.0, 15.05}
    assert "靶值 15.05" in glu[f"lj-{dyn.glu.id}-{dyn.glu.levels[1].id}"].title
    plain = glu[f"lj-{dyn.glu.id}-{dyn.glu.levels[0].id}"].options
    assert not any(s.get("step") for s in plain["series"])


def test_out_of_control_records_of_the_period(dyn, report):
    table = section_of(report, dyn.glu).tables[1]
    signed = dyn.actions["signed"]
    local = signed.signed_at.replace(tzinfo=ZoneInfo("UTC")).astimezone(
        ZoneInfo("Asia/Shanghai"))
    assert [r[:2] for r in table.rows] == [("2025-02-10", 1), ("2025-02-15", 1)]  # no January
    assert table.rows[0][2:] == ("1-2s, 1-3s", "已签字", "校准问题：校准过期", "重新校准后复测",
                                 "张主管", local.strftime("%Y-%m-%d %H:%M"))
    assert table.rows[1][2:] == ("1-2s, 1-3s, R-4s", "待处理", None, None, None, None)
    assert table.tones == ("ok", "bad")
    ua = section_of(report, dyn.ua).tables[1]
    assert [(r[0], r[3]) for r in ua.rows] == [("2025-02-12", "待审核")]
    assert ua.tones == ("warn",)


def test_selected_test_systems_only_and_a_foreign_one_is_refused(dyn):
    only = build_dynamic(dyn.lab, [dyn.ua.id], FEB, TODAY)
    assert [s.anchor for s in only.sections] == [f"ts-{dyn.ua.id}"]
    assert only.params == {"ts_ids": [dyn.ua.id]}
    assert only.figures[0].value == "1"
    for ids in ([dyn.foreign.id], [dyn.glu.id, dyn.foreign.id], [dyn.glu.id, 10 ** 9]):
        with pytest.raises(UserError) as err:
            build_dynamic(dyn.lab, ids, FEB, TODAY)
        assert err.value.field == "ts" and err.value.message == "所选检测系统不属于该实验室"
    with pytest.raises(UserError, match="请至少选择一个检测系统"):
        build_dynamic(dyn.lab, [], FEB, TODAY)


def test_levels_without_data_or_target_get_a_note_not_a_chart(dyn):
    quiet = periods.resolve({"kind": "range", "start": "2025-01-25", "end": "2025-01-31"},
                            TODAY)
    empty = build_dynamic(dyn.lab, None, quiet, TODAY)
    assert empty.charts == []
    assert "水平1：本周期无质控结果" in section_of(empty, dyn.glu).note
    row = summary_rows(empty, dyn.glu)[(dyn.glu.levels[0].name, "所选周期")]
    assert (row["n"], row["均值"], row["在控率"]) == (0, None, None)
    january = build_dynamic(dyn.lab, [dyn.ua.id], periods.resolve(
        {"kind": "last_month"}, date(2025, 2, 3)), TODAY)
    assert january.charts == []
    assert "水平1：未设定靶值，无法绘制质控图" in january.sections[0].note


def test_report_round_trips_through_plain_json(report):
    data = json.loads(json.dumps(report.to_dict(), ensure_ascii=False, allow_nan=False))
    assert Report.from_dict(data) == report
    assert Report.from_dict(report.to_dict()) == report
