"""Junk the issue-14 probe sent to the mini-program API: each answered 500, now a 4xx."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from qcwx.iqc.models import QcRun
from tests.miniprogram.conftest import API

RAW = "application/json"


def _body(ts, **change) -> dict:
    return {"test_system_id": ts.id, "client_id": "z5-1", "values": {"1": "5.0"}} | change


@pytest.mark.parametrize("change, field", [
    ({"values": [1, 2]}, "values"),
    ({"values": "abc"}, "values"),
    ({"values": {"1": ["5.0"]}}, "level_1"),
    ({"values": {"1": {"v": 5}}}, "level_1"),
    ({"run_date": 20261201}, "run_date"),
    ({"run_date": ["2026-12-01"]}, "run_date"),
    ({"run_date": "0001-01-01"}, "run_date"),
    ({"run_date": "9999-12-31"}, "run_date"),
    ({"client_id": 12345}, "client_id"),
    ({"client_id": ["a"]}, "client_id"),
    ({"run_no": 1.5}, "run_no"),
    ({"test_system_id": 2**70}, "test_system_id"),
    ({"test_system_id": "²"}, "test_system_id"),
])
def test_malformed_run_fields_are_400_naming_the_field(client, bound, mp_login, change, field):
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/runs", json=_body(bound.systems["a"], **change), headers=headers)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["field"] == field


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_run_no_infinity_is_refused(client, session, bound, mp_login, literal):
    headers = mp_login(bound.users["technician"])
    ts = bound.systems["a"]
    raw = ('{"test_system_id": %d, "client_id": "z5-inf", "values": {"1": "5.0"}, '
           '"run_no": %s}') % (ts.id, literal)
    resp = client.post(f"{API}/runs", data=raw, content_type=RAW, headers=headers)
    assert resp.status_code == 400 and resp.get_json()["field"] == "run_no"
    assert session.scalar(select(func.count()).select_from(QcRun)) == 0


@pytest.mark.parametrize("raw", [
    '{"test_system_id": %d, "client_id": "\\ud800", "values": {"1": "5.0"}}',
    '{"test_system_id": %d, "client_id": "ok", "values": {"\\udfff": "5.0"}}',
    '{"test_system_id": %d, "client_id": "ok", "values": {"1": "5\\ud83d"}}',
])
def test_lone_surrogates_are_400(client, session, bound, mp_login, raw):
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/runs", data=raw % bound.systems["a"].id, content_type=RAW,
                       headers=headers)
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"
    assert session.scalar(select(func.count()).select_from(QcRun)) == 0


@pytest.mark.parametrize("depth", [40, 5000, 200_000])
def test_deeply_nested_json_is_400(client, bound, mp_login, depth):
    headers = mp_login(bound.users["technician"])
    raw = "[" * depth + "]" * depth
    resp = client.post(f"{API}/runs", data=raw, content_type=RAW, headers=headers)
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"


@pytest.mark.parametrize("path", ["/bind", "/login"])
def test_surrogate_code_on_bind_and_login_is_400(client, bound, path):
    raw = '{"code": "\\ud800abc", "invite_code": "\\udc00"}'
    resp = client.post(f"{API}{path}", data=raw, content_type=RAW)
    assert resp.status_code == 400 and resp.get_json()["error"]


@pytest.mark.parametrize("path", [
    "/test-systems/{big}/runs", "/test-systems/{big}/chart-data"])
@pytest.mark.parametrize("big", [2**31, 2**63, 10**30, int("9" * 400)])
def test_huge_ids_in_urls_are_404(client, bound, mp_login, path, big):
    headers = mp_login(bound.users["technician"])
    resp = client.get(API + path.format(big=big), headers=headers)
    assert resp.status_code == 404
    ack = client.post(f"{API}/alerts/{big}/ack", headers=headers)
    assert ack.status_code == 404


# "", " 5", "5 ": accepted before although the document says integer (found by schemathesis)
@pytest.mark.parametrize("arg", ["²", "99999999999", "9" * 400, "-1", "1e3", "", " 5", "5 "])
def test_query_integers_are_ascii_and_bounded(client, bound, mp_login, arg):
    headers = mp_login(bound.users["technician"])
    ts = bound.systems["a"]
    resp = client.get(f"{API}/test-systems/{ts.id}/chart-data", query_string={"days": arg},
                      headers=headers)
    assert resp.status_code == 400 and resp.get_json()["field"] == "days"


@pytest.mark.parametrize("path", ["/alerts", "/test-systems/{ts}/runs",
                                  "/test-systems/{ts}/chart-data"])
def test_a_repeated_integer_query_argument_is_400(client, bound, mp_login, path):
    """Regression (schemathesis): ``?limit=1&limit=2`` silently took the first value."""
    headers = mp_login(bound.users["technician"])
    name = "days" if path.endswith("chart-data") else "limit"
    url = API + path.format(ts=bound.systems["a"].id)
    resp = client.get(url, query_string=[(name, "1"), (name, "2")], headers=headers)
    assert resp.status_code == 400 and resp.get_json()["field"] == name
    assert client.get(url, query_string={name: "2"}, headers=headers).status_code == 200


@pytest.mark.parametrize("junk", [{"values": [1]}, {"run_no": "x"}, {"client_id": None}])
def test_a_run_for_another_labs_test_system_is_404_whatever_the_body(client, bound, mp_login,
                                                                       junk):
    """The declared body is checked after the scope, as the web entry does (permission matrix)."""
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/runs", json=_body(bound.systems["b"], **junk), headers=headers)
    assert resp.status_code == 404 and resp.get_json()["field"] == "test_system_id"


@pytest.mark.parametrize("junk", [{"values": [1]}, {"client_id": None}, {}])
def test_a_run_from_a_role_that_cannot_submit_is_403_whatever_the_body(client, session, bound,
                                                                         mp_login, junk):
    """The role is checked before the rest of the body, as on the web (permission matrix)."""
    center = bound.users["center"]
    center.mp_openid = "oCenterMp000000000000000000"
    session.commit()
    resp = client.post(f"{API}/runs", json=_body(bound.systems["a"], **junk),
                       headers=mp_login(center))
    assert resp.status_code == 403 and "不能录入" in resp.get_json()["error"]
