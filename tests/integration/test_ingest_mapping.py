"""Mapping records to test systems, levels, dates and client ids; the mapping pages."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.ingest.mapping import Candidate, LabMapper, derive_client_id
from qcwx.ingest.models import LevelCodeMapping, TestCodeMapping
from tests.integration.test_ingest_support import analyte, lot, system


def cand(**kw) -> Candidate:
    base = dict(index=0, position="第 2 行", value_text="5.1", test_code="GLU", level="1",
                measured_at=datetime(2026, 3, 1, 8, 30))
    return Candidate(**(base | kw))


@pytest.fixture
def three(session, world):
    """Lab A: GLU on 2 levels (world) plus CHOL on a 3-level and a 1-level lot."""
    chol = analyte("CHOL", "总胆固醇", "mmol/L", high=30)
    ts3 = system(world.lab_a, chol, lot(3, "C-3"))
    ts1 = system(world.lab_a, analyte("CRP", "C反应蛋白", "mg/L", high=500), lot(1, "R-1"))
    db.session.commit()
    return world.systems["a"], ts3, ts1


@pytest.mark.parametrize("sent, two, three_, one", [
    ("1", 1, 1, 1), ("L", 1, 1, 1), ("LOW", 1, 1, 1), ("低", 1, 1, 1), ("水平1", 1, 1, 1),
    ("2", 2, 2, "refused"), ("水平2", 2, 2, "refused"), ("3", "refused", 3, "refused"),
    ("H", 2, 3, 1), ("HIGH", 2, 3, 1), ("高", 2, 3, 1), ("P", 2, 3, 1),
    ("N", 1, 2, 1), ("NORMAL", 1, 2, 1), ("正常", 1, 2, 1),
    ("M", "refused", 2, 1), ("MEDIUM", "refused", 2, 1), ("中", "refused", 2, 1),
    ("Ｌ", 1, 1, 1), ("level 2", 2, 2, "refused"), ("中值", "refused", 2, 1),
    ("QC9", "refused", "refused", "refused"), ("weird", "refused", "refused", "refused"),
])
def test_default_levels_follow_the_documented_table(world, three, sent, two, three_, one):
    mapper = LabMapper(world.lab_a)
    for ts, want in zip(three, (two, three_, one), strict=True):
        if want == "refused":
            with pytest.raises(UserError) as exc:
                mapper.level_index(ts, sent)
            assert exc.value.field == "level"
        else:
            assert mapper.level_index(ts, sent) == want, (sent, len(ts.levels))


def test_medium_in_a_two_level_lot_asks_for_a_level_mapping(world, three):
    with pytest.raises(UserError, match="含义不明确"):
        LabMapper(world.lab_a).level_index(three[0], "MEDIUM")


def test_level_mapping_and_level_names_win_over_defaults(world, three):
    glu, ts3, ts1 = three
    db.session.add(LevelCodeMapping(lab_id=world.lab_a.id, source_level="qc-a", level_index=2))
    db.session.add(LevelCodeMapping(lab_id=world.lab_a.id, source_level="H", level_index=1))
    db.session.flush()
    mapper = LabMapper(world.lab_a)
    assert mapper.level_index(glu, "QC-A") == 2  # case-insensitive
    assert mapper.level_index(glu, "h") == 1  # the lab says its "H" is level 1
    assert mapper.level_index(ts3, "高值") == 3  # the lot's own level name
    assert mapper.level_index(ts1, None) == 1  # one level: nothing to choose
    with pytest.raises(UserError, match="缺少质控水平"):
        mapper.level_index(glu, "")


def test_missing_level_of_a_mapping_is_refused_against_the_lot(world, three):
    db.session.add(LevelCodeMapping(lab_id=world.lab_a.id, source_level="X3", level_index=3))
    db.session.flush()
    with pytest.raises(UserError, match="不属于"):
        LabMapper(world.lab_a).level_index(three[0], "X3")


def test_code_falls_back_to_analyte_code_or_name_case_insensitively(world, three):
    glu = three[0]
    mapper = LabMapper(world.lab_a)
    assert mapper.test_system("glu", None) is glu
    assert mapper.test_system("葡萄糖", None) is glu
    assert mapper.test_system("ＧＬＵ", "") is glu
    with pytest.raises(UserError) as exc:
        mapper.test_system("XYZ", None)
    assert exc.value.field == "test_code" and "未对应" in exc.value.message


def test_qc_lot_narrows_several_systems_and_a_wrong_lot_is_refused(world, three):
    glu = three[0]
    other = system(world.lab_a, glu.analyte, lot(2, "NEW-LOT"))
    mapper = LabMapper(world.lab_a)
    with pytest.raises(UserError, match="多个检测系统"):
        mapper.test_system("GLU", None)
    assert mapper.test_system("GLU", "new-lot") is other
    assert mapper.test_system("GLU", glu.qc_lot.lot_number) is glu
    with pytest.raises(UserError) as exc:
        mapper.test_system("GLU", "999")
    assert exc.value.field == "qc_lot" and "不一致" in exc.value.message


def test_inactive_systems_are_not_fallback_targets(world, three):
    glu = three[0]
    glu.active = False
    db.session.flush()
    with pytest.raises(UserError, match="未对应"):
        LabMapper(world.lab_a).test_system("GLU", None)


def test_explicit_mappings_per_lot_then_per_code_win(world, three):
    glu, ts3, ts1 = three
    db.session.add_all([
        TestCodeMapping(lab_id=world.lab_a.id, source_code="A1", qc_lot_number="",
                        test_system_id=ts3.id),
        TestCodeMapping(lab_id=world.lab_a.id, source_code="a1", qc_lot_number="L9",
                        test_system_id=ts1.id),
        TestCodeMapping(lab_id=world.lab_a.id, source_code="GLU", qc_lot_number="",
                        test_system_id=ts3.id),
    ])
    db.session.flush()
    mapper = LabMapper(world.lab_a)
    assert mapper.test_system("A1", None) is ts3
    assert mapper.test_system("A1", "l9") is ts1
    assert mapper.test_system("A1", "other") is ts3
    assert mapper.test_system("glu", None) is ts3  # a mapping beats the analyte code


def test_test_system_id_outside_the_lab_is_404(world, three):
    with pytest.raises(NotFound):
        LabMapper(world.lab_a).test_system(None, None, world.systems["b"].id)


def test_dates_are_lab_local_and_stored_in_utc(world, three):
    mapper = LabMapper(world.lab_a)
    late = mapper.map(cand(measured_at=datetime(2026, 3, 1, 23, 30)))  # naive = Shanghai
    assert late.run_date == date(2026, 3, 1)
    assert late.measured_at == datetime(2026, 3, 1, 15, 30)
    aware = mapper.map(cand(measured_at=datetime(2026, 3, 1, 17, 0, tzinfo=timezone.utc)))
    assert aware.run_date == date(2026, 3, 2)  # 01:00 next day in Shanghai
    given = mapper.map(cand(measured_at=None, run_date=date(2026, 2, 1)))
    assert given.run_date == date(2026, 2, 1) and given.measured_at is None
    with pytest.raises(UserError) as exc:
        mapper.map(cand(measured_at=None))
    assert exc.value.field == "measured_at"


@pytest.mark.parametrize("raw, want", [(None, 1), ("", 1), ("2", 2), ("２", 2), ("3.0", 3),
                                       (7, 7), ("0", None), ("100", None), ("1.5", None),
                                       ("abc", None), (True, None)])
def test_run_numbers(world, three, raw, want):
    mapper = LabMapper(world.lab_a)
    if want is None:
        with pytest.raises(UserError) as exc:
            mapper.map(cand(run_no=raw))
        assert exc.value.field == "run_no"
    else:
        assert mapper.map(cand(run_no=raw)).run_no == want


def test_client_id_is_the_records_own_or_a_stable_hash(world, three):
    mapper = LabMapper(world.lab_a)
    assert mapper.map(cand(client_id=" LIS-1 ")).client_id == "LIS-1"
    first, second = mapper.map(cand()), mapper.map(cand(position="第 9 行", index=8))
    assert first.client_id == second.client_id and first.client_id.startswith("h-")
    assert len(first.client_id) <= 64
    assert mapper.map(cand(value_text="5.2")).client_id != first.client_id
    assert first.client_id == derive_client_id(world.lab_a.id, three[0].id, date(2026, 3, 1), 1,
                                               1, "5.1")
    with pytest.raises(UserError) as exc:
        mapper.map(cand(client_id="x" * 65))
    assert exc.value.field == "client_id"


# ---------------------------------------------------------------- pages
def test_supervisor_adds_and_deletes_mappings_on_the_page(login, world, three):
    client = login(world.users["supervisor"])
    page = client.get(f"/ingest/mappings?lab_id={world.lab_a.id}")
    assert page.status_code == 200 and "项目代码映射" in page.get_data(as_text=True)
    resp = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "code", "source_code": "test1",
        "qc_lot_number": "1111", "test_system_id": three[1].id})
    assert resp.status_code == 302
    dup = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "code", "source_code": "TEST1",
        "qc_lot_number": "1111", "test_system_id": three[0].id})
    assert dup.status_code == 409 and "已有映射" in dup.get_data(as_text=True)
    other_lab = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "code", "source_code": "B1",
        "test_system_id": world.systems["b"].id})
    assert other_lab.status_code == 404
    level = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "level", "source_level": "QC2", "level_index": "2"})
    bad_level = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "level", "source_level": "QC4", "level_index": "4"})
    assert level.status_code == 302 and bad_level.status_code == 400
    row = db.session.scalars(select(TestCodeMapping)).one()
    assert (row.source_code, row.qc_lot_number, row.test_system_id) == ("test1", "1111",
                                                                       three[1].id)
    client.post(f"/ingest/mappings/code/{row.id}/delete", data={"lab_id": world.lab_a.id})
    assert db.session.scalars(select(TestCodeMapping)).all() == []


def test_technicians_see_mappings_but_cannot_edit_and_other_labs_are_404(login, world, three):
    client = login(world.users["technician"])
    page = client.get("/ingest/mappings")
    assert page.status_code == 200 and 'id="add-code"' not in page.get_data(as_text=True)
    resp = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "level", "source_level": "QC2", "level_index": "2"})
    assert resp.status_code == 403
    assert client.get(f"/ingest/mappings?lab_id={world.lab_b.id}").status_code == 404
    db.session.add(LevelCodeMapping(lab_id=world.lab_b.id, source_level="Z", level_index=1))
    db.session.commit()
    row = db.session.scalars(select(LevelCodeMapping)).one()
    sup = login(world.users["supervisor"])
    assert sup.post(f"/ingest/mappings/level/{row.id}/delete").status_code == 404


def test_centre_edits_mappings_of_labs_in_its_region(login, world, three):
    client = login(world.users["center"])
    assert client.get(f"/ingest/mappings?lab_id={world.lab_b.id}").status_code == 200
    assert client.get(f"/ingest/mappings?lab_id={world.lab_c.id}").status_code == 404
    ok = client.post("/ingest/mappings", data={
        "lab_id": world.lab_b.id, "kind": "level", "source_level": "Q1", "level_index": "1"})
    assert ok.status_code == 302
    assert db.session.scalars(select(LevelCodeMapping)).one().lab_id == world.lab_b.id
