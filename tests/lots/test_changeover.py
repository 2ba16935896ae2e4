"""The change-over of a unified lot end to end (issue 12): register → assign → parallel runs →
targets established from the parallel runs (recomputed here from the raw results per QC_SPEC
§2) → switch recorded → the centre's status per lab."""

from __future__ import annotations

import math
import statistics
from datetime import timedelta

import pytest
from sqlalchemy import select

from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc import services as iqc
from qcwx.iqc import targets
from qcwx.iqc.models import ControlLimit
from qcwx.lots import queries, services
from tests.lots.support import MAKER, NEW_LOT, register_and_assign, today

START_DAYS_AGO = 30


def level_values(index: int, n: int) -> list[float]:
    """Deterministic parallel results; level 1 has a gross outlier as its 6th result."""
    base, sd = MAKER[index]
    out = [round(base + sd * 0.5 * math.sin(1.7 * k + index), 3) for k in range(n)]
    if index == 1:
        out[5] = round(base + 30 * sd, 3)
    return out


def independent_provisional(values: list[float]) -> tuple[float, float, int]:
    """QC_SPEC §2 from scratch: the shortest prefix (one run a day) that keeps ≥20 results on
    ≥20 days after dropping, once, values with |x − m0| ≥ 3·s0; return mean, SD, n used."""
    for k in range(20, len(values) + 1):
        head = values[:k]
        m0, s0 = statistics.fmean(head), statistics.stdev(head)
        kept = [x for x in head if abs(x - m0) < 3 * s0 - 1e-9 * s0]
        if len(kept) >= 20:
            return statistics.fmean(kept), statistics.stdev(kept), len(kept)
    raise AssertionError("not enough results")


def enter_parallel(world, co, days: range):
    """Enter one run a day on the new lot and, in parallel, on the old lot."""
    tech = world.users["technician"]
    new, old = co.new_test_system, co.old_test_system
    v1, v2 = level_values(1, 40), level_values(2, 40)
    for k in days:
        day = today() - timedelta(days=START_DAYS_AGO - k)
        iqc.submit_run(tech, test_system_id=new.id, run_date=day,
                       values={"1": f"{v1[k]}", "2": f"{v2[k]}"}, notify=False)
        iqc.submit_run(tech, test_system_id=old.id, run_date=day,
                       values={"1": "5.0", "2": "15.0"}, notify=False)


def test_changeover_from_registration_to_the_centres_status(world, session, login):
    setup = register_and_assign(world)
    dlot = setup.dlot
    assert dlot.qc_lot.lot_number == NEW_LOT and [lv.name for lv in dlot.qc_lot.levels] == [
        "水平1", "水平2"]
    rows = queries.status_rows(dlot)
    assert [(r.lab.id, r.label) for r in rows] == sorted(
        [(world.lab_a.id, "未开始"), (world.lab_b.id, "未开始")],
        key=lambda t: db.session.get(type(world.lab_a), t[0]).full_name)

    sup = world.users["supervisor"]
    start = today() - timedelta(days=START_DAYS_AGO)
    co = services.start_parallel(sup, setup.assignments["a"].id, world.systems["a"].id, start)
    new = co.new_test_system
    assert (new.qc_lot.lot_number, new.analyte_id, new.instrument_id, new.active) == (
        NEW_LOT, world.systems["a"].analyte_id, world.systems["a"].instrument_id, True)
    maker_limits = targets.limits_in_force(new)
    assert {lv.level_index: (maker_limits[lv.id].target_mean, maker_limits[lv.id].target_sd)
            for lv in new.levels} == MAKER  # the maker's values until targets are established

    enter_parallel(world, co, range(0, 12))
    session.commit()  # what a request would have committed; the refused switch rolls back
    row = next(r for r in queries.status_rows(dlot) if r.changeover is co)
    assert row.label == "平行检测中（12/20）" and not row.progress.ready
    lab_a = next(ls for ls in queries.lab_statuses(dlot) if ls.lab.id == world.lab_a.id)
    assert (lab_a.status, lab_a.label) == ("parallel", "平行检测中（12/20）")
    with pytest.raises(UserError) as early:
        services.confirm_switch(sup, co.id, today())
    assert early.value.field == "switch_date" and "数据不足" in early.value.message
    session.rollback()

    enter_parallel(world, co, range(12, 24))  # 24 days: level 1 needs 21 (one outlier)
    assert queries.progress(co).ready
    switch_day = today() - timedelta(days=START_DAYS_AGO - 23)
    services.confirm_switch(sup, co.id, switch_day)
    session.commit()

    for lv in new.levels:
        mean, sd, n = independent_provisional(level_values(lv.level_index, 24))
        limit = db.session.scalars(select(ControlLimit).where(
            ControlLimit.test_system_id == new.id, ControlLimit.qc_level_id == lv.id)
            .order_by(ControlLimit.version.desc())).first()
        assert limit.kind == "established" and limit.effective_from == start
        assert limit.target_mean == pytest.approx(mean, rel=1e-12)
        assert limit.target_sd == pytest.approx(sd, rel=1e-12)
        assert limit.n_used == n == 20
    assert co.switch_date == switch_day and co.switched_by_id == sup.id
    assert co.targets_established_at is not None
    assert world.systems["a"].active is False
    with pytest.raises(UserError, match="已停用"):
        iqc.submit_run(world.users["technician"], test_system_id=world.systems["a"].id,
                       run_date=today(), values={"1": "5.0"})

    labels = {r.lab.id: r.label for r in queries.status_rows(dlot)}
    assert labels == {world.lab_a.id: f"已切换（{switch_day.isoformat()}）",
                      world.lab_b.id: "未开始"}
    assert queries.summary(dlot) == {"none": 1, "parallel": 0, "switched": 1}
    by_lab = {ls.lab.id: (ls.status, ls.label) for ls in queries.lab_statuses(dlot)}
    assert by_lab == {world.lab_a.id: ("switched", f"已切换（{switch_day.isoformat()}）"),
                      world.lab_b.id: ("none", "未开始")}
    page = login(world.users["center"]).get(f"/lots/{dlot.id}").get_data(as_text=True)
    assert f"已切换（{switch_day.isoformat()}）" in page and 'data-status="none"' in page


