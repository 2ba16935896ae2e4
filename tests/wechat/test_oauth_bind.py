"""H5 OAuth through the fake WeChat, binding with invites, login, unbinding, invite pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from qcwx.errors import NotFound
from qcwx.extensions import db
from qcwx.orgs.models import User
from qcwx.timeutil import utcnow
from qcwx.wechat import services
from qcwx.wechat.models import WechatInvite
from tests.wechat.wx import path_of, query_of


def _authorize(client, fake, openid: str, next_url: str = "/"):
    """Start OAuth in our app, let the fake authorize ``openid``; return our callback path."""
    start = client.get("/wechat/oauth/start", query_string={"next": next_url})
    assert start.status_code == 302
    authorize = start.headers["Location"]
    assert authorize.startswith(f"{fake.url}/connect/oauth2/authorize?")
    assert authorize.endswith("#wechat_redirect")
    params = query_of(authorize.split("#")[0])
    assert params["scope"] == "snsapi_base" and params["appid"] == "wx_test_appid"
    assert params["redirect_uri"] == "http://qc.example.cn/wechat/oauth/callback"
    back = requests.get(authorize.split("#")[0], params={"openid": openid},
                        allow_redirects=False, timeout=5)
    assert back.status_code == 302
    assert back.headers["Location"].startswith("http://qc.example.cn/wechat/oauth/callback?")
    return path_of(back.headers["Location"])


def _oauth(client, fake, openid: str, next_url: str = "/"):
    return client.get(_authorize(client, fake, openid, next_url))


def _invite(world, who="technician", by="supervisor", **kw) -> WechatInvite:
    invite = services.create_invite(world.users[by], world.users[who], **kw)
    db.session.commit()
    return invite


def _logged_in_as(client) -> str | None:
    res = client.get("/")
    if res.status_code != 200:
        return None
    return res.get_data(as_text=True)


def test_oauth_round_trip_binds_with_invite_then_logs_in(client, world, fake_wechat, app):
    invite = _invite(world)
    res = _oauth(client, fake_wechat, "oTechPhone", "/actions")
    assert res.status_code == 302 and res.headers["Location"].startswith("/wechat/bind")
    assert query_of(res.headers["Location"])["next"] == "/actions"
    page = client.get(res.headers["Location"])
    assert page.status_code == 200 and "输入邀请码" in page.get_data(as_text=True)
    done = client.post("/wechat/bind", data={"code": invite.code.lower(), "next": "/actions"})
    assert done.status_code == 302 and done.headers["Location"] == "/actions"
    db.session.expire_all()
    tech = world.users["technician"]
    assert tech.wechat_openid == "oTechPhone"
    assert db.session.get(WechatInvite, invite.id).used_openid == "oTechPhone"
    assert world.users["technician"].display_name in _logged_in_as(client)

    # A new browser session in WeChat: OAuth alone logs the bound user in.
    fresh = app.test_client()
    res = _oauth(fresh, fake_wechat, "oTechPhone", "/actions")
    assert res.status_code == 302 and res.headers["Location"] == "/actions"
    assert tech.display_name in _logged_in_as(fresh)
    assert len(fake_wechat.calls_to("/sns/oauth2/access_token")) == 2


def test_oauth_callback_cannot_be_replayed(client, world, fake_wechat):
    callback = _authorize(client, fake_wechat, "oReplay")
    assert client.get(callback).status_code == 302
    replay = client.get(callback)  # the state's nonce was used up by the first visit
    assert replay.status_code == 400 and "会话不符" in replay.get_data(as_text=True)
    client.get("/wechat/oauth/start")  # even with a fresh nonce, the old state does not fit
    assert client.get(callback).status_code == 400
    assert len(fake_wechat.calls_to("/sns/oauth2/access_token")) == 1


def test_oauth_callback_from_another_browser_is_refused(client, app, fake_wechat):
    callback = _authorize(client, fake_wechat, "oVictim")
    other = app.test_client()
    res = other.get(callback)
    assert res.status_code == 400 and "会话不符" in res.get_data(as_text=True)


def test_oauth_rejects_a_tampered_state(client, fake_wechat):
    callback = _authorize(client, fake_wechat, "oX")
    res = client.get(callback.replace("state=", "state=zz"))
    assert res.status_code == 400 and "授权状态" in res.get_data(as_text=True)


def test_oauth_reports_an_invalid_code_in_chinese(client, fake_wechat):
    callback = _authorize(client, fake_wechat, "oX")
    code = query_of(callback)["code"]
    fake_wechat.fail_next("/sns/oauth2/access_token", 40029)
    res = client.get(callback)
    assert res.status_code == 400 and "授权码无效" in res.get_data(as_text=True)
    assert code


@pytest.mark.parametrize("target", ["https://evil.example.com/x", "//evil.example.com/x",
                                    "/\\evil.example.com", "/\t/evil.example.com",
                                    "/\nSet-Cookie:x=1"])
def test_oauth_next_cannot_leave_the_site(client, world, fake_wechat, target):
    world.users["technician"].wechat_openid = "oTech"
    db.session.commit()
    res = _oauth(client, fake_wechat, "oTech", target)
    assert res.headers["Location"] == "/"


def test_oauth_start_skips_wechat_when_already_logged_in_by_it(client, world, fake_wechat):
    world.users["technician"].wechat_openid = "oTech"
    db.session.commit()
    _oauth(client, fake_wechat, "oTech")
    again = client.get("/wechat/oauth/start", query_string={"next": "/actions"})
    assert again.headers["Location"] == "/actions"


def test_inactive_bound_user_is_not_logged_in(client, world, fake_wechat):
    tech = world.users["technician"]
    tech.wechat_openid, tech.active = "oGone", False
    db.session.commit()
    res = _oauth(client, fake_wechat, "oGone")
    assert res.headers["Location"].startswith("/wechat/bind")
    assert _logged_in_as(client) is None


def test_bind_page_without_oauth_goes_through_oauth_keeping_the_code(client):
    res = client.get("/wechat/bind", query_string={"code": "ABCD2345"})
    assert res.status_code == 302
    assert query_of(res.headers["Location"])["next"] == "/wechat/bind?code=ABCD2345"


@pytest.mark.parametrize("case, status, message", [
    ("unknown", 404, "邀请码不存在"),
    ("used", 409, "已被使用"),
    ("expired", 410, "已过期"),
    ("empty", 400, "请输入邀请码"),
])
def test_bad_invite_codes_get_chinese_errors(client, world, fake_wechat, case, status, message):
    invite = _invite(world)
    if case == "used":
        invite.used_at = utcnow()
    if case == "expired":
        invite.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    code = {"unknown": "ZZZZ9999", "empty": "  "}.get(case, invite.code)
    _oauth(client, fake_wechat, "oNew")
    res = client.post("/wechat/bind", data={"code": code})
    assert res.status_code == status
    assert message in res.get_data(as_text=True)
    db.session.expire_all()
    assert world.users["technician"].wechat_openid is None


def test_openid_bound_to_another_user_is_refused(client, world, fake_wechat):
    world.users["technician_b"].wechat_openid = "oShared"
    invite = _invite(world)
    _oauth(client, fake_wechat, "oShared")
    res = client.post("/wechat/bind", data={"code": invite.code})
    assert res.status_code == 409
    assert world.users["technician_b"].display_name in res.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(WechatInvite, invite.id).used_at is None
    assert world.users["technician"].wechat_openid is None


def test_an_invite_never_replaces_a_binding_unbind_first_then_rebind(client, world, fake_wechat,
                                                                      login):
    """Issue 14: redeeming used to move a bound account silently to whoever held the code."""
    world.users["technician"].wechat_openid = "oOldPhone"
    invite = _invite(world)
    _oauth(client, fake_wechat, "oNewPhone")
    res = client.post("/wechat/bind", data={"code": invite.code})
    assert res.status_code == 409 and "请先解除绑定" in res.get_data(as_text=True)
    db.session.expire_all()
    assert world.users["technician"].wechat_openid == "oOldPhone"
    assert db.session.get(WechatInvite, invite.id).used_at is None
    centre = login(world.users["center"])  # the one way to move to a new phone: unbind first
    assert centre.post("/wechat/unbind",
                       data={"user_id": world.users["technician"].id}).status_code == 302
    centre.post("/logout")
    _oauth(client, fake_wechat, "oNewPhone")
    assert client.post("/wechat/bind", data={"code": invite.code}).status_code == 302
    db.session.expire_all()
    assert world.users["technician"].wechat_openid == "oNewPhone"


# -- invites ---------------------------------------------------------------------------------
def test_supervisor_creates_invite_with_qr(login, world):
    client = login(world.users["supervisor"])
    page = client.get("/wechat/invites")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert world.users["technician"].display_name in html
    assert world.users["technician_b"].display_name not in html  # another lab
    res = client.post("/wechat/invites", data={"user_id": world.users["technician"].id,
                                               "ttl_days": "7"})
    assert res.status_code == 302
    invite = db.session.query(WechatInvite).filter_by(
        user_id=world.users["technician"].id).one()
    assert timedelta(days=6, hours=23) < invite.expires_at - invite.created_at <= timedelta(days=7)
    detail = client.get(res.headers["Location"]).get_data(as_text=True)
    assert invite.code in detail and "http://qc.example.cn/wechat/bind?code=" in detail
    qr = client.get(f"/wechat/invites/{invite.id}/qr.svg")
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml"
    assert qr.get_data(as_text=True).lstrip().startswith("<?xml")


def test_invite_outside_scope_is_404_and_bad_ttl_400(login, world):
    client = login(world.users["supervisor"])
    res = client.post("/wechat/invites", data={"user_id": world.users["technician_b"].id})
    assert res.status_code == 404 and "无权管理" in res.get_data(as_text=True)
    res = client.post("/wechat/invites", data={"user_id": world.users["director"].id})
    assert res.status_code == 404  # a higher role
    res = client.post("/wechat/invites", data={"user_id": world.users["technician"].id,
                                               "ttl_days": "99"})
    assert res.status_code == 400 and "有效期" in res.get_data(as_text=True)
    res = client.post("/wechat/invites", data={"user_id": ""})
    assert res.status_code == 400 and "请选择用户" in res.get_data(as_text=True)


def test_invites_reach_only_strictly_lower_ranks(session, world):
    """Issue 14: an equal (supervisor → supervisor, centre → centre) could take an account over."""
    from tests.factories import user

    u = world.users
    peer_sup = user("supervisor", lab_=world.lab_a)
    peer_centre = user("center", region_=world.region1)
    peer_admin = user("admin")
    for actor, peer in ((u["supervisor"], peer_sup), (u["center"], peer_centre),
                        (u["admin"], peer_admin)):
        assert not services.manages(actor, peer)
        assert peer.id not in {x.id for x in services.manageable_users(actor)}
        with pytest.raises(NotFound):
            services.create_invite(actor, peer)
        assert services.manages(actor, actor)  # one's own new phone stays possible
    assert services.manages(u["center"], u["director"])
    assert services.manages(u["admin"], u["center"])


def test_an_invite_from_an_equal_is_refused_when_redeemed(client, world, fake_wechat):
    """An invite written before the rank rule (or by a since-demoted issuer) binds nobody."""
    from tests.factories import user

    peer = user("supervisor", lab_=world.lab_a)
    invite = _invite(world, who="technician")
    invite.user_id, invite.user = peer.id, peer  # as an equal's invite would have been stored
    db.session.commit()
    _oauth(client, fake_wechat, "oSupervisorsOwnPhone")
    res = client.post("/wechat/bind", data={"code": invite.code})
    assert res.status_code == 403 and "更高级别" in res.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, peer.id).wechat_openid is None


def test_technician_cannot_issue_invites(login, world):
    client = login(world.users["technician"])
    assert client.get("/wechat/invites").status_code == 403


def test_invite_of_another_scope_is_not_visible(login, world):
    other = _invite(world, who="technician_c", by="center2")
    client = login(world.users["center"])
    assert client.get(f"/wechat/invites/{other.id}").status_code == 404
    assert client.get(f"/wechat/invites/{other.id}/qr.svg").status_code == 404


def test_manageable_users_follow_scope(session, world):
    u = world.users
    names = {k: {x.id for x in services.manageable_users(u[k])} for k in
             ("admin", "center", "director", "supervisor")}
    assert u["technician_c"].id in names["admin"]
    assert {u["director"].id, u["supervisor"].id, u["technician"].id,
            u["technician_b"].id} <= names["center"]
    assert u["technician_c"].id not in names["center"]
    assert u["center"].id not in names["director"]
    assert {u["supervisor"].id, u["technician"].id} <= names["director"]
    assert u["technician_b"].id not in names["director"]
    assert names["supervisor"] == {u["supervisor"].id, u["technician"].id}


def test_invites_expire_after_seven_days_by_default(session, world):
    invite = services.create_invite(world.users["center"], world.users["director"])
    assert invite.expires_at - invite.created_at == timedelta(days=7)
    assert len(invite.code) == 8 and services.invite_status(invite) == "有效"


# -- unbinding -------------------------------------------------------------------------------
def test_user_unbinds_themselves(login, world):
    tech = world.users["technician"]
    tech.wechat_openid = "oTech"
    client = login(tech)
    assert client.post("/wechat/unbind").status_code == 302
    db.session.expire_all()
    assert db.session.get(User, tech.id).wechat_openid is None
    res = client.post("/wechat/unbind")
    assert res.status_code == 400 and "尚未绑定" in res.get_data(as_text=True)


def test_centre_unbinds_a_user_in_its_region_but_not_elsewhere(login, world):
    world.users["technician_b"].wechat_openid = "oB"
    world.users["technician_c"].wechat_openid = "oC"
    client = login(world.users["center"])
    assert client.post("/wechat/unbind",
                       data={"user_id": world.users["technician_b"].id}).status_code == 302
    assert client.post("/wechat/unbind",
                       data={"user_id": world.users["technician_c"].id}).status_code == 404
    db.session.expire_all()
    assert world.users["technician_b"].wechat_openid is None
    assert world.users["technician_c"].wechat_openid == "oC"


def test_supervisor_cannot_unbind_others(login, world):
    world.users["technician"].wechat_openid = "oT"
    client = login(world.users["supervisor"])
    res = client.post("/wechat/unbind", data={"user_id": world.users["technician"].id})
    assert res.status_code == 403
