"""CSV import of test systems: the service and the two-step preview → confirm pages."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest
from sqlalchemy import func, select

from qcwx import models as m
from qcwx.audit.services import set_actor
from qcwx.catalog.services import (
    IMPORT_COLUMNS,
    import_test_systems,
    parse_test_system_csv,
    template_csv,
)
from qcwx.errors import Forbidden, UserError
from qcwx.extensions import db
from tests import factories as f

HEADERS = [c.header for c in IMPORT_COLUMNS]
URL = "/admin/import-test-systems/"


@pytest.fixture(autouse=True)
def _no_audit_actor_from_earlier_requests():
    """A request's audit actor outlives it in this thread; rolled-back users break FKs."""
    set_actor(None)
    yield
    set_actor(None)


@pytest.fixture
def world(world, session):
    """The shared world, its savepoint released so a view's rollback cannot undo it."""
    session.commit()
    return world


def row(**values) -> dict:
    base = {"医院编码": "IMP-H1", "医院名称": "县人民医院", "医院等级": "二级",
            "实验室编码": "", "实验室名称": "检验科", "项目代码": "GLU",
            "仪器厂家": "迈瑞", "仪器型号": "BS-2000M", "仪器序列号": "MR-001",
            "试剂厂家": "迈瑞", "试剂名称": "葡萄糖测定试剂盒", "方法学": "己糖激酶法",
            "校准品厂家": "迈瑞", "校准品名称": "多项校准品", "单位": "", "温度": "",
            "质控品厂家": "Bio-Rad", "质控品名称": "Lyphochek 生化质控品 导入",
            "质控批号": "IMP2601", "有效期": "2027-06-30", "水平数": "2", "水平名称": ""}
    base.update(values)
    return base


def csv_bytes(rows: list[dict], encoding: str = "utf-8-sig", headers=HEADERS) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(headers)
    for r in rows:
        writer.writerow([r.get(h, "") for h in headers])
    return buf.getvalue().encode(encoding)


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _systems_of(hospital_code: str) -> list[m.TestSystem]:
    stmt = (select(m.TestSystem).join(m.Lab).join(m.Hospital)
            .where(m.Hospital.code == hospital_code).order_by(m.TestSystem.id))
    return list(db.session.scalars(stmt))


# ----------------------------------------------------------------------------- service


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "utf-8"])
def test_import_creates_hospital_lab_instrument_lot_and_levels(world, encoding):
    data = csv_bytes([row(), row(项目代码="TG", 仪器序列号="MR-001")], encoding)
    f.analyte("TG", "甘油三酯", "mmol/L")
    report = import_test_systems(world.users["center"], data)

    assert [r.errors for r in report.rows] == [[], []]
    assert report.count("created") == 2
    assert report.created["医院"] == 1 and report.created["实验室"] == 1
    assert report.created["仪器"] == 1 and report.created["质控水平"] == 2
    hospital = db.session.scalar(select(m.Hospital).where(m.Hospital.code == "IMP-H1"))
    assert hospital.region_id == world.region1.id and hospital.level == "二级"
    lab = hospital.labs[0]
    assert re.fullmatch(r"Q[A-Z2-9]{6}", lab.anon_code) and "检验" not in lab.anon_code
    assert lab.code and lab.code != lab.anon_code
    systems = _systems_of("IMP-H1")
    assert [s.analyte.code for s in systems] == ["GLU", "TG"]
    glu = systems[0]
    assert glu.unit == "mmol/L" and glu.temperature == "37℃"
    assert glu.qc_lot.expiry == date(2027, 6, 30)
    assert [lv.level_index for lv in glu.levels] == [1, 2]
    assert all(lv.lot_id == glu.qc_lot_id for lv in glu.levels)
    assert glu.instrument_id == systems[1].instrument_id  # one analyser, two tests
    assert glu.reagent.maker == "迈瑞" and glu.method.name == "己糖激酶法"


def test_reimport_creates_nothing_new(world):
    data = csv_bytes([row(), row(水平数="", 水平名称="水平1/水平2")])
    first = import_test_systems(world.users["center"], data)
    assert first.count("created") == 1 and first.count("exists") == 1  # same system twice
    counts = {model: _count(model) for model in (m.Hospital, m.Lab, m.Instrument, m.Reagent,
                                                 m.Method, m.Calibrator, m.QcMaterial, m.QcLot,
                                                 m.QcLevel, m.TestSystem)}
    again = import_test_systems(world.users["center"], data)
    assert [r.outcome for r in again.rows] == ["exists", "exists"]
    assert not again.created
    assert counts == {model: _count(model) for model in counts}


