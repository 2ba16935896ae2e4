"""Lab-established limits and the monthly IQC summary through the real pages (issue 9, 3 and 5).

Provisional limits come from the earliest results of the lot and level, cumulative limits from
the judged in-control results after the provisional period; pending runs (no target yet) are
neither in nor out of control, and a CV is taken of |mean|.
"""

from __future__ import annotations

import statistics
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from qcwx.iqc import queries, reports
from qcwx.iqc.models import ControlLimit, QcResult, QcRun
from qcwx.timeutil import local_today

# Issue 9 item 3: 20 days around 5.0, then 40 days around 5.5 (values as entered).
FIRST_20_DAYS = [4.93, 5.03, 5.0, 5.12, 5.01, 4.94, 5.03, 5.02, 4.96, 5.05,
                 5.11, 4.95, 5.06, 4.91, 4.99, 5.06, 4.96, 5.02, 4.94, 4.98]
NEXT_40_DAYS = [5.32, 5.55, 5.41, 5.58, 5.5, 5.47, 5.48, 5.33, 5.44, 5.5,
                5.56, 5.41, 5.38, 5.54, 5.47, 5.58, 5.74, 5.49, 5.55, 5.33,
                5.52, 5.41, 5.52, 5.62, 5.57, 5.64, 5.61, 5.51, 5.55, 5.42,
                5.36, 5.26, 5.46, 5.55, 5.53, 5.57, 5.36, 5.59, 5.54, 5.37]
START = date(2025, 3, 1)


@pytest.fixture
def ts(world):
    """A test system of lab A with no limits yet."""
    return world.systems["a"]


def store(session, ts, values, *, start=START, status="pending", level_index=0):
    """Store one run per day from ``start`` with one result each; return the next day."""
    level = ts.levels[level_index]
    day = start
    for value in values:
        run = QcRun(test_system_id=ts.id, run_date=day, run_no=1, status=status)
        text = f"{value:.2f}"
        session.add(QcResult(run=run, qc_level_id=level.id, value_text=text, value=float(text)))
        day += timedelta(days=1)
    session.commit()
    return day


def post_limit(client, ts, mode, reason="新批号自建靶值"):
    return client.post(f"/ts/{ts.id}/limits", data={
        "qc_level_id": str(ts.levels[0].id), "mode": mode, "reason": reason,
        "effective_from": local_today().isoformat()})


def stored_limits(session, ts):
    return session.scalars(select(ControlLimit).where(ControlLimit.test_system_id == ts.id)
                           .order_by(ControlLimit.version)).all()


def test_provisional_limits_use_the_first_20_days_not_the_whole_history(
        world, login, ts, session):
    store(session, ts, FIRST_20_DAYS + NEXT_40_DAYS)
    client = login(world.users["supervisor"])
    page = client.get(f"/ts/{ts.id}/limits").get_data(as_text=True)
    assert "2025-03-01 至 2025-03-20" in page and "5.00" in page

    resp = post_limit(client, ts, "provisional")
    assert resp.status_code == 302
    [limit] = stored_limits(session, ts)
    assert limit.target_mean == pytest.approx(statistics.mean(FIRST_20_DAYS), abs=1e-12)
    assert limit.target_sd == pytest.approx(statistics.stdev(FIRST_20_DAYS), abs=1e-12)
    assert (round(limit.target_mean, 3), round(limit.target_sd, 3)) == (5.003, 0.059)
    assert (limit.kind, limit.n_used) == ("established", 20)
    assert limit.reason == ("新批号自建靶值（暂定靶值依据：2025-03-01至2025-03-20，"
                            "使用 20 个结果，剔除 0 个）")
    history = client.get(f"/ts/{ts.id}/limits").get_data(as_text=True)
    assert "暂定靶值依据：2025-03-01至2025-03-20" in history


def test_provisional_limits_with_too_few_days_say_so_and_store_nothing(
        world, login, ts, session):
    store(session, ts, FIRST_20_DAYS[:19])
    client = login(world.users["supervisor"])
    assert "目前共有 19 个结果、19 个日期" in client.get(f"/ts/{ts.id}/limits").get_data(
        as_text=True)
    resp = post_limit(client, ts, "provisional")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "数据不足，无法计算暂定靶值" in html and "19 个结果、19 个日期" in html
    assert stored_limits(session, ts) == []


