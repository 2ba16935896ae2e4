"""The change-over walked through the pages: the centre registers and assigns, the supervisor
starts, technicians enter both lots, the supervisor confirms, the centre sees 已切换."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from qcwx.extensions import db
from qcwx.iqc import services as iqc
from qcwx.iqc import targets
from qcwx.lots.models import DistributedLot, LotChangeover
from tests.lots.support import today


def test_register_assign_start_enter_and_switch_through_the_pages(login, world, session):
    material = world.systems["a"].qc_lot.material
    centre = login(world.users["center"])
    resp = centre.post("/lots/new", data={
        "material_id": str(material.id), "lot_number": "WEB-1",
        "expiry": (today() + timedelta(days=120)).isoformat(), "levels": "水平1，水平2",
        "targets": "GLU，1，5.4，0.2\nGLU\t2\t15.2\t0.5"})
    assert resp.status_code == 302
    dlot = db.session.scalars(select(DistributedLot)).one()
    assert [(t.level.level_index, t.target_mean) for t in dlot.targets] == [(1, 5.4), (2, 15.2)]
    assert centre.post(f"/lots/{dlot.id}", data={
        "lab_ids": [str(world.lab_a.id)], "from_date": today().isoformat()}).status_code == 302
    (assignment,) = dlot.assignments

    start = today() - timedelta(days=25)
    sup = login(world.users["supervisor"])
    assert sup.post(f"/lots/assignments/{assignment.id}/start", data={
        "old_test_system_id": str(world.systems["a"].id),
        "parallel_start": start.isoformat()}).status_code == 302
    co = db.session.scalars(select(LotChangeover)).one()
    tech = login(world.users["technician"])
    assert tech.post(f"/ts/{co.new_test_system_id}", data={
        "run_date": start.isoformat(), "level_1": "5.40", "level_2": "15.20"}).status_code == 302
    for k in range(1, 21):  # the rest through the same write path as the form
        iqc.submit_run(world.users["technician"], test_system_id=co.new_test_system_id,
                       run_date=start + timedelta(days=k),
                       values={"1": f"{5.4 + 0.01 * (k % 5 - 2):.2f}",
                               "2": f"{15.2 + 0.03 * (k % 3 - 1):.2f}"}, notify=False)
    session.commit()
    sup = login(world.users["supervisor"])
    page = sup.get("/lots/lab").get_data(as_text=True)
    assert "平行检测中（20/20）" in page and "确认切换" in page
    assert sup.post(f"/lots/changeovers/{co.id}/switch",
                    data={"switch_date": today().isoformat()}).status_code == 302
    db.session.expire_all()
    co = db.session.get(LotChangeover, co.id)
    assert co.switch_date == today() and not co.old_test_system.active
    limits = targets.limits_in_force(co.new_test_system)
    assert {lv.level_index: limits[lv.id].kind for lv in co.new_test_system.levels} == {
        1: "established", 2: "established"}
    status = login(world.users["center"]).get(f"/lots/{dlot.id}").get_data(as_text=True)
    assert f"已切换（{today().isoformat()}）" in status
