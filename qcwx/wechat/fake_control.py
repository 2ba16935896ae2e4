"""The fake's ``/_fake/*`` introspection: what tests in another process read and inject.

:class:`~qcwx.wechat.fake_server.RemoteFakeWeChat` is the client of these routes. They are
not recorded as API calls and never answer an injected failure.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    current_app,
    jsonify,
    make_response,
    render_template_string,
    request,
)

from qcwx.wechat.fake_state import PHONE_COOKIE, FakeState

bp = Blueprint("fake_control", __name__, url_prefix="/_fake")
#: The checkout this fake runs from: ``make run`` reuses a fake only when it is its own.
CHECKOUT = str(Path(__file__).resolve().parents[2])
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _state() -> FakeState:
    return current_app.extensions["fake_wechat"]


def _payload() -> dict:
    return request.get_json(force=True, silent=True) or {}


@bp.get("/calls")
def fake_calls():
    """Return the recorded API calls, oldest first."""
    state = _state()
    with state.lock:
        return jsonify(list(state.calls))


@bp.get("/messages")
def fake_messages():
    """Return the delivered messages, oldest first."""
    state = _state()
    with state.lock:
        return jsonify(list(state.messages))


@bp.get("/state")
def fake_state():
    """Return the counters, the menu and the failures still queued."""
    state = _state()
    with state.lock:
        return jsonify({"refresh_count": state.refresh_count,
                        "refresh_counts": dict(state.refresh_counts),
                        "ticket_count": state.ticket_count, "menu": state.menu,
                        "pending_failures": dict(state.failures),
                        "pid": os.getpid(), "checkout": CHECKOUT})


@bp.post("/reset")
def fake_reset():
    """Forget everything, as a fresh WeChat."""
    _state().reset()
    return jsonify({"ok": True})


@bp.post("/fail")
def fake_fail():
    """Queue an errcode for the next calls to a path."""
    data = _payload()
    if not data.get("path") or not isinstance(data.get("errcode"), int):
        return jsonify({"error": "需要 path 与整数 errcode"}), 400
    _state().fail_next(data["path"], data["errcode"], int(data.get("times", 1)))
    return jsonify({"ok": True})


@bp.post("/expire")
def fake_expire():
    """Expire the current tokens (of one appid, or all)."""
    _state().expire_tokens(_payload().get("appid"))
    return jsonify({"ok": True})


@bp.post("/mp-code")
def fake_mp_code():
    """Mint a ``wx.login`` code for an openid."""
    state = _state()
    data = _payload()
    openid = data.get("openid")
    if not isinstance(openid, str) or not openid:
        return jsonify({"error": "需要 openid"}), 400
    appid = data.get("appid") or state.mp_appid()
    return jsonify({"code": state.mint_code(state.mp_codes, appid, openid, "mp")})


_PHONE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>模拟手机 · {{ openid or '全部用户' }}</title>
<style>
body{margin:0;background:#ededed;color:#191919;
font:15px/1.5 system-ui,"Noto Sans CJK SC",sans-serif}
header{background:#ededed;padding:12px 16px;font-weight:600;border-bottom:1px solid #ddd}
header .note{font-weight:400;color:#888;font-size:13px}
.msg{background:#fff;margin:12px;border-radius:8px;padding:14px 16px}
.msg h2{font-size:16px;margin:0 0 8px}.row{display:flex;gap:8px;margin:2px 0}
.k{color:#888;min-width:5.5em}.time{color:#999;font-size:13px;text-align:center;margin-top:12px}
a.more{display:block;border-top:1px solid #eee;margin-top:10px;padding-top:10px;min-height:44px;
line-height:44px;color:#191919;text-decoration:none}
ul{list-style:none;padding:0}li a{display:block;background:#fff;margin:8px 12px;padding:12px 16px;
border-radius:8px;min-height:44px;color:#191919;text-decoration:none}
</style></head><body>
<header>{{ '模拟手机：' ~ openid if openid else '本地模拟微信：收到消息的用户' }}
（仅开发环境）{% if openid %}
<div class="note">本浏览器现为该用户的手机：点开链接时以此身份微信授权登录</div>{% endif %}
</header>
{% if openid %}
  {% for m in messages %}
  <div class="time">{{ m.when }}</div>
  <div class="msg"><h2>{{ '质控提醒' if m.kind == 'template' else '订阅消息' }}</h2>
    {% for key, value in m.fields %}<div class="row"><span class="k">{{ key }}</span>
    <span>{{ value }}</span></div>{% endfor %}
    {% if m.link %}<a class="more" href="{{ m.link }}">详情 ›</a>{% endif %}
  </div>
  {% else %}<div class="msg">还没有收到消息</div>{% endfor %}
{% else %}
  <ul>{% for user, n in users %}<li>
  <a href="{{ url_for('fake_control.fake_phone', openid=user) }}">{{ user }}（{{ n }} 条）</a></li>
  {% else %}<li>还没有任何消息</li>{% endfor %}</ul>
{% endif %}
</body></html>"""


def _fields(data: dict) -> list[tuple[str, str]]:
    """Return (name, value) pairs of a template message's data, as a phone lists them."""
    names = {"first": "", "remark": "备注"}
    return [(names.get(key, key), str(item.get("value", "")) if isinstance(item, dict) else
             str(item)) for key, item in data.items()]


@bp.get("/phone")
@bp.get("/phone/<openid>")
def fake_phone(openid: str | None = None):
    """Show what one fake user's phone received (development only): fields and the link.

    Opening one user's page makes this browser that user's phone: a cookie (``PHONE_COOKIE``)
    tells the fake's OAuth authorize page whom to log in, so tapping a message's link and
    going through WeChat OAuth arrives as the person the message was sent to.
    """
    state = _state()
    with state.lock:
        messages = list(state.messages)
    if openid is None:
        counts: dict[str, int] = {}
        for m in messages:
            counts[m["touser"]] = counts.get(m["touser"], 0) + 1
        return render_template_string(_PHONE, openid=None, users=sorted(counts.items()))
    mine = [{"kind": m["kind"], "fields": _fields(m.get("data") or {}),
             "link": m.get("url") or m.get("page"),
             "when": datetime.fromtimestamp(m["time"], SHANGHAI).strftime("%m-%d %H:%M")}
            for m in reversed(messages) if m["touser"] == openid]
    response = make_response(render_template_string(_PHONE, openid=openid, messages=mine))
    response.set_cookie(PHONE_COOKIE, openid, httponly=True, samesite="Lax")
    return response
