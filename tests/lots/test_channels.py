"""During a change-over both lots are entered in parallel; the lab interface tells them apart
by the QC lot it sends, and after the switch the old lot is refused."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.iqc.models import QcRun
from qcwx.lots import services
from tests.lots.support import NEW_LOT, register_and_assign, today

URL = "/api/ingest/v1/results"


def item(cid, lot, level, value, day):
    return {"client_id": cid, "test_code": "GLU", "qc_lot": lot, "level": level, "value": value,
            "measured_at": f"{day.isoformat()}T09:00:00+08:00"}


def test_ingest_api_files_each_lot_under_its_own_test_system(client, world, session):
    setup = register_and_assign(world)
    old = world.systems["a"]
    old_lot = old.qc_lot.lot_number
    co = services.start_parallel(world.users["supervisor"], setup.assignments["a"].id, old.id,
                                 today() - timedelta(days=5))
    _, raw = apikeys.create_key(world.users["center"], world.lab_a.id, "LIS")
    session.commit()
    day = today() - timedelta(days=2)
    resp = client.post(URL, headers={"Authorization": f"Bearer {raw}"}, json={"items": [
        item("n1", NEW_LOT, "1", "5.31", day), item("o1", old_lot, "1", "5.02", day)]})
    assert resp.status_code == 200, resp.get_json()
    assert [i["status"] for i in resp.get_json()["items"]] == ["stored", "stored"]
    runs = {r.test_system_id: r for r in db.session.scalars(select(QcRun))}
    assert set(runs) == {co.new_test_system_id, old.id}
    assert runs[co.new_test_system_id].results[0].value_text == "5.31"

    co.switch_date = today()  # what confirm_switch records; the old system is retired with it
    old.active = False
    session.commit()
    after = client.post(URL, headers={"Authorization": f"Bearer {raw}"}, json={"items": [
        item("o2", old_lot, "1", "5.02", today())]}).get_json()["items"][0]
    assert (after["status"], after["field"]) == ("error", "qc_lot")
    assert old_lot in after["error"] and NEW_LOT in after["error"]  # the lab's lot is now new
