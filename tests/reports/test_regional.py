"""The regional report: figures recomputed from raw rows, anonymity, publication, share link.

The eval world (tests/reports/evaluation_world.py) has eight region-1 labs with daily QC
over the three months before this one; its participation, NCCL and grades are recomputed
here from the runs and results with the helpers of test_recognition_list.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from qcwx.alerts.models import OutboxMessage
from qcwx.extensions import db
from qcwx.orgs.models import Region
from qcwx.peer.filters import month_period, quarter_of, quarter_period
from qcwx.reports import regional_publish as publish
from qcwx.reports.models import PublishedReport, ShareLink
from qcwx.reports.regional import build_region_report, period_months
from tests import factories as f
from tests.peer.conftest import LABS, expected, raw_values
from tests.reports.evaluation_world import DRIFT_LAB, GAP_LAB, REJECT_LAB
from tests.reports.test_recognition_list import (
    ALLOWABLE_BIAS,
    ALLOWABLE_CV,
    GROUP_OF,
    TEA,
    grade_of,
    month_bounds,
    participation,
    recompute,
)


def region_rates(w, month: str) -> tuple[float, float]:
    """(mean submission over labs, pooled in-control) of region 1 in ``month``, from qc_run."""
    counts = {n: participation(w.systems[n].id, month) for n in LABS}
    submission = sum(100 * c[0] / c[1] for c in counts.values()) / len(counts)
    judged = sum(c[2] for c in counts.values())
    rejected = sum(c[3] for c in counts.values())
    return submission, 100 * (judged - rejected) / judged


def level_passes(w, name: str, month: str) -> list[tuple[bool, str]]:
    start, end = month_bounds(month)
    ids = [w.systems[n].id for n in GROUP_OF[name]]
    out = []
    for index in (1, 2):
        exp = expected(raw_values(ids, w.level(index).id, start, end), ids, w.systems[name].id)
        out.append((exp.lab_cv <= ALLOWABLE_CV and abs(exp.bias) <= ALLOWABLE_BIAS,
                    grade_of((TEA - abs(exp.bias)) / exp.lab_cv)))
    return out


def deliver(outbox_id: int) -> None:
    """Dispatch an outbox row now (a no-op when the eager after-commit dispatch did it).

    Explicit because another test module's ``create_app`` may leave Celery non-eager.
    """
    from qcwx.alerts.delivery import dispatch

    dispatch(outbox_id)
    db.session.commit()


def table(report, key: str):
    return next(t for t in report.tables if t.key == key)


def test_the_monthly_report_matches_an_independent_recomputation(eval_world):
    w = eval_world
    report = build_region_report(w.region, month_period(w.month, w.today), w.today)
    figures = {fig.label: fig for fig in report.figures}
    submission, in_control = region_rates(w, w.month)
    before_submission, _ = region_rates(w, w.window[-2])
    assert figures["参与实验室"].value == f"{len(LABS)}/{len(LABS)}"
    assert figures["填报率"].value == f"{submission:.1f}%"
    assert figures["在控率"].value == f"{in_control:.1f}%"
    assert f"较上期 {submission - before_submission:+.1f} 个百分点" in figures["填报率"].hint
    passes = {n: level_passes(w, n, w.month) for n in LABS}
    passed = sum(p for levels in passes.values() for p, _ in levels)
    (nccl,) = table(report, "NCCL通过率").rows
    assert nccl[:3] == ("葡萄糖", 2 * len(LABS), passed)
    assert nccl[3] == pytest.approx(100 * passed / (2 * len(LABS)))
    assert figures["NCCL 通过率"].value == f"{100 * passed / (2 * len(LABS)):.1f}%"
    worst = [max(g for _, g in levels) for levels in passes.values()]
    (grades,) = table(report, "等级分布").rows
    assert grades[1:5] == tuple(worst.count(g) for g in "ABCD")
    verdicts = [recompute(w, n)["verdict"] for n in LABS]
    assert figures["推荐互认 / 需改进 / 不合格"].value == " / ".join(
        str(verdicts.count(v)) for v in ("推荐互认", "需改进", "不合格"))
    lab_rows = {r[0]: r for r in table(report, "各实验室填报").rows}
    for name in LABS:
        days, expected_days, judged, rejected = participation(w.systems[name].id, w.month)
        row = lab_rows[w.labs[name].anon_code]
        assert row[3] == pytest.approx(100 * days / expected_days, rel=1e-12)
        assert (row[5], row[6]) == (judged, rejected)
    levels = {r[0]: r for r in table(report, "按医院等级").rows}
    for level in ("二级", "三级"):
        names = [n for n in LABS if w.labs[n].hospital.level == level]
        rates = [100 * c[0] / c[1] for c in (participation(w.systems[n].id, w.month)
                                             for n in names)]
        assert levels[level][1] == len(names)
        assert levels[level][3] == pytest.approx(sum(rates) / len(rates), rel=1e-12)
    attention = {r[0]: r[2] for r in table(report, "需关注实验室").rows}
    assert "填报率" in attention[w.labs[GAP_LAB].anon_code]
    assert "在控率" in attention[w.labs[REJECT_LAB].anon_code]
    assert "葡萄糖不合格" in attention[w.labs[DRIFT_LAB].anon_code]
    assert w.labs["r3"].anon_code not in attention
    trend = table(report, "月度趋势")
    assert len(trend.rows) == 12 and trend.rows[-1][0] == w.month
    assert trend.rows[-1][1] == pytest.approx(submission, rel=1e-12)
    assert [c.chart_id for c in report.charts] == ["rg-rates", "rg-grades"]


def test_labs_appear_only_by_anonymous_code(eval_world):
    w = eval_world
    report = build_region_report(w.region, month_period(w.month, w.today), w.today)
    text = json.dumps(report.to_dict(), ensure_ascii=False)
    for name, lab in w.labs.items():
        assert lab.hospital.name not in text and lab.full_name not in text
        assert (lab.anon_code in text) == (name != "x")  # region 2 stays out


def test_quarter_and_year_versions(eval_world):
    w = eval_world
    quarter = quarter_period(quarter_of(month_period(w.window[0], w.today).start), w.today)
    report = build_region_report(w.region, quarter, w.today)
    assert report.period_label.endswith("季度") and report.params["period_kind"] == "quarter"
    months = period_months(quarter)
    assert len(months) == 3 and w.window[0] in months
    from qcwx.peer.filters import year_period
    empty = build_region_report(w.region, year_period(str(w.today.year - 2), w.today), w.today)
    figures = {fig.label: fig.value for fig in empty.figures}
    assert figures["参与实验室"] == f"0/{len(LABS)}" and figures["填报率"] == "—"


def test_publish_once_with_a_working_share_link_and_an_announcement(eval_world, app, client):
    w = eval_world
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reports", "publish-region", "--month", w.month,
                                 "--region", w.region.code])
    assert result.exit_code == 0, result.output
    url = re.search(r"share link: (\S+)", result.output).group(1)
    item = db.session.scalar(select(PublishedReport).where(PublishedReport.kind == "region"))
    assert (item.region_id, item.lab_id, item.period) == (w.region.id, None, w.month)
    token = url.rsplit("/r/", 1)[1]
    page = client.get(f"/r/{token}")
    assert page.status_code == 200 and item.title in page.get_data(as_text=True)
    xlsx = client.get(f"/r/{token}.xlsx")
    book = load_workbook(io.BytesIO(xlsx.data))
    assert "互认名单" in book.sheetnames
    outbox = db.session.scalar(select(OutboxMessage).where(
        OutboxMessage.kind == "region_report"))
    expected_users = {w.users["center"].id, w.users["director_r1"].id}
    assert set(outbox.payload["user_ids"]) == expected_users and outbox.payload["url"] == url
    # nobody in this world is bound to WeChat: a visible failure, not "sent"
    deliver(outbox.id)
    db.session.refresh(outbox)
    assert outbox.status == "unreachable"
    again = runner.invoke(args=["reports", "publish-region", "--month", w.month,
                                "--region", w.region.code])
    assert "already published" in again.output
    assert db.session.query(PublishedReport).filter_by(kind="region").count() == 1
    assert db.session.query(OutboxMessage).filter_by(kind="region_report").count() == 1
    assert db.session.query(ShareLink).filter_by(region_id=w.region.id).count() == 1


@pytest.mark.parametrize("args, message", [
    (["--month", "2026-13"], "月份格式无效"), (["--quarter", "2026-Q5"], "季度格式无效"),
    (["--month", "2026-01", "--year", "2025"], "只能选择")])
def test_the_command_refuses_bad_periods(eval_world, app, args, message):
    result = app.test_cli_runner().invoke(args=["reports", "publish-region", *args])
    assert result.exit_code != 0 and message in result.output


def test_an_unfinished_period_cannot_be_published(eval_world, app):
    w = eval_world
    result = app.test_cli_runner().invoke(args=["reports", "publish-region",
                                                "--month", w.today.strftime("%Y-%m")])
    assert result.exit_code != 0 and "尚未结束" in result.output


ROLES = ("anonymous", "technician", "supervisor", "director", "center", "admin", "center2",
         "expert")


@pytest.mark.parametrize("role", ROLES)
def test_region_pages_for_every_role(eval_world, client, login, role):
    w = eval_world
    done = publish.publish_region(w.region, month_period(w.month, w.today), w.today)
    db.session.commit()
    deliver(done.outbox.id)
    item = done.item
    users = {"technician": f.user("technician", lab_=w.labs["r1"]),
             "supervisor": f.user("supervisor", lab_=w.labs["r1"]),
             "director": w.users["director_r1"], "center": w.users["center"],
             "admin": w.users["admin"], "center2": w.users["center2"],
             "expert": f.user("expert", region_=w.region)}
    c = login(users[role]) if role != "anonymous" else client
    prev = w.window[-2]
    answers = [c.get("/reports/region/").status_code,
               c.get(f"/reports/region/?region={w.region.id}").status_code,
               c.get(f"/reports/region/{item.id}").status_code,
               c.get(f"/reports/region/{item.id}.xlsx").status_code,
               c.post(f"/reports/region/{item.id}/share", data={"ttl_days": "7"}).status_code,
               c.post("/reports/region/publish", data={"period": "month", "month": prev,
                                                      "region": w.region.id}).status_code]
    published = {p.period for p in db.session.scalars(select(PublishedReport).where(
        PublishedReport.kind == "region", PublishedReport.region_id == w.region.id))}
    if role == "anonymous":
        assert all(a in (302, 401) for a in answers)
    elif role in ("technician", "supervisor", "director"):
        assert answers == [403] * 6
    elif role == "center2":
        assert answers == [200, 404, 404, 404, 404, 404]
    elif role == "expert":  # reads the region's reports, changes nothing
        assert answers == [200, 200, 200, 200, 403, 403]
    else:
        assert answers == [200, 200, 200, 200, 302, 302]
        assert prev in published
    if role not in ("center", "admin"):
        assert published == {w.month}
    if role == "center":
        page = c.get(f"/reports/region/{item.id}").get_data(as_text=True)
        assert 'data-status="unreachable"' in page and publish.NOBODY in page


def test_the_monthly_beat_task_publishes_every_region_once(eval_world):
    from qcwx.reports.tasks import publish_previous_month

    w = eval_world
    first = publish_previous_month()
    assert first["month"] == w.month
    assert {code: r["new"] for code, r in first["regions"].items()} == {
        w.region.code: True, w.region2.code: True}
    assert first["regions"][w.region.code]["recipients"] == 2  # the centre and r1's director
    second = publish_previous_month()
    assert not any(r["new"] for r in second["regions"].values())
    items = db.session.scalars(select(PublishedReport).where(
        PublishedReport.kind == "region")).all()
    assert sorted((i.region_id, i.period) for i in items) == [
        (w.region.id, w.month), (w.region2.id, w.month)]


def test_a_city_report_covers_the_labs_of_its_districts(eval_world):
    """Regression: after the region tree, a city whose hospitals all sit in districts showed
    0/0 labs, no submission and no in-control rate in its own report (labs were selected by
    ``Hospital.region_id == city`` instead of the city's subtree)."""
    w = eval_world
    flat = build_region_report(w.region, month_period(w.month, w.today), w.today)
    district_a = Region(code="TREE-A", name="东区", parent_id=w.region.id, level="district")
    district_b = Region(code="TREE-B", name="西区", parent_id=w.region.id, level="district")
    db.session.add_all([district_a, district_b])
    db.session.flush()
    for i, name in enumerate(LABS):
        w.labs[name].hospital.region_id = (district_a if i % 2 else district_b).id
    director = w.users["director_r1"]
    db.session.flush()
    tree = build_region_report(w.region, month_period(w.month, w.today), w.today)
    figures = {fig.label: fig.value for fig in tree.figures}
    assert figures["参与实验室"] == f"{len(LABS)}/{len(LABS)}"
    assert figures == {fig.label: fig.value for fig in flat.figures}
    assert table(tree, "各实验室填报").rows == table(flat, "各实验室填报").rows
    # The announcement reaches the directors of the districts' hospitals too.
    from qcwx.reports.regional_publish import recipients

    assert director in recipients(w.region.id)
    assert director not in recipients(district_b.id if w.labs["r1"].hospital.region_id
                                      == district_a.id else district_a.id)
