"""Every capture channel, from the bytes a real lab produces to stored, judged runs.

Each test ends by comparing the runs a channel stored with the runs typed in through
``submit_run`` (manual entry) on a twin test system with the same limits: status, fired
rules, levels and values must be identical.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import openpyxl
import pytest
from sqlalchemy import func, select

from qcwx.extensions import db
from qcwx.ingest.models import TestCodeMapping, UploadBatch
from qcwx.iqc import services
from qcwx.iqc.models import QcRun
from qcwx.timeutil import local_today
from tests.integration.test_ingest_support import (
    analyte,
    auth,
    counts,
    fixture_bytes,
    lot,
    make_key,
    run_signature,
    set_limits,
    signatures,
    system,
)


def _only_run(ts) -> QcRun:
    runs = db.session.scalars(select(QcRun).where(QcRun.test_system_id == ts.id)).all()
    assert len(runs) == 1
    return runs[0]


# ---------------------------------------------------------------- HL7 (Mindray BS-200E)
@pytest.fixture
def mindray(session, world):
    """Lab A maps the BS-200E item ``test1`` (QC lot 1111) to its TP test system; lab B twin."""
    tp = analyte("TP", "总蛋白", "g/ml", high=100)
    supervisor = world.users["supervisor"]
    ts = system(world.lab_a, tp, lot(2, "1111"))
    twin = system(world.lab_b, tp, lot(2, "1111"))
    for s in (ts, twin):  # OBR-18/19 of the sample: target mean 5.0, SD 2.0
        set_limits(s, supervisor, {1: 5.0, 2: 5.0}, {1: 2.0, 2: 2.0}, date(2007, 1, 1))
    db.session.add(TestCodeMapping(lab_id=world.lab_a.id, source_code="test1",
                                   qc_lot_number="1111", test_system_id=ts.id))
    db.session.commit()
    return ts, twin


def test_mindray_hl7_qc_message_is_judged_like_manual_entry(client, world, mindray):
    ts, twin = mindray
    key = make_key(world, world.lab_a)
    resp = client.post("/api/ingest/v1/messages", data=fixture_bytes(
        "mindray_bs200e_qc_oru_r01.mllp"), headers=auth(key) | {
        "Content-Type": "application/octet-stream"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["format"] == "hl7" and body["counts"] == {"stored": 1, "duplicate": 0, "error": 0}
    item = body["items"][0]
    assert item["status"] == "stored" and item["level"] == 2  # OBR-17 "H" in a 2-level lot
    assert item["verdict"]["status"] == "warning"  # 0.11029 vs 5.0 ± 2.0: z = -2.44
    assert [r["rule"] for r in item["verdict"]["rules"]] == ["1-2s"]
    manual = services.submit_run(world.users["technician_b"], test_system_id=twin.id,
                                 run_date=date(2007, 7, 20), values={"2": "0.11029"})
    assert run_signature(_only_run(ts)) == run_signature(db.session.get(QcRun, manual.run_id))
    stored = _only_run(ts).results[0]
    assert stored.measured_at.isoformat() == "2007-07-20T04:01:43"  # 12:01:43 Shanghai in UTC
    batch = db.session.scalars(select(UploadBatch)).one()
    assert (batch.channel, batch.format, batch.n_stored, batch.lab_id) == (
        "api", "hl7", 1, world.lab_a.id)


def test_resending_the_same_hl7_message_stores_nothing_new(client, world, mindray):
    key = make_key(world, world.lab_a)
    data = fixture_bytes("mindray_bs200e_qc_oru_r01.mllp")
    first = client.post("/api/ingest/v1/messages?format=hl7", data=data, headers=auth(key))
    before = counts()
    again = client.post("/api/ingest/v1/messages?format=hl7", data=data, headers=auth(key))
    assert first.get_json()["counts"]["stored"] == 1
    assert again.get_json()["counts"] == {"stored": 0, "duplicate": 1, "error": 0}
    assert again.get_json()["items"][0]["verdict"]["status"] == "warning"
    assert counts() == before


def test_patient_hl7_and_astm_messages_store_nothing(client, world, mindray):
    key = make_key(world, world.lab_a)
    before = counts()
    for name in ("mindray_bs200e_patient_oru_r01_NEGATIVE.mllp", "senaite_sysmex_xn550.astm",
                 "senaite_cobas_c311.astm"):
        resp = client.post("/api/ingest/v1/messages", data=fixture_bytes(name),
                           headers=auth(key) | {"Content-Type": "text/plain"})
        body = resp.get_json()
        assert resp.status_code == 200, (name, body)
        assert body["skipped_non_qc"] > 0 and body["items"] == [], name
        assert body["counts"]["stored"] == 0
    assert counts() == before


# ---------------------------------------------------------------- ASTM (HORIBA Yumizen H500)
@pytest.fixture
def yumizen(session, world):
    """ABXdifftrol (3 levels) in lab A: WBC through a code mapping, HGB/PLT by analyte code."""
    leu = analyte("LEU", "白细胞计数", "10E3/uL", high=500)
    hgb = analyte("HGB", "血红蛋白", "g/dL", high=30)
    plt = analyte("PLT", "血小板计数", "10E3/uL", high=3000)
    supervisor = world.users["supervisor"]
    pairs = {}
    for code, an, mean, sd in (("WBC", leu, 8.30, 0.50), ("HGB", hgb, 13.2, 0.25),
                               ("PLT", plt, 261.0, 15.0)):
        ts = system(world.lab_a, an, lot(3, "ABX-N"), model="Yumizen H500")
        twin = system(world.lab_b, an, lot(3, "ABX-N"), model="Yumizen H500")
        for s in (ts, twin):
            set_limits(s, supervisor, {2: mean}, {2: sd}, date(2023, 1, 1))
        pairs[code] = (ts, twin)
    db.session.add(TestCodeMapping(lab_id=world.lab_a.id, source_code="WBC", qc_lot_number="",
                                   test_system_id=pairs["WBC"][0].id))
    db.session.commit()
    return pairs


def test_yumizen_astm_qc_is_judged_like_manual_entry(client, world, yumizen):
    key = make_key(world, world.lab_a)
    resp = client.post("/api/ingest/v1/messages?format=astm",
                       data=fixture_bytes("senaite_yumizen_h500.astm"), headers=auth(key))
    body = resp.get_json()
    assert resp.status_code == 200, body
    by_code = {i["position"]: i for i in body["items"]}
    assert len(body["items"]) == 21 and body["skipped_non_qc"] == 0
    stored = [i for i in body["items"] if i["status"] == "stored"]
    assert len(stored) == 3 and {i["level"] for i in stored} == {2}  # CTRL MEDIUM → 中值
    unmapped = [i for i in body["items"] if i["status"] == "error"]
    assert len(unmapped) == 18 and {i["field"] for i in unmapped} == {"test_code"}
    assert all("未对应" in i["error"] for i in unmapped) and by_code
    statuses = {}
    for code, value in (("WBC", "8.30"), ("HGB", "13.3"), ("PLT", "308")):
        ts, twin = yumizen[code]
        manual = services.submit_run(world.users["technician_b"], test_system_id=twin.id,
                                     run_date=date(2023, 3, 29), values={"2": value})
        assert run_signature(_only_run(ts)) == run_signature(db.session.get(QcRun,
                                                                            manual.run_id))
        statuses[code] = manual.status
    # The analyser flagged PLT_ABOVE_TOLERANCE; 308 vs 261 ± 15 is a 1-3s reject here too.
    assert statuses == {"WBC": "accept", "HGB": "accept", "PLT": "reject"}


def test_astm_with_a_corrupted_frame_reports_it_and_stores_the_rest(client, world, yumizen):
    key = make_key(world, world.lab_a)
    data = bytearray(fixture_bytes("senaite_yumizen_h500.astm"))
    at = data.index(b"R|8|^^^PLT^777-3|308")  # corrupt the PLT frame's value: checksum fails
    data[at + 16:at + 19] = b"999"
    resp = client.post("/api/ingest/v1/messages", data=bytes(data), headers=auth(key))
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["parse_errors"] and any("帧" in e["position"] for e in body["parse_errors"])
    assert all("999" not in i["position"] for i in body["items"])
    stored = {i["test_system_id"] for i in body["items"] if i["status"] == "stored"}
    assert stored == {yumizen["WBC"][0].id, yumizen["HGB"][0].id}
    assert db.session.scalar(select(func.count()).select_from(QcRun).where(
        QcRun.test_system_id == yumizen["PLT"][0].id)) == 0


def test_garbage_message_is_a_chinese_400_and_writes_nothing(client, world, yumizen):
    key = make_key(world, world.lab_a)
    before = counts()
    resp = client.post("/api/ingest/v1/messages", data=b"\x00\x01\x02 not a message \xff",
                       headers=auth(key))
    assert resp.status_code == 400
    assert resp.get_json()["field"] == "file" and "ASTM" in resp.get_json()["error"]
    assert counts() == before


# ---------------------------------------------------------------- CSV / XLSX upload pages
MEAN = {1: 5.0, 2: 15.0}
SD = {1: 0.2, 2: 0.5}
# z-scores per day for levels 1 and 2: in control, a 1-2s warning, 2-2s across levels, 1-3s.
Z = [(0.1, -0.2), (0.5, 0.3), (-1.0, 0.8), (2.3, 0.1), (0.2, -0.4), (2.1, 2.4), (0.0, 0.0),
     (-3.4, 0.2), (0.3, 0.6), (-0.5, -1.1)]


@pytest.fixture
def glu(session, world):
    start = local_today() - timedelta(days=90)
    for ts in (world.systems["a"], world.systems["b"]):
        set_limits(ts, world.users["supervisor"], MEAN, SD, start)
    db.session.commit()
    return world.systems["a"], world.systems["b"]


def _day(i: int) -> date:
    return local_today() - timedelta(days=len(Z) - i + 5)


def _value(i: int, level: int) -> str:
    return f"{MEAN[level] + Z[i][level - 1] * SD[level]:.2f}"


FULL_WIDTH = str.maketrans("0123456789.", "０１２３４５６７８９．")


def _lis_csv() -> bytes:
    """A LIS export as Excel users save it: GBK, Chinese headers, dates like 2026年11月5日."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["检测日期", "批次", "项目", "水平", "质控批号", "结果", "单位"])
    for i in range(len(Z)):
        d = _day(i)
        for level, name in ((1, "水平1"), (2, "H")):
            value = _value(i, level).translate(FULL_WIDTH)
            writer.writerow([f"{d.year}年{d.month}月{d.day}日 08:3{level}", "1", "glu", name,
                             "", value if i % 2 else _value(i, level), "mmol/L"])
    return out.getvalue().encode("gbk")


