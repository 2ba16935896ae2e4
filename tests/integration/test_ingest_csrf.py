"""With CSRF on (as in production): every import form carries its token, the API needs none."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.iqc.models import QcResult
from qcwx.timeutil import local_today
from tests.factories import PASSWORD, build_world
from tests.fixtures.app import make_test_app

TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def csrf_app(tmp_path):
    app = make_test_app(f"sqlite:///{tmp_path / 'csrf.sqlite3'}", WTF_CSRF_ENABLED=True,
                        INGEST_UPLOAD_DIR=str(tmp_path / "uploads"))
    with app.app_context():
        world = build_world()
        _, key = apikeys.create_key(world.users["center"], world.lab_a.id, "LIS")
        names = {role: u.username for role, u in world.users.items()}
        lab_a = world.lab_a.id
        db.session.commit()
        db.session.remove()
    yield app, names, lab_a, key
    with app.app_context():
        db.engine.dispose()


def login(app, username):
    client = app.test_client()
    token = TOKEN.search(client.get("/login").get_data(as_text=True)).group(1)
    resp = client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": token})
    assert resp.status_code == 302
    return client


def token_of(html: str) -> str:
    return TOKEN.search(html).group(1)


def test_upload_flow_works_with_tokens_and_refuses_without(csrf_app):
    app, names, lab_a, _ = csrf_app
    client = login(app, names["technician"])
    page = client.get("/ingest/upload").get_data(as_text=True)
    day = (local_today() - timedelta(days=2)).isoformat()
    data = f"日期,项目,水平,结果\n{day},GLU,1,5.0\n".encode()
    refused = client.post("/ingest/upload", data={"file": (io.BytesIO(data), "a.csv")},
                          content_type="multipart/form-data")
    assert refused.status_code == 400
    preview = client.post("/ingest/upload", data={"file": (io.BytesIO(data), "a.csv"),
                                                  "csrf_token": token_of(page)},
                          content_type="multipart/form-data").get_data(as_text=True)
    form = re.search(r'<form method="post" action="(/ingest/upload/[0-9a-f]+/commit)"'
                     r'(.*?)</form>', preview, re.S)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                             form.group(2)))
    fields["columns"] = fields["columns"].replace("&#34;", '"')
    assert "csrf_token" in fields
    result = client.post(form.group(1), data=fields)
    assert result.status_code == 200 and 'id="count-stored">1<' in result.get_data(as_text=True)


def test_mapping_and_key_forms_carry_tokens(csrf_app):
    app, names, lab_a, _ = csrf_app
    sup = login(app, names["supervisor"])
    page = sup.get("/ingest/mappings").get_data(as_text=True)
    resp = sup.post("/ingest/mappings", data={"lab_id": lab_a, "kind": "level",
                                              "source_level": "QC1", "level_index": "1",
                                              "csrf_token": token_of(page)})
    assert resp.status_code == 302
    centre = login(app, names["center"])
    page = centre.get("/ingest/keys").get_data(as_text=True)
    created = centre.post("/ingest/keys", data={"lab_id": lab_a, "name": "新密钥",
                                                "csrf_token": token_of(page)})
    assert created.status_code == 200 and "只显示这一次" in created.get_data(as_text=True)
    revoke = re.search(r'action="(/ingest/keys/\d+/revoke)"', created.get_data(as_text=True))
    assert centre.post(revoke.group(1), data={
        "csrf_token": token_of(created.get_data(as_text=True))}).status_code == 302


def test_api_is_exempt_from_csrf(csrf_app):
    app, _, _, key = csrf_app
    client = app.test_client()
    day = (local_today() - timedelta(days=2)).isoformat()
    resp = client.post("/api/ingest/v1/results", headers={"Authorization": f"Bearer {key}"},
                       json={"items": [{"client_id": "k1", "test_code": "GLU", "level": 1,
                                        "value": "5.0", "run_date": day}]})
    assert resp.status_code == 200 and resp.get_json()["counts"]["stored"] == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(QcResult)) == 1
        db.session.remove()


def test_a_connection_check_records_when_the_key_was_last_used(csrf_app):
    """Regression: /me set last_used_at but never committed it (lost at request teardown)."""
    from qcwx.orgs.models import ApiKey

    app, _, _, key = csrf_app
    assert app.test_client().get("/api/ingest/v1/me",
                                 headers={"X-API-Key": key}).status_code == 200
    with app.app_context():
        assert db.session.scalars(select(ApiKey)).one().last_used_at is not None
        db.session.remove()
