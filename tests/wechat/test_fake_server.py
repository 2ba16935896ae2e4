"""The fake WeChat answers like WeChat: tokens, errcodes, messages, OAuth, codes, QR images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from qcwx.wechat.fake_server import FakeWeChatServer, RemoteFakeWeChat
from tests.fixtures.wechat import APPID_SECRETS, WECHAT_SETTINGS
from tests.wechat.wx import query_of

APPID, SECRET = WECHAT_SETTINGS["WECHAT_APPID"], WECHAT_SETTINGS["WECHAT_SECRET"]
MP_APPID = WECHAT_SETTINGS["MP_APPID"]


def _token(fake, appid=APPID, secret=SECRET):
    return requests.get(f"{fake.url}/cgi-bin/token", params={
        "grant_type": "client_credential", "appid": appid, "secret": secret}, timeout=5).json()


def _send(fake, token, body: bytes | str):
    return requests.post(f"{fake.url}/cgi-bin/message/template/send",
                         params={"access_token": token}, data=body, timeout=5).json()


def test_token_is_issued_and_a_refresh_invalidates_the_old_one(fake_wechat):
    first = _token(fake_wechat)
    assert first["expires_in"] == 7200 and first["access_token"]
    second = _token(fake_wechat)
    body = json.dumps({"touser": "o1", "template_id": "T", "data": {"k": {"value": "v"}}})
    assert _send(fake_wechat, first["access_token"], body)["errcode"] == 40001
    assert _send(fake_wechat, second["access_token"], body)["errcode"] == 0
    assert fake_wechat.refresh_count == 2


def test_token_errcodes_for_bad_credentials(fake_wechat):
    assert _token(fake_wechat, appid="wx_unknown")["errcode"] == 40013
    assert _token(fake_wechat, secret="wrong")["errcode"] == 40125
    bad_grant = requests.get(f"{fake_wechat.url}/cgi-bin/token", params={
        "grant_type": "password", "appid": APPID, "secret": SECRET}, timeout=5).json()
    assert bad_grant["errcode"] == 40002
    assert fake_wechat.refresh_count == 0


def test_expired_and_missing_token(fake_wechat):
    token = _token(fake_wechat)["access_token"]
    fake_wechat.expire_tokens()
    body = json.dumps({"touser": "o1", "template_id": "T", "data": {"k": {"value": "v"}}})
    assert _send(fake_wechat, token, body)["errcode"] == 42001
    assert _send(fake_wechat, "", body)["errcode"] == 41001


def test_template_send_validates_body_read_from_raw_data(fake_wechat):
    token = _token(fake_wechat)["access_token"]
    # wechatpy sends JSON bytes without a JSON content type: the fake must still read them.
    good = json.dumps({"touser": "oUser", "template_id": "TPL", "url": "http://x/1",
                       "data": {"first": {"value": "失控"}}}, ensure_ascii=False).encode()
    ok = _send(fake_wechat, token, good)
    assert ok["errcode"] == 0 and ok["msgid"]
    assert fake_wechat.messages[-1] | {"time": 0} == {
        "kind": "template", "touser": "oUser", "template_id": "TPL", "url": "http://x/1",
        "data": {"first": {"value": "失控"}}, "msgid": ok["msgid"], "time": 0}
    assert _send(fake_wechat, token, b"{not json")["errcode"] == 47001
    assert _send(fake_wechat, token, json.dumps({"template_id": "T", "data": {}}))["errcode"] \
        == 40003
    assert _send(fake_wechat, token, json.dumps({"touser": "o", "data": {"a": {"value": "v"}}})
                 )["errcode"] == 40037
    assert len(fake_wechat.messages) == 1


def test_fail_next_injects_errors_then_recovers(fake_wechat):
    token = _token(fake_wechat)["access_token"]
    body = json.dumps({"touser": "o1", "template_id": "T", "data": {"k": {"value": "v"}}})
    fake_wechat.fail_next("/cgi-bin/message/template/send", 45009, times=2)
    assert [_send(fake_wechat, token, body)["errcode"] for _ in range(3)] == [45009, 45009, 0]
    fake_wechat.fail_next("cgi-bin/message/template/send", 43004)
    assert _send(fake_wechat, token, body)["errcode"] == 43004
    assert len(fake_wechat.messages) == 1


def test_calls_are_recorded_with_path_args_and_json(fake_wechat):
    token = _token(fake_wechat)["access_token"]
    _send(fake_wechat, token, json.dumps({"touser": "o", "template_id": "T",
                                          "data": {"a": {"value": "v"}}}))
    call = fake_wechat.calls_to("/cgi-bin/message/template/send")[0]
    assert call["method"] == "POST" and call["args"] == {"access_token": token}
    assert call["json"]["touser"] == "o"
    fake_wechat.reset()
    assert fake_wechat.calls == [] and fake_wechat.messages == [] and fake_wechat.refresh_count == 0


def test_oauth_authorize_redirects_with_code_for_chosen_openid(fake_wechat):
    res = requests.get(f"{fake_wechat.url}/connect/oauth2/authorize", params={
        "appid": APPID, "redirect_uri": "http://qc.example.cn/cb?x=1", "response_type": "code",
        "scope": "snsapi_base", "state": "S", "openid": "oChosen"}, allow_redirects=False,
        timeout=5)
    assert res.status_code == 302
    back = query_of(res.headers["Location"])
    assert back["x"] == "1" and back["state"] == "S"
    exchange = {"appid": APPID, "secret": SECRET, "code": back["code"],
                "grant_type": "authorization_code"}
    url = f"{fake_wechat.url}/sns/oauth2/access_token"
    first = requests.get(url, params=exchange, timeout=5).json()
    assert first["openid"] == "oChosen" and first["scope"] == "snsapi_base"
    assert requests.get(url, params=exchange, timeout=5).json()["errcode"] == 40163
    assert requests.get(url, params=exchange | {"code": "nope"}, timeout=5).json()["errcode"] \
        == 40029
    info = requests.get(f"{fake_wechat.url}/sns/userinfo", params={
        "access_token": first["access_token"], "openid": "oChosen"}, timeout=5).json()
    assert info["openid"] == "oChosen" and info["nickname"] == "微信用户"


def _authorized_openid(fake, http, **extra) -> str:
    """Go through the fake's authorize page with ``http``; return the openid of its code."""
    res = http.get(f"{fake.url}/connect/oauth2/authorize", params={
        "appid": APPID, "redirect_uri": "http://qc.example.cn/cb", "scope": "snsapi_base",
        "state": "S", **extra}, allow_redirects=False, timeout=5)
    assert res.status_code == 302
    return requests.get(f"{fake.url}/sns/oauth2/access_token", params={
        "appid": APPID, "secret": SECRET, "code": query_of(res.headers["Location"])["code"],
        "grant_type": "authorization_code"}, timeout=5).json()["openid"]


