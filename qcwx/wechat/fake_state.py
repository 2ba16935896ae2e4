"""What the fake WeChat remembers: tokens, codes, calls, messages and injected failures.

One :class:`FakeState` per fake app (``app.extensions["fake_wechat"]``); the routes of
:mod:`qcwx.wechat.fake_api` read and change it, the test surface of
:mod:`qcwx.wechat.fake_server` inspects it. One lock guards it: the server is threaded.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# The development credentials of qcwx.config; the fake accepts them unless told otherwise.
DEFAULT_APPID_SECRETS = {"wx_dev_appid": "dev-secret", "wx_dev_mp_appid": "dev-mp-secret"}
DEFAULT_OPENID = "oFakeDefaultOpenid0000000000"
#: The cookie that says which fake user holds this browser ("this phone is openid X"): set
#: by the fake phone page ``/_fake/phone/<openid>``, read by the OAuth authorize page.
PHONE_COOKIE = "qcwx_fake_openid"
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
            self.failures.setdefault(norm_path(path), []).extend([int(errcode)] * int(times))

    def expire_tokens(self, appid: str | None = None) -> None:
        """Expire the current tokens (of ``appid`` or all), as if 7200 s had passed."""
        with self.lock:
            for token in self.tokens.values():
                if appid is None or token.appid == appid:
                    token.expires_at = 0

    def record_call(self, method: str, path: str, args: dict, body: Any) -> int | None:
        """Record one API call; return the errcode injected for it, if one is queued."""
        with self.lock:
            self.calls.append({"method": method, "path": path, "args": args, "json": body,
                               "time": time.time()})
            queued = self.failures.get(path)
            return queued.pop(0) if queued else None

    def deliver(self, kind: str, touser: str, template_id: str, payload: dict,
                **extra: Any) -> int:
        """Store one delivered message (``None`` extras left out); return its msgid."""
        msgid = next(self.msgids)
        message = {"kind": kind, "touser": touser, "template_id": template_id,
                   "data": payload, "msgid": msgid, "time": time.time()}
        message.update({k: v for k, v in extra.items() if v is not None})
        with self.lock:
            self.messages.append(message)
        return msgid

    def mp_appid(self) -> str:
        """Pick the mini-program appid: the one whose name says so, else the last one known."""
        appids = list(self.appid_secrets)
        for appid in appids:
            if "mp" in appid:
                return appid
        return appids[-1]

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


def norm_path(path: str) -> str:
    """Return ``path`` with exactly one leading slash (how failures are keyed)."""
    return "/" + path.strip().lstrip("/")
