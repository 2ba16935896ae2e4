"""The WeChat endpoints of the fake: tokens, tickets, messages, menu, OAuth, mini-program.

Each route answers as WeChat does (see :mod:`qcwx.wechat.fake_server` for what is strict);
its state is the app's :class:`~qcwx.wechat.fake_state.FakeState`. Every call except the
``/_fake/*`` introspection is recorded first, and a failure queued for its path is answered
instead of the real reply.
"""

from __future__ import annotations

import io
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, current_app, jsonify, redirect, request

from qcwx.wechat.fake_state import PHONE_COOKIE, FakeState, WeChatError

bp = Blueprint("fake_wechat", __name__)


def _state() -> FakeState:
    return current_app.extensions["fake_wechat"]


@bp.app_errorhandler(WeChatError)
def _wechat_error(exc: WeChatError):
    return jsonify({"errcode": exc.errcode, "errmsg": f"{exc.errmsg} rid: fake"})


@bp.before_app_request
def _record_and_inject():
    if request.path.startswith("/_fake/"):
        return None
    body: Any = None
    if request.data:
        try:
            body = json.loads(request.data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = request.data.decode("utf-8", "replace")
    errcode = _state().record_call(request.method, request.path, request.args.to_dict(), body)
    if errcode is not None:
        raise WeChatError(errcode)
    return None


# -- access token, tickets -------------------------------------------------------------
@bp.get("/cgi-bin/token")
def token():
    """Issue an access token (invalidating the appid's previous one)."""
    state = _state()
    if request.args.get("grant_type") != "client_credential":
        raise WeChatError(40002)
    appid = request.args.get("appid")
    state.check_credentials(appid, request.args.get("secret"))
    return jsonify({"access_token": state.issue_token(appid), "expires_in": state.token_ttl})


@bp.get("/cgi-bin/ticket/getticket")
def getticket():
    """Issue a JS-SDK (or card) ticket."""
    state = _state()
    state.check_token(request.args.get("access_token"))
    if request.args.get("type", "jsapi") not in ("jsapi", "wx_card"):
        raise WeChatError(40097)
    with state.lock:
        state.ticket_count += 1
    return _ok(ticket=f"FAKE_TICKET_{secrets.token_hex(16)}", expires_in=state.token_ttl)


# -- messages --------------------------------------------------------------------------
@bp.post("/cgi-bin/message/template/send")
def template_send():
    """Deliver an official-account template message."""
    touser, template_id, payload, data = _message()
    return _deliver("template", touser, template_id, payload, url=data.get("url"),
                    miniprogram=data.get("miniprogram"))


@bp.post("/cgi-bin/message/subscribe/send")
def subscribe_send():
    """Deliver a mini-program subscribe message."""
    touser, template_id, payload, data = _message()
    return _deliver("subscribe", touser, template_id, payload, page=data.get("page"))


@bp.post("/cgi-bin/message/subscribe/bizsend")
def subscribe_bizsend():
    """Deliver an official-account subscribe message."""
    touser, template_id, payload, data = _message()
    return _deliver("subscribe_biz", touser, template_id, payload, page=data.get("page"))


def _message() -> tuple[str, str, dict, dict]:
    """Check the token and a message body; return touser, template_id, data and the body."""
    _state().check_token(request.args.get("access_token"))
    data = _body()
    touser = _require_str(data, "touser", 40003)
    template_id = _require_str(data, "template_id", 40037)
    payload = _check_template_data(data)
    return touser, template_id, payload, data


def _deliver(kind: str, touser: str, template_id: str, payload: dict, **extra: Any) -> Response:
    return _ok(msgid=_state().deliver(kind, touser, template_id, payload, **extra))


# -- menu ------------------------------------------------------------------------------
@bp.post("/cgi-bin/menu/create")
def menu_create():
    """Store the menu after checking it as WeChat does."""
    state = _state()
    state.check_token(request.args.get("access_token"))
    data = _body()
    _check_menu(data)
    with state.lock:
        state.menu = data
    return _ok()


@bp.get("/cgi-bin/menu/get")
def menu_get():
    """Return the stored menu (46003 when none)."""
    state = _state()
    state.check_token(request.args.get("access_token"))
    with state.lock:
        if state.menu is None:
            raise WeChatError(46003, "menu no exist")
        return jsonify({"menu": state.menu})


# -- OAuth (official-account web pages) ----------------------------------------------------
@bp.get("/connect/oauth2/authorize")
def authorize():
    """Redirect back with a code for the chosen openid.

    Who is authorising: the ``openid`` query argument, else the user whose fake phone page
    this browser opened last (the ``PHONE_COOKIE`` cookie), else the default openid.
    """
    state = _state()
    appid = request.args.get("appid", "")
    redirect_uri = request.args.get("redirect_uri", "")
    scope = request.args.get("scope", "")
    if appid not in state.appid_secrets:
        return Response("参数错误：appid 无效（40013）", status=400,
                        mimetype="text/plain")
    if not redirect_uri.startswith(("http://", "https://")):
        return Response("参数错误：redirect_uri 无效", status=400, mimetype="text/plain")
    if scope not in ("snsapi_base", "snsapi_userinfo"):
        return Response("参数错误：scope 无效", status=400, mimetype="text/plain")
    openid = (request.args.get("openid") or request.cookies.get(PHONE_COOKIE)
              or state.default_openid)
    code = state.mint_code(state.codes, appid, openid, scope)
    return redirect(_add_query(redirect_uri, code=code, state=request.args.get("state", "")))


@bp.get("/sns/oauth2/access_token")
def oauth_access_token():
    """Redeem an OAuth code for a web access token and the openid."""
    state = _state()
    if request.args.get("grant_type") != "authorization_code":
        raise WeChatError(40002)
    appid = request.args.get("appid")
    state.check_credentials(appid, request.args.get("secret"))
    code = state.redeem_code(state.codes, appid, request.args.get("code"))
    access_token = f"FAKE_OAUTH_{secrets.token_hex(12)}"
    with state.lock:
        state.oauth_tokens[access_token] = (appid, code.openid)
    return jsonify({"access_token": access_token, "expires_in": 7200,
                    "refresh_token": f"FAKE_REFRESH_{secrets.token_hex(12)}",
                    "openid": code.openid, "scope": code.scope})


@bp.get("/sns/userinfo")
def userinfo():
    """Return a WeChat user's (anonymous) profile for a web access token."""
    state = _state()
    with state.lock:
        owner = state.oauth_tokens.get(request.args.get("access_token", ""))
    if owner is None:
        raise WeChatError(40001)
    if request.args.get("openid") != owner[1]:
        raise WeChatError(40003)
    return jsonify({"openid": owner[1], "nickname": "微信用户", "sex": 0,
                    "province": "", "city": "", "country": "", "headimgurl": "",
                    "privilege": []})


@bp.get("/sns/auth")
def sns_auth():
    """Check a web access token against its openid."""
    state = _state()
    with state.lock:
        owner = state.oauth_tokens.get(request.args.get("access_token", ""))
    if owner is None or owner[1] != request.args.get("openid"):
        raise WeChatError(40001)
    return _ok()


# -- mini-program ------------------------------------------------------------------------
@bp.get("/sns/jscode2session")
def jscode2session():
    """Redeem a ``wx.login`` code for the mini-program openid and a session key."""
    # wechatpy's code_to_session also sends an access_token; WeChat ignores it, so do we.
    state = _state()
    if request.args.get("grant_type") != "authorization_code":
        raise WeChatError(40002)
    appid = request.args.get("appid")
    state.check_credentials(appid, request.args.get("secret"))
    code = state.redeem_code(state.mp_codes, appid, request.args.get("js_code"))
    return jsonify({"openid": code.openid, "session_key": secrets.token_urlsafe(16)})


@bp.post("/wxa/getwxacodeunlimit")
def wxacode_unlimit():
    """Return a PNG QR code standing in for the mini-program code of a scene."""
    _state().check_token(request.args.get("access_token"))
    data = _body()
    scene = data.get("scene")
    if not isinstance(scene, str) or not scene or len(scene) > 32:
        raise WeChatError(40169)
    page = data.get("page") or ""
    return Response(_png(f"{page}?scene={scene}", int(data.get("width") or 430)),
                    mimetype="image/png")


# -- input checks, as strict as WeChat's ------------------------------------------------------
def _ok(**payload: Any) -> Response:
    return jsonify({"errcode": 0, "errmsg": "ok", **payload})


def _body() -> dict:
    """Parse the JSON body from ``request.data``: wechatpy sends no JSON content type."""
    try:
        data = json.loads(request.data.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        raise WeChatError(47001) from None
    if not isinstance(data, dict):
        raise WeChatError(47001)
    return data


def _require_str(data: dict, key: str, errcode: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise WeChatError(errcode)
    return value


def _check_template_data(data: dict) -> dict:
    payload = data.get("data")
    if not isinstance(payload, dict) or not payload:
        raise WeChatError(47001)
    for item in payload.values():
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise WeChatError(47003)
    return payload


def _check_menu(data: dict) -> None:
    buttons = data.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise WeChatError(40016)
    for button in buttons:
        subs = button.get("sub_button") if isinstance(button, dict) else None
        if not isinstance(button, dict) or not button.get("name"):
            raise WeChatError(40018)
        if subs:
            if len(subs) > 5:
                raise WeChatError(40016)
            for sub in subs:
                _check_leaf(sub)
        else:
            _check_leaf(button)


def _check_leaf(button: Any) -> None:
    if not isinstance(button, dict) or not button.get("name"):
        raise WeChatError(40018)
    kind = button.get("type")
    if kind == "view":
        if not str(button.get("url", "")).startswith(("http://", "https://")):
            raise WeChatError(40020)
    elif kind in ("click", "scancode_push", "scancode_waitmsg"):
        if not button.get("key"):
            raise WeChatError(40019)
    elif kind == "miniprogram":
        if not button.get("appid") or not button.get("pagepath"):
            raise WeChatError(40017)
    else:
        raise WeChatError(40017)


def _add_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _png(text: str, width: int) -> bytes:
    import qrcode

    img = qrcode.make(text, box_size=max(2, min(width, 1280) // 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