def test_switch_cannot_be_confirmed_twice_nor_dated_before_the_parallel_start(world, session):
    setup = register_and_assign(world, targets=False)
    sup = world.users["supervisor"]
    start = today() - timedelta(days=START_DAYS_AGO)
    co = services.start_parallel(sup, setup.assignments["a"].id, world.systems["a"].id, start)
    assert targets.limits_in_force(co.new_test_system) == {}  # no maker targets given
    enter_parallel(world, co, range(0, 22))
    with pytest.raises(UserError, match="不能早于平行检测开始日期") as early:
        services.confirm_switch(sup, co.id, start - timedelta(days=1))
    assert early.value.field == "switch_date"
    services.confirm_switch(sup, co.id, today())
    with pytest.raises(UserError, match="已于") as again:
        services.confirm_switch(sup, co.id, today())
    assert again.value.status == 409
    with pytest.raises(UserError) as restart:
        services.start_parallel(sup, setup.assignments["a"].id, world.systems["a"].id, start)
    assert restart.value.field == "old_test_system_id"


@pytest.mark.parametrize("change, field, text", [
    ({"lot_number": " "}, "lot_number", "请填写批号"),
    ({"expiry": None}, "expiry", "请填写有效期"),
    ({"levels": "a,b,c,d"}, "levels", "最多 3 个水平"),
    ({"targets_text": "GLU, 1, 5.3"}, "targets", "第 1 行"),
    ({"targets_text": "XXX, 1, 5.3, 0.2"}, "targets", "项目代码 XXX 不存在"),
    ({"targets_text": "GLU, 4, 5.3, 0.2"}, "targets", "水平“4”不属于该批号"),
    ({"targets_text": "GLU, 1, 5.3, 0"}, "targets", "SD 必须大于 0"),
])
def test_registration_refuses_bad_input_naming_the_field(world, session, change, field, text):
    material = world.systems["a"].qc_lot.material
    args = {"region_id": None, "material_id": material.id, "lot_number": "X-1",
            "expiry": today() + timedelta(days=30), "levels": "水平1，水平2",
            "targets_text": ""} | change
    with pytest.raises(UserError) as caught:
        services.register_lot(world.users["center"], **args)
    assert caught.value.field == field and text in caught.value.message


def test_an_expired_lot_cannot_be_registered_and_a_lot_is_registered_once(world, session):
    material = world.systems["a"].qc_lot.material
    with pytest.raises(UserError, match="已过") as caught:
        services.register_lot(world.users["center"], region_id=None, material_id=material.id,
                              lot_number="OLD", expiry=today() - timedelta(days=1),
                              levels="水平1")
    assert caught.value.field == "expiry"
    register_and_assign(world)
    with pytest.raises(UserError, match="已在本区域登记") as twice:
        register_and_assign(world)
    assert twice.value.status == 409


def test_the_centre_cannot_assign_a_lab_of_another_region(world, session):
    setup = register_and_assign(world)
    with pytest.raises(UserError) as caught:
        services.assign_labs(world.users["center"], setup.dlot.id, [world.lab_c.id], today())
    assert caught.value.status == 404
