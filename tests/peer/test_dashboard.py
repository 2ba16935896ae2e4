"""The centre's dashboard: every number recomputed from the raw rows, every list scoped.

Built on the peer world (tests/peer/conftest.py): region 1 has eight labs on one glucose lot,
region 2 one lab. The test adds today's runs for some labs and an out-of-control record, then
recomputes each figure with its own queries and plain Python.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.dashboard import queries
from qcwx.extensions import db
from qcwx.peer.filters import month_period
from qcwx.timeutil import utcnow
from tests import factories as f
from tests.peer.conftest import LABS, add_run, elements, expected, raw_values

JUDGED = ("accept", "warning", "reject")


@pytest.fixture
def board_world(peer_world, session):
    w = peer_world
    for name in ("r1", "r2", "b1"):
        add_run(w.systems[name], w.today, {1: 5.5, 2: 15.8}, run_no=20)
    rejected = db.session.scalar(select(m.QcRun).where(
        m.QcRun.test_system_id == w.systems["r1"].id, m.QcRun.status == "reject"))
    db.session.add(m.CorrectiveAction(run_id=rejected.id, status="open",
                                      opened_at=utcnow() - timedelta(days=5, hours=1)))
    # r5 drifts +8 % this month: far outside its peer group (an unacceptable SDI).
    for result in db.session.scalars(select(m.QcResult).join(m.QcRun).where(
            m.QcRun.test_system_id == w.systems["r5"].id, m.QcRun.run_date >= w.today.replace(
                day=1))):
        result.value = round(result.value * 1.08, 2)
        result.value_text = f"{result.value:.2f}"
    session.commit()
    return w


def independent_month(w, names):
    """Return {lab name: (submission %, in-control %, judged, rejected)} from raw runs."""
    month = month_period(w.month, w.today)
    out = {}
    for name in names:
        ts = w.systems[name]
        runs = db.session.execute(select(m.QcRun.run_date, m.QcRun.status).where(
            m.QcRun.test_system_id == ts.id)).all()
        first = min(d for d, _ in runs)
        start = max(month.start, first)
        expected_days = (w.today - start).days + 1
        judged = [(d, s) for d, s in runs if s in JUDGED and month.start <= d <= w.today]
        days = len({d for d, _ in judged})
        rejected = sum(s == "reject" for _, s in judged)
        out[name] = (100.0 * days / expected_days, 100.0 * (len(judged) - rejected) / len(judged),
                     len(judged), rejected)
    return out


def test_today_counts_and_missing_labs_by_name(board_world, login):
    w = board_world
    submitted = {n for n in LABS if db.session.scalar(select(m.QcRun.id).where(
        m.QcRun.test_system_id == w.systems[n].id, m.QcRun.run_date == w.today).limit(1))}
    missing = set(LABS) - submitted
    client = login(w.users["center"])
    html = client.get("/dashboard/").get_data(as_text=True)
    kpi = {e["attrs"]["id"]: e["text"].strip() for e in elements(html, attr="id") if
           e["attrs"]["id"].startswith("kpi-")}
    assert kpi["kpi-missing"].startswith(str(len(missing)))
    assert kpi["kpi-submitted"].startswith(f"{len(submitted)}/{len(LABS)}")
    page = client.get("/dashboard/today").get_data(as_text=True)
    shown = {int(e["attrs"]["data-lab"]) for e in elements(page, attr="data-lab")}
    assert shown == {w.labs[n].id for n in missing}
    for n in missing:
        assert w.labs[n].full_name in page  # the centre sees names
    assert w.labs["x"].full_name not in page  # never another region's lab
    everyone = client.get("/dashboard/today?show=all&sort=lab").get_data(as_text=True)
    assert {int(e["attrs"]["data-lab"]) for e in elements(everyone, attr="data-lab")} == {
        w.labs[n].id for n in LABS}


def test_month_rates_equal_an_independent_count(board_world, login):
    w = board_world
    want = independent_month(w, LABS)
    page = login(w.users["center"]).get("/dashboard/month?sort=lab").get_data(as_text=True)
    rows = {int(e["attrs"]["data-lab"]): e["attrs"] for e in elements(page, attr="data-lab")}
    assert set(rows) == {w.labs[n].id for n in LABS}
    for name, (sub, inc, _, _) in want.items():
        row = rows[w.labs[name].id]
        assert float(row["data-submission"]) == pytest.approx(sub)
        assert float(row["data-in-control"]) == pytest.approx(inc)
    board = queries.lab_months(w.users["center"], w.month, w.today)
    region_sub = sum(v[0] for v in want.values()) / len(want)
    judged = sum(v[2] for v in want.values())
    rejected = sum(v[3] for v in want.values())
    assert queries.mean(b.submission_pct for b in board) == pytest.approx(region_sub)
    html = login(w.users["center"]).get("/dashboard/").get_data(as_text=True)
    kpi = {e["attrs"]["id"]: e["text"].strip() for e in elements(html, attr="id")}
    assert kpi["kpi-submission"].startswith(f"{region_sub:.1f}%")
    assert kpi["kpi-in-control"].startswith(f"{100.0 * (judged - rejected) / judged:.1f}%")


def test_month_list_sorts_lowest_submission_first_and_pages(board_world, login):
    w = board_world
    page = login(w.users["center"]).get("/dashboard/month").get_data(as_text=True)
    values = [float(e["attrs"]["data-submission"]) for e in elements(page, attr="data-lab")]
    assert values == sorted(values)


def test_open_records_with_their_age(board_world, login):
    w = board_world
    client = login(w.users["center"])
    page = client.get("/dashboard/records").get_data(as_text=True)
    cards = elements(page, attr="data-action")
    assert [int(c["attrs"]["data-age"]) for c in cards] == [5]
    assert w.labs["r1"].full_name in page
    assert "data-action" in client.get("/dashboard/records?age=gt3").get_data(as_text=True)
    assert "data-action" not in client.get("/dashboard/records?age=le1").get_data(as_text=True)
    html = client.get("/dashboard/").get_data(as_text=True)
    bucket = {e["attrs"]["data-bucket"]: e["text"].strip()
              for e in elements(html, attr="data-bucket")}
    assert bucket["gt3"].endswith("1") and bucket["le1"].endswith("0")


def _groups():
    peer = ["r1", "r2", "r3", "r4", "r5"]
    return {**{n: peer for n in peer}, "b1": peer + ["b1", "b2"], "b2": peer + ["b1", "b2"],
            "s1": list(LABS)}


def test_peer_flags_and_grades_equal_an_independent_computation(board_world, login):
    w = board_world
    period = month_period(w.month, w.today)
    flags, grades = set(), Counter()
    worst = defaultdict(str)
    for index in (1, 2):
        level = w.level(index)
        values = raw_values([ts.id for ts in w.systems.values()], level.id, period.start,
                            period.end)
        for name, members in _groups().items():
            e = expected(values, [w.systems[n].id for n in members], w.systems[name].id)
            if abs(e.sdi) >= 2 or e.cvr > 2:
                flags.add((w.labs[name].id, level.name))
            sigma = (7.0 - abs(e.bias)) / e.lab_cv
            grade = "A" if sigma >= 6 else "B" if sigma >= 4 else "C" if sigma >= 3 else "D"
            worst[name] = max(worst[name], grade)
    grades.update(worst.values())
    got, got_grades = queries.peer_flags(w.users["center"], w.region.id, period)
    assert flags and len(grades) > 1  # the world has both flagged and clean labs
    assert {(f.lab.id, f.level) for f in got} == flags
    assert got_grades == grades
    page = login(w.users["center"]).get("/dashboard/peer").get_data(as_text=True)
    assert len(elements(page, attr="data-lab")) == len(flags)


def test_trend_has_this_and_last_month_from_raw_runs(board_world):
    w = board_world
    series = queries.trend(w.users["center"], w.today)
    assert series["months"][-1] == w.month and series["months"][-2] == w.prev_month
    assert series["labs"][-1] == len(LABS) and series["labs"][-2] == len(LABS)
    want = independent_month(w, LABS)
    assert series["submission"][-1] == pytest.approx(
        sum(v[0] for v in want.values()) / len(want))


@pytest.mark.parametrize("url", ["/dashboard/", "/dashboard/today", "/dashboard/month",
                                 "/dashboard/records", "/dashboard/peer"])
def test_only_the_centre_and_admin_see_the_dashboard(board_world, client, login, url):
    w = board_world
    assert client.get(url).status_code in (302, 401)
    for role in ("tech_r1", "director_r1"):
        assert login(w.users[role]).get(url).status_code == 403
    assert login(w.users["admin"]).get(f"{url}?region={w.region.id}").status_code == 200
    expert = f.user("expert", region_=w.region)  # the read-only expert reads it like the centre
    resp = login(expert).get(url)
    assert resp.status_code == 200 and (url != "/dashboard/today" or w.labs["s1"].full_name in
                                        resp.get_data(as_text=True))
    other = login(w.users["center2"]).get(url)
    assert other.status_code == 200
    html = other.get_data(as_text=True)
    for name in LABS:
        assert w.labs[name].full_name not in html and w.labs[name].code not in html


@pytest.mark.parametrize("url, field", [
    ("/dashboard/today?sort=oldest", "sort"), ("/dashboard/today?show=some", "show"),
    ("/dashboard/month?sort=%C2%B2", "sort"), ("/dashboard/records?age=old", "age"),
    ("/dashboard/peer?page=%C2%B2", "page"), ("/dashboard/?region=99999999999999", "region"),
])
def test_bad_arguments_are_a_400_naming_the_field(board_world, login, url, field):
    resp = login(board_world.users["center"]).get(url, headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == field
