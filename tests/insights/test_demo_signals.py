"""On the seeded demo the injected shifts get the right cause and the fabricated series are
found with the right explanation; every insights endpoint checks role and scope."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import func, select

from qcwx import models as m
from qcwx.demo.seed import DEMO_PASSWORD, INJECTED, seed
from qcwx.extensions import db
from qcwx.insights import integrity, services
from qcwx.insights.models import TestSystemChange
from qcwx.qcstats import shifts as sh
from tests import factories as f
from tests.fixtures.app import rolled_back

DAYS = 60
END = date(2026, 11, 20)


@pytest.fixture(scope="module")
def demo(app):
    """Seed once per backend inside one outer transaction, rolled back after the module."""
    with rolled_back(app):
        seed(days=DAYS, end=END)
        other = f.region("别的区")
        f.user("center", region_=other, name="外区中心").username = "center_other"
        demo_region = db.session.scalars(select(m.Region).where(m.Region.code == "DEMO")).one()
        f.user("expert", region_=demo_region, name="专家").username = "expert_demo"
        db.session.commit()  # releases the savepoint: requests' rollbacks keep the data
        yield SimpleNamespace(client=app.test_client(), injected=copy.deepcopy(INJECTED))


def _user(name: str) -> m.User:
    return db.session.scalars(select(m.User).where(m.User.username == name)).one()


def _finding_near(findings, day: date, days: int = 3):
    near = [x for x in findings if abs((x.day - day).days) <= days and not x.recovery]
    assert near, f"no shift found within {days} days of {day}: {[x.day for x in findings]}"
    return near[0]


def test_shared_reagent_lot_shift_is_attributed_to_the_lot(demo):
    shared = {k: v for k, v in demo.injected.items() if k.startswith("lot_shift_")}
    assert len(shared) >= 3
    assert len({v["lot"] for v in shared.values()}) == 1
    assert len({v["start"] for v in shared.values()}) == 1
    centre = _user("center")
    for event in shared.values():
        ts = db.session.get(m.TestSystem, event["test_system_id"])
        found = _finding_near(services.timeline(centre, ts).findings, event["start"])
        assert found.cause.scope == "shared"
        assert (found.cause.lot_kind, found.cause.lot) == ("reagent_lot", event["lot"])
        assert found.cause.labs_shifted >= 3
        days = np.array(services.timeline(centre, ts).dates)
        z = services.timeline(centre, ts).z
        inside = (days >= event["start"]) & (days <= event["end"])
        expected = z[inside].mean() - z[days < event["start"]].mean()

        assert found.shift.size == pytest.approx(expected, abs=0.6)
        assert "试剂批号" in found.summary and event["lot"] in found.summary


def test_single_lab_calibration_shift_lists_the_calibration(demo):
    event = demo.injected["cal_shift"]
    ts = db.session.get(m.TestSystem, event["test_system_id"])
    found = _finding_near(services.timeline(_user("supervisor"), ts).findings, event["start"])
    assert found.cause.scope == "local" and found.shift.direction == -1
    gap, change = found.cause.changes[0]
    assert change.kind == "calibration" and abs(gap) <= 3
    assert "仅本实验室" in found.summary and "校准" in found.summary


def test_daily_z_is_the_mean_of_the_levels_against_the_limits_in_force(demo):
    ts = db.session.get(m.TestSystem, demo.injected["cal_shift"]["test_system_id"])
    tl = services.timeline(_user("supervisor"), ts)
    day = tl.dates[-1]
    zs = []
    for res in db.session.scalars(select(m.QcResult).join(m.QcRun).where(
            m.QcRun.test_system_id == ts.id, m.QcRun.run_date == day, m.QcResult.is_current)):
        lim = db.session.scalars(select(m.ControlLimit).where(
            m.ControlLimit.test_system_id == ts.id, m.ControlLimit.qc_level_id == res.qc_level_id,
            m.ControlLimit.effective_from <= day).order_by(
            m.ControlLimit.effective_from.desc(), m.ControlLimit.version.desc())).first()
        zs.append((res.value - lim.target_mean) / lim.target_sd)
    assert tl.z[-1] == pytest.approx(np.mean(zs))
    assert [(x.day, x.shift.start) for x in tl.findings] == [
        (tl.dates[s.start], s.start) for s in sh.detect_shifts(tl.z)]


def test_fabricated_series_are_found_with_the_right_explanation(demo):
    rows = integrity.report(_user("center"), _user("center").region_id, END, 30)
    codes = {(r.ts.id, r.level.level_index): {c for c, _, _ in r.flags} for r in rows}
    smooth = demo.injected["smooth"]["test_system_id"]
    copied = demo.injected["copied"]
    assert "sd_low" in codes[(smooth, 1)] and "sd_low" in codes[(smooth, 2)]
    for level in (1, 2):
        assert "copied" in codes[(copied["test_system_id"], level)]
        assert "copied" in codes[(copied["source_test_system_id"], level)]
    text = next(t for r in rows if r.ts.id == copied["test_system_id"]
                for c, _, t in r.flags if c == "copied")
    source = db.session.get(m.TestSystem, copied["source_test_system_id"])
    assert source.lab.full_name in text and "完全相同" in text
    fabricated = {smooth, copied["test_system_id"], copied["source_test_system_id"]}
    honest_flagged = {r.ts.id for r in rows} - fabricated
    assert len(honest_flagged) <= 2, honest_flagged


def test_demo_records_dated_lot_changes(demo):
    kinds = dict(db.session.execute(select(TestSystemChange.kind, func.count())
                                    .group_by(TestSystemChange.kind)).all())
    assert kinds["reagent_lot"] > 100 and kinds["calibration"] > 100


# ---------------------------------------------------------------------------- permissions
ROLES = ("anonymous", "tech", "supervisor", "director", "center", "center_other", "admin")


def _as(demo, who: str):
    demo.client.post("/logout")
    if who != "anonymous":
        password = f.PASSWORD if who in ("center_other", "expert_demo") else DEMO_PASSWORD
        resp = demo.client.post("/login", data={"username": who, "password": password})
        assert resp.status_code == 302
    return demo.client


def _hosp1_ts(demo) -> int:
    return demo.injected["cal_shift"]["test_system_id"]


@pytest.mark.parametrize("who,status", list(zip(ROLES, (302, 403, 200, 200, 200, 404, 200),
                                                strict=True)))
def test_timeline_permissions(demo, who, status):
    resp = _as(demo, who).get(f"/insights/ts/{_hosp1_ts(demo)}")
    assert resp.status_code == status
    if status == 200:
        assert "偏移溯源" in resp.get_data(as_text=True)


def test_timeline_of_another_lab_is_404_for_a_supervisor(demo):
    other = demo.injected["copied"]["test_system_id"]
    assert _as(demo, "supervisor").get(f"/insights/ts/{other}").status_code == 404


@pytest.mark.parametrize("path", ["/insights/shifts", "/insights/integrity"])
@pytest.mark.parametrize("who,status", list(zip(ROLES, (302, 403, 403, 403, 200, 200, 200),
                                                strict=True)))
def test_region_pages_are_for_the_centre(demo, path, who, status):
    _check_region_page(demo, path, who, status)


def test_the_regions_expert_reads_integrity_signals_but_not_the_shift_list(demo):
    client = _as(demo, "expert_demo")
    html = client.get("/insights/integrity").get_data(as_text=True)
    assert "疑似抄袭其他实验室" in html
    assert client.get("/insights/shifts").status_code == 403
    ts_id = _hosp1_ts(demo)
    assert client.post(f"/insights/ts/{ts_id}/changes", data={
        "kind": "calibration", "changed_on": "2026-11-01"}).status_code == 403


def _check_region_page(demo, path, who, status):
    resp = _as(demo, who).get(path)
    assert resp.status_code == status
    if who == "center_other":  # its own (empty) region: none of the demo's labs
        assert "示范" not in resp.get_data(as_text=True)


def test_centre_pages_list_the_injected_cases(demo):
    client = _as(demo, "center")
    html = client.get("/insights/shifts", query_string={"days": 60}).get_data(as_text=True)
    assert demo.injected["lot_shift_1"]["lot"] in html
    html = client.get("/insights/integrity").get_data(as_text=True)
    assert "疑似抄袭其他实验室" in html and "离散度异常偏小" in html
    assert client.get("/insights/integrity", query_string={"days": 7}).status_code == 400


@pytest.mark.parametrize("who,status", list(zip(ROLES, (302, 403, 302, 403, 403, 403, 302),
                                                strict=True)))
def test_recording_a_change_permissions(demo, who, status):
    ts_id = _hosp1_ts(demo)
    before = db.session.scalar(select(func.count()).select_from(TestSystemChange))
    resp = _as(demo, who).post(f"/insights/ts/{ts_id}/changes", data={
        "kind": "reagent_lot", "changed_on": (END - timedelta(days=1)).isoformat(),
        "lot_number": f"T-{who}", "note": "新批号"})
    assert resp.status_code == status
    after = db.session.scalar(select(func.count()).select_from(TestSystemChange))
    if who in ("supervisor", "admin"):
        assert "/insights/ts/" in resp.headers["Location"] and after == before + 1
    else:
        assert after == before


@pytest.mark.parametrize("data,field", [
    ({"kind": "x", "changed_on": "2026-11-01"}, "变更类型"),
    ({"kind": "calibration", "changed_on": "2026-13-01"}, "日期格式"),
    ({"kind": "reagent_lot", "changed_on": "2026-11-01"}, "新批号"),
    ({"kind": "calibration", "changed_on": "2999-01-01"}, "晚于今天"),
])
def test_bad_change_input_is_a_400_naming_the_field(demo, data, field):
    before = db.session.scalar(select(func.count()).select_from(TestSystemChange))
    resp = _as(demo, "supervisor").post(f"/insights/ts/{_hosp1_ts(demo)}/changes", data=data)
    assert resp.status_code == 400 and field in resp.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(TestSystemChange)) == before
