"""The mutual-recognition list: every verdict recomputed from raw rows, overrides, export.

The verdicts of :mod:`qcwx.recognition.queries` are recomputed here from the QC runs and
results themselves — judged days, judged and rejected runs, each month's peer statistics
(plain numpy and the tests' own Algorithm A) and the §7 rule written out again — and
compared with the service and the page.
"""

from __future__ import annotations

import io
import re
from calendar import monthrange
from datetime import date

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from qcwx import models as m
from qcwx.extensions import db
from qcwx.qcstats.recognition import IMPROVE, RECOMMENDED, UNQUALIFIED
from qcwx.recognition import queries, services
from qcwx.recognition.models import RecognitionOverride
from tests import factories as f
from tests.peer.conftest import LABS, expected, raw_values
from tests.reports.evaluation_world import (
    DRIFT_LAB,
    GAP_LAB,
    REJECT_LAB,
)

PEER = ["r1", "r2", "r3", "r4", "r5"]
GROUP_OF = {**{n: PEER for n in PEER}, "b1": PEER + ["b1", "b2"], "b2": PEER + ["b1", "b2"],
            "s1": list(LABS)}
TEA, ALLOWABLE_CV, ALLOWABLE_BIAS = 7.0, 3.0, 2.0


# ------------------------------------------------------------------ independent recomputation


def month_bounds(month: str) -> tuple[date, date]:
    year, mon = int(month[:4]), int(month[5:7])
    return date(year, mon, 1), date(year, mon, monthrange(year, mon)[1])


def participation(ts_id: int, month: str) -> tuple[int, int, int, int]:
    """(judged days, expected days, judged runs, rejected runs) straight from qc_run."""
    start, end = month_bounds(month)
    first = db.session.scalar(select(func.min(m.QcRun.run_date)).where(
        m.QcRun.test_system_id == ts_id))
    rows = db.session.execute(select(m.QcRun.run_date, m.QcRun.status).where(
        m.QcRun.test_system_id == ts_id, m.QcRun.run_date >= start, m.QcRun.run_date <= end,
        m.QcRun.status.in_(("accept", "warning", "reject")))).all()
    expected_days = (end - max(start, first)).days + 1
    return (len({d for d, _ in rows}), expected_days, len(rows),
            sum(1 for _, s in rows if s == "reject"))


def grade_of(sigma: float) -> str:
    return "A" if sigma >= 6 else "B" if sigma >= 4 else "C" if sigma >= 3 else "D"


def nccl_and_grade(w, name: str, month: str) -> tuple[bool, str]:
    """NCCL pass on every level and the worst grade of the month, from raw results."""
    start, end = month_bounds(month)
    ids = [w.systems[n].id for n in GROUP_OF[name]]
    passed, grades = True, []
    for index in (1, 2):
        exp = expected(raw_values(ids, w.level(index).id, start, end), ids, w.systems[name].id)
        passed &= exp.lab_cv <= ALLOWABLE_CV and abs(exp.bias) <= ALLOWABLE_BIAS
        grades.append(grade_of((TEA - abs(exp.bias)) / exp.lab_cv))
    return passed, max(grades)


def recompute(w, name: str, criteria=services.DEFAULTS) -> dict:
    """The §7 recommendation of one lab, written out from the raw rows."""
    ts = w.systems[name]
    counts = [participation(ts.id, mo) for mo in w.window]
    days, expected_days, judged, rejected = (sum(c[i] for c in counts) for i in range(4))
    submission = 100 * days / expected_days
    in_control = 100 * (judged - rejected) / judged
    monthly = {mo: nccl_and_grade(w, name, mo) for mo in w.window}
    grade = monthly[w.month][1]
    sub_ok = submission >= criteria.min_submission_pct - 1e-9
    ic_ok = in_control >= criteria.min_in_control_pct - 1e-9
    nccl_ok = all(p for p, _ in monthly.values())
    if not sub_ok or not ic_ok or not monthly[w.month][0] or grade == "D":
        verdict = UNQUALIFIED
    elif nccl_ok and grade in criteria.passing_grades:
        verdict = RECOMMENDED
    else:
        verdict = IMPROVE
    return {"submission_pct": submission, "in_control_pct": in_control,
            "nccl_months_passed": sum(p for p, _ in monthly.values()), "grade": grade,
            "verdict": verdict}


def service_rows(w, actor_key: str = "center", **filters) -> dict[str, queries.ListRow]:
    actor = w.users[actor_key]
    lst = queries.recognition_list(actor, actor.region_id or w.region.id, w.month, w.today,
                                   queries.ListFilters(**filters))
    names = {lab.id: n for n, lab in w.labs.items()}
    return {names[r.lab.id]: r for r in lst.rows}


