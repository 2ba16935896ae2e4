"""LOINC/UCUM codes: a correct shipped mapping, the right code per system, centre edits audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.audit.models import AuditLog
from qcwx.catalog.code_checks import loinc_valid
from qcwx.catalog.codes import (
    AnalyteLoinc,
    LoincChoice,
    UnitCode,
    apply_shipped_codes,
    pick_loinc,
    shipped_rows,
)
from qcwx.demo import data as demo_data
from qcwx.extensions import db
from qcwx.peer.units import unit_key
from qcwx.qcstats.specs import NCCL_EQA, WST403_2024

# Codes as published by Regenstrief (loinc.org), typed here independently of the CSV.
KNOWN = {("K", "2823-3"), ("Na", "2951-2"), ("GLU", "2345-7"), ("GLU", "14749-6"),
         ("CREA", "2160-0"), ("CREA", "14682-9"), ("ALT", "1742-6"), ("HbA1c", "4548-4"),
         ("HbA1c-IFCC", "59261-8"), ("TSH", "3016-3"), ("FT4", "3024-7"), ("WBC", "6690-2"),
         ("Hb", "718-7"), ("PLT", "777-3"), ("PT", "5902-2"), ("APTT", "3173-2")}


def test_every_spec_and_demo_analyte_has_a_sourced_default_loinc_with_a_valid_check_digit():
    rows = shipped_rows("analyte_loinc")
    defaults = {r["analyte_code"] for r in rows if r["is_default"] == "1"}
    wanted = {s.code for s in WST403_2024} | {e.code for e in NCCL_EQA} | {
        a.code for a in demo_data.ANALYTES}
    assert wanted <= defaults, wanted - defaults
    assert all(r["source"].startswith("LOINC 2.") for r in rows)
    assert all(loinc_valid(r["loinc"]) for r in rows)
    assert KNOWN <= {(r["analyte_code"], r["loinc"]) for r in rows}
    # one default per analyte, and glucose in mmol/L is the molar code
    assert len(defaults) == sum(r["is_default"] == "1" for r in rows)
    glu = next(r for r in rows if r["analyte_code"] == "GLU" and r["is_default"] == "1")
    assert (glu["loinc"], glu["ucum"]) == ("14749-6", "mmol/L")


def test_every_spec_unit_has_a_ucum_code():
    units = {unit_key(r["unit"]): r["ucum"] for r in shipped_rows("unit_ucum")}
    for spec in (*WST403_2024, *NCCL_EQA):
        assert unit_key(spec.unit) in units, spec.unit
    assert units[unit_key("µmol/L")] == "umol/L" and units[unit_key("10^9/L")] == "10*9/L"


@pytest.mark.parametrize("code, ok", [("2345-7", True), ("2345-6", False), ("6690-2", True),
                                      ("718-7", True), ("59261-8", True), ("59261-9", False),
                                      ("23457", False), ("", False), ("12345678-1", False)])
def test_loinc_check_digit(code, ok):
    assert loinc_valid(code) is ok


def test_pick_loinc_prefers_method_then_unit_then_default():
    plain = LoincChoice("1751-7", "", None, "g/L", True)
    bcg = LoincChoice("61151-7", "", "BCG", "g/L", False)
    bcp = LoincChoice("61152-5", "", "BCP", "g/L", False)
    assert pick_loinc([plain, bcg, bcp], "BCP", "g/L").loinc == "61152-5"
    assert pick_loinc([plain, bcg, bcp], "BIURET", "g/L").loinc == "1751-7"
    assert pick_loinc([bcg], "BCP", "g/L") is None
    assert pick_loinc([], None, None) is None


def test_shipped_codes_load_once_and_keep_a_centre_edit(session, world):
    glu = world.systems["a"].analyte
    added, _ = apply_shipped_codes()
    assert added == 3  # GLU: 14749-6, 2345-7, 15074-8 (the world has no other analyte)
    row = session.scalar(select(AnalyteLoinc).where(AnalyteLoinc.analyte_id == glu.id,
                                                    AnalyteLoinc.loinc == "14749-6"))
    row.display = "centre's own wording"
    session.flush()
    assert apply_shipped_codes() == (0, 0)
    session.refresh(row)
    assert row.display == "centre's own wording"
    assert session.scalar(select(UnitCode.ucum).where(UnitCode.unit == "mmol/L")) == "mmol/L"


def _loinc_form(analyte_id: int, **overrides) -> dict:
    data = {"analyte": str(analyte_id), "loinc": "15074-8", "display": "Glucose [Moles/volume] "
            "in Blood", "specimen": "Bld", "property": "SCnc", "method": "", "ucum": "mmol/L",
            "source": "LOINC 2.78"}
    data.update(overrides)
    return data


def test_centre_adds_a_loinc_code_in_the_admin_and_the_audit_log_names_it(world, login):
    glu = world.systems["a"].analyte
    client = login(world.users["center"])
    resp = client.post("/admin/analyteloinc/new/", data=_loinc_form(glu.id))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    db.session.expire_all()
    row = db.session.scalar(select(AnalyteLoinc).where(AnalyteLoinc.loinc == "15074-8"))
    assert row is not None and row.analyte_id == glu.id
    audit = db.session.scalar(select(AuditLog).where(AuditLog.entity == "analyte_loinc",
                                                     AuditLog.entity_id == str(row.id)))
    assert audit.action == "insert" and audit.actor_id == world.users["center"].id
    assert audit.changes["loinc"] == "15074-8"


def test_a_wrong_check_digit_is_refused_beside_the_field(world, login):
    glu = world.systems["a"].analyte
    client = login(world.users["center"])
    resp = client.post("/admin/analyteloinc/new/", data=_loinc_form(glu.id, loinc="15074-9"))
    assert resp.status_code == 200
    assert "校验位错误" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(select(AnalyteLoinc).where(AnalyteLoinc.loinc == "15074-9")) is None


def test_a_technician_cannot_reach_the_code_admin(world, login):
    client = login(world.users["technician"])
    assert client.get("/admin/analyteloinc/").status_code in (302, 403)
    assert client.get("/admin/unitcode/").status_code in (302, 403)
    assert m.UnitCode is UnitCode
