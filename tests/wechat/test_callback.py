"""The official-account callback: signatures, replay window, replies, binding by QR scene."""

from __future__ import annotations

import time
from datetime import date

import pytest

from qcwx.extensions import db
from qcwx.iqc.models import QcRun
from qcwx.timeutil import local_today
from qcwx.wechat import services
from tests import factories
from tests.fixtures.wechat import WECHAT_SETTINGS
from tests.wechat.wx import (
    decrypt_reply,
    encrypt_for_callback,
    reply_fields,
    sample,
    sign,
    signed_query,
)

TOKEN = WECHAT_SETTINGS["WECHAT_TOKEN"]
APPID = WECHAT_SETTINGS["WECHAT_APPID"]


def _post(client, xml: str, **query):
    return client.post("/wechat", query_string=signed_query(TOKEN, **query), data=xml.encode(),
                       content_type="text/xml")


def _reply(client, xml: str) -> dict:
    res = _post(client, xml)
    assert res.status_code == 200, res.get_data(as_text=True)
    return reply_fields(res.get_data(as_text=True))


def _invite(world, who: str = "technician", by: str = "supervisor") -> str:
    invite = services.create_invite(world.users[by], world.users[who])
    db.session.commit()
    return invite.code


# -- URL verification and refusals -----------------------------------------------------------
def test_url_verification_echoes_echostr(client):
    res = client.get("/wechat", query_string=signed_query(TOKEN, echostr="echo-7788"))
    assert res.status_code == 200 and res.get_data(as_text=True) == "echo-7788"


def test_forged_signature_is_refused(client):
    query = signed_query(TOKEN, echostr="x") | {"signature": sign("not-our-token", "1", "2")}
    res = client.get("/wechat", query_string=query)
    assert res.status_code == 403 and "签名" in res.get_data(as_text=True)
    assert _post(client, sample("text_message.xml"), timestamp=None).status_code == 200
    forged = client.post("/wechat", query_string=query, data=sample("text_message.xml"))
    assert forged.status_code == 403


def test_missing_signature_is_refused(client):
    assert client.get("/wechat", query_string={"echostr": "x"}).status_code == 403
    assert client.post("/wechat", data=sample("text_message.xml")).status_code == 403


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_timestamp_outside_five_minutes_is_refused_even_when_signed(client, skew):
    res = _post(client, sample("text_message.xml"), timestamp=int(time.time()) + skew)
    assert res.status_code == 403 and "时间戳" in res.get_data(as_text=True)


def test_malformed_xml_is_a_400(client):
    assert _post(client, "<xml><not closed").status_code == 400


# -- replies in plain mode --------------------------------------------------------------------
def test_text_message_sample_gets_help_reply(client):
    reply = _reply(client, sample("text_message.xml"))
    assert reply["MsgType"] == "text"
    assert reply["ToUserName"] == "fromUser" and reply["FromUserName"] == "toUser"
    assert "今日质控" in reply["Content"] and "帮助" in reply["Content"]


def test_subscribe_sample_gets_welcome(client):
    reply = _reply(client, sample("event_subscribe.xml"))
    assert reply["Content"].startswith("欢迎关注")


def test_unsubscribe_needs_no_reply(client):
    res = _post(client, sample("event_subscribe.xml", Event="unsubscribe"))
    assert res.status_code == 200 and res.get_data(as_text=True) == "success"


@pytest.mark.parametrize("keyword", ["帮助", "随便说点什么"])
def test_help_and_unknown_text(client, keyword):
    reply = _reply(client, sample("text_message.xml", Content=keyword))
    assert "可发送以下关键词" in reply["Content"]


def test_bind_keyword_explains_how_when_unbound(client, app):
    reply = _reply(client, sample("text_message.xml", Content="绑定", FromUserName="oNobody"))
    assert "尚未绑定" in reply["Content"]
    assert f"{app.config['BASE_URL']}/wechat/bind" in reply["Content"]


def test_bind_keyword_names_the_bound_account(client, world):
    world.users["technician"].wechat_openid = "oTechBound"
    db.session.commit()
    reply = _reply(client, sample("text_message.xml", Content=" 绑定 ", FromUserName="oTechBound"))
    assert world.users["technician"].display_name in reply["Content"]
    assert "已绑定" in reply["Content"]


# -- binding through a QR scene ---------------------------------------------------------------
def test_subscribe_with_qrscene_invite_binds_the_follower(client, world):
    code = _invite(world)
    xml = sample("event_subscribe_qrscene.xml", EventKey=f"qrscene_{code}",
                 FromUserName="oScanFollow")
    reply = _reply(client, xml)
    assert reply["Content"].startswith("欢迎关注") and "绑定成功" in reply["Content"]
    db.session.expire_all()
    assert world.users["technician"].wechat_openid == "oScanFollow"


