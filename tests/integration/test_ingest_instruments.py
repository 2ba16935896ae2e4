"""Instruments narrow code and lot; saved instrument mappings; the lab's QC sample-id rule."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.ingest import parse_bytes
from qcwx.ingest import services as ingest
from qcwx.ingest.mapping import Candidate, LabMapper
from qcwx.ingest.models import InstrumentMapping
from tests.integration.test_ingest_support import analyte, lot, system


# ---------------------------------------------------------------- the small world
@pytest.fixture
def twin(session, world):
    """Lab A: GLU on two BS-200E analysers (serials differ) with one QC lot."""
    glu = world.systems["a"]
    other = system(world.lab_a, glu.analyte, glu.qc_lot, model="BS-200E")
    first = system(world.lab_a, glu.analyte, glu.qc_lot, model="BS-200E")
    glu.active = False
    db.session.commit()
    return first, other


def cand(**kw) -> Candidate:
    base = dict(index=0, position="第 2 行", value_text="5.1", test_code="GLU", level="1",
                measured_at=date(2026, 3, 1))
    return Candidate(**(base | kw))


def test_same_model_twice_needs_the_serial_or_a_saved_instrument_mapping(world, twin):
    first, other = twin
    mapper = LabMapper(world.lab_a)
    with pytest.raises(UserError) as exc:
        mapper.test_system("GLU", None, instrument="Mindray BS-200E")
    assert "同时匹配" in exc.value.message and exc.value.field == "instrument"
    assert mapper.test_system("GLU", None, instrument=f"BS-200E {other.instrument.serial}") \
        is other
    with pytest.raises(UserError, match="对不上"):
        mapper.test_system("GLU", None, instrument="BS200-A")
    db.session.add(InstrumentMapping(lab_id=world.lab_a.id, source_instrument="bs200-a",
                                     instrument_id=first.instrument_id))
    db.session.flush()
    assert LabMapper(world.lab_a).test_system("GLU", None, instrument="BS200-A") is first


def test_an_analyser_without_the_test_is_refused_not_guessed(world, twin):
    first, _ = twin
    crp = system(world.lab_a, analyte("CRP", "C反应蛋白", "mg/L", high=500), lot(2, "R-2"))
    with pytest.raises(UserError) as exc:
        LabMapper(world.lab_a).test_system("CRP", None, instrument=first.instrument.serial)
    assert "没有检测系统" in exc.value.message and crp.instrument.serial in exc.value.message


def test_a_code_mapping_still_wins_and_follows_the_instrument_to_its_sibling(world, twin):
    first, other = twin
    db.session.add(m.TestCodeMapping(lab_id=world.lab_a.id, source_code="test1",
                                     qc_lot_number="", test_system_id=first.id))
    db.session.flush()
    mapper = LabMapper(world.lab_a)
    assert mapper.test_system("test1", None) is first
    assert mapper.test_system("test1", None, instrument=other.instrument.serial) is other


def test_json_items_carry_the_instrument(world, twin):
    _, other = twin
    body = {"items": [{"client_id": "j-1", "test_code": "GLU", "level": 1, "value": "5.02",
                       "run_date": "2026-03-02", "instrument": other.instrument.serial}]}
    [out] = ingest.import_json(world.users["technician"], world.lab_a, body).outcomes
    assert out.status == "stored" and out.test_system_id == other.id


# ---------------------------------------------------------------- the lab's QC sample-id rule
UNMARKED = (b"H|\\^&|||X|||||||P|1|20260301080000\rP|1\r"
            b"O|1|LABQC-H-1\rR|1|^^^GLU|15.1|mmol/L||||F||||20260301080000\r"
            b"O|2|880011\rR|1|^^^GLU|9.9|mmol/L||||F||||20260301080000\rL|1\r")
HEMOSCREEN_OBS = (b"MSH|^~\\&|HemoScreen|PixCell|LIS|LAB|20260301083000||ORU^R01|1|P|2.4\r"
                  b"PID|1|LABQC-L-9\rOBR|1|||OBS|||20260301082900\r"
                  b"OBX|1|NM|GLU||5.0|mmol/L|3.9-6.1||||F|||20260301082900|HS1\r")


def test_a_labs_qc_pattern_imports_unmarked_qc_and_keeps_patients_out(login, world):
    tech = world.users["technician"]
    before = ingest.import_parsed(tech, world.lab_a, parse_bytes(UNMARKED), channel="upload")
    assert before.outcomes == [] and before.skipped == 2

    client = login(world.users["supervisor"])
    bad = client.post("/ingest/mappings", data={"lab_id": world.lab_a.id, "kind": "qc_pattern",
                                                "qc_sample_id_pattern": "(a+)+"})
    assert bad.status_code == 400 and "嵌套" in bad.get_data(as_text=True)
    ok = client.post("/ingest/mappings", data={"lab_id": world.lab_a.id, "kind": "qc_pattern",
                                               "qc_sample_id_pattern": r"^LABQC-(?P<level>[LH])"})
    assert ok.status_code == 302

    after = ingest.import_parsed(tech, world.lab_a, parse_bytes(UNMARKED), channel="upload")
    [out] = after.outcomes
    assert (out.status, out.level_index, after.skipped) == ("stored", 2, 1)
    patient = ingest.import_parsed(tech, world.lab_a, parse_bytes(HEMOSCREEN_OBS),
                                   channel="upload")
    assert patient.outcomes == [] and patient.skipped == 1  # OBR-4 OBS: a patient, not QC


def test_supervisor_adds_and_deletes_an_instrument_mapping_on_the_page(login, world):
    client = login(world.users["supervisor"])
    inst = world.systems["a"].instrument
    resp = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "instrument", "source_instrument": "H500  910YOX",
        "instrument_id": inst.id})
    assert resp.status_code == 302
    dup = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "instrument", "source_instrument": "h500 910yox",
        "instrument_id": inst.id})
    assert dup.status_code == 409
    other_lab = client.post("/ingest/mappings", data={
        "lab_id": world.lab_a.id, "kind": "instrument", "source_instrument": "X",
        "instrument_id": world.systems["b"].instrument_id})
    assert other_lab.status_code == 404
    page = client.get(f"/ingest/mappings?lab_id={world.lab_a.id}").get_data(as_text=True)
    assert "仪器映射" in page and "H500 910YOX" in page and "质控样本号规则" in page
    row = db.session.scalars(select(InstrumentMapping)).one()
    client.post(f"/ingest/mappings/instrument/{row.id}/delete", data={"lab_id": world.lab_a.id})
    assert db.session.scalars(select(InstrumentMapping)).all() == []