def _manual_twin(world, twin):
    for i in range(len(Z)):
        services.submit_run(world.users["technician_b"], test_system_id=twin.id, run_date=_day(i),
                            values={"1": _value(i, 1), "2": _value(i, 2)})


def _upload(client, data: bytes, name: str, lab_id: int):
    return client.post("/ingest/upload", data={"lab_id": str(lab_id),
                                                "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def _commit(client, html: str, lab_id: int):
    import re

    digest = re.search(r"/ingest/upload/([0-9a-f]{64})/commit", html).group(1)
    columns = re.search(r'name="columns" value="([^"]*)"', html).group(1)
    return client.post(f"/ingest/upload/{digest}/commit",
                       data={"lab_id": str(lab_id), "columns": columns.replace("&#34;", '"')})


def test_csv_upload_previews_then_stores_runs_identical_to_manual_entry(login, world, glu,
                                                                       tmp_path, app,
                                                                       monkeypatch):
    monkeypatch.setitem(app.config, "INGEST_UPLOAD_DIR", str(tmp_path))
    ts, twin = glu
    client = login(world.users["technician"])
    before = counts()
    preview = _upload(client, _lis_csv(), "LIS质控导出.csv", world.lab_a.id)
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200, html[:2000]
    assert 'id="count-stored">20<' in html and "确认导入 20 条新结果" in html
    assert "预计失控与警告批次" in html
    assert counts() == before  # the preview kept nothing
    result = _commit(client, html, world.lab_a.id)
    page = result.get_data(as_text=True)
    assert result.status_code == 200, page[:2000]
    assert 'id="count-stored">20<' in page and 'id="count-error">0<' in page
    _manual_twin(world, twin)
    assert signatures(ts) == signatures(twin)
    assert {s[2] for s in signatures(ts)} == {"accept", "warning", "reject"}
    rejected = db.session.scalars(select(QcRun).where(QcRun.test_system_id == ts.id,
                                                      QcRun.status == "reject")).all()
    for run in rejected:  # out-of-control runs are highlighted with a link to their page
        assert f'href="/runs/{run.id}"' in page
    again = _commit(client, _upload(client, _lis_csv(), "again.csv",
                                    world.lab_a.id).get_data(as_text=True), world.lab_a.id)
    assert 'id="count-stored">0<' in again.get_data(as_text=True)
    assert 'id="count-duplicate">20<' in again.get_data(as_text=True)
    assert counts()[1] == before[1] + 20


def test_xlsx_upload_with_bad_rows_names_them_and_stores_the_good_ones(login, world, glu,
                                                                      tmp_path, app,
                                                                      monkeypatch):
    monkeypatch.setitem(app.config, "INGEST_UPLOAD_DIR", str(tmp_path))
    ts, _ = glu
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["质控日报"])  # a title row above the header, as LIS exports often have
    ws.append(["日期", "项目", "水平", "结果"])
    day = local_today() - timedelta(days=3)
    ws.append([day, "GLU", "L", 5.1])
    ws.append([day, "GLU", "H", "abc"])  # row 4: not a number
    ws.append([day, "NOPE", "L", 5.0])  # row 5: unknown code
    ws.append([day + timedelta(days=30), "GLU", "L", 5.0])  # row 6: in the future
    ws.append([day, "GLU", "L", 9.9])  # row 7: same run and level as row 3, other value
    buf = io.BytesIO()
    wb.save(buf)
    client = login(world.users["technician"])
    html = _upload(client, buf.getvalue(), "日报.xlsx", world.lab_a.id).get_data(as_text=True)
    assert 'id="count-stored">1<' in html and 'id="count-error">4<' in html
    for row, words in ((4, "不是有效数字"), (5, "未对应"), (6, "晚于今天"), (7, "结果不同")):
        assert f'data-row="{row}"' in html or f"第 {row} 行" in html
        assert words in html
    page = _commit(client, html, world.lab_a.id).get_data(as_text=True)
    assert 'id="count-stored">1<' in page
    run = _only_run(ts)
    assert [(r.value_text, r.level.level_index) for r in run.results] == [("5.1", 1)]