def test_import_reuses_existing_hospital_lab_and_lot(world):
    lot = world.systems["a"].qc_lot
    data = csv_bytes([row(医院编码=world.hosp1.code, 医院名称=world.hosp1.name, 医院等级="",
                          实验室编码=world.lab_a.code, 实验室名称=world.lab_a.name,
                          质控品厂家=lot.material.maker, 质控品名称=lot.material.name,
                          质控批号=lot.lot_number, 有效期="")])
    report = import_test_systems(world.users["center"], data)
    assert report.rows[0].errors == [] and report.rows[0].outcome == "created"
    assert "医院" not in report.created and "实验室" not in report.created
    assert "质控批号" not in report.created and "质控水平" not in report.created
    created = _systems_of(world.hosp1.code)[-1]
    assert created.lab_id == world.lab_a.id and created.qc_lot_id == lot.id


def test_row_errors_are_reported_and_valid_rows_still_import(world):
    data = csv_bytes([row(), row(项目代码="NOPE"), row(实验室名称="", 项目代码="GLU"),
                      row(水平数="9"), row(有效期="明年"), row(试剂名称="")])
    report = import_test_systems(world.users["center"], data)
    errors = {r.line: "；".join(r.errors) for r in report.rows}
    assert errors[2] == ""
    assert "未知项目代码“NOPE”" in errors[3]
    assert "“实验室名称”不能为空" in errors[4]
    assert "水平数应为" in errors[5]
    assert "有效期" in errors[6]
    assert "试剂厂家和试剂名称须同时填写" in errors[7]
    assert len(report.valid_rows) == 1 and len(_systems_of("IMP-H1")) == 1


def test_a_row_failing_half_way_leaves_nothing_behind(world):
    lot = world.systems["a"].qc_lot
    data = csv_bytes([row(医院编码="IMP-H9", 医院名称="半途医院", 质控品厂家=lot.material.maker,
                          质控品名称=lot.material.name, 质控批号=lot.lot_number,
                          有效期="2030-01-01")])
    report = import_test_systems(world.users["center"], data)
    assert "已登记有效期" in report.rows[0].errors[0]
    assert _count(m.Hospital, m.Hospital.code == "IMP-H9") == 0  # created, then rolled back


def test_centre_cannot_import_into_another_regions_hospital(world):
    data = csv_bytes([row(医院编码=world.hosp3.code, 医院名称=world.hosp3.name)])
    report = import_test_systems(world.users["center"], data)
    assert "属于其他区域" in report.rows[0].errors[0]
    assert not report.valid_rows


def test_a_city_centre_imports_into_its_districts_hospitals(world):
    """Regression: after the region tree a city centre was refused its districts' hospitals
    ("属于其他区域"), by code and by name."""
    district = m.Region(code="IMP-D1", name="下辖区", parent_id=world.region1.id,
                        level="district")
    db.session.add(district)
    db.session.flush()
    world.hosp1.region_id = district.id
    db.session.flush()
    for data in (csv_bytes([row(医院编码=world.hosp1.code, 医院名称=world.hosp1.name)]),
                 csv_bytes([row(医院编码="", 医院名称=world.hosp1.name)])):
        report = import_test_systems(world.users["center"], data)
        assert not report.rows[0].errors, report.rows[0].errors
        assert report.valid_rows


def test_new_hospital_needs_a_level_and_names_must_match_codes(world):
    data = csv_bytes([row(医院等级=""), row(医院编码=world.hosp1.code, 医院名称="别的名字")])
    report = import_test_systems(world.users["center"], data)
    assert "须填写医院等级" in report.rows[0].errors[0]
    assert "不一致" in report.rows[1].errors[0]


def test_admin_names_the_region_of_new_hospitals(world):
    data = csv_bytes([row()])
    report = import_test_systems(world.users["admin"], data)
    assert "须选择所属区域" in report.rows[0].errors[0]
    report = import_test_systems(world.users["admin"], data, region_id=world.region2.id)
    assert report.rows[0].ok
    hospital = db.session.scalar(select(m.Hospital).where(m.Hospital.code == "IMP-H1"))
    assert hospital.region_id == world.region2.id


def test_only_centre_and_admin_may_import(world):
    with pytest.raises(Forbidden):
        import_test_systems(world.users["technician"], csv_bytes([row()]))
    with pytest.raises(Forbidden):
        import_test_systems(world.users["center"], csv_bytes([row()]),
                            region_id=world.region2.id)


def test_dry_run_writes_nothing(world):
    before = (_count(m.Hospital), _count(m.TestSystem), _count(m.QcLevel), _count(m.AuditLog))
    report = import_test_systems(world.users["center"], csv_bytes([row()]), dry_run=True)
    assert report.count("created") == 1 and report.created["医院"] == 1
    after = (_count(m.Hospital), _count(m.TestSystem), _count(m.QcLevel), _count(m.AuditLog))
    assert before == after


