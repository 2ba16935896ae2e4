"""The lab-interface API: garbage JSON batches and mangled instrument messages never 500."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_ingest_support import auth, fixture_bytes, limits_in_force, make_key

URL = "/api/ingest/v1/results"


@pytest.fixture
def glu(session, world):
    return limits_in_force(world)


@pytest.fixture
def key(world, glu):
    return make_key(world, world.lab_a)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=40),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids,
                                                              max_size=5),
    max_leaves=20)
_field_values = {
    "client_id": st.one_of(st.text(max_size=80), st.integers(), st.none()),
    "test_code": st.one_of(st.sampled_from(["GLU", "glu", "ＧＬＵ", "", "TP"]),
                           st.text(max_size=70), st.integers(), st.none()),
    "test_system_id": st.one_of(st.none(), st.integers(min_value=-5, max_value=2**70),
                                st.text(max_size=5), st.booleans()),
    "level": st.one_of(st.sampled_from(["1", "2", "L", "H", "M", "水平1", ""]), st.integers(),
                       st.text(max_size=40), st.none()),
    "qc_lot": st.one_of(st.none(), st.text(max_size=70)),
    "measured_at": st.one_of(st.none(), st.text(max_size=30),
                             st.datetimes(min_value=datetime(1, 1, 2)).map(datetime.isoformat)),
    "run_date": st.one_of(st.none(), st.dates().map(date.isoformat), st.text(max_size=12)),
    "run_no": st.one_of(st.none(), st.integers(), st.text(max_size=4), st.floats()),
    "value": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                       st.text(max_size=40), st.none(),
                       st.decimals(allow_nan=False).map(str)),
}
_item = st.fixed_dictionaries({}, optional=_field_values)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(_json, st.fixed_dictionaries({"items": st.lists(_item | _json,
                                                                      max_size=6)})))
def test_fuzzed_json_batches_never_500(client, glu, key, body):
    resp = client.post(URL, data=json.dumps(body, allow_nan=True), headers=auth(key),
                       content_type="application/json")
    assert resp.status_code in (200, 400, 413), resp.get_data(as_text=True)[:500]
    out = resp.get_json()
    if resp.status_code == 200:
        assert len(out["items"]) == len(body["items"])
        for i in out["items"]:
            assert i["status"] in ("stored", "duplicate", "error")
            assert i["status"] != "error" or i["error"]
    else:
        assert out["error"]


_SAMPLES = [fixture_bytes(n) for n in (
    "senaite_yumizen_h500.astm", "mindray_bs200e_qc_oru_r01.mllp",
    "SYNTHETIC_mindray_two_levels.hl7", "senaite_abbott_architect.astm")]


@st.composite
def _mutated(draw):
    data = bytearray(draw(st.sampled_from(_SAMPLES)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 200))]
        else:
            data[at:at] = draw(st.binary(max_size=20))
    return bytes(data)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), _mutated()),
       fmt=st.sampled_from([None, "astm", "hl7", "HL7", "x"]))
def test_fuzzed_messages_never_500(client, glu, key, data, fmt):
    url = "/api/ingest/v1/messages" + (f"?format={fmt}" if fmt else "")
    resp = client.post(url, data=data, headers=auth(key) | {
        "Content-Type": "application/octet-stream"})
    assert resp.status_code in (200, 400), resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    assert body.get("error") if resp.status_code == 400 else "items" in body
