"""A local stand-in for WeChat's HTTP APIs, strict enough to catch real integration bugs.

WeChat's servers are unreachable in development and CI, and a mock would hide exactly the
bugs that hurt in production (token ping-pong between workers, the wrong signature argument,
a JSON body wechatpy sends without a content type). So tests and ``make run`` talk to this
server over real HTTP with the real wechatpy client. It behaves like WeChat where it matters:

* ``/cgi-bin/token`` issues a token per appid; issuing a new one invalidates the old one
  (40001), expired tokens answer 42001, unknown appid 40013, wrong secret 40125;
* message, ticket, menu, mini-program code and OAuth endpoints validate their input and
  answer WeChat's errcodes (47001 bad JSON, 40029 invalid code, 40163 code used, ...);
* everything is recorded (``calls``, ``messages``) and failures can be injected
  (``fail_next``) for retry tests, in-process or through ``/_fake/*`` from another process.

Run it alone with ``python -m qcwx.wechat.fake_server --port 5055`` or
``flask --app wsgi fake-wechat``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from flask import Flask, Response, jsonify, redirect, request
from werkzeug.serving import WSGIRequestHandler, make_server

logger = logging.getLogger(__name__)

# The development credentials of qcwx.config; the fake accepts them unless told otherwise.
DEFAULT_APPID_SECRETS = {"wx_dev_appid": "dev-secret", "wx_dev_mp_appid": "dev-mp-secret"}
DEFAULT_OPENID = "oFakeDefaultOpenid0000000000"
TOKEN_TTL = 7200
CODE_TTL = 300

# errmsg texts as WeChat words them (English, as the real API answers).
ERRMSG = {
    0: "ok",
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40097: "invalid args",
    40125: "invalid appsecret",
    40163: "code been used",
    40169: "invalid length for scene",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    41028: "invalid form id",
    42001: "access_token expired",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit",
    47001: "data format error",
    47003: "argument invalid! data.keyword value invalid",
}


class WeChatError(Exception):
    """An errcode answer; raised inside a handler and turned into WeChat's JSON shape."""

    def __init__(self, errcode: int, errmsg: str | None = None):
        super().__init__(errcode)
        self.errcode = errcode
        self.errmsg = errmsg or ERRMSG.get(errcode, "error")


@dataclass
class _Token:
    appid: str
    expires_at: float
    valid: bool = True


@dataclass
class _Code:
    appid: str
    openid: str
    scope: str
    expires_at: float
    used: bool = False