def test_a_browser_that_opened_a_fake_phone_page_authorizes_as_that_user(fake_wechat):
    """Development only: /_fake/phone/<openid> makes this browser that user's phone."""
    from qcwx.wechat.fake_state import DEFAULT_OPENID, PHONE_COOKIE

    phone = requests.Session()
    assert _authorized_openid(fake_wechat, phone) == DEFAULT_OPENID
    page = phone.get(f"{fake_wechat.url}/_fake/phone/oPhoneOwner00000000000000001", timeout=5)
    assert page.status_code == 200 and phone.cookies.get(PHONE_COOKIE) == \
        "oPhoneOwner00000000000000001"
    assert "本浏览器现为该用户的手机" in page.text
    assert _authorized_openid(fake_wechat, phone) == "oPhoneOwner00000000000000001"
    assert _authorized_openid(fake_wechat, phone, openid="oChosen") == "oChosen"  # explicit wins
    phone.get(f"{fake_wechat.url}/_fake/phone", timeout=5)  # the index belongs to nobody
    assert _authorized_openid(fake_wechat, phone) == "oPhoneOwner00000000000000001"
    assert _authorized_openid(fake_wechat, requests.Session()) == DEFAULT_OPENID


def test_oauth_authorize_refuses_unknown_appid(fake_wechat):
    res = requests.get(f"{fake_wechat.url}/connect/oauth2/authorize", params={
        "appid": "wx_bad", "redirect_uri": "http://qc.example.cn/cb", "scope": "snsapi_base"},
        allow_redirects=False, timeout=5)
    assert res.status_code == 400 and "appid" in res.text


def test_mp_code_to_session_through_http_introspection(fake_wechat):
    code = requests.post(f"{fake_wechat.url}/_fake/mp-code", json={"openid": "oMini"},
                         timeout=5).json()["code"]
    params = {"appid": MP_APPID, "secret": APPID_SECRETS[MP_APPID], "js_code": code,
              "grant_type": "authorization_code"}
    url = f"{fake_wechat.url}/sns/jscode2session"
    first = requests.get(url, params=params, timeout=5).json()
    assert first["openid"] == "oMini" and first["session_key"]
    assert requests.get(url, params=params, timeout=5).json()["errcode"] == 40163
    assert requests.get(url, params=params | {"js_code": "x"}, timeout=5).json()["errcode"] \
        == 40029


