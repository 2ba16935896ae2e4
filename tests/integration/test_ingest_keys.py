"""API key pages: the centre issues keys for its region's labs, sees each key once, revokes."""

from __future__ import annotations

import re

from sqlalchemy import select

from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.orgs.models import ApiKey
from tests.integration.test_ingest_support import auth


def test_centre_creates_a_key_shown_once_that_then_works(login, world):
    client = login(world.users["center"])
    page = client.post("/ingest/keys", data={"lab_id": world.lab_a.id, "name": "LIS 接口机"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    raw = re.search(r'id="new-key-value">(qcwx_[0-9a-f]{8}_[^<]+)<', html).group(1)
    assert "只显示这一次" in html
    row = db.session.scalars(select(ApiKey)).one()
    assert (row.lab_id, row.name, row.key_hash) == (world.lab_a.id, "LIS 接口机",
                                                    apikeys.hash_key(raw))
    listing = client.get("/ingest/keys").get_data(as_text=True)
    assert raw not in listing and f"qcwx_{row.prefix}_…" in listing
    me = client.get("/api/ingest/v1/me", headers=auth(raw))
    assert me.status_code == 200 and me.get_json()["lab_id"] == world.lab_a.id
    assert db.session.get(ApiKey, row.id).last_used_at is not None


def test_keys_are_scoped_to_the_centres_region(login, world):
    _, raw_c = apikeys.create_key(world.users["admin"], world.lab_c.id, "二区 LIS")
    db.session.commit()
    client = login(world.users["center"])
    other = client.post("/ingest/keys", data={"lab_id": world.lab_c.id, "name": "x"})
    assert other.status_code == 404
    assert "二区 LIS" not in client.get("/ingest/keys").get_data(as_text=True)
    row = db.session.scalars(select(ApiKey)).one()
    assert client.post(f"/ingest/keys/{row.id}/revoke").status_code == 404
    assert login(world.users["center2"]).get("/ingest/keys").get_data(as_text=True).count(
        "二区 LIS") == 1


def test_only_centre_and_admin_manage_keys(login, world):
    for role in ("technician", "supervisor", "director"):
        client = login(world.users[role])
        assert client.get("/ingest/keys").status_code == 403, role
        assert client.post("/ingest/keys", data={"lab_id": world.lab_a.id,
                                                 "name": "x"}).status_code == 403
    assert db.session.scalars(select(ApiKey)).all() == []


def test_a_key_needs_a_name(login, world):
    client = login(world.users["center"])
    resp = client.post("/ingest/keys", data={"lab_id": world.lab_a.id, "name": " "})
    assert resp.status_code == 400 and "请填写密钥名称" in resp.get_data(as_text=True)


def test_revoking_a_key_stops_it_at_once(login, world):
    client = login(world.users["center"])
    html = client.post("/ingest/keys", data={"lab_id": world.lab_b.id, "name": "B"}).get_data(
        as_text=True)
    raw = re.search(r'id="new-key-value">([^<]+)<', html).group(1)
    row = db.session.scalars(select(ApiKey)).one()
    resp = client.post(f"/ingest/keys/{row.id}/revoke")
    assert resp.status_code == 302
    assert db.session.get(ApiKey, row.id).revoked_at is not None
    assert "已吊销" in client.get("/ingest/keys").get_data(as_text=True)
    assert client.get("/api/ingest/v1/me", headers=auth(raw)).status_code == 401
