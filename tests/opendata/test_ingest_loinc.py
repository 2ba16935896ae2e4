"""Ingest keeps the analyser's LOINC code, maps by it, and the centre sees mismatches."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from qcwx.catalog.codes import apply_shipped_codes
from qcwx.extensions import db
from qcwx.ingest import services
from qcwx.ingest.models import ReceivedLoinc
from qcwx.iqc.models import QcRun
from qcwx.peer.filters import parse_period
from qcwx.peer.queries import exceptions as exception_report
from qcwx.timeutil import local_today
from tests.integration.test_ingest_support import analyte


def astm(code: str, value: str = "5.30") -> bytes:
    """Return one ASTM E1394 QC message whose R-3 carries ``code`` (``^^^GLU^14749-6``)."""
    stamp = local_today().strftime("%Y%m%d") + "083000"
    return (f"H|\\^&|||Yumizen H500^2.1.0|||||||Q|LIS2-A2|{stamp}\r"
            "P|1\r"
            "O|1|QC001||^^^DIF|||||||Q||||CTRL^^CTRL LOW\r"
            f"R|1|^^^{code}|{value}|mmol/L||N||||||{stamp}\r"
            "L|1|N\r").encode()


def _import(world, data: bytes, dry_run: bool = False):
    actor, lab = world.users["technician"], world.lab_a
    if dry_run:
        return services.preview_file(actor, lab, data)
    return services.commit_file(actor, lab, data, filename="qc.astm", channel="upload")


@pytest.fixture
def coded(world, session):
    apply_shipped_codes()
    session.commit()
    return world


def test_an_unknown_test_code_maps_by_the_loinc_the_analyser_sent(coded):
    report = _import(coded, astm("XGL^14749-6"))
    assert report.counts["stored"] == 1, report.to_dict()
    run = db.session.scalar(select(QcRun).where(QcRun.id == report.outcomes[0].run_id))
    assert run.test_system_id == coded.systems["a"].id
    kept = db.session.scalars(select(ReceivedLoinc)).all()
    assert [(r.test_system_id, r.source_code, r.loinc) for r in kept] == [
        (coded.systems["a"].id, "XGL", "14749-6")]


def test_a_loinc_of_an_analyte_without_a_system_is_named_in_the_refusal(coded):
    analyte("K", "钾", "mmol/L", high=20)
    apply_shipped_codes()
    db.session.commit()
    report = _import(coded, astm("XK^2823-3"))
    out = report.outcomes[0]
    assert out.status == "error" and out.field == "test_code"
    assert "LOINC 2823-3 对应项目：钾" in out.error


def test_a_preview_keeps_no_loinc(coded):
    report = _import(coded, astm("XGL^14749-6"), dry_run=True)
    assert report.counts["stored"] == 1
    assert db.session.scalars(select(ReceivedLoinc)).all() == []


def test_a_mismatching_loinc_is_an_exception_report_item(coded):
    report = _import(coded, astm("GLU^2823-3"))  # glucose channel sending potassium's code
    assert report.counts["stored"] == 1, report.to_dict()
    period = parse_period({"period": "month"}, local_today())
    found = exception_report.exceptions(coded.region1.id, period)["loinc_mismatch"]
    assert [(i.ts_id, i.kind) for i in found] == [(coded.systems["a"].id, "loinc_mismatch")]
    assert "LOINC 2823-3" in found[0].detail and "14749-6" in found[0].detail


def test_systems_without_codes_are_listed_until_the_codes_exist(world, session):
    period = parse_period({"period": "month"}, local_today())
    before = exception_report.exceptions(world.region1.id, period)
    ours = {world.systems["a"].id, world.systems["b"].id}
    assert {i.ts_id for i in before["no_loinc"]} == ours
    assert before["no_ucum"] == []  # mmol/L ships with the migration
    apply_shipped_codes()
    after = exception_report.exceptions(world.region1.id, period)
    assert after["no_loinc"] == []
