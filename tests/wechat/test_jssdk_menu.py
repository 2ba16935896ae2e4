"""JS-SDK config signing, the menu command and the fake-wechat command."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest

from qcwx.wechat.fake_server import FakeWeChatServer, RemoteFakeWeChat
from qcwx.wechat.services import menu_definition


def test_jssdk_config_signs_the_page_with_the_jsapi_ticket(login, world, fake_wechat, app):
    client = login(world.users["technician"])
    url = "http://qc.example.cn/ts/1?x=1#frag"
    res = client.get("/wechat/jssdk/config", query_string={"url": url})
    assert res.status_code == 200, res.get_data(as_text=True)
    cfg = res.get_json()
    assert cfg["appId"] == "wx_test_appid"
    assert cfg["jsApiList"] == ["scanQRCode", "updateAppMessageShareData",
                                "updateTimelineShareData", "onMenuShareAppMessage"]
    # Recompute as the JS-SDK documentation says, with the ticket the fake handed out.
    from qcwx.wechat.client import official_client
    from qcwx.wechat.token import jsapi_ticket

    with app.app_context():
        ticket = jsapi_ticket(official_client())
    plain = (f"jsapi_ticket={ticket}&noncestr={cfg['nonceStr']}&timestamp={cfg['timestamp']}"
             f"&url=http://qc.example.cn/ts/1?x=1")
    assert cfg["signature"] == hashlib.sha1(plain.encode()).hexdigest()
    # The ticket is cached: a second page costs no second getticket call.
    assert client.get("/wechat/jssdk/config", query_string={"url": url}).status_code == 200
    assert len(fake_wechat.calls_to("/cgi-bin/ticket/getticket")) == 1
    assert fake_wechat.refresh_count == 1


@pytest.mark.parametrize("url, message", [
    ("", "缺少参数 url"),
    ("http://evil.example.com/ts/1", "url 必须是本站"),
    ("javascript:alert(1)", "url 必须是本站"),
])
def test_jssdk_config_refuses_foreign_urls(login, world, fake_wechat, url, message):
    client = login(world.users["technician"])
    res = client.get("/wechat/jssdk/config", query_string={"url": url})
    assert res.status_code == 400
    assert res.get_json() == {"error": res.get_json()["error"], "field": "url"}
    assert message in res.get_json()["error"]
    assert fake_wechat.calls == []


def test_jssdk_config_needs_login(client, fake_wechat):
    res = client.get("/wechat/jssdk/config", query_string={"url": "http://qc.example.cn/"})
    assert res.status_code == 401 and res.get_json()["error"] == "请先登录"


def test_jssdk_config_when_wechat_fails_is_a_chinese_503(login, world, fake_wechat):
    client = login(world.users["technician"])
    fake_wechat.fail_next("/cgi-bin/ticket/getticket", 45009)
    res = client.get("/wechat/jssdk/config", query_string={"url": "http://qc.example.cn/"})
    assert res.status_code == 503 and "微信服务暂时不可用" in res.get_json()["error"]


def test_wechat_menu_command_posts_menu_json(app, fake_wechat):
    result = app.test_cli_runner().invoke(args=["wechat-menu"])
    assert result.exit_code == 0, result.output
    assert "录入质控" in result.output
    menu = fake_wechat.menu
    assert [b["name"] for b in menu["button"]] == ["录入质控", "我的报告", "失控处理"]
    assert menu["button"][0] == {
        "type": "view", "name": "录入质控",
        "url": "http://qc.example.cn/wechat/oauth/start?next=/wechat/go/home"}
    assert all(b["url"].startswith("http://qc.example.cn/wechat/oauth/start?next=")
               for b in menu["button"])
    assert menu == menu_definition("http://qc.example.cn")


def test_wechat_menu_command_reports_wechat_errors(app, fake_wechat):
    fake_wechat.fail_next("/cgi-bin/menu/create", 40018)
    result = app.test_cli_runner().invoke(args=["wechat-menu"])
    assert result.exit_code != 0 and "40018" in result.output
    assert fake_wechat.menu is None


def test_menu_targets_open_existing_pages(login, world):
    client = login(world.users["technician"])
    assert client.get("/wechat/go/home").headers["Location"] == "/"
    assert client.get("/wechat/go/actions").headers["Location"] == "/actions"
    assert client.get("/wechat/go/reports").status_code == 302
    assert client.get("/wechat/go/nowhere").status_code == 404


def test_fake_wechat_background_command_starts_once(app, tmp_path, monkeypatch):
    probe = FakeWeChatServer().start()  # borrow a free port
    port = probe.port
    probe.stop()
    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    runner = app.test_cli_runner()
    first = runner.invoke(args=["fake-wechat", "--background", "--port", str(port)])
    try:
        assert first.exit_code == 0, first.output
        assert "started" in first.output
        pid = int((tmp_path / "fake-wechat.pid").read_text())
        remote = RemoteFakeWeChat(f"http://127.0.0.1:{port}")
        assert remote.answers()
        second = runner.invoke(args=["fake-wechat", "--background", "--port", str(port)])
        assert second.exit_code == 0 and "in use" in second.output
        assert f"this checkout's, pid {pid}" in second.output  # reused, and named in the log
        assert int((tmp_path / "fake-wechat.pid").read_text()) == pid
    finally:
        os.kill(int((tmp_path / "fake-wechat.pid").read_text()), signal.SIGTERM)


def test_jssdk_config_signs_a_live_share_link_for_an_anonymous_viewer(world, fake_wechat, app,
                                                                      client):
    """Whoever opened a shared report in a group can forward it with the same card."""
    from qcwx.extensions import db
    from qcwx.reports import services
    from qcwx.timeutil import utcnow

    created = services.create_link(None, "dynamic", world.lab_a, {"ts_ids": None},
                                   title="测试报告")
    db.session.commit()
    base = app.config["BASE_URL"].rstrip("/")
    res = client.get("/wechat/jssdk/config", query_string={"url": base + created.path})
    assert res.status_code == 200, res.get_data(as_text=True)
    assert res.get_json()["signature"]
    for url in (base + "/r/" + "A" * 32, base + "/ts/1", "http://evil.example.com" + created.path):
        assert client.get("/wechat/jssdk/config", query_string={"url": url}).status_code in (
            400, 401)
    created.link.revoked_at = utcnow()
    db.session.commit()
    res = client.get("/wechat/jssdk/config", query_string={"url": base + created.path})
    assert res.status_code == 401
