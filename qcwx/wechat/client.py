"""Build wechatpy clients for the official account, the mini-program and web OAuth.

Every caller (views, alert delivery, mini-program API, Celery tasks) gets its clients here,
so two things hold everywhere:

* **One token for all processes.** Clients keep the access token in the shared store of
  :mod:`qcwx.wechat.token` and refresh it only under its lock, re-reading first. A call that
  fails with 40001/42001 refreshes only if the token it *sent* is still the stored one;
  otherwise another worker already refreshed and the call simply retries with the new token.
  A call retries at most once, so a broken token never loops.
* **Dev/test talk to the fake.** With ``WECHAT_API_BASE`` set, a requests transport adapter
  on the client's HTTP session rewrites ``https://api.weixin.qq.com/…`` and
  ``https://open.weixin.qq.com/…`` to that base. Overriding ``API_BASE_URL`` alone would miss
  the hard-coded token URL and the API groups (``client.wxa``…) with their own base URLs.
  In production ``WECHAT_API_BASE`` is unset and requests go to WeChat itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests
from flask import Flask, current_app
from requests.adapters import HTTPAdapter
from wechatpy import WeChatClient, WeChatOAuth
from wechatpy.constants import WeChatErrorCode
from wechatpy.exceptions import WeChatClientException

from qcwx.wechat.token import TokenStore, token_store, token_ttl

logger = logging.getLogger(__name__)

WECHAT_HOSTS = ("https://api.weixin.qq.com/", "https://open.weixin.qq.com/")
TOKEN_URL = "https://api.weixin.qq.com/cgi-bin/token"  # noqa: S105 - a URL, not a secret
TOKEN_ERRORS = frozenset({
    WeChatErrorCode.INVALID_CREDENTIAL.value,
    WeChatErrorCode.INVALID_ACCESS_TOKEN.value,
    WeChatErrorCode.EXPIRED_ACCESS_TOKEN.value,
})
HTTP_TIMEOUT = 10


class RewriteToFakeAdapter(HTTPAdapter):
    """Send requests meant for WeChat's hosts to ``base`` (the local fake) instead."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base.rstrip("/") + "/"

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Rewrite the URL's WeChat origin to the fake before the connection is chosen."""
        for origin in WECHAT_HOSTS:
            if request.url and request.url.startswith(origin):
                request.url = self.base + request.url[len(origin):]
                break
        return super().send(request, **kwargs)


def route_to_fake(http: requests.Session, base: str) -> None:
    """Mount the rewriting adapter for WeChat's hosts on ``http``."""
    adapter = RewriteToFakeAdapter(base)
    for origin in WECHAT_HOSTS:
        http.mount(origin, adapter)
    # Proxies from the environment were chosen for WeChat's host, not the local fake.
    http.trust_env = False


class TimeoutSession(requests.Session):
    """Give every request a default timeout.

    WeChatOAuth passes none, and a hung call would hold a web worker forever.
    """

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with ``HTTP_TIMEOUT`` unless the caller chose a timeout."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return super().request(method, url, **kwargs)


class SharedTokenClient(WeChatClient):
    """A ``WeChatClient`` whose token lives in a shared store and is refreshed under a lock."""

    def __init__(self, appid: str, secret: str, store: TokenStore, timeout: int = HTTP_TIMEOUT):
        super().__init__(appid, secret, session=store, timeout=timeout)
        self.store = store
        self._local = threading.local()

    @property
    def access_token(self) -> str:
        """Return the shared token, refreshing it (once, under the lock) when absent."""
        token = self.session.get(self.access_token_key)
        return token or self.refresh_access_token(stale=None)

    def fetch_access_token(self) -> dict:
        """Refresh after WeChat rejected the token this thread just sent (wechatpy's retry)."""
        token = self.refresh_access_token(stale=getattr(self._local, "sent_token", None))
        return {"access_token": token}

    def refresh_access_token(self, stale: str | None) -> str:
        """Return a valid token: another worker's newer one, or a new one from WeChat.

        ``stale`` is the token known to be bad (None = none was stored). After taking the
        lock the store is read again; a token that differs from ``stale`` was refreshed by
        someone else meanwhile and is used as is — that is what keeps refreshes at one.
        """
        with self.store.lock(self.access_token_key):
            current = self.session.get(self.access_token_key)
            if current and current != stale:
                return current
            return self._request_new_token()

    def _request_new_token(self) -> str:
        logger.info("refreshing WeChat access token for %s", self.appid)
        res = self._http.get(TOKEN_URL, timeout=self.timeout, params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
        result = self._decode_result(res)
        if not isinstance(result, dict) or "access_token" not in result:
            errcode = result.get("errcode") if isinstance(result, dict) else None
            errmsg = result.get("errmsg") if isinstance(result, dict) else res.text[:200]
            raise WeChatClientException(errcode, errmsg, client=self, request=res.request,
                                        response=res)
        self.session.set(self.access_token_key, result["access_token"],
                         token_ttl(result.get("expires_in")))
        return result["access_token"]

    def _handle_result(self, res: Any, method: str | None = None, url: str | None = None,
                       result_processor: Any = None, **kwargs: Any) -> Any:
        """Remember which token was sent, and retry a token error at most once."""
        params = kwargs.get("params")
        self._local.sent_token = params.get("access_token") if isinstance(params, dict) else None
        depth = getattr(self._local, "depth", 0)
        if depth >= 1 and not isinstance(res, dict):
            result = self._decode_result(res)
            if isinstance(result, dict) and int(result.get("errcode") or 0) in TOKEN_ERRORS:
                raise WeChatClientException(int(result["errcode"]), result.get("errmsg"),
                                            client=self, request=res.request, response=res)
        self._local.depth = depth + 1
        try:
            return super()._handle_result(res, method, url, result_processor, **kwargs)
        finally:
            self._local.depth = depth


def _app(app: Flask | None) -> Flask:
    return app if app is not None else current_app._get_current_object()


def _build(app: Flask, appid: str, secret: str) -> SharedTokenClient:
    base = app.config.get("WECHAT_API_BASE")
    client = SharedTokenClient(appid, secret, token_store(app.config.get("REDIS_URL"), base))
    if base:
        route_to_fake(client._http, base)
    return client


def official_client(app: Flask | None = None) -> SharedTokenClient:
    """Return a client of the official account (template messages, menu, JS-SDK ticket)."""
    app = _app(app)
    return _build(app, app.config["WECHAT_APPID"], app.config["WECHAT_SECRET"])


def mp_client(app: Flask | None = None) -> SharedTokenClient:
    """Return a client of the mini-program; use ``client.wxa`` (code_to_session, subscribe)."""
    app = _app(app)
    return _build(app, app.config["MP_APPID"], app.config["MP_SECRET"])


def oauth(app: Flask | None = None, redirect_uri: str = "", scope: str = "snsapi_base",
          state: str = "") -> WeChatOAuth:
    """Return web OAuth for the official account, its authorize URL pointed at the fake in dev."""
    app = _app(app)
    client = WeChatOAuth(app.config["WECHAT_APPID"], app.config["WECHAT_SECRET"],
                         redirect_uri, scope=scope, state=state)
    client._http = TimeoutSession()
    base = app.config.get("WECHAT_API_BASE")
    if base:
        route_to_fake(client._http, base)
        # The authorize URL is opened by the browser, not by requests: rewrite it too.
        client.OAUTH_BASE_URL = base.rstrip("/") + "/connect/"
    return client
