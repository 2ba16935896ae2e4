"""Research API: research-scoped keys only, the export's rows page by page, documented."""

from __future__ import annotations

import pytest
from flask import current_app

from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.opendata import dataset, openapi, services
from qcwx.opendata.columns import NAMES
from qcwx.opendata.models import ResearchApiKey

API = "/api/research/v1"


def _key(world, user="center") -> str:
    _, raw = services.create_research_key(world.users[user], "课题组")
    db.session.commit()
    return raw


def _get(client, raw, **params):
    return client.get(f"{API}/results", query_string=params,
                      headers={"Authorization": f"Bearer {raw}"})


def test_pages_with_a_cursor_give_exactly_the_export_rows(judged, client):
    raw = _key(judged.world)
    params = {"from": judged.start.isoformat(), "to": judged.end.isoformat(), "limit": 3}
    items, cursor, pages = [], None, 0
    while True:
        body = _get(client, raw, **params, **({"cursor": cursor} if cursor else {})).get_json()
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    ctx = dataset.build_context(judged.world.region1.id, services.pseudonym_secret())
    export = [{n: r[n] for n in NAMES}
              for c in dataset.iter_chunks(ctx, judged.start, judged.end) for r in c]
    assert items == export and len(items) == 10 and pages == 4
    assert all(set(i) == set(NAMES) for i in items)  # JSON objects: keys, not order


def test_only_active_research_keys_get_in(judged, client):
    params = {"from": judged.start.isoformat(), "to": judged.end.isoformat()}
    assert _get(client, "", **params).status_code == 401
    _, ingest_key = apikeys.create_key(judged.world.users["center"], judged.world.lab_a.id, "LIS")
    db.session.commit()
    resp = _get(client, ingest_key, **params)
    assert resp.status_code == 401 and "research" in resp.get_json()["error"]
    raw = _key(judged.world)
    row = db.session.query(ResearchApiKey).filter_by(prefix=apikeys.key_prefix(raw)).one()
    row.scopes = ["other"]
    db.session.commit()
    assert _get(client, raw, **params).status_code == 401
    row.scopes = ["research"]
    db.session.commit()
    assert _get(client, raw, **params).status_code == 200
    services.revoke_research_key(judged.world.users["center"], row.id)
    db.session.commit()
    assert _get(client, raw, **params).status_code == 401


def test_a_key_reads_its_own_region_only(judged, client):
    raw = _key(judged.world, "center2")
    body = _get(client, raw, **{"from": judged.start.isoformat(),
                                "to": judged.end.isoformat()}).get_json()
    assert {i["lab_code"] for i in body["items"]} == {judged.world.lab_c.anon_code}


@pytest.mark.parametrize("params, field", [
    ({"from": "2026-01-01"}, "to"), ({"from": "x", "to": "2026-01-01"}, "from"),
    ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
    ({"from": "2026-01-01", "to": "2026-01-31", "limit": "0"}, "limit"),
    ({"from": "2026-01-01", "to": "2026-01-31", "limit": "abc"}, "limit"),
    ({"from": "2026-01-01", "to": "2026-01-31", "cursor": "%%%"}, "cursor"),
])
def test_bad_parameters_answer_400_naming_the_field(judged, client, params, field):
    resp = _get(client, _key(judged.world), **params)
    assert resp.status_code == 400 and resp.get_json()["field"] == field


def test_openapi_document_matches_the_routes_and_the_rows(judged, client, app):
    doc = client.get(f"{API}/openapi.json").get_json()
    assert doc == openapi.document()
    routes = {r.rule[len(API):] for r in app.url_map.iter_rules()
              if r.endpoint.startswith("research_api.")}
    assert routes == set(doc["paths"])
    row_schema = doc["components"]["schemas"]["Row"]
    assert row_schema["required"] == list(NAMES)
    raw = _key(judged.world)
    item = _get(client, raw, **{"from": judged.start.isoformat(),
                                "to": judged.end.isoformat()}).get_json()["items"][0]
    kinds = {"integer": int, "number": (int, float), "string": str}
    for name, schema in row_schema["properties"].items():
        if item[name] is None:
            assert schema.get("nullable"), name
        else:
            assert isinstance(item[name], kinds[schema["type"]]), name
    cols = client.get(f"{API}/dictionary", headers={"X-API-Key": raw}).get_json()["columns"]
    assert [c["name"] for c in cols] == list(NAMES)


def test_rate_limit_is_per_research_key(tmp_path):
    from tests.fixtures.app import rate_limited_app

    with rate_limited_app(tmp_path / "rl.sqlite3", RESEARCH_API_RATELIMIT="2 per minute") as app:
        with app.app_context():
            from tests.factories import build_world
            world = build_world()
            raw_a, raw_b = _key(world), _key(world)
            assert current_app.config["RESEARCH_API_RATELIMIT"] == "2 per minute"
            db.session.remove()
        client = app.test_client()
        codes = [client.get(f"{API}/dictionary", headers={"X-API-Key": raw_a}).status_code
                 for _ in range(3)]
        other = client.get(f"{API}/dictionary", headers={"X-API-Key": raw_b})
        assert codes == [200, 200, 429] and other.status_code == 200