@dataclass
class FakeState:
    """Everything the fake remembers; one lock guards it (the server is threaded)."""

    appid_secrets: dict[str, str]
    token_ttl: int = TOKEN_TTL
    default_openid: str = DEFAULT_OPENID
    lock: threading.RLock = field(default_factory=threading.RLock)
    calls: list[dict] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    failures: dict[str, list[int]] = field(default_factory=dict)
    tokens: dict[str, _Token] = field(default_factory=dict)
    current_token: dict[str, str] = field(default_factory=dict)
    oauth_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    mp_codes: dict[str, _Code] = field(default_factory=dict)
    refresh_counts: dict[str, int] = field(default_factory=dict)
    ticket_count: int = 0
    menu: dict | None = None
    msgids: Any = field(default_factory=lambda: itertools.count(1000001))

    def reset(self) -> None:
        """Forget calls, messages, failures, tokens and codes (a fresh WeChat)."""
        with self.lock:
            self.calls.clear()
            self.messages.clear()
            self.failures.clear()
            self.tokens.clear()
            self.current_token.clear()
            self.oauth_tokens.clear()
            self.codes.clear()
            self.mp_codes.clear()
            self.refresh_counts.clear()
            self.ticket_count = 0
            self.menu = None

    @property
    def refresh_count(self) -> int:
        """Return how many access tokens were issued, all appids together."""
        with self.lock:
            return sum(self.refresh_counts.values())

    def fail_next(self, path: str, errcode: int, times: int = 1) -> None:
        """Make the next ``times`` calls to ``path`` answer ``errcode``."""
        with self.lock:
            self.failures.setdefault(_norm(path), []).extend([int(errcode)] * int(times))

    def expire_tokens(self, appid: str | None = None) -> None:
        """Expire the current tokens (of ``appid`` or all), as if 7200 s had passed."""
        with self.lock:
            for token in self.tokens.values():
                if appid is None or token.appid == appid:
                    token.expires_at = 0

    # -- token bookkeeping ------------------------------------------------------------
    def issue_token(self, appid: str) -> str:
        with self.lock:
            old = self.current_token.get(appid)
            if old:
                self.tokens[old].valid = False
            token = f"FAKE_AT_{secrets.token_hex(16)}"
            self.tokens[token] = _Token(appid, time.time() + self.token_ttl)
            self.current_token[appid] = token
            self.refresh_counts[appid] = self.refresh_counts.get(appid, 0) + 1
            return token

    def check_token(self, token: str | None) -> str:
        """Return the appid the token belongs to, or raise 41001/40001/42001."""
        if not token:
            raise WeChatError(41001)
        with self.lock:
            found = self.tokens.get(token)
            if found is None or not found.valid:
                raise WeChatError(40001)
            if found.expires_at <= time.time():
                raise WeChatError(42001)
            return found.appid

    def check_credentials(self, appid: str | None, secret: str | None) -> None:
        if not appid:
            raise WeChatError(41002)
        if appid not in self.appid_secrets:
            raise WeChatError(40013)
        if not secret:
            raise WeChatError(41004)
        if self.appid_secrets[appid] != secret:
            raise WeChatError(40125)

    def mint_code(self, store: dict[str, _Code], appid: str, openid: str, scope: str) -> str:
        code = secrets.token_hex(16)
        with self.lock:
            store[code] = _Code(appid, openid, scope, time.time() + CODE_TTL)
        return code

    def redeem_code(self, store: dict[str, _Code], appid: str, code: str | None) -> _Code:
        if not code:
            raise WeChatError(41008)
        with self.lock:
            found = store.get(code)
            if found is None or found.appid != appid or found.expires_at <= time.time():
                raise WeChatError(40029)
            if found.used:
                raise WeChatError(40163)
            found.used = True
            return found


def _norm(path: str) -> str:
    return "/" + path.strip().lstrip("/")


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


