"""A lab cannot enter results on an expired QC lot, whatever the channel (issue 12).

The expiry is the lot's last usable day in the lab's own calendar: a run dated on the expiry
day is accepted, a run dated the next day is refused with a 400 naming the lot and the date,
and nothing is stored. The lab-interface API turns a measurement time into the lab-local date,
so 23:59 in Shanghai on the expiry day is accepted and 00:01 the next morning refused.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.iqc import services
from qcwx.iqc.models import QcResult, QcRun
from qcwx.iqc.validation import chinese_date
from qcwx.timeutil import local_today
from tests.integration.test_ingest_support import set_limits

MEAN = {1: 5.0, 2: 15.0}
SD = {1: 0.2, 2: 0.5}


@pytest.fixture
def expiring(session, world, app, tmp_path):
    """Lab A's lot expired two days ago (lab-local): day ``expiry`` valid, ``expiry+1`` not."""
    app.config["INGEST_UPLOAD_DIR"] = str(tmp_path)
    ts = world.systems["a"]
    set_limits(ts, world.users["supervisor"], MEAN, SD, local_today() - timedelta(days=90))
    ts.qc_lot.expiry = local_today(ts.lab.timezone) - timedelta(days=2)
    session.commit()
    yield ts
    app.config.pop("INGEST_UPLOAD_DIR", None)


def expected_message(ts) -> str:
    return (f"质控品批号 {ts.qc_lot.lot_number} 已于 {chinese_date(ts.qc_lot.expiry)} 过期，"
            "不能录入结果")


def n_results() -> int:
    return db.session.scalar(select(func.count()).select_from(QcResult))


def test_chinese_date_is_written_without_zero_padding():
    assert chinese_date(date(2026, 11, 30)) == "2026年11月30日"
    assert chinese_date(date(2027, 1, 5)) == "2027年1月5日"


def test_service_accepts_the_expiry_day_and_refuses_the_next_day(world, expiring):
    tech = world.users["technician"]
    ok = services.submit_run(tech, test_system_id=expiring.id, run_date=expiring.qc_lot.expiry,
                             values={"1": "5.0", "2": "15.0"})
    assert ok.status == "accept"
    before = n_results()
    with pytest.raises(UserError) as caught:
        services.submit_run(tech, test_system_id=expiring.id,
                            run_date=expiring.qc_lot.expiry + timedelta(days=1),
                            values={"1": "5.0", "2": "15.0"})
    exc = caught.value
    assert (exc.status, exc.field, exc.message) == (400, "qc_lot", expected_message(expiring))
    assert n_results() == before


def test_a_lot_without_expiry_is_never_refused(world, expiring, session):
    expiring.qc_lot.expiry = None
    session.commit()
    verdict = services.submit_run(world.users["technician"], test_system_id=expiring.id,
                                  run_date=local_today(), values={"1": "5.0"})
    assert verdict.run_id is not None


def test_phone_form_defaults_to_the_labs_today_and_shows_the_expiry_message(
        login, world, expiring, session):
    client = login(world.users["technician"])
    refused = client.post(f"/ts/{expiring.id}", data={"level_1": "5.0", "level_2": "15.0"})
    assert refused.status_code == 400
    assert expected_message(expiring) in refused.get_data(as_text=True)
    expiring.qc_lot.expiry = local_today(expiring.lab.timezone)  # today is the last day
    session.commit()
    ok = client.post(f"/ts/{expiring.id}", data={"level_1": "5.0", "level_2": "15.0"})
    assert ok.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(QcRun)) == 1


def test_phone_json_submit_names_the_field_and_the_date(login, world, expiring):
    client = login(world.users["technician"])
    day_after = (expiring.qc_lot.expiry + timedelta(days=1)).isoformat()
    resp = client.post(f"/api/ts/{expiring.id}/runs",
                       json={"run_date": day_after, "values": {"1": "5.0"}})
    assert resp.status_code == 400
    assert resp.get_json()["field"] == "qc_lot"
    assert resp.get_json()["error"] == expected_message(expiring)
    on_expiry = client.post(f"/api/ts/{expiring.id}/runs", json={
        "run_date": expiring.qc_lot.expiry.isoformat(), "values": {"1": "5.0"}})
    assert on_expiry.status_code == 201


def test_ingest_api_judges_the_measurement_time_in_the_labs_calendar(client, world, expiring):
    _, raw = apikeys.create_key(world.users["center"], world.lab_a.id, "LIS")
    db.session.commit()
    expiry = expiring.qc_lot.expiry
    nxt = expiry + timedelta(days=1)
    items = [  # 23:59 Shanghai on the expiry day; 00:01 Shanghai the next day (16:01 UTC)
        {"client_id": "late", "test_code": "GLU", "level": "1", "value": "5.0",
         "measured_at": f"{expiry.isoformat()}T23:59:00+08:00"},
        {"client_id": "next", "test_code": "GLU", "level": "2", "value": "15.0",
         "measured_at": f"{expiry.isoformat()}T16:01:00Z"},
    ]
    resp = client.post("/api/ingest/v1/results", json={"items": items},
                       headers={"Authorization": f"Bearer {raw}"})
    body = resp.get_json()
    late, refused = body["items"]
    assert late["status"] == "stored", body
    assert (refused["status"], refused["code"], refused["field"]) == ("error", 400, "qc_lot")
    assert refused["error"] == expected_message(expiring)
    dates = db.session.scalars(select(QcRun.run_date)).all()
    assert dates == [expiry] and nxt not in dates


def test_upload_preview_marks_the_row_after_expiry(login, world, expiring):
    client = login(world.users["technician"])
    expiry = expiring.qc_lot.expiry
    text = (f"日期,项目,水平,结果\n{expiry.isoformat()},GLU,1,5.0\n"
            f"{(expiry + timedelta(days=1)).isoformat()},GLU,1,5.1\n")
    resp = client.post("/ingest/upload", data={"file": (io.BytesIO(text.encode()), "qc.csv")},
                       content_type="multipart/form-data")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert 'id="count-stored">1<' in html and expected_message(expiring) in html
