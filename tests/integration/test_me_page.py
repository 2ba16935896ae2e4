"""我的: every role reaches logout, reports and its WeChat binding from one tab."""

from __future__ import annotations

import pytest

from qcwx.extensions import db


@pytest.mark.parametrize("role", ["admin", "center", "director", "supervisor", "technician"])
def test_every_role_has_a_me_page_with_logout_and_reports(world, login, role):
    client = login(world.users[role])
    home = client.get("/").get_data(as_text=True)
    assert 'href="/me"' in home and "我的" in home
    assert 'action="/logout"' not in home  # logout lives on 我的, not in the tab bar
    # Scripts that POST (scan decode, entry) read the CSRF token from the page's meta tag:
    # it must not depend on a form happening to be on the page (the tab bar's logout was).
    assert '<meta name="csrf-token" content="' in home
    page = client.get("/me")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert world.users[role].display_name in html
    assert 'action="/logout"' in html and 'href="/reports/"' in html
    assert ("/wechat/invites" in html) == (role != "technician")
    assert client.post("/logout").status_code == 302
    assert client.get("/me").status_code in (302, 401)


def test_the_me_page_shows_the_binding_and_unbinds(world, login):
    user = world.users["supervisor"]
    user.wechat_openid = "oTestOpenId000000000000000001"
    db.session.commit()
    client = login(user)
    html = client.get("/me").get_data(as_text=True)
    assert "已绑定" in html and "解除微信绑定" in html
    res = client.post("/wechat/unbind", data={"next": "/me"})
    assert res.status_code == 302 and res.headers["Location"].endswith("/me")
    assert "未绑定" in client.get("/me").get_data(as_text=True)
