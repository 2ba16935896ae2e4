"""The OpenAPI document stays true: same routes as the blueprint, examples and real answers valid.

Validation runs twice: with a small built-in validator for the schema subset the document
uses (always), and with ``jsonschema`` / ``openapi-spec-validator`` (the latter pinned in
requirements-test.txt; those two tests skip without them). The document is OpenAPI 3.1,
its schemas generated from the pydantic models (see ``tests/integration/test_api_schemas.py``).
"""

from __future__ import annotations

import copy
import io
from datetime import date, timedelta

import pytest

from qcwx.extensions import db
from qcwx.ingest import openapi
from qcwx.ingest.models import TestCodeMapping
from qcwx.timeutil import local_today
from tests.integration.test_ingest_support import auth, fixture_bytes, make_key, set_limits

DOC = openapi.document()
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def resolve(schema: dict) -> dict:
    """Inline ``$ref``s (and turn a 3.0 ``nullable``, should one reappear, into JSON Schema)."""
    if isinstance(schema, list):
        return [resolve(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return resolve(DOC["components"]["schemas"][name])
    out = {k: resolve(v) if k != "properties" else {p: resolve(s) for p, s in v.items()}
           for k, v in schema.items() if k not in ("example", "description")}
    if out.pop("nullable", False):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def check(instance, schema: dict, path: str = "$") -> list[str]:
    """Return the problems of ``instance`` against a resolved schema (the subset used here)."""
    problems: list[str] = []
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema["oneOf"]
        matches = sum(not check(instance, s, path) for s in options)
        if matches == 0 or ("oneOf" in schema and matches > 1):
            problems.append(f"{path}: matches {matches} of {len(options)} alternatives")
        return problems
    for sub in schema.get("allOf", []):
        problems += check(instance, sub, path)
    kind = schema.get("type")
    if kind == "integer":
        if not isinstance(instance, int) or isinstance(instance, bool):
            return [f"{path}: {instance!r} is not an integer"]
    elif kind == "number":
        if not isinstance(instance, (int, float)) or isinstance(instance, bool):
            return [f"{path}: {instance!r} is not a number"]
    elif kind and not isinstance(instance, TYPES[kind]):
        return [f"{path}: {type(instance).__name__} is not {kind}"]
    if "enum" in schema and instance not in schema["enum"]:
        problems.append(f"{path}: {instance!r} not in {schema['enum']}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0) or len(instance) > schema.get(
                "maxLength", 10**9):
            problems.append(f"{path}: length {len(instance)} out of bounds")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if instance < schema.get("minimum", -10**18) or instance > schema.get("maximum", 10**18):
            problems.append(f"{path}: {instance} out of bounds")
    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                problems.append(f"{path}: missing {name}")
        for name, sub in schema.get("properties", {}).items():
            if name in instance:
                problems += check(instance[name], sub, f"{path}.{name}")
    if isinstance(instance, list):
        if not schema.get("minItems", 0) <= len(instance) <= schema.get("maxItems", 10**9):
            problems.append(f"{path}: {len(instance)} items out of bounds")
        for i, value in enumerate(instance):
            problems += check(value, schema.get("items", {}), f"{path}[{i}]")
    return problems


def validate(instance, schema: dict) -> None:
    resolved = resolve(schema)
    assert check(instance, resolved) == []
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(instance, resolved)


def response_schema(path: str, method: str, status: int) -> dict:
    responses = DOC["paths"][path][method]["responses"]
    return responses[str(status)]["content"]["application/json"]["schema"]


def test_documented_paths_and_methods_equal_the_blueprint_routes(app):
    routes: dict[str, list[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("ingest_api."):
            assert rule.rule.startswith(openapi.BASE_PATH)
            routes[rule.rule[len(openapi.BASE_PATH):]] = sorted(
                m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    assert routes == {path: sorted(ops) for path, ops in DOC["paths"].items()}
    assert DOC["servers"] == [{"url": openapi.BASE_PATH}]


def test_the_served_document_is_the_modules(client):
    resp = client.get("/api/ingest/v1/openapi.json")
    assert resp.status_code == 200 and resp.get_json() == DOC


def test_every_ref_resolves_and_every_operation_is_described():
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(DOC):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in DOC["components"]["schemas"], ref
    for path, ops in DOC["paths"].items():
        for op in ops.values():
            assert op["summary"] and op["operationId"] and "200" in op["responses"], path


def test_examples_validate_against_their_schemas():
    body = DOC["paths"]["/results"]["post"]["requestBody"]["content"]["application/json"]
    validate(body["example"], body["schema"])
    bad = copy.deepcopy(body["example"])
    del bad["items"][0]["client_id"]
    assert check(bad, resolve(body["schema"]))  # the validator does catch a broken example
    schema = resolve(body["schema"])
    assert check({"items": [{"client_id": "x", "value": True}]}, schema)


def test_document_is_valid_openapi_3():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(copy.deepcopy(DOC))


def test_example_validates_with_jsonschema_too():
    jsonschema = pytest.importorskip("jsonschema")
    body = DOC["paths"]["/results"]["post"]["requestBody"]["content"]["application/json"]
    jsonschema.validate(body["example"], resolve(body["schema"]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"items": []}, resolve(body["schema"]))


@pytest.fixture
def live_data(session, world):
    start = local_today() - timedelta(days=90)
    set_limits(world.systems["a"], world.users["supervisor"], {1: 5.0, 2: 15.0},
               {1: 0.2, 2: 0.5}, start)
    db.session.add(TestCodeMapping(lab_id=world.lab_a.id, source_code="test1",
                                   qc_lot_number="", test_system_id=world.systems["a"].id))
    db.session.commit()
    return make_key(world, world.lab_a)


def test_real_answers_validate_against_the_response_schemas(client, live_data):
    key = live_data
    example = DOC["paths"]["/results"]["post"]["requestBody"]["content"]["application/json"][
        "example"]
    yesterday = (local_today() - timedelta(days=1)).isoformat()
    items = [dict(i, measured_at=f"{yesterday}T08:30:00+08:00") for i in example["items"]]
    items.append({"client_id": "bad", "test_code": "NOPE", "level": 1, "value": "1",
                  "run_date": yesterday})
    answers = [
        ("/results", "post", client.post("/api/ingest/v1/results", json={"items": items},
                                         headers=auth(key))),
        ("/messages", "post", client.post("/api/ingest/v1/messages", data=fixture_bytes(
            "mindray_bs200e_qc_oru_r01.mllp"), headers=auth(key))),
        ("/messages", "post", client.post("/api/ingest/v1/messages", data=b"\x00garbage",
                                          headers=auth(key))),
        ("/files", "post", client.post("/api/ingest/v1/files", data={"file": (io.BytesIO(
            f"日期,项目,水平,结果\n{yesterday},GLU,1,x\n{date.today()},GLU,9,5\n".encode()),
            "a.csv")}, headers=auth(key), content_type="multipart/form-data")),
        ("/me", "get", client.get("/api/ingest/v1/me", headers=auth(key))),
        ("/results", "post", client.post("/api/ingest/v1/results", json={"items": []},
                                         headers={"X-API-Key": "nope"})),
    ]
    seen = set()
    for path, method, resp in answers:
        validate(resp.get_json(), response_schema(path, method, resp.status_code))
        seen.add((path, resp.status_code))
    assert {("/results", 200), ("/messages", 200), ("/messages", 400), ("/files", 200),
            ("/me", 200), ("/results", 401)} == seen
    stored = answers[0][2].get_json()
    assert [i["status"] for i in stored["items"]] == ["stored", "stored", "error"]