def test_every_verdict_matches_an_independent_recomputation(eval_world, login):
    w = eval_world
    rows = service_rows(w)
    assert set(rows) == set(LABS)  # every region-1 lab, nothing of region 2
    for name in LABS:
        exp, rec = recompute(w, name), rows[name].rec
        assert rec["submission_pct"] == pytest.approx(exp["submission_pct"], rel=1e-12), name
        assert rec["in_control_pct"] == pytest.approx(exp["in_control_pct"], rel=1e-12), name
        assert rec["nccl_months_passed"] == exp["nccl_months_passed"], name
        assert rec["grade"] == exp["grade"], name
        assert rows[name].verdict == rows[name].computed == exp["verdict"], name
    # the world's scenarios really are what the list says (not a vacuous comparison)
    assert {rows[n].verdict for n in (DRIFT_LAB, GAP_LAB, REJECT_LAB)} == {UNQUALIFIED}
    assert rows["r3"].verdict == RECOMMENDED
    assert rows[GAP_LAB].rec["failed"][0] == "submission"
    # the page shows the same verdicts
    html = login(w.users["center"]).get(f"/recognition/?month={w.month}").get_data(as_text=True)
    shown = dict(re.findall(r'data-lab="(\d+)" data-analyte="\d+" data-verdict="([^"]+)"', html))
    assert shown == {str(w.labs[n].id): recompute(w, n)["verdict"] for n in LABS}


def test_region_thresholds_change_the_verdicts_and_keep_every_version(eval_world, login):
    w = eval_world
    center = w.users["center"]
    client = login(center)
    form = {"min_submission_pct": "50", "min_in_control_pct": "80", "window_months": "3",
            "passing_grades": ["A", "B"], "sdi_limit": "2", "cvr_limit": "1.5",
            "note": "放宽基层医院要求"}
    resp = client.post("/recognition/criteria", data=form)
    assert resp.status_code == 302
    loose = services.criteria_for_region(w.region.id)
    assert (loose.min_submission_pct, loose.min_in_control_pct) == (50.0, 80.0)
    rows = service_rows(w)
    for name in (GAP_LAB, REJECT_LAB):
        assert rows[name].verdict == recompute(w, name, loose)["verdict"]
        assert "submission" not in rows[name].rec["failed"]
        assert "in_control" not in rows[name].rec["failed"]
    # a second change is a new version; the first stays as it was
    client.post("/recognition/criteria", data={**form, "min_submission_pct": "60"})
    versions = services.history(w.region.id)
    assert [(v.version, v.min_submission_pct) for v in versions] == [(2, 60.0), (1, 50.0)]
    assert all(v.created_by_id == center.id for v in versions)
    audit = db.session.scalars(select(m.AuditLog).where(
        m.AuditLog.entity == "recognition_criteria")).all()
    assert [a.action for a in audit] == ["insert", "insert"]
    assert {a.actor_id for a in audit} == {center.id}
    assert services.criteria_for_region(w.region2.id) == services.DEFAULTS
    # the lab's evaluation report uses the region's thresholds too
    from qcwx.reports.evaluation_data import gather
    assert gather(w.labs["r1"], w.month, w.today).criteria.min_submission_pct == 60.0
    page = client.get("/recognition/criteria").get_data(as_text=True)
    assert "第 2 版" in page and "放宽基层医院要求" in page


@pytest.mark.parametrize("field, value", [
    ("min_submission_pct", "abc"), ("min_submission_pct", "120"), ("window_months", "0"),
    ("window_months", "三"), ("sdi_limit", "nan"), ("passing_grades", None)])
def test_bad_thresholds_are_a_400_naming_the_field_and_write_nothing(eval_world, login,
                                                                     field, value):
    w = eval_world
    form = {"min_submission_pct": "90", "min_in_control_pct": "95", "window_months": "3",
            "passing_grades": ["A"], "sdi_limit": "2", "cvr_limit": "1.5"}
    form[field] = value
    if value is None:
        form.pop(field)
    resp = login(w.users["center"]).post("/recognition/criteria", data=form)
    assert resp.status_code == 400
    assert 'has-error' in resp.get_data(as_text=True)
    assert services.history(w.region.id) == []


def test_filters_sort_and_paging(eval_world):
    w = eval_world
    rows = service_rows(w, level="二级")
    assert set(rows) == {n for n, lab in w.labs.items() if n != "x"
                         and lab.hospital.level == "二级"}
    assert set(service_rows(w, verdict=RECOMMENDED)) == {
        n for n in LABS if recompute(w, n)["verdict"] == RECOMMENDED}
    lst = queries.recognition_list(w.users["center"], w.region.id, w.month, w.today,
                                   queries.ListFilters(sort="submission"))
    rates = [r.rec["submission_pct"] for r in lst.rows]
    assert rates == sorted(rates) and lst.rows[0].lab.id == w.labs[GAP_LAB].id
    assert lst.page.total == len(LABS) and sum(lst.counts.values()) == len(LABS)


