"""The OpenAPI document matches the blueprint: same paths and methods, valid examples."""

from __future__ import annotations

import re

from miniprogram_api.openapi import API_PREFIX, openapi_document
from tests.miniprogram.schema_check import errors

DOC = openapi_document()
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def blueprint_routes(app) -> dict[str, set[str]]:
    """Return {OpenAPI path: methods} of every rule of the ``mp`` blueprint."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("mp."):
            assert rule.rule.startswith(API_PREFIX)
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule[len(API_PREFIX):])
            routes.setdefault(path, set()).update(
                m.lower() for m in rule.methods - IGNORED_METHODS)
    return routes


def test_every_route_is_documented_and_nothing_else(app):
    routes = blueprint_routes(app)
    documented = {path: set(ops) for path, ops in DOC["paths"].items()}
    assert routes == documented


def test_path_parameters_are_declared(app):
    for path, ops in DOC["paths"].items():
        names = set(re.findall(r"{([a-z_]+)}", path))
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path


def _examples():
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                yield f"{method} {path} request", body
            for status, answer in op["responses"].items():
                media = answer.get("content", {}).get("application/json")
                if media:
                    yield f"{method} {path} {status}", media


def test_every_example_validates_against_its_schema():
    checked = 0
    for where, media in _examples():
        assert "schema" in media, where
        if "example" in media:
            assert errors(media["example"], media["schema"], DOC) == [], where
            checked += 1
    assert checked >= 25


def test_every_operation_answers_errors_as_error_objects():
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            if op.get("security"):
                assert "401" in op["responses"], f"{method} {path}"
            if "requestBody" in op:
                assert "400" in op["responses"], f"{method} {path}"


def test_every_operation_with_query_parameters_documents_its_400():
    """Regression: ``GET /alerts?limit=x`` answered a 400 the document did not list."""
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            if any(p["in"] == "query" for p in op.get("parameters", [])):
                assert "400" in op["responses"], f"{method} {path}"


def test_a_bad_alert_limit_is_the_documented_400(client, bound, mp_login):
    headers = mp_login(bound.users["technician"])
    resp = client.get(f"{API_PREFIX}/alerts", query_string={"limit": "0"}, headers=headers)
    assert resp.status_code == 400
    schema = DOC["paths"]["/alerts"]["get"]["responses"]["400"]["content"][
        "application/json"]["schema"]
    assert errors(resp.get_json(), schema, DOC) == []
    assert resp.get_json() == {"error": "条数 limit必须在 1–200 之间", "field": "limit"}


def test_the_document_is_served(client):
    resp = client.get(f"{API_PREFIX}/openapi.json")
    assert resp.status_code == 200 and resp.get_json() == DOC
    assert DOC["openapi"] == "3.1.0" and DOC["servers"] == [{"url": API_PREFIX}]


def test_schema_checker_catches_mistakes():
    schema = {"$ref": "#/components/schemas/Session"}
    good = {"token": "t", "expires_in": 1, "user": {
        "id": 1, "username": "u", "display_name": "d", "role": "technician", "role_label": "技师",
        "lab": None}}
    assert errors(good, schema, DOC) == []
    assert errors({**good, "expires_in": "1"}, schema, DOC)
    assert errors({**good, "extra": 1}, schema, DOC)
    assert errors({"token": "t", "user": good["user"]}, schema, DOC)
    assert errors({**good, "user": {**good["user"], "role": "boss"}}, schema, DOC)