def test_remote_surface_matches_in_process_one(fake_wechat):
    remote = RemoteFakeWeChat(fake_wechat.url)
    assert remote.answers()
    token = _token(fake_wechat)["access_token"]
    remote.fail_next("/cgi-bin/message/template/send", 45009)
    body = json.dumps({"touser": "o1", "template_id": "T", "data": {"k": {"value": "v"}}})
    assert _send(fake_wechat, token, body)["errcode"] == 45009
    assert _send(fake_wechat, token, body)["errcode"] == 0
    assert remote.refresh_count == 1
    assert [m["touser"] for m in remote.messages] == ["o1"]
    assert remote.calls[-1]["path"] == "/cgi-bin/message/template/send"
    remote.reset()
    assert fake_wechat.messages == []


STARTUP_DEADLINE = 120  # seconds; the loop ends as soon as the fake answers or dies


@pytest.mark.parametrize("how", ["module", "flask"])
def test_fake_runs_as_a_separate_process(how, tmp_path):
    probe = FakeWeChatServer().start()  # borrow a free port, then free it
    port = probe.port
    probe.stop()
    env = dict(os.environ, QCWX_WECHAT_APPID="wx_proc", QCWX_WECHAT_SECRET="proc-secret",
               QCWX_ENV="development", QCWX_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    cmd = ([sys.executable, "-m", "qcwx.wechat.fake_server", "--port", str(port)]
           if how == "module" else
           [sys.executable, "-m", "flask", "--app", "wsgi", "fake-wechat", "--port", str(port)])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        remote = RemoteFakeWeChat(f"http://127.0.0.1:{port}")
        # A guard against a hang, not a speed test: the flask CLI imports and builds the whole
        # app before it listens, which took 21 s of wall time (3.9 s of CPU) on the shared
        # 2-core machine at load 10 — the old 20 s deadline failed there now and then.
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not remote.answers():
            assert proc.poll() is None and time.monotonic() < deadline, "fake did not start"
            time.sleep(0.1)
        got = requests.get(f"{remote.url}/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": "wx_proc", "secret": "proc-secret"},
            timeout=5).json()
        assert got["access_token"] and remote.refresh_count == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_fake_phone_page_shows_what_a_user_received(fake_wechat):
    """Development only: /_fake/phone/<openid> lists a fake user's messages as a phone would."""
    import requests

    fake_wechat.state.deliver("template", "oPhoneUser000000000000000001", "TPL",
                  {"first": {"value": "质控失控 <b>"}, "keyword1": {"value": "葡萄糖"}},
                  url="http://127.0.0.1:5000/runs/7")
    page = requests.get(f"{fake_wechat.url}/_fake/phone/oPhoneUser000000000000000001", timeout=5)
    assert page.status_code == 200
    assert "葡萄糖" in page.text and "质控失控 &lt;b&gt;" in page.text  # escaped
    assert 'href="http://127.0.0.1:5000/runs/7"' in page.text
    index = requests.get(f"{fake_wechat.url}/_fake/phone", timeout=5).text
    assert "oPhoneUser000000000000000001（1 条）" in index


def test_make_run_reuses_only_its_own_fake_and_stops_it(tmp_path, monkeypatch):
    """``fake-wechat --background`` reuses this checkout's fake; ``--stop`` ends exactly it."""
    from qcwx.wechat import fake_server

    probe = FakeWeChatServer().start()
    port = probe.port
    probe.stop()
    settings = {"WECHAT_APPID": "wx_bg", "WECHAT_SECRET": "s", "MP_APPID": "wx_mp_bg",
                "MP_SECRET": "s2"}
    pid_file, log_file = tmp_path / "fake.pid", tmp_path / "fake.log"
    pid = fake_server.start_background("127.0.0.1", port, settings, pid_file, log_file)
    try:
        assert pid and int(pid_file.read_text()) == pid
        assert fake_server.start_background("127.0.0.1", port, settings, pid_file,
                                            log_file) is None  # ours, still running: reused
        monkeypatch.setattr(fake_server, "CHECKOUT", "/elsewhere/qcwx")
        with pytest.raises(RuntimeError, match="another checkout"):
            fake_server.start_background("127.0.0.1", port, settings, pid_file, log_file)
        assert fake_server.stop_background("127.0.0.1", port, pid_file) is None  # not ours
        monkeypatch.undo()
        assert fake_server.stop_background("127.0.0.1", port, pid_file) == pid
        deadline = time.monotonic() + 10
        while RemoteFakeWeChat(f"http://127.0.0.1:{port}").answers():
            assert time.monotonic() < deadline, "the fake kept answering after --stop"
            time.sleep(0.1)
        assert not pid_file.exists()
    finally:
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
