"""The mini-program refuses results on an expired QC lot with the same message (issue 12)."""

from __future__ import annotations

from datetime import timedelta

from qcwx.iqc.validation import chinese_date
from qcwx.timeutil import local_today
from tests.miniprogram.conftest import API
from tests.miniprogram.test_api import checked, run_body


def test_mp_submit_after_expiry_is_400_naming_the_lot_and_the_date(client, bound, mp_login,
                                                                   session):
    ts = bound.systems["a"]
    ts.qc_lot.expiry = local_today(ts.lab.timezone) - timedelta(days=1)
    session.commit()
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/runs", json=run_body(ts, 0.1), headers=headers)
    body = checked(resp, "/runs", status=400)
    assert body["field"] == "qc_lot"
    assert body["error"] == (f"质控品批号 {ts.qc_lot.lot_number} 已于 "
                             f"{chinese_date(ts.qc_lot.expiry)} 过期，不能录入结果")
    on_expiry = run_body(ts, 0.1, client_id="mp-2", run_date=ts.qc_lot.expiry.isoformat())
    assert checked(client.post(f"{API}/runs", json=on_expiry, headers=headers), "/runs",
                   status=201)["status"] == "accept"
