"""The mini-program API end to end in-process: login, bind, scan, submit, history, charts,
alerts, subscriptions — each answer also checked against the OpenAPI schema it documents."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jwt
import pytest
from sqlalchemy import select

from miniprogram_api.auth import signing_key
from miniprogram_api.openapi import openapi_document
from qcwx.alerts.models import OutboxMessage
from qcwx.errors import NotFound
from qcwx.labels.services import label_url
from qcwx.timeutil import local_today, utcnow
from qcwx.wechat.models import SubscribeConsent, WechatInvite
from qcwx.wechat.services import create_invite
from tests.fixtures.alerts import MEAN, MP_TEMPLATE, SD
from tests.miniprogram.conftest import API
from tests.miniprogram.schema_check import errors

DOC = openapi_document()


def checked(resp, path: str, method: str = "post", status: int | None = None):
    """Assert the status and that the body matches the documented schema; return the JSON."""
    body = resp.get_json()
    if status is not None:
        assert resp.status_code == status, body
    documented = DOC["paths"][path][method]["responses"].get(str(resp.status_code))
    assert documented is not None, f"{method.upper()} {path} does not document {resp.status_code}"
    schema = documented["content"]["application/json"]["schema"]
    assert errors(body, schema, DOC) == []
    return body


def run_body(ts, z1, z2=0.0, client_id="mp-1", **extra):
    return {"test_system_id": ts.id, "client_id": client_id,
            "values": {"1": f"{MEAN[1] + z1 * SD[1]:.3f}", "2": f"{MEAN[2] + z2 * SD[2]:.3f}"},
            **extra}


# ---------------------------------------------------------------- login and binding
def test_login_returns_a_jwt_for_a_bound_openid(client, bound, fake_wechat, app):
    tech = bound.users["technician"]
    code = fake_wechat.mint_mp_code(tech.mp_openid)
    body = checked(client.post(f"{API}/login", json={"code": code}), "/login", status=200)
    assert body["user"]["id"] == tech.id and body["user"]["role_label"] == "检验技师"
    assert body["user"]["lab"]["full_name"] == bound.lab_a.full_name
    claims = jwt.decode(body["token"], signing_key(), algorithms=["HS256"], audience="qcwx-mp")
    assert claims["sub"] == str(tech.id) and claims["exp"] - claims["iat"] == 604800
    assert body["expires_in"] == app.config["JWT_TTL"]
    me = client.get(f"{API}/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert checked(me, "/me", "get", 200)["user"]["username"] == tech.username
    assert [c["path"] for c in fake_wechat.calls if "jscode2session" in c["path"]]


def test_unknown_openid_must_bind_first(client, bound, fake_wechat):
    code = fake_wechat.mint_mp_code("oStrangerOpenid000000000000")
    body = checked(client.post(f"{API}/login", json={"code": code}), "/login", status=403)
    assert body["error"] == "该微信尚未绑定账号" and body["bind_required"] is True
    assert body["openid_hint"] == "oStr…0000"


def test_a_supervisor_cannot_take_over_another_account_through_bind(client, session, bound,
                                                                     fake_wechat):
    """Issue 14: a supervisor invited a fellow supervisor and bound its own phone to them."""
    sup, sup2, tech = (bound.users[k] for k in ("supervisor", "supervisor_unbound", "technician"))
    with pytest.raises(NotFound):
        create_invite(sup, sup2)  # an equal rank: no invite at all
    forged = WechatInvite(code="FRGD2345", user_id=sup2.id, created_by_id=sup.id,
                          created_at=utcnow(), expires_at=utcnow() + timedelta(days=1))
    own = create_invite(sup, tech)  # a lower rank, but the technician's phone is bound already
    session.add(forged)
    session.commit()
    resp = client.post(f"{API}/bind", json={"code": fake_wechat.mint_mp_code("oSupPhone"),
                                            "invite_code": forged.code})
    assert checked(resp, "/bind", status=403)["field"] == "invite_code"
    resp = client.post(f"{API}/bind", json={"code": fake_wechat.mint_mp_code("oSupPhone"),
                                            "invite_code": own.code})
    assert "请先解除绑定" in checked(resp, "/bind", status=409)["error"]
    session.expire_all()
    assert sup2.mp_openid is None and tech.mp_openid == f"oMp{tech.id:025d}"
    assert session.get(WechatInvite, own.id).used_at is None


@pytest.mark.parametrize("payload, field, message", [
    ({}, "code", "请填写登录凭证 code"),
    ({"code": 42}, "code", "登录凭证 code必须是字符串"),
    ({"code": "not-a-real-code"}, "code", "登录凭证无效或已使用，请重新登录"),
])
def test_login_rejects_bad_codes_in_chinese(client, bound, fake_wechat, payload, field,
                                            message):
    body = checked(client.post(f"{API}/login", json=payload), "/login", status=400)
    assert body == {"error": message, "field": field}


def test_login_needs_a_json_object(client, bound):
    resp = client.post(f"{API}/login", data="code=1", content_type="text/plain")
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"


def test_a_used_code_is_refused(client, bound, fake_wechat):
    code = fake_wechat.mint_mp_code(bound.users["technician"].mp_openid)
    assert client.post(f"{API}/login", json={"code": code}).status_code == 200
    assert client.post(f"{API}/login", json={"code": code}).status_code == 400


def test_bind_with_an_invite_then_login(client, session, bound, fake_wechat):
    tech_b = bound.users["technician_b"]
    invite = create_invite(bound.users["center"], tech_b)
    session.commit()
    openid = "oNewPhoneOpenid000000000000"
    body = checked(client.post(f"{API}/bind", json={
        "code": fake_wechat.mint_mp_code(openid), "invite_code": invite.code.lower()}),
        "/bind", status=200)
    assert body["user"]["id"] == tech_b.id and body["token"]
    session.expire_all()
    assert tech_b.mp_openid == openid and tech_b.wechat_openid is None
    assert session.get(WechatInvite, invite.id).used_openid == openid
    again = client.post(f"{API}/bind", json={"code": fake_wechat.mint_mp_code("oOther"),
                                             "invite_code": invite.code})
    assert checked(again, "/bind", status=409)["field"] == "invite_code"
    login = client.post(f"{API}/login", json={"code": fake_wechat.mint_mp_code(openid)})
    assert login.status_code == 200 and login.get_json()["user"]["id"] == tech_b.id


def test_bind_refuses_unknown_expired_and_taken(client, session, bound, fake_wechat):
    resp = client.post(f"{API}/bind", json={"code": fake_wechat.mint_mp_code("oX"),
                                            "invite_code": "ZZZZ2222"})
    assert checked(resp, "/bind", status=404)["error"] == "邀请码不存在，请核对后重新输入"
    missing = client.post(f"{API}/bind", json={"code": "x"})
    assert missing.status_code == 400 and missing.get_json()["field"] == "invite_code"
    expired = create_invite(bound.users["center"], bound.users["technician_b"])
    expired.expires_at = expired.created_at - timedelta(seconds=1)
    session.commit()
    resp = client.post(f"{API}/bind", json={"code": fake_wechat.mint_mp_code("oY"),
                                            "invite_code": expired.code})
    assert checked(resp, "/bind", status=410)["field"] == "invite_code"
    taken = create_invite(bound.users["center"], bound.users["technician_b"])
    session.commit()
    resp = client.post(f"{API}/bind", json={  # this phone already belongs to the technician
        "code": fake_wechat.mint_mp_code(bound.users["technician"].mp_openid),
        "invite_code": taken.code})
    assert resp.status_code == 409 and "已绑定账号" in resp.get_json()["error"]


# ---------------------------------------------------------------- tokens
def test_every_endpoint_requires_a_token(client, bound):
    ts = bound.systems["a"]
    for method, path in [("get", "/me"), ("post", "/scan"), ("post", "/runs"),
                         ("get", f"/test-systems/{ts.id}/runs"),
                         ("get", f"/test-systems/{ts.id}/chart-data"), ("get", "/alerts"),
                         ("post", "/alerts/1/ack"), ("post", "/subscriptions")]:
        resp = getattr(client, method)(f"{API}{path}", json={})
        assert resp.status_code == 401, path
        assert resp.get_json() == {"error": "请先登录", "field": "Authorization"}


def test_expired_forged_and_revoked_tokens_are_refused(client, session, bound, app, mp_login):
    tech = bound.users["technician"]
    now = datetime.now(timezone.utc)
    old = jwt.encode({"sub": str(tech.id), "oid": tech.mp_openid, "aud": "qcwx-mp",
                      "iat": now - timedelta(days=9), "exp": now - timedelta(days=2)},
                     signing_key(), algorithm="HS256")
    resp = client.get(f"{API}/me", headers={"Authorization": f"Bearer {old}"})
    assert resp.status_code == 401 and resp.get_json()["error"] == "登录已过期，请重新登录"
    forged = jwt.encode({"sub": str(tech.id), "oid": tech.mp_openid, "aud": "qcwx-mp",
                         "exp": now + timedelta(days=1)}, b"n" * 32, algorithm="HS256")
    resp = client.get(f"{API}/me", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401 and resp.get_json()["error"] == "登录凭证无效，请重新登录"
    headers = mp_login(tech)
    tech.mp_openid = None  # unbound: every token issued to that phone stops working
    session.commit()
    resp = client.get(f"{API}/me", headers=headers)
    assert resp.status_code == 401 and "解绑" in resp.get_json()["error"]


def test_a_token_is_verified_once_per_process_and_its_expiry_on_every_use(
        app, bound, monkeypatch):
    """The limiter's bucket, the view's check and the phone's next requests share one
    signature check (issue 14); expiry, a refused token and a changed key are never cached."""
    from miniprogram_api import auth

    tech = bound.users["technician"]
    calls = []
    real = jwt.decode
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    auth._verified.cache_clear()  # an earlier test may have issued the same token this second
    with app.test_request_context():
        token = auth.issue_token(tech)["token"]
        assert auth.user_id_from_token(token) == tech.id  # the limiter's bucket
        assert auth.user_from_header(f"Bearer {token}").id == tech.id  # the view
    with app.test_request_context():  # the phone's next request
        assert auth.user_from_header(f"Bearer {token}").id == tech.id
        assert len(calls) == 1
        for _ in range(2):
            with pytest.raises(auth.Unauthorized, match="无效"):
                auth.user_from_header("Bearer not-a-token")
        assert len(calls) == 3  # a refused token is checked each time, never kept
        with pytest.raises(TypeError):  # the kept claims cannot be changed by a caller
            auth._claims(token)["exp"] = 2**40
        exp = auth._claims(token)["exp"]
        monkeypatch.setattr(auth.time, "time", lambda: exp)  # PyJWT: expired at exp itself
        with pytest.raises(auth.Unauthorized, match="过期"):
            auth.user_id_from_token(token)
        monkeypatch.setattr(auth.time, "time", lambda: exp - 1)
        assert auth.user_id_from_token(token) == tech.id
        monkeypatch.setitem(app.config, "SECRET_KEY", "another-secret-of-at-least-32-bytes!")
        with pytest.raises(auth.Unauthorized, match="无效"):  # checked again, with the new key
            auth.user_id_from_token(token)
        assert len(calls) == 4


# ---------------------------------------------------------------- scan
def test_scan_of_a_label_returns_the_test_system_context(client, bound, mp_login):
    ts = bound.systems["a"]
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/scan", json={"payload": label_url(ts)}, headers=headers)
    body = checked(resp, "/scan", status=200)["test_system"]
    assert body["id"] == ts.id and body["analyte"]["name"] == "葡萄糖"
    assert [(lv["name"], lv["target_mean"], lv["target_sd"]) for lv in body["levels"]] == [
        ("水平1", 5.0, 0.2), ("水平2", 15.0, 0.5)]
    assert body["today"] == local_today().isoformat() and body["next_run_no"] == 1
    assert body["today_runs"] == [] and body["qc_lot"]["lot_number"] == ts.qc_lot.lot_number
    bare = client.post(f"{API}/scan", json={"payload": label_url(ts).rsplit("/", 1)[1]},
                       headers=headers)
    assert bare.status_code == 200


def test_scan_refuses_foreign_revoked_and_garbage_labels(client, session, bound, mp_login):
    headers = mp_login(bound.users["technician"])
    other = client.post(f"{API}/scan", json={"payload": label_url(bound.systems["c"])},
                        headers=headers)
    assert checked(other, "/scan", status=404)["error"]  # outside scope: same as not found
    junk = client.post(f"{API}/scan", json={"payload": "https://evil.example.com/s/abc"},
                       headers=headers)
    assert checked(junk, "/scan", status=400) == {"error": "不是本平台的质控标签",
                                                   "field": "payload"}
    url = label_url(bound.systems["a"])
    bound.systems["a"].label_version += 1
    session.commit()
    revoked = client.post(f"{API}/scan", json={"payload": url}, headers=headers)
    assert checked(revoked, "/scan", status=410)["error"] == "标签已失效，请重新打印"
    assert client.post(f"{API}/scan", json={}, headers=headers).get_json()["field"] == "payload"


# ---------------------------------------------------------------- runs
def test_submit_a_rejecting_run_alerts_the_supervisors(client, session, bound, mp_login,
                                                       fake_wechat):
    ts = bound.systems["a"]
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/runs", json=run_body(ts, 3.5), headers=headers)
    body = checked(resp, "/runs", status=201)
    assert body["status"] == "reject" and body["duplicate"] is False
    assert "1-3s" in [r["rule"] for r in body["rules"]]
    sent = [m for m in fake_wechat.messages if m["kind"] == "template"]
    assert sorted(m["touser"] for m in sent) == sorted(
        [bound.users["supervisor"].wechat_openid, bound.users["supervisor2"].wechat_openid])
    assert sent[0]["url"].endswith(f"/runs/{body['run_id']}")
    from qcwx.iqc.models import Submission

    assert session.scalars(select(Submission.channel)).all() == ["mp"]
    dup = client.post(f"{API}/runs", json=run_body(ts, 3.5), headers=headers)
    assert checked(dup, "/runs", status=200)["duplicate"] is True
    assert len(session.scalars(select(OutboxMessage)).all()) == 1
    clash = client.post(f"{API}/runs", json=run_body(ts, 0.5), headers=headers)
    assert checked(clash, "/runs", status=409)["field"] == "client_id"


@pytest.mark.parametrize("change, field", [
    ({"values": {}}, "values"),
    ({"values": "5.1"}, "values"),
    ({"values": {"1": "abc"}}, "level_1"),
    ({"values": {"9": "5.1"}}, "level"),
    ({"client_id": None}, "client_id"),
    ({"client_id": "x" * 65}, "client_id"),
    ({"test_system_id": "abc"}, "test_system_id"),
    ({"test_system_id": None}, "test_system_id"),
    ({"run_date": "2026-13-01"}, "run_date"),
    ({"run_date": "2999-01-01"}, "run_date"),
    ({"run_no": 0}, "run_no"),
])
def test_submit_rejects_bad_input_naming_the_field(client, bound, mp_login, change, field):
    headers = mp_login(bound.users["technician"])
    body = run_body(bound.systems["a"], 0.1) | change
    resp = client.post(f"{API}/runs", json=body, headers=headers)
    assert resp.status_code == 400
    answer = checked(resp, "/runs")
    assert answer["field"] == field and answer["error"]


def test_submit_outside_scope_is_404(client, bound, mp_login):
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/runs", json=run_body(bound.systems["b"], 0.1), headers=headers)
    assert checked(resp, "/runs", status=404)["error"] == "检测系统不存在或无权访问"


def test_history_and_chart_data(client, bound, mp_login):
    ts = bound.systems["a"]
    headers = mp_login(bound.users["technician"])
    yesterday = (local_today() - timedelta(days=1)).isoformat()
    client.post(f"{API}/runs", json=run_body(ts, 0.5, -0.5, "c1", run_date=yesterday),
                headers=headers)
    client.post(f"{API}/runs", json=run_body(ts, 3.5, 0.1, "c2"), headers=headers)
    path = "/test-systems/{ts_id}/runs"
    body = checked(client.get(f"{API}/test-systems/{ts.id}/runs?limit=5", headers=headers),
                   path, "get", 200)
    assert [r["status"] for r in body["runs"]] == ["reject", "accept"]
    newest = body["runs"][0]
    assert newest["values"][0]["level"] == "水平1" and round(newest["values"][0]["z"], 2) == 3.5
    assert "1-3s" in newest["rules"] and newest["values"][0]["value"] == "5.700"
    one = client.get(f"{API}/test-systems/{ts.id}/runs?limit=1", headers=headers).get_json()
    assert len(one["runs"]) == 1
    for bad in ("abc", "0", "101"):
        resp = client.get(f"{API}/test-systems/{ts.id}/runs?limit={bad}", headers=headers)
        assert checked(resp, path, "get", 400)["field"] == "limit"
    chart_path = "/test-systems/{ts_id}/chart-data"
    chart = checked(client.get(f"{API}/test-systems/{ts.id}/chart-data?days=7",
                               headers=headers), chart_path, "get", 200)
    level1 = chart["levels"][0]
    assert (level1["level"], level1["mean"], level1["sd"]) == ("水平1", 5.0, 0.2)
    assert level1["values"] == [5.1, 5.7] and level1["status"] == ["accept", "reject"]
    assert [round(z, 2) for z in level1["z"]] == [0.5, 3.5] and "1-3s" in level1["rules"][1]
    assert len(level1["labels"]) == 2 and chart["start"] == (
        local_today() - timedelta(days=6)).isoformat()
    resp = client.get(f"{API}/test-systems/{ts.id}/chart-data?days=400", headers=headers)
    assert checked(resp, chart_path, "get", 400)["field"] == "days"
    other = bound.systems["c"]
    for url in (f"/test-systems/{other.id}/runs", f"/test-systems/{other.id}/chart-data"):
        assert client.get(f"{API}{url}", headers=headers).status_code == 404


# ---------------------------------------------------------------- alerts
def test_alerts_list_and_ack(client, session, bound, mp_login, fake_wechat):
    ts = bound.systems["a"]
    tech_headers = mp_login(bound.users["technician"])
    client.post(f"{API}/runs", json=run_body(ts, 3.5), headers=tech_headers)
    body = checked(client.get(f"{API}/alerts", headers=tech_headers), "/alerts", "get", 200)
    [alert] = body["alerts"]
    assert alert["kind"] == "run_reject" and alert["kind_label"] == "质控失控"
    assert alert["delivery_status"] == "sent" and alert["acked"] is False
    assert alert["title"].startswith("葡萄糖质控失控")
    assert alert["created_at"].endswith("+08:00")
    path = "/alerts/{alert_id}/ack"
    acked = checked(client.post(f"{API}/alerts/{alert['id']}/ack", headers=tech_headers), path,
                    status=200)["alert"]
    assert acked["acked"] is True and acked["acked_by"] == bound.users["technician"].display_name
    sup = bound.users["supervisor"]
    sup.mp_openid = "oSupMpOpenid000000000000000"
    session.commit()
    again = client.post(f"{API}/alerts/{alert['id']}/ack", headers=mp_login(sup)).get_json()
    assert again["alert"]["acked_by"] == bound.users["technician"].display_name  # first kept
    tech_b = bound.users["technician_b"]
    tech_b.mp_openid = "oTechBOpenid000000000000000"
    session.commit()
    other = mp_login(tech_b)
    assert client.get(f"{API}/alerts", headers=other).get_json() == {"alerts": []}
    resp = client.post(f"{API}/alerts/{alert['id']}/ack", headers=other)
    assert checked(resp, path, status=404)["error"]
    assert client.get(f"{API}/alerts?limit=x", headers=other).get_json()["field"] == "limit"


# ---------------------------------------------------------------- subscriptions
def test_subscriptions_record_one_consent_per_accept(client, session, bound, mp_login):
    headers = mp_login(bound.users["technician"])
    body = {"template_ids": [MP_TEMPLATE], "results": {MP_TEMPLATE: "accept"}}
    answer = checked(client.post(f"{API}/subscriptions", json=body, headers=headers),
                     "/subscriptions", status=200)
    assert answer == {"recorded": 1, "unused": {MP_TEMPLATE: 1}}
    client.post(f"{API}/subscriptions", json=body, headers=headers)
    rejected = client.post(f"{API}/subscriptions", headers=headers, json={
        "template_ids": [MP_TEMPLATE], "results": {MP_TEMPLATE: "reject"}}).get_json()
    assert rejected == {"recorded": 0, "unused": {MP_TEMPLATE: 2}}
    assert len(session.scalars(select(SubscribeConsent)).all()) == 2


@pytest.mark.parametrize("body, field", [
    ({"results": {MP_TEMPLATE: "accept"}}, "template_ids"),
    ({"template_ids": [], "results": {}}, "template_ids"),
    ({"template_ids": [MP_TEMPLATE]}, "results"),
    ({"template_ids": [MP_TEMPLATE], "results": {"OTHER": "accept"}}, "results"),
    ({"template_ids": ["UNKNOWN"], "results": {"UNKNOWN": "accept"}}, "template_ids"),
    ({"template_ids": [MP_TEMPLATE], "results": {MP_TEMPLATE: "maybe"}}, "results"),
])
def test_subscriptions_reject_bad_input(client, bound, mp_login, body, field):
    resp = client.post(f"{API}/subscriptions", json=body, headers=mp_login(
        bound.users["technician"]))
    assert checked(resp, "/subscriptions", status=400)["field"] == field