def test_scan_event_binds_then_a_second_scan_is_refused(client, world):
    code = _invite(world)
    first = _reply(client, sample("event_scan.xml", EventKey=code, FromUserName="oScanner"))
    assert "绑定成功" in first["Content"]
    second = _reply(client, sample("event_scan.xml", EventKey=code, FromUserName="oOther"))
    assert "绑定未成功" in second["Content"] and "已被使用" in second["Content"]
    db.session.expire_all()
    assert world.users["technician"].wechat_openid == "oScanner"


def test_scan_with_unknown_code_is_refused_in_chinese(client, world):
    reply = _reply(client, sample("event_scan.xml", FromUserName="oScanner"))  # key 123123
    assert reply["Content"] == "绑定未成功：邀请码不存在，请核对后重新输入"


# -- 今日质控 ------------------------------------------------------------------------------------
def test_today_qc_counts_the_bound_users_systems(client, world):
    supervisor = world.users["supervisor"]
    supervisor.wechat_openid = "oSupervisor"
    lab, lot = world.lab_a, world.systems["a"].qc_lot
    extra = [factories.test_system(lab, factories.analyte(code, name), lot)
             for code, name in (("ALT", "丙氨酸氨基转移酶"), ("TC", "总胆固醇"), ("UA", "尿酸"))]
    today = local_today(lab.timezone)
    statuses = {world.systems["a"].id: "accept", extra[0].id: "reject", extra[1].id: "warning"}
    for ts_id, status in statuses.items():
        db.session.add(QcRun(test_system_id=ts_id, run_date=today, run_no=1, status=status))
    db.session.add(QcRun(test_system_id=extra[2].id, run_date=date(2020, 1, 1), status="reject"))
    db.session.commit()
    content = _reply(client, sample("text_message.xml", Content="今日质控",
                                    FromUserName="oSupervisor"))["Content"]
    assert f"今日质控（{today:%Y-%m-%d}）" in content
    # Four systems: lab A's; labs B and C lie outside the supervisor's scope.
    assert "检测系统 4 个，已录入 3 个，未录入 1 个" in content
    assert "在控 1 · 警告 1 · 失控 1" in content
    assert "丙氨酸氨基转移酶" in content and "总胆固醇" not in content.split("失控项目")[1]


def test_today_qc_for_unbound_wechat(client):
    content = _reply(client, sample("text_message.xml", Content="今日质控",
                                    FromUserName="oStranger"))["Content"]
    assert "尚未绑定" in content


# -- safe (AES) mode --------------------------------------------------------------------------
@pytest.fixture
def safe_mode(app, monkeypatch):
    from tests.wechat.wx import AES_KEY

    monkeypatch.setitem(app.config, "WECHAT_AES_KEY", AES_KEY)


def test_safe_mode_round_trip(client, safe_mode):
    xml = sample("text_message.xml", Content="帮助", FromUserName="oSafe")
    query, body = encrypt_for_callback(TOKEN, APPID, xml)
    res = client.post("/wechat", query_string=query, data=body.encode())
    assert res.status_code == 200
    text = res.get_data(as_text=True)
    assert "<Encrypt>" in text and "帮助" not in text
    reply = decrypt_reply(TOKEN, APPID, text)
    assert reply["ToUserName"] == "oSafe" and "可发送以下关键词" in reply["Content"]


def test_safe_mode_scan_binds(client, world, safe_mode):
    code = _invite(world, who="technician_b", by="center")
    query, body = encrypt_for_callback(
        TOKEN, APPID, sample("event_scan.xml", EventKey=code, FromUserName="oSafeScan"))
    res = client.post("/wechat", query_string=query, data=body.encode())
    assert "绑定成功" in decrypt_reply(TOKEN, APPID, res.get_data(as_text=True))["Content"]
    db.session.expire_all()
    assert world.users["technician_b"].wechat_openid == "oSafeScan"


def test_safe_mode_checks_msg_signature_not_signature(client, safe_mode):
    query, body = encrypt_for_callback(TOKEN, APPID, sample("text_message.xml"))
    # The classic bug: checking the body with ``signature``. A wrong msg_signature must fail
    # even though ``signature`` is valid.
    wrong = query | {"msg_signature": query["signature"]}
    assert client.post("/wechat", query_string=wrong, data=body.encode()).status_code == 403
    tampered = body.replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[AAAA")
    assert client.post("/wechat", query_string=query, data=tampered.encode()).status_code == 403


def test_safe_mode_refuses_plain_messages(client, safe_mode):
    res = _post(client, sample("text_message.xml"))
    assert res.status_code == 403 and "加密" in res.get_data(as_text=True)


def test_safe_mode_url_verification_still_works(client, safe_mode):
    res = client.get("/wechat", query_string=signed_query(TOKEN, echostr="abc"))
    assert res.get_data(as_text=True) == "abc"
