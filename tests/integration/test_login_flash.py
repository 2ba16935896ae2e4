"""Inside WeChat /login goes straight to OAuth: its "请先登录" must not greet the user later."""

from __future__ import annotations

WECHAT_UA = "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.47"


def test_the_login_prompt_is_dropped_when_wechat_skips_the_form(client, world):
    res = client.get("/me", headers={"User-Agent": WECHAT_UA})
    assert res.status_code == 302 and "/login" in res.headers["Location"]
    res = client.get(res.headers["Location"], headers={"User-Agent": WECHAT_UA})
    assert res.status_code == 302 and "/wechat/oauth/start" in res.headers["Location"]
    with client.session_transaction() as sess:
        assert all(message != "请先登录" for _cat, message in sess.get("_flashes", []))


def test_a_browser_still_sees_the_login_prompt_on_the_form(client, world):
    res = client.get("/me", follow_redirects=True)
    assert "请先登录" in res.get_data(as_text=True)
