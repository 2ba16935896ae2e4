"""The lab-interface API: JSON batches, files, keys, limits, scope (fuzzing: *_fuzz.py)."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.ingest.models import ColumnMapping, UploadBatch
from qcwx.iqc import services
from qcwx.iqc.models import QcRun
from qcwx.orgs.models import ApiKey
from qcwx.timeutil import local_today
from tests.integration.test_ingest_support import (
    auth,
    counts,
    limits_in_force,
    make_key,
    run_signature,
)

URL = "/api/ingest/v1/results"


@pytest.fixture
def glu(session, world):
    return limits_in_force(world)


@pytest.fixture
def key(world, glu):
    return make_key(world, world.lab_a)


def item(cid, level, value, *, days_ago=1, code="GLU", **extra):
    day = local_today() - timedelta(days=days_ago)
    return {"client_id": cid, "test_code": code, "level": level,
            "measured_at": f"{day.isoformat()}T08:30:00+08:00", "value": value} | extra


def test_json_batch_stores_one_run_with_both_levels_and_returns_the_verdict(client, world, glu,
                                                                           key):
    resp = client.post(URL, json={"items": [item("c1", "1", "5.46"), item("c2", 2, "15.1")]},
                       headers=auth(key))
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["counts"] == {"stored": 2, "duplicate": 0, "error": 0}
    first, second = body["items"]
    assert first["run_id"] == second["run_id"] and first["verdict"]["status"] == "warning"
    assert [r["rule"] for r in first["verdict"]["rules"]] == ["1-2s"]  # level 1: z = 2.3
    manual = services.submit_run(world.users["technician_b"], test_system_id=world.systems["b"].id,
                                 run_date=local_today() - timedelta(days=1),
                                 values={"1": "5.46", "2": "15.1"})
    assert run_signature(db.session.get(QcRun, first["run_id"])) == run_signature(
        db.session.get(QcRun, manual.run_id))
    batch = db.session.scalars(select(UploadBatch)).one()
    assert (batch.channel, batch.format, batch.n_stored, batch.api_key_id is not None) == (
        "api", "json", 2, True)


def test_resend_is_a_duplicate_and_a_reused_client_id_with_another_value_conflicts(
        client, glu, key):
    batch = {"items": [item("c1", "1", "5.10"), item("c2", "2", "15.2")]}
    client.post(URL, json=batch, headers=auth(key))
    before = counts()
    again = client.post(URL, json=batch, headers=auth(key)).get_json()
    assert [i["status"] for i in again["items"]] == ["duplicate", "duplicate"]
    assert again["items"][0]["verdict"]["status"] == "accept"
    changed = client.post(URL, json={"items": [item("c1", "1", "5.30")]}, headers=auth(key))
    out = changed.get_json()["items"][0]
    assert (out["status"], out["code"], out["field"]) == ("error", 409, "value")
    assert "已有结果" in out["error"]
    assert counts() == before


def test_bad_items_are_reported_alone_and_never_block_the_others(client, glu, key):
    items = [
        item("ok-1", "1", "5.0", days_ago=2),
        item("bad-value", "2", "abc", days_ago=2),
        item("bad-code", "1", "5.0", code="XYZ"),
        item("future", "1", "5.0", days_ago=-3),
        {"client_id": "no-date", "test_code": "GLU", "level": "1", "value": "5"},
        "not an object",
        item("bad-level", "7", "5.0", days_ago=4),
        item("implausible", "1", "999", days_ago=5),
        item("ok-2", "2", "15.0", days_ago=5),
    ]
    body = client.post(URL, json={"items": items}, headers=auth(key)).get_json()
    got = {i["client_id"] or i["index"]: (i["status"], i.get("field")) for i in body["items"]}
    assert got == {
        "ok-1": ("stored", None), "bad-value": ("error", "value"),
        "bad-code": ("error", "test_code"), "future": ("error", "run_date"),
        "no-date": ("error", "measured_at"), 5: ("error", "items"),
        "bad-level": ("error", "level"), "implausible": ("error", "value"),
        "ok-2": ("stored", None)}
    assert all(i["error"] for i in body["items"] if i["status"] == "error")
    # the run of day -5 keeps its good level; the bad level left no trace
    run = db.session.get(QcRun, body["items"][-1]["run_id"])
    assert [(r.level.level_index, r.value_text) for r in run.results] == [(2, "15.0")]


def test_key_of_lab_a_cannot_submit_to_lab_b(client, world, glu, key):
    other = world.systems["b"]
    body = client.post(URL, json={"items": [
        {"client_id": "x1", "test_system_id": other.id, "level": 1, "value": "5.0",
         "run_date": (local_today() - timedelta(days=1)).isoformat()},
        {"client_id": "x2", "test_system_id": 10**9, "level": 1, "value": "5.0",
         "run_date": (local_today() - timedelta(days=1)).isoformat()},
    ]}, headers=auth(key)).get_json()
    assert [(i["status"], i["code"], i["field"]) for i in body["items"]] == [
        ("error", 404, "test_system_id"), ("error", 404, "test_system_id")]
    assert db.session.scalar(select(QcRun.id).where(QcRun.test_system_id == other.id)) is None


def test_test_system_id_of_own_lab_works_with_x_api_key_header(client, world, glu, key):
    body = client.post(URL, json={"items": [
        {"client_id": "y1", "test_system_id": glu.id, "level": 1, "value": 5.0,
         "run_date": (local_today() - timedelta(days=1)).isoformat(), "run_no": 2}]},
        headers={"X-API-Key": key}).get_json()
    assert body["items"][0]["status"] == "stored" and body["items"][0]["run_no"] == 2


@pytest.mark.parametrize("headers, words", [
    ({}, "缺少 API 密钥"),
    ({"Authorization": "Bearer qcwx_00000000_" + "a" * 43}, "无效或已吊销"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "缺少 API 密钥"),
    ({"X-API-Key": "garbage"}, "无效或已吊销"),
])
def test_missing_or_unknown_keys_get_401_in_chinese(client, glu, headers, words):
    resp = client.post(URL, json={"items": []}, headers=headers)
    assert resp.status_code == 401 and words in resp.get_json()["error"]
    assert resp.get_json()["field"] == "Authorization"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_gets_401(client, world, glu, key):
    row = db.session.scalars(select(ApiKey)).one()
    apikeys.revoke_key(world.users["center"], row.id)
    db.session.commit()
    resp = client.post(URL, json={"items": [item("r1", "1", "5.0")]}, headers=auth(key))
    assert resp.status_code == 401 and "已吊销" in resp.get_json()["error"]
    assert counts()[0] == 0


def test_key_is_stored_only_as_its_hash(world, glu, key):
    row = db.session.scalars(select(ApiKey)).one()
    assert key.startswith(f"qcwx_{row.prefix}_") and row.key_hash == apikeys.hash_key(key)
    assert key not in json.dumps([row.name, row.prefix, row.key_hash])


def test_me_names_the_keys_lab(client, world, key):
    body = client.get("/api/ingest/v1/me", headers=auth(key)).get_json()
    assert body["lab_id"] == world.lab_a.id and body["lab"] == world.lab_a.full_name


def test_whole_request_errors_are_chinese_4xx(client, glu, key):
    cases = [
        (dict(data=b"{not json", content_type="application/json"), 400, "body"),
        (dict(json=[1, 2]), 400, "body"),
        (dict(json={"items": "x"}), 400, "items"),
        (dict(json={"items": []}), 400, "items"),
        (dict(json={"items": [item(f"i{i}", "1", "5") for i in range(1001)]}), 413, "items"),
    ]
    for kwargs, status, field in cases:
        resp = client.post(URL, headers=auth(key), **kwargs)
        assert (resp.status_code, resp.get_json()["field"]) == (status, field), kwargs
        assert any("\u4e00" <= ch <= "\u9fff" for ch in resp.get_json()["error"])


def test_oversized_body_is_413_in_chinese(client, app, glu, key):
    app.config["INGEST_API_MAX_BYTES"] = 2000
    try:
        big = client.post("/api/ingest/v1/messages", data=b"H|\\^&\r" + b"x" * 5000,
                          headers=auth(key))
        small = client.post(URL, json={"items": [item("s1", "1", "5.0")]}, headers=auth(key))
    finally:
        app.config.pop("INGEST_API_MAX_BYTES")
    assert big.status_code == 413 and "MB" in big.get_json()["error"]
    assert small.status_code == 200


def test_messages_refuse_form_posts_and_unknown_formats(client, glu, key):
    form = client.post("/api/ingest/v1/messages", data={"a": "b"}, headers=auth(key))
    fmt = client.post("/api/ingest/v1/messages?format=pdf", data=b"MSH|", headers=auth(key))
    csv_ = client.post("/api/ingest/v1/messages", data="项目,结果\nGLU,5".encode(),
                       headers=auth(key))
    assert (form.status_code, fmt.status_code, csv_.status_code) == (415, 400, 400)
    assert fmt.get_json()["field"] == "format" and csv_.get_json()["field"] == "file"


@pytest.mark.parametrize("query", ["format=", "format=%20astm", "format=Astm",
                                   "format=astm&format=hl7"])
def test_messages_take_format_only_as_documented(client, glu, key, query):
    """Regression (schemathesis): padded, empty, mixed-case or repeated formats were guessed."""
    resp = client.post(f"/api/ingest/v1/messages?{query}", data=b"MSH|", headers=auth(key))
    assert resp.status_code == 400 and resp.get_json()["field"] == "format"


@pytest.mark.parametrize("fmt", ["hl7", "HL7"])
def test_messages_take_a_documented_format_in_either_case(client, glu, key, fmt):
    resp = client.post(f"/api/ingest/v1/messages?format={fmt}", data=b"MSH|",
                       headers=auth(key))
    assert resp.status_code == 200 and resp.get_json()["format"] == "hl7"


def _csv(rows) -> bytes:
    head = "日期,项目,水平,结果,记录编号\n"
    return (head + "".join(f"{d},{c},{lv},{v},{cid}\n" for d, c, lv, v, cid in rows)).encode(
        "utf-8-sig")


def test_files_endpoint_stores_a_csv_like_the_upload_page(client, world, glu, key):
    day = (local_today() - timedelta(days=4)).isoformat()
    data = _csv([(day, "GLU", "1", "5.1", "f1"), (day, "GLU", "2", "15.3", "f2")])
    resp = client.post("/api/ingest/v1/files", data={"file": (io.BytesIO(data), "qc.csv")},
                       headers=auth(key), content_type="multipart/form-data")
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["counts"]["stored"] == 2 and body["format"] == "csv"
    assert body["items"][0]["row"] == 2 and body["items"][1]["row"] == 3
    batch = db.session.scalars(select(UploadBatch)).one()
    assert batch.filename == "qc.csv" and batch.n_stored == 2
    again = client.post("/api/ingest/v1/files", data={"file": (io.BytesIO(data), "qc.csv")},
                        headers=auth(key), content_type="multipart/form-data").get_json()
    assert again["counts"] == {"stored": 0, "duplicate": 2, "error": 0}


def test_files_endpoint_uses_a_saved_column_mapping_by_name(client, world, glu, key):
    db.session.add(ColumnMapping(lab_id=world.lab_a.id, name="LIS导出", columns={
        "test_code": "ITEM", "value": "RES", "date": "DT", "level": "LV"}))
    db.session.commit()
    day = (local_today() - timedelta(days=4)).isoformat()
    data = f"DT;ITEM;LV;RES\n{day};GLU;1;5.2\n".encode()
    files = {"file": (io.BytesIO(data), "x.csv"), "column_mapping": "LIS导出"}
    body = client.post("/api/ingest/v1/files", data=files, headers=auth(key),
                       content_type="multipart/form-data").get_json()
    assert body["counts"]["stored"] == 1
    missing = client.post("/api/ingest/v1/files", data={
        "file": (io.BytesIO(data), "x.csv"), "column_mapping": "nope"}, headers=auth(key),
        content_type="multipart/form-data")
    assert missing.status_code == 404 and missing.get_json()["field"] == "column_mapping"
    no_file = client.post("/api/ingest/v1/files", data={}, headers=auth(key),
                          content_type="multipart/form-data")
    assert no_file.status_code == 400 and no_file.get_json()["field"] == "file"


# ---------------------------------------------------------------- rate limit (own app)
@pytest.fixture
def limited_app(tmp_path):
    """An app with rate limits on (3 per minute per key); the shared limiter is restored."""
    from tests.fixtures.app import rate_limited_app

    with rate_limited_app(tmp_path / "rl.sqlite3", INGEST_API_RATELIMIT="3 per minute") as app:
        yield app


def test_rate_limit_is_per_key_and_answers_429_in_chinese(limited_app):
    from tests.factories import build_world

    with limited_app.app_context():
        world = build_world()
        _, key_a = apikeys.create_key(world.users["center"], world.lab_a.id, "A")
        _, key_b = apikeys.create_key(world.users["center"], world.lab_b.id, "B")
        db.session.commit()
        db.session.remove()
    client = limited_app.test_client()
    statuses = [client.get("/api/ingest/v1/me", headers=auth(key_a)).status_code
                for _ in range(4)]
    other = client.get("/api/ingest/v1/me", headers=auth(key_b))
    assert statuses == [200, 200, 200, 429] and other.status_code == 200
    last = client.get("/api/ingest/v1/me", headers=auth(key_a))
    assert last.status_code == 429 and "过于频繁" in last.get_json()["error"]


def test_out_of_range_times_and_lone_surrogates_are_item_errors_not_500s(client, glu, key):
    raw = ('{"items": ['
           '{"client_id": "t1", "test_code": "GLU", "level": "1", "value": "5",'
           ' "measured_at": "0001-01-01T00:00:00+14:00"},'
           '{"client_id": "t2", "test_code": "GLU", "level": "1", "value": "5",'
           ' "measured_at": "9999-12-31T23:59:59-12:00"},'
           '{"client_id": "\\ud800", "test_code": "GLU", "level": "1", "value": "5",'
           ' "run_date": "2020-01-01"}]}')
    resp = client.post(URL, data=raw, headers=auth(key), content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert [(i["status"], i["field"]) for i in resp.get_json()["items"]] == [
        ("error", "measured_at"), ("error", "measured_at"), ("error", "client_id")]


def test_a_client_id_reused_inside_one_batch_for_another_result_is_refused(client, glu, key):
    body = client.post(URL, json={"items": [
        item("same", "1", "5.0", days_ago=2), item("same", "2", "15.0", days_ago=2),
        item("same", "1", "5.0", days_ago=2)]}, headers=auth(key)).get_json()
    assert [(i["status"], i.get("field")) for i in body["items"]] == [
        ("stored", None), ("error", "client_id"), ("duplicate", None)]
    assert "第 1 项" in body["items"][1]["error"]


def test_second_qc_run_of_the_day_without_run_number_is_stored_as_run_2(client, world, glu,
                                                                         key):
    """Regression: an analyser running QC twice a day and sending no run number got a 409."""
    day = local_today() - timedelta(days=1)

    def at(hour, level, value):
        return {"client_id": f"lis-{hour}-{level}-{value}", "test_code": "GLU", "level": level,
                "value": value, "measured_at": f"{day.isoformat()}T{hour:02d}:00:00+08:00"}

    morning = [at(8, 1, "5.02"), at(8, 2, "15.1")]
    afternoon = [at(15, 1, "5.10"), at(15, 2, "14.8")]
    first = client.post(URL, json={"items": morning}, headers=auth(key)).get_json()
    second = client.post(URL, json={"items": afternoon}, headers=auth(key)).get_json()
    assert [i["status"] for i in first["items"] + second["items"]] == ["stored"] * 4
    runs = db.session.scalars(select(QcRun).where(QcRun.test_system_id == glu.id,
                                                  QcRun.run_date == day)
                              .order_by(QcRun.run_no)).all()
    assert [r.run_no for r in runs] == [1, 2]
    again = client.post(URL, json={"items": morning + afternoon}, headers=auth(key)).get_json()
    assert [i["status"] for i in again["items"]] == ["duplicate"] * 4
    clash = client.post(URL, json={"items": [at(8, 1, "5.55")]}, headers=auth(key)).get_json()
    assert clash["items"][0]["status"] == "error" and clash["items"][0]["field"] == "value"


def test_one_file_with_two_runs_a_day_and_no_run_numbers_stores_both(client, world, glu, key):
    day = local_today() - timedelta(days=2)
    items = [{"client_id": f"row-{h}", "test_code": "GLU", "level": 1, "value": v,
              "measured_at": f"{day.isoformat()}T{h}:00:00+08:00"}
             for h, v in (("08", "5.01"), ("16", "5.07"))]
    body = client.post(URL, json={"items": items}, headers=auth(key)).get_json()
    assert [i["status"] for i in body["items"]] == ["stored", "stored"]
    assert sorted(i["run_no"] for i in body["items"]) == [1, 2]


def test_csv_without_run_numbers_or_ids_splits_a_day_into_runs_by_time(world, glu):
    from qcwx.ingest import parse_bytes
    from qcwx.ingest import services as ingest

    day = (local_today() - timedelta(days=3)).isoformat()
    csv = ("检测日期,时间,项目,水平,结果\n"
           f"{day},08:05,GLU,1,5.03\n{day},08:05,GLU,2,15.2\n"
           f"{day},14:30,GLU,1,4.97\n{day},14:30,GLU,2,14.9\n").encode("utf-8")
    tech = world.users["technician"]
    report = ingest.import_parsed(tech, world.lab_a, parse_bytes(csv), channel="upload")
    assert [o.status for o in report.outcomes] == ["stored"] * 4
    assert sorted({o.run_no for o in report.outcomes}) == [1, 2]
    again = ingest.import_parsed(tech, world.lab_a, parse_bytes(csv), channel="upload")
    assert [o.status for o in again.outcomes] == ["duplicate"] * 4
