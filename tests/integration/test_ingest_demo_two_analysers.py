"""Two analysers on one QC lot: the instrument picks the test system (issue 9).

The demo's lab 1 runs K on a cobas c702 and a cobas c501 with the same Bio-Rad lot 26440.
A CSV in qcwx's own template (仪器 column), an ASTM message and an HL7 message for both
analysers must each land on the right test system; before the fix every one of them was
refused with "项目代码…对应多个检测系统".
"""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.demo.seed import seed
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.ingest import parse_bytes
from qcwx.ingest import services as ingest
from qcwx.ingest.mapping import LabMapper
from qcwx.timeutil import local_today
from tests.fixtures.app import rolled_back

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def demo(app):
    """Seed the demo once per backend in an outer transaction, rolled back afterwards."""
    with rolled_back(app):
        seed(days=2, end=local_today() - timedelta(days=10))
        lab = db.session.scalars(select(m.Lab).where(m.Lab.code == "DEMO-H01-JY")).one()
        k = {ts.instrument.model: ts for ts in db.session.scalars(
            select(m.TestSystem).join(m.Analyte, m.Analyte.id == m.TestSystem.analyte_id)
            .where(m.TestSystem.lab_id == lab.id, m.Analyte.code == "K"))}
        tech = db.session.scalars(select(m.User).where(m.User.username == "tech")).one()
        yield SimpleNamespace(lab=lab, main=k["cobas c702"], emergency=k["cobas c501"],
                              tech=tech)


def _stored(run_ids) -> dict[tuple[int, str], int]:
    """Return {(level index, value text): test system id} of the results in ``run_ids``."""
    rows = db.session.execute(
        select(m.QcLevel.level_index, m.QcResult.value_text, m.QcRun.test_system_id)
        .join(m.QcResult, m.QcResult.run_id == m.QcRun.id)
        .join(m.QcLevel, m.QcLevel.id == m.QcResult.qc_level_id)
        .where(m.QcRun.id.in_(run_ids)))
    return {(level, text): ts for level, text, ts in rows}


def _import(demo, data: bytes):
    report = ingest.import_parsed(demo.tech, demo.lab, parse_bytes(data), channel="upload")
    errors = [o.error for o in report.outcomes if o.status == "error"]
    assert errors == [] and report.parse_errors == []
    return _stored({o.run_id for o in report.outcomes})


def test_k_of_lab_1_on_both_analysers_lands_on_the_right_test_system(demo):
    day = (local_today() - timedelta(days=5)).isoformat()
    main, emergency = demo.main, demo.emergency
    assert main.qc_lot_id == emergency.qc_lot_id and main.qc_lot.lot_number == "26440"

    csv = ("检测日期,批次,项目,水平,质控批号,结果,单位,仪器,记录编号\r\n"
           f"{day} 08:00,1,K,水平1,26440,4.21,mmol/L,{main.instrument.serial},\r\n"
           f"{day} 08:00,1,K,水平2,26440,6.22,mmol/L,{main.instrument.serial},\r\n"
           f"{day} 07:30,1,K,水平1,26440,4.31,mmol/L,cobas c501,\r\n"
           f"{day} 07:30,1,K,水平2,26440,6.32,mmol/L,急诊生化分析仪,\r\n").encode("utf-8-sig")
    assert _import(demo, csv) == {(1, "4.21"): main.id, (2, "6.22"): main.id,
                                  (1, "4.31"): emergency.id, (2, "6.32"): emergency.id}

    stamp = day.replace("-", "")

    def astm(sender: str, low: str, high: str) -> bytes:
        return ("\r".join([
            f"H|\\^&|||{sender}|||||||P|1|{stamp}090000", "P|1",
            "O|1|QC1||^^^K|R||||||Q||||CTRL^^CTRL 1", f"R|1|^^^K|{low}|mmol/L||||F||||{stamp}0900",
            "O|2|QC2||^^^K|R||||||Q||||CTRL^^CTRL 2", f"R|1|^^^K|{high}|mmol/L||||F||||{stamp}0900",
            "L|1|N"]) + "\r").encode()

    assert _import(demo, astm(f"cobas c702^1.0^{main.instrument.serial}", "4.11", "6.12")) == {
        (1, "4.11"): main.id, (2, "6.12"): main.id}
    assert _import(demo, astm("cobas c501^1.0", "4.41", "6.42")) == {
        (1, "4.41"): emergency.id, (2, "6.42"): emergency.id}

    def hl7(obr4: str, low: str, high: str) -> bytes:
        return (f"MSH|^~\\&|LIS|LAB|||{stamp}100000||ORU^R01|9|P|2.3.1||||2||ASCII\r"
                f"OBR|1|1|K|{obr4}||{stamp}100000|||||||C1^C2|26440^26440||"
                f"|L^H|4.2^6.2|0.2^0.3|{low}^{high}|mmol/L\r").encode()

    assert _import(demo, hl7("罗氏^cobas c702", "4.15", "6.15")) == {
        (1, "4.15"): main.id, (2, "6.15"): main.id}
    assert _import(demo, hl7(f"Roche^{emergency.instrument.serial}", "4.45", "6.45")) == {
        (1, "4.45"): emergency.id, (2, "6.45"): emergency.id}

    # without the instrument the record is refused, naming both test systems and analysers
    with pytest.raises(UserError) as exc:
        LabMapper(demo.lab).test_system("K", "26440")
    text = exc.value.message
    assert "多个检测系统" in text and "cobas c702" in text and "cobas c501" in text
    assert main.instrument.serial in text and "仪器" in text