@pytest.mark.parametrize("args, field", [("level=四级", "level"), ("verdict=好", "verdict"),
                                         ("analyte=x", "analyte"), ("sort=worst", "sort"),
                                         ("page=²", "page"), ("month=2026-13", "month")])
def test_bad_list_arguments_are_a_400(eval_world, login, args, field):
    resp = login(eval_world.users["center"]).get(f"/recognition/?{args}")
    assert resp.status_code == 400


def test_a_lab_sees_its_own_rows_and_what_to_fix(eval_world, login):
    w = eval_world
    tech = f.user("technician", lab_=w.labs[GAP_LAB])
    lst = queries.recognition_list(tech, w.region.id, w.month, w.today, queries.ListFilters())
    assert [r.lab.id for r in lst.rows] == [w.labs[GAP_LAB].id]
    (row,) = lst.rows
    exp = recompute(w, GAP_LAB)
    assert row.gaps[0] == f"填报率 {exp['submission_pct']:.1f}% → 需 ≥ 90%"
    html = login(tech).get(f"/recognition/?month={w.month}").get_data(as_text=True)
    assert "达标还需" in html and row.gaps[0] in html
    assert w.labs["r1"].full_name not in html and "改判" not in html


def test_override_needs_a_reason_shows_beside_the_computed_verdict_and_can_be_withdrawn(
        eval_world, login):
    w = eval_world
    center, lab = w.users["center"], w.labs[GAP_LAB]
    client = login(center)
    base = {"lab": lab.id, "analyte_id": w.glu.id, "month": w.month, "verdict": IMPROVE}
    assert client.post("/recognition/overrides", data={**base, "reason": " "}).status_code == 400
    assert client.post("/recognition/overrides",
                       data={**base, "verdict": UNQUALIFIED, "reason": "与计算相同"}
                       ).status_code == 400
    assert db.session.scalar(select(func.count(RecognitionOverride.id))) == 0
    reason = "停机检修 15 天，已提交维修记录"
    assert client.post("/recognition/overrides", data={**base, "reason": reason}
                       ).status_code == 302
    assert client.post("/recognition/overrides", data={**base, "reason": reason}
                       ).status_code == 409
    row = service_rows(w)[GAP_LAB]
    assert (row.computed, row.verdict, row.override.reason) == (UNQUALIFIED, IMPROVE, reason)
    html = client.get(f"/recognition/?month={w.month}").get_data(as_text=True)
    card = re.search(rf'data-lab="{lab.id}".*?</li>', html, re.S).group(0)
    assert f"计算结论：<b>{UNQUALIFIED}</b>" in card and f"中心改判：<b>{IMPROVE}</b>" in card
    assert reason in card
    override = db.session.scalar(select(RecognitionOverride))
    audit = db.session.scalars(select(m.AuditLog).where(
        m.AuditLog.entity == "recognition_override")).all()
    assert [(a.action, a.actor_id) for a in audit] == [("insert", center.id)]
    assert audit[0].changes["reason"] == reason
    assert client.post(f"/recognition/overrides/{override.id}/withdraw",
                       data={"withdraw_reason": ""}).status_code == 400
    assert client.post(f"/recognition/overrides/{override.id}/withdraw",
                       data={"withdraw_reason": "维修记录不完整"}).status_code == 302
    assert service_rows(w)[GAP_LAB].verdict == UNQUALIFIED
    db.session.expire_all()
    assert db.session.get(RecognitionOverride, override.id).withdrawn_by_id == center.id
    actions = [a.action for a in db.session.scalars(select(m.AuditLog).where(
        m.AuditLog.entity == "recognition_override").order_by(m.AuditLog.id))]
    assert actions == ["insert", "update"]
    page = client.get(f"/recognition/?month={w.month}").get_data(as_text=True)
    assert "已撤回" in page and "维修记录不完整" in page


def test_excel_export_keeps_numbers_as_numbers(eval_world, login):
    w = eval_world
    resp = login(w.users["center"]).get(f"/recognition/list.xlsx?month={w.month}")
    assert resp.status_code == 200
    book = load_workbook(io.BytesIO(resp.data))
    sheet = book[book.sheetnames[1]]
    header = [c.value for c in sheet[1]]
    body = [dict(zip(header, [c.value for c in r], strict=True))
            for r in sheet.iter_rows(min_row=2)]
    assert len(body) == len(LABS)
    by_hospital = {r["医院"]: r for r in body}
    for name in LABS:
        exp = recompute(w, name)
        got = by_hospital[w.labs[name].hospital.name]
        assert isinstance(got["填报率 (%)"], float)
        assert got["填报率 (%)"] == pytest.approx(exp["submission_pct"], rel=1e-12)
        assert got["NCCL 通过月数"] == exp["nccl_months_passed"]
        assert got["最终结论"] == exp["verdict"]