def test_cumulative_limits_use_judged_in_control_results_after_the_provisional_period(
        world, login, ts, session):
    day = store(session, ts, FIRST_20_DAYS, status="accept")
    in_control = NEXT_40_DAYS[:8]
    day = store(session, ts, in_control[:5], start=day, status="accept")
    day = store(session, ts, [6.9, 7.1], start=day, status="reject")
    day = store(session, ts, in_control[5:7], start=day, status="warning")
    day = store(session, ts, [8.0, 8.5], start=day, status="pending")
    store(session, ts, in_control[7:], start=day, status="accept")
    client = login(world.users["supervisor"])
    resp = post_limit(client, ts, "cumulative", reason="累积靶值更新")
    assert resp.status_code == 302
    [limit] = stored_limits(session, ts)
    assert limit.target_mean == pytest.approx(statistics.mean(in_control), abs=1e-12)
    assert limit.target_sd == pytest.approx(statistics.stdev(in_control), abs=1e-12)
    assert limit.n_used == 8
    assert "累积靶值依据：2025-03-21至2025-04-01，使用 8 个结果，剔除 4 个" in limit.reason


def test_cumulative_limits_need_in_control_results_after_the_provisional_period(
        world, login, ts, session):
    day = store(session, ts, FIRST_20_DAYS, status="accept")
    store(session, ts, [5.4, 5.5], start=day, status="pending")
    resp = post_limit(login(world.users["supervisor"]), ts, "cumulative")
    assert resp.status_code == 400
    assert "暂定期（2025-03-01至2025-03-20）之后只有 0 个已评价的在控结果" in resp.get_data(
        as_text=True)
    assert stored_limits(session, ts) == []


def test_monthly_summary_leaves_pending_runs_out_of_the_in_control_rate_and_statistics(
        world, login, ts, session):
    day = store(session, ts, [5.0, 5.2, 5.1], status="accept")
    day = store(session, ts, [6.5], start=day, status="reject")
    store(session, ts, [9.0, 9.5, 9.9, 9.7], start=day, status="pending")
    [row] = reports.monthly_summary(ts, "2025-03")
    for figures in (row.month, row.cumulative):
        assert (figures["n_pending"], figures["n_judged"], figures["n"]) == (4, 4, 3)
        assert figures["in_control_rate"] == pytest.approx(0.75)
        assert figures["mean"] == pytest.approx(5.1)
        assert figures["sd"] == pytest.approx(statistics.stdev([5.0, 5.2, 5.1]))
    html = login(world.users["technician"]).get(
        f"/ts/{ts.id}/summary?month=2025-03").get_data(as_text=True)
    assert "75.0%" in html and "失控及待评价批次不参与统计" in html


def test_monthly_summary_cv_is_positive_for_a_negative_mean_and_dash_at_zero(
        world, login, ts, session):
    store(session, ts, [-2.0, -2.2, -1.8], status="accept")
    store(session, ts, [-1.0, 1.0, 0.5, -0.5], start=date(2025, 4, 1), status="accept")
    [march] = reports.monthly_summary(ts, "2025-03")
    assert march.month["cv_pct"] == pytest.approx(100 * statistics.stdev([-2.0, -2.2, -1.8]) / 2)
    client = login(world.users["technician"])
    assert "<td>10.00</td>" in client.get(f"/ts/{ts.id}/summary?month=2025-03").get_data(
        as_text=True)
    april = client.get(f"/ts/{ts.id}/summary?month=2025-04").get_data(as_text=True)
    assert "<td>0.00</td>" in april and "<td>0.913</td><td>—</td>" in april


def test_overview_in_control_rate_leaves_pending_runs_out(world, ts, session):
    today = local_today()
    day = store(session, ts, [5.0, 5.1, 5.2], start=today - timedelta(days=10), status="accept")
    day = store(session, ts, [6.9], start=day, status="reject")
    store(session, ts, [5.0] * 4, start=day, status="pending")
    assert session.scalar(select(func.count()).select_from(QcRun)) == 8
    rate = queries.overview(world.users["supervisor"], today).in_control_rate_30d
    assert rate == pytest.approx(0.75)
