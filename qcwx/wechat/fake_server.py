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
* ``/_fake/phone/<openid>`` shows what a user received, as their phone would; opening it makes
  this browser that user's phone (a cookie), so OAuth from a tapped link logs them in.

Run it alone with ``python -m qcwx.wechat.fake_server --port 5055`` or
``flask --app wsgi fake-wechat``. The pieces: :mod:`qcwx.wechat.fake_state` (what it
remembers), :mod:`qcwx.wechat.fake_api` (the WeChat endpoints, a blueprint) and
:mod:`qcwx.wechat.fake_control` (the ``/_fake/*`` introspection, a blueprint); this module
builds the app and runs it (in a thread, in the foreground or detached).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from qcwx.wechat import fake_api, fake_control
from qcwx.wechat.fake_control import CHECKOUT
from qcwx.wechat.fake_state import (
    CODE_TTL,
    DEFAULT_APPID_SECRETS,
    DEFAULT_OPENID,
    ERRMSG,
    TOKEN_TTL,
    FakeState,
    WeChatError,
    norm_path,
)

__all__ = [
    "CODE_TTL", "DEFAULT_APPID_SECRETS", "DEFAULT_OPENID", "ERRMSG", "TOKEN_TTL",
    "FakeState", "FakeWeChatServer", "RemoteFakeWeChat", "WeChatError",
    "appid_secrets_from_settings", "create_fake_app", "default_port", "main", "serve",
    "start_background",
]

logger = logging.getLogger(__name__)


def create_fake_app(appid_secrets: dict[str, str] | None = None) -> Flask:
    """Build the fake WeChat as a Flask app; its state is ``app.extensions['fake_wechat']``."""
    app = Flask("qcwx_fake_wechat")
    app.json.ensure_ascii = False
    app.extensions["fake_wechat"] = FakeState(dict(appid_secrets or DEFAULT_APPID_SECRETS))
    app.register_blueprint(fake_api.bp)
    app.register_blueprint(fake_control.bp)
    return app


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

    def owner(self) -> dict:
        """Return the remote fake's pid and checkout (which ``make run`` it belongs to)."""
        state = self._get("/_fake/state")
        return {"pid": state.get("pid"), "checkout": state.get("checkout")}

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
        return self.state.mint_code(self.state.mp_codes, appid or self.state.mp_appid(),
                                    openid, "mp")

    def calls_to(self, path: str) -> list[dict]:
        """Return the recorded calls to one path."""
        return [c for c in self.calls if c["path"] == norm_path(path)]


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

    def owner(self) -> dict:
        """Return the remote fake's pid and checkout (which ``make run`` it belongs to)."""
        state = self._get("/_fake/state")
        return {"pid": state.get("pid"), "checkout": state.get("checkout")}

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
        owner = RemoteFakeWeChat(url).owner()
        if owner.get("checkout") != CHECKOUT:
            raise RuntimeError(
                f"{url} is taken by a fake WeChat of another checkout ({owner.get('checkout')}, "
                f"pid {owner.get('pid')}); stop it, or set QCWX_WECHAT_API_BASE to another port")
        return None  # this checkout's own fake, still running: reuse it
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


def stop_background(host: str, port: int, pid_file: Path) -> int | None:
    """Stop the fake ``start_background`` started from this checkout; return its pid.

    Only a fake that answers at ``host:port`` as this checkout's and whose pid is the one in
    ``pid_file`` is stopped; anything else is left alone (None).
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    url = f"http://{host}:{port}"
    remote = RemoteFakeWeChat(url)
    if not remote.answers():
        pid_file.unlink(missing_ok=True)  # stale: that fake is gone already
        return None
    if remote.owner() != {"pid": pid, "checkout": CHECKOUT}:
        return None  # another checkout's (or a hand-started) fake: not ours to stop
    os.kill(pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)
    return pid
