"""The fake's ``/_fake/*`` introspection: what tests in another process read and inject.

:class:`~qcwx.wechat.fake_server.RemoteFakeWeChat` is the client of these routes. They are
not recorded as API calls and never answer an injected failure.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from qcwx.wechat.fake_state import FakeState

bp = Blueprint("fake_control", __name__, url_prefix="/_fake")


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
                        "pending_failures": dict(state.failures)})


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
