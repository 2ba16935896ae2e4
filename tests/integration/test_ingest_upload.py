"""Upload pages: templates, preview → commit, column mappings, access, tampering, limits."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import openpyxl
import pytest
from sqlalchemy import select

from qcwx.extensions import db
from qcwx.ingest.models import ColumnMapping, UploadBatch
from qcwx.iqc.models import QcResult
from qcwx.timeutil import local_today
from tests.integration.test_ingest_support import counts, fixture_bytes, set_limits

MEAN = {1: 5.0, 2: 15.0}
SD = {1: 0.2, 2: 0.5}


@pytest.fixture
def ready(session, world, app, tmp_path):
    app.config["INGEST_UPLOAD_DIR"] = str(tmp_path)
    for ts in world.systems.values():
        set_limits(ts, world.users["supervisor"], MEAN, SD, local_today() - timedelta(days=90))
    db.session.commit()
    yield world
    app.config.pop("INGEST_UPLOAD_DIR", None)
    app.config.pop("INGEST_UPLOAD_MAX_BYTES", None)


def upload(client, data: bytes, name: str = "qc.csv", **form):
    return client.post("/ingest/upload", data={"file": (io.BytesIO(data), name)} | form,
                       content_type="multipart/form-data")


def commit_form(html: str) -> tuple[str, dict]:
    digest = re.search(r"/ingest/upload/([0-9a-f]{64})/commit", html).group(1)
    lab_id = re.search(r'name="lab_id" value="(\d+)"', html).group(1)
    columns = re.search(r'name="columns" value="([^"]*)"', html).group(1).replace("&#34;", '"')
    return f"/ingest/upload/{digest}/commit", {"lab_id": lab_id, "columns": columns}


def day(n: int) -> str:
    return (local_today() - timedelta(days=n)).isoformat()


def test_templates_download_and_parse_back(login, ready):
    client = login(ready.users["technician"])
    csv_ = client.get("/ingest/template.csv")
    xlsx = client.get("/ingest/template.xlsx")
    assert csv_.status_code == 200 and csv_.data.startswith(b"\xef\xbb\xbf")
    assert "检测日期" in csv_.data.decode("utf-8-sig")
    wb = openpyxl.load_workbook(io.BytesIO(xlsx.data))
    assert wb.sheetnames == ["质控数据", "填写说明"]
    assert "attachment" in xlsx.headers["Content-Disposition"]


def test_upload_page_renders_for_lab_roles_and_refuses_the_centre(login, ready):
    page = login(ready.users["technician"]).get("/ingest/upload")
    assert page.status_code == 200 and "上传并预览" in page.get_data(as_text=True)
    assert login(ready.users["center"]).get("/ingest/upload").status_code == 403
    director = login(ready.users["director"])
    assert director.get("/ingest/upload").status_code == 200  # the first lab in scope
    assert director.get(f"/ingest/upload?lab_id={ready.lab_a.id}").status_code == 200
    assert director.get(f"/ingest/upload?lab_id={ready.lab_b.id}").status_code == 404


def test_technician_cannot_upload_into_another_lab(login, ready):
    client = login(ready.users["technician"])
    data = f"日期,项目,水平,结果\n{day(3)},GLU,1,5.0\n".encode()
    assert upload(client, data, lab_id=str(ready.lab_b.id)).status_code == 404
    assert counts()[0] == 0


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig", "utf-16"])
def test_chinese_csv_in_any_usual_encoding_commits_once(login, ready, encoding):
    client = login(ready.users["technician"])
    text = (f"质控日期,检验项目,质控水平,测定值,备注\n{day(3)},葡萄糖,低值,5.10,晨间\n"
            f"{day(3)},葡萄糖,高值,15.20,晨间\n")
    preview = upload(client, text.encode(encoding))
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'id="count-stored">2<' in html, html[:3000]
    url, form = commit_form(html)
    result = client.post(url, data=form).get_data(as_text=True)
    assert 'id="count-stored">2<' in result and "导入完成" in result
    batch = db.session.scalars(select(UploadBatch)).one()
    assert (batch.channel, batch.created_by_id, batch.n_stored, batch.filename) == (
        "upload", ready.users["technician"].id, 2, "qc.csv")
    values = sorted(r.value_text for r in db.session.scalars(select(QcResult)))
    assert values == ["15.20", "5.10"]


def test_unknown_headers_lead_to_the_column_page_and_a_saved_mapping_is_reused(login, ready):
    client = login(ready.users["technician"])
    data = f"DT;ITEM;LV;RES\n{day(4)};GLU;1;5.05\n{day(4)};GLU;2;15.4\n".encode()
    first = upload(client, data, "lis.csv")
    assert first.status_code == 302 and "/columns" in first.headers["Location"]
    page = client.get(first.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "找不到表头行" in html and ">RES</option>" in html
    incomplete = client.post(first.headers["Location"].split("?")[0], data={
        "lab_id": ready.lab_a.id, "col_test_code": "ITEM", "col_value": "RES"})
    assert incomplete.status_code == 400 and "检测日期" in incomplete.get_data(as_text=True)
    chosen = {"lab_id": ready.lab_a.id, "col_test_code": "ITEM", "col_value": "RES",
              "col_date": "DT", "col_level": "LV", "mapping_name": "LIS 质控导出"}
    preview = client.post(first.headers["Location"].split("?")[0], data=chosen)
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'id="count-stored">2<' in html
    saved = db.session.scalars(select(ColumnMapping)).one()
    assert saved.name == "LIS 质控导出" and saved.columns["value"] == "RES"
    url, form = commit_form(html)
    assert 'id="count-stored">2<' in client.post(url, data=form).get_data(as_text=True)
    # next time: pick the saved mapping on the upload form
    later = f"DT;ITEM;LV;RES\n{day(2)};GLU;1;5.01\n".encode()
    again = upload(client, later, "lis2.csv", mapping_id=str(saved.id))
    assert again.status_code == 200 and 'id="count-stored">1<' in again.get_data(as_text=True)


def test_commit_refuses_other_users_files_and_bad_digests(login, ready):
    tech = login(ready.users["technician"])
    html = upload(tech, f"日期,项目,水平,结果\n{day(3)},GLU,1,5.0\n".encode()).get_data(
        as_text=True)
    url, form = commit_form(html)
    sup = login(ready.users["supervisor"])  # same lab, but not the uploader
    stolen = sup.post(url, data=form)
    assert stolen.status_code == 400 and "过期或不存在" in stolen.get_data(as_text=True)
    assert sup.post("/ingest/upload/../../etc/passwd/commit", data=form).status_code == 404
    bad = sup.post("/ingest/upload/" + "z" * 64 + "/commit", data=form)
    assert bad.status_code == 400 and "文件标识无效" in bad.get_data(as_text=True)
    assert counts()[0] == 0


def test_a_stashed_file_changed_on_disk_is_refused(login, ready, tmp_path):
    client = login(ready.users["technician"])
    html = upload(client, f"日期,项目,水平,结果\n{day(3)},GLU,1,5.0\n".encode()).get_data(
        as_text=True)
    url, form = commit_form(html)
    digest = url.split("/")[3]
    stash = next(tmp_path.glob(f"*/{digest}.bin"))
    stash.write_bytes(f"日期,项目,水平,结果\n{day(3)},GLU,1,9.9\n".encode())
    resp = client.post(url, data=form)
    assert resp.status_code == 400 and "不一致" in resp.get_data(as_text=True)
    assert counts()[0] == 0


def test_tampered_columns_are_validated(login, ready):
    client = login(ready.users["technician"])
    html = upload(client, f"日期,项目,水平,结果\n{day(3)},GLU,1,5.0\n".encode()).get_data(
        as_text=True)
    url, form = commit_form(html)
    for columns in ("not json", '["a"]', '{"evil": "x"}', '{"value": "结果"}'):
        resp = client.post(url, data=form | {"columns": columns})
        assert resp.status_code == 400, columns
    assert counts()[0] == 0


def test_empty_missing_and_oversized_files_are_form_errors(login, ready, app):
    client = login(ready.users["technician"])
    empty = upload(client, b"   ")
    assert empty.status_code == 400 and "文件为空" in empty.get_data(as_text=True)
    none = client.post("/ingest/upload", data={}, content_type="multipart/form-data")
    assert none.status_code == 400 and "请选择要上传的文件" in none.get_data(as_text=True)
    app.config["INGEST_UPLOAD_MAX_BYTES"] = 1000
    big = upload(client, b"a,b\n" * 1000)
    assert big.status_code == 413 and "上传内容过大" in big.get_data(as_text=True)


def test_an_old_xls_file_gets_a_hint_not_a_500(login, ready):
    client = login(ready.users["technician"])
    resp = upload(client, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "old.xls")
    assert resp.status_code in (302, 400)
    target = client.get(resp.headers["Location"]) if resp.status_code == 302 else resp
    assert "另存为 .xlsx" in target.get_data(as_text=True)


def test_instrument_files_can_be_uploaded_on_the_page_too(login, ready):
    client = login(ready.users["technician"])
    resp = upload(client, fixture_bytes("senaite_sysmex_xp100.astm"), "xp100.astm")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "非质控（患者）结果" in html
    assert "没有可导入的新结果" in html


def test_batches_page_is_scoped(login, ready):
    db.session.add_all([
        UploadBatch(lab_id=ready.lab_a.id, channel="upload", filename="a-file.csv",
                    file_hash="a" * 64, format="csv"),
        UploadBatch(lab_id=ready.lab_c.id, channel="api", filename="c-file.csv",
                    file_hash="c" * 64, format="csv")])
    db.session.commit()
    tech = login(ready.users["technician"]).get("/ingest/batches").get_data(as_text=True)
    assert "a-file.csv" in tech and "c-file.csv" not in tech
    centre = login(ready.users["center"]).get("/ingest/batches").get_data(as_text=True)
    assert "a-file.csv" in centre and "c-file.csv" not in centre