def create_fake_app(appid_secrets: dict[str, str] | None = None) -> Flask:
    """Build the fake WeChat as a Flask app; its state is ``app.extensions['fake_wechat']``."""
    app = Flask("qcwx_fake_wechat")
    app.json.ensure_ascii = False
    state = FakeState(dict(appid_secrets or DEFAULT_APPID_SECRETS))
    app.extensions["fake_wechat"] = state

    @app.errorhandler(WeChatError)
    def _wechat_error(exc: WeChatError):
        return jsonify({"errcode": exc.errcode, "errmsg": f"{exc.errmsg} rid: fake"})

    @app.before_request
    def _record_and_inject():
        if request.path.startswith("/_fake/"):
            return None
        body: Any = None
        if request.data:
            try:
                body = json.loads(request.data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                body = request.data.decode("utf-8", "replace")
        with state.lock:
            state.calls.append(
                {"method": request.method, "path": request.path,
                 "args": request.args.to_dict(), "json": body, "time": time.time()}
            )
            queued = state.failures.get(request.path)
            errcode = queued.pop(0) if queued else None
        if errcode is not None:
            raise WeChatError(errcode)
        return None

    # -- access token, tickets ---------------------------------------------------------
    @app.get("/cgi-bin/token")
    def token():
        if request.args.get("grant_type") != "client_credential":
            raise WeChatError(40002)
        appid = request.args.get("appid")
        state.check_credentials(appid, request.args.get("secret"))
        return jsonify({"access_token": state.issue_token(appid), "expires_in": state.token_ttl})

    @app.get("/cgi-bin/ticket/getticket")
    def getticket():
        state.check_token(request.args.get("access_token"))
        if request.args.get("type", "jsapi") not in ("jsapi", "wx_card"):
            raise WeChatError(40097)
        with state.lock:
            state.ticket_count += 1
        return _ok(ticket=f"FAKE_TICKET_{secrets.token_hex(16)}", expires_in=state.token_ttl)

    # -- messages ----------------------------------------------------------------------
    @app.post("/cgi-bin/message/template/send")
    def template_send():
        state.check_token(request.args.get("access_token"))
        data = _body()
        touser = _require_str(data, "touser", 40003)
        template_id = _require_str(data, "template_id", 40037)
        payload = _check_template_data(data)
        return _deliver("template", touser, template_id, payload, url=data.get("url"),
                        miniprogram=data.get("miniprogram"))

    @app.post("/cgi-bin/message/subscribe/send")
    def subscribe_send():
        state.check_token(request.args.get("access_token"))
        data = _body()
        touser = _require_str(data, "touser", 40003)
        template_id = _require_str(data, "template_id", 40037)
        payload = _check_template_data(data)
        return _deliver("subscribe", touser, template_id, payload, page=data.get("page"))

    @app.post("/cgi-bin/message/subscribe/bizsend")
    def subscribe_bizsend():
        state.check_token(request.args.get("access_token"))
        data = _body()
        touser = _require_str(data, "touser", 40003)
        template_id = _require_str(data, "template_id", 40037)
        payload = _check_template_data(data)
        return _deliver("subscribe_biz", touser, template_id, payload, page=data.get("page"))

    def _deliver(kind: str, touser: str, template_id: str, payload: dict, **extra: Any):
        msgid = next(state.msgids)
        message = {"kind": kind, "touser": touser, "template_id": template_id,
                   "data": payload, "msgid": msgid, "time": time.time()}
        message.update({k: v for k, v in extra.items() if v is not None})
        with state.lock:
            state.messages.append(message)
        return _ok(msgid=msgid)

    # -- menu --------------------------------------------------------------------------
    @app.post("/cgi-bin/menu/create")
    def menu_create():
        state.check_token(request.args.get("access_token"))
        data = _body()
        _check_menu(data)
        with state.lock:
            state.menu = data
        return _ok()

    @app.get("/cgi-bin/menu/get")
    def menu_get():
        state.check_token(request.args.get("access_token"))
        with state.lock:
            if state.menu is None:
                raise WeChatError(46003, "menu no exist")
            return jsonify({"menu": state.menu})

    # -- OAuth (official-account web pages) ----------------------------------------------
    @app.get("/connect/oauth2/authorize")
    def authorize():
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
        openid = request.args.get("openid") or state.default_openid
        code = state.mint_code(state.codes, appid, openid, scope)
        return redirect(_add_query(redirect_uri, code=code, state=request.args.get("state", "")))

    @app.get("/sns/oauth2/access_token")
    def oauth_access_token():
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

    @app.get("/sns/userinfo")
    def userinfo():
        with state.lock:
            owner = state.oauth_tokens.get(request.args.get("access_token", ""))
        if owner is None:
            raise WeChatError(40001)
        if request.args.get("openid") != owner[1]:
            raise WeChatError(40003)
        return jsonify({"openid": owner[1], "nickname": "微信用户", "sex": 0,
                        "province": "", "city": "", "country": "", "headimgurl": "",
                        "privilege": []})

    @app.get("/sns/auth")
    def sns_auth():
        with state.lock:
            owner = state.oauth_tokens.get(request.args.get("access_token", ""))
        if owner is None or owner[1] != request.args.get("openid"):
            raise WeChatError(40001)
        return _ok()

    # -- mini-program ------------------------------------------------------------------
    @app.get("/sns/jscode2session")
    def jscode2session():
        # wechatpy's code_to_session also sends an access_token; WeChat ignores it, so do we.
        if request.args.get("grant_type") != "authorization_code":
            raise WeChatError(40002)
        appid = request.args.get("appid")
        state.check_credentials(appid, request.args.get("secret"))
        code = state.redeem_code(state.mp_codes, appid, request.args.get("js_code"))
        return jsonify({"openid": code.openid, "session_key": secrets.token_urlsafe(16)})

    @app.post("/wxa/getwxacodeunlimit")
    def wxacode_unlimit():
        state.check_token(request.args.get("access_token"))
        data = _body()
        scene = data.get("scene")
        if not isinstance(scene, str) or not scene or len(scene) > 32:
            raise WeChatError(40169)
        page = data.get("page") or ""
        return Response(_png(f"{page}?scene={scene}", int(data.get("width") or 430)),
                        mimetype="image/png")

    # -- introspection for tests in other processes --------------------------------------
    @app.get("/_fake/calls")
    def fake_calls():
        with state.lock:
            return jsonify(list(state.calls))

    @app.get("/_fake/messages")
    def fake_messages():
        with state.lock:
            return jsonify(list(state.messages))

    @app.get("/_fake/state")
    def fake_state():
        with state.lock:
            return jsonify({"refresh_count": state.refresh_count,
                            "refresh_counts": dict(state.refresh_counts),
                            "ticket_count": state.ticket_count, "menu": state.menu,
                            "pending_failures": dict(state.failures)})

    @app.post("/_fake/reset")
    def fake_reset():
        state.reset()
        return jsonify({"ok": True})

    @app.post("/_fake/fail")
    def fake_fail():
        data = request.get_json(force=True, silent=True) or {}
        if not data.get("path") or not isinstance(data.get("errcode"), int):
            return jsonify({"error": "需要 path 与整数 errcode"}), 400
        state.fail_next(data["path"], data["errcode"], int(data.get("times", 1)))
        return jsonify({"ok": True})

    @app.post("/_fake/expire")
    def fake_expire():
        data = request.get_json(force=True, silent=True) or {}
        state.expire_tokens(data.get("appid"))
        return jsonify({"ok": True})

    @app.post("/_fake/mp-code")
    def fake_mp_code():
        data = request.get_json(force=True, silent=True) or {}
        openid = data.get("openid")
        if not isinstance(openid, str) or not openid:
            return jsonify({"error": "需要 openid"}), 400
        appid = data.get("appid") or _mp_appid(state)
        return jsonify({"code": state.mint_code(state.mp_codes, appid, openid, "mp")})

    return app


def _mp_appid(state: FakeState) -> str:
    """Pick the mini-program appid: the one whose name says so, else the last one known."""
    appids = list(state.appid_secrets)
    for appid in appids:
        if "mp" in appid:
            return appid
    return appids[-1]


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


class _QuietHandler(WSGIRequestHandler):
    """Keep test output readable: the fake's access log is noise."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        return None


class FakeWeChatServer:
    """Run the fake in a thread of this process; attributes give direct access to its state."""

    def __init__(self, appid_secrets: dict[str, str] | None = None):
        self.app = create_fake_app(appid_secrets)
        self.state: FakeState = self.app.extensions["fake_wechat"]
        self._server = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.port = 0

    def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeWeChatServer:
        """Listen on ``host:port`` (0 = a free port) in a daemon thread; return self."""
        self._server = make_server(host, port, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"fake-wechat-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeWeChatServer:
        return self if self._server else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def calls(self) -> list[dict]:
        """Return the recorded API calls (path, method, args, json), oldest first."""
        return self.state.calls

    @property
    def messages(self) -> list[dict]:
        """Return the delivered template/subscribe messages, oldest first."""
        return self.state.messages

    @property
    def refresh_count(self) -> int:
        """Return how many access tokens were issued since the last reset."""
        return self.state.refresh_count

    @property
    def menu(self) -> dict | None:
        """Return the menu last created through ``/cgi-bin/menu/create``."""
        return self.state.menu

    def reset(self) -> None:
        """Forget everything (tokens included), as a fresh WeChat."""
        self.state.reset()

    def fail_next(self, path: str, errcode: int, times: int = 1) -> None:
        """Make the next ``times`` calls to ``path`` answer WeChat error ``errcode``."""
        self.state.fail_next(path, errcode, times)

    def expire_tokens(self, appid: str | None = None) -> None:
        """Expire the current access tokens so the next call answers 42001."""
        self.state.expire_tokens(appid)

    def mint_mp_code(self, openid: str, appid: str | None = None) -> str:
        """Return a ``wx.login`` code that jscode2session turns into ``openid``."""
        return self.state.mint_code(self.state.mp_codes, appid or _mp_appid(self.state),
                                    openid, "mp")

    def calls_to(self, path: str) -> list[dict]:
        """Return the recorded calls to one path."""
        return [c for c in self.calls if c["path"] == _norm(path)]


class RemoteFakeWeChat:
    """The same test surface as ``FakeWeChatServer`` for a fake running in another process."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def _get(self, path: str) -> Any:
        res = requests.get(f"{self.url}{path}", timeout=10)
        res.raise_for_status()
        return res.json()

    def _post(self, path: str, payload: dict | None = None) -> Any:
        res = requests.post(f"{self.url}{path}", json=payload or {}, timeout=10)
        res.raise_for_status()
        return res.json()

    @property
    def calls(self) -> list[dict]:
        """Return the recorded API calls of the remote fake."""
        return self._get("/_fake/calls")

    @property
    def messages(self) -> list[dict]:
        """Return the messages the remote fake delivered."""
        return self._get("/_fake/messages")

    @property
    def refresh_count(self) -> int:
        """Return how many tokens the remote fake issued."""
        return self._get("/_fake/state")["refresh_count"]

    @property
    def menu(self) -> dict | None:
        """Return the menu last created on the remote fake."""
        return self._get("/_fake/state")["menu"]

    def reset(self) -> None:
        """Reset the remote fake."""
        self._post("/_fake/reset")

    def fail_next(self, path: str, errcode: int, times: int = 1) -> None:
        """Inject ``errcode`` for the next ``times`` calls to ``path`` on the remote fake."""
        self._post("/_fake/fail", {"path": path, "errcode": errcode, "times": times})

    def expire_tokens(self, appid: str | None = None) -> None:
        """Expire the remote fake's tokens."""
        self._post("/_fake/expire", {"appid": appid} if appid else {})

    def mint_mp_code(self, openid: str, appid: str | None = None) -> str:
        """Return a mini-program login code for ``openid`` from the remote fake."""
        payload = {"openid": openid, **({"appid": appid} if appid else {})}
        return self._post("/_fake/mp-code", payload)["code"]

    def answers(self) -> bool:
        """Return whether a fake listens at ``url``."""
        try:
            return requests.get(f"{self.url}/_fake/state", timeout=1).ok
        except requests.RequestException:
            return False


def serve(port: int, host: str = "127.0.0.1",
          appid_secrets: dict[str, str] | None = None) -> None:
    """Serve the fake in the foreground until interrupted."""
    server = make_server(host, port, create_fake_app(appid_secrets), threaded=True)
    logger.info("fake WeChat listening on http://%s:%s", host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def appid_secrets_from_settings(values: dict[str, Any]) -> dict[str, str]:
    """Return the appid→secret pairs the fake accepts, from qcwx settings."""
    return {values["WECHAT_APPID"]: values["WECHAT_SECRET"],
            values["MP_APPID"]: values["MP_SECRET"]}


def default_port(api_base: str | None) -> int:
    """Return the port of a local ``WECHAT_API_BASE`` (the fake's address), else 5055."""
    parts = urlsplit(api_base or "")
    if parts.hostname in ("127.0.0.1", "localhost") and parts.port:
        return parts.port
    return 5055


def start_background(host: str, port: int, settings: dict[str, Any], pid_file: Path,
                     log_file: Path, wait: float = 15.0) -> int | None:
    """Start the fake as a detached process unless one already answers; return its pid.

    Returns None when a fake already listens at ``host:port`` (``make run`` calls this on
    every start). Credentials travel in the child's environment, not on its command line.
    """
    url = f"http://{host}:{port}"
    if RemoteFakeWeChat(url).answers():
        return None
    env = dict(os.environ)
    env.update({"QCWX_WECHAT_APPID": settings["WECHAT_APPID"],
                "QCWX_WECHAT_SECRET": settings["WECHAT_SECRET"],
                "QCWX_MP_APPID": settings["MP_APPID"], "QCWX_MP_SECRET": settings["MP_SECRET"]})
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter, this module
            [sys.executable, "-m", "qcwx.wechat.fake_server", "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=str(Path(__file__).resolve().parents[2]), start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fake WeChat exited with {proc.returncode}; see {log_file}")
        if RemoteFakeWeChat(url).answers():
            pid_file.write_text(f"{proc.pid}\n")
            return proc.pid
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"fake WeChat did not answer at {url} within {wait:.0f} s; see {log_file}")


def main(argv: list[str] | None = None) -> None:
    """Run ``python -m qcwx.wechat.fake_server --port N`` with the QCWX_* credentials."""
    from qcwx.config import read_environment

    parser = argparse.ArgumentParser(description="Local fake of WeChat's HTTP APIs")
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    serve(args.port, args.host, appid_secrets_from_settings(read_environment()))


if __name__ == "__main__":
    main()