@pytest.mark.parametrize(("data", "message"), [
    (b"", "文件为空"),
    (b"\r\n  \r\n", "文件为空"),
    ("医院名称,别的列\r\n甲,乙\r\n".encode(), "表头不正确"),
    ("hello world".encode(), "表头不正确"),
    (b"PK\x03\x04\x14\x00\x06\x00binary", "Excel"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "不是 CSV"),
    (b"\xff\xfe\xfd\xfc\x80\x81", "编码"),
])
def test_unusable_files_get_a_chinese_message(data, message):
    with pytest.raises(UserError, match=message):
        parse_test_system_csv(data)


def test_template_has_the_chinese_headers_and_no_data():
    data = template_csv()
    assert data.startswith(b"\xef\xbb\xbf")
    header = data.decode("utf-8-sig").splitlines()[0].split(",")
    assert header[:3] == ["医院编码", "医院名称", "医院等级"] and "水平名称" in header
    with pytest.raises(UserError, match="没有数据行"):
        parse_test_system_csv(data)


def test_headers_with_hints_and_tabs_are_accepted():
    headers = [h + ("（必填）" if h == "医院名称" else "") for h in HEADERS]
    text = "\t".join(headers) + "\n" + "\t".join(row().get(h, "") for h in HEADERS) + "\n"
    rows = parse_test_system_csv(text.encode("gbk"))
    assert rows[0].get("hospital_name") == "县人民医院" and rows[0].line == 2


# ----------------------------------------------------------------------------- pages


def _upload(client, data: bytes, name: str = "systems.csv", **form):
    return client.post(URL, data={"file": (io.BytesIO(data), name), **form},
                       content_type="multipart/form-data")


def test_preview_then_confirm_through_the_real_pages(world, login):
    client = login(world.users["center"])
    data = csv_bytes([row(), row(项目代码="NOPE")], "gbk")
    preview = _upload(client, data)
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "预览" in page and "确认导入 1 行" in page and "未知项目代码“NOPE”" in page
    assert _systems_of("IMP-H1") == []  # the preview saved nothing
    payload = re.search(r'name="payload" value="([^"]+)"', page).group(1)

    done = client.post(URL + "confirm", data={"payload": payload})
    page = done.get_data(as_text=True)
    assert done.status_code == 200 and "导入完成" in page and "1 行有错误未导入" in page
    db.session.expire_all()
    assert len(_systems_of("IMP-H1")) == 1

    again = client.post(URL + "confirm", data={"payload": payload})
    assert "已存在未重复创建 1 个" in again.get_data(as_text=True)
    db.session.expire_all()
    assert len(_systems_of("IMP-H1")) == 1


@pytest.mark.parametrize(("data", "message"), [
    (b"", "文件为空"),
    ("a,b,c\r\n1,2,3\r\n".encode(), "表头不正确"),
    (b"PK\x03\x04 not really a workbook", "另存为 CSV"),
])
def test_bad_upload_shows_a_chinese_error_not_a_500(world, login, data, message):
    resp = _upload(login(world.users["center"]), data)
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)


def test_missing_file_and_damaged_payload_are_user_errors(world, login):
    client = login(world.users["center"])
    resp = client.post(URL, data={}, content_type="multipart/form-data")
    assert resp.status_code == 400 and "请选择要上传的 CSV 文件" in resp.get_data(as_text=True)
    resp = client.post(URL + "confirm", data={"payload": "not-base64!!"})
    assert resp.status_code == 400 and "导入内容已失效" in resp.get_data(as_text=True)


def test_failed_commit_leaves_nothing(world, login, monkeypatch):
    from sqlalchemy.exc import OperationalError

    client = login(world.users["center"])
    page = _upload(client, csv_bytes([row()])).get_data(as_text=True)
    payload = re.search(r'name="payload" value="([^"]+)"', page).group(1)

    def broken_commit():
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    monkeypatch.setattr(db.session, "commit", broken_commit)
    resp = client.post(URL + "confirm", data={"payload": payload})
    monkeypatch.undo()
    assert resp.status_code == 500 and "未写入任何数据" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert _count(m.Hospital, m.Hospital.code == "IMP-H1") == 0


def test_template_download_and_access(world, login, client):
    assert client.get(URL + "template.csv").status_code == 302  # anonymous → login
    resp = login(world.users["center"]).get(URL + "template.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert resp.data.decode("utf-8-sig").startswith("医院编码,医院名称")
    assert login(world.users["technician"]).get(URL).status_code == 403
    assert login(world.users["technician"]).post(URL + "confirm").status_code == 403
