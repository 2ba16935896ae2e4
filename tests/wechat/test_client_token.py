"""wechatpy clients reach the fake over HTTP and share one access token across workers."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from flask import Flask
from wechatpy.exceptions import APILimitedException, WeChatClientException

from qcwx.wechat.client import mp_client, oauth, official_client
from qcwx.wechat.token import namespace
from tests.fixtures.app import require_redis
from tests.fixtures.wechat import TEST_REDIS_URL, WECHAT_SETTINGS

THREADS = 8
PROCESSES = 4
DATA = {"first": {"value": "失控提醒"}, "keyword1": {"value": "葡萄糖 2-2s"}}


def _app(fake_url: str, redis_url: str | None = None) -> Flask:
    """A bare Flask app carrying only the settings the client factory reads."""
    app = Flask("wechat-client-test")
    app.config.update(WECHAT_SETTINGS, WECHAT_API_BASE=fake_url, REDIS_URL=redis_url)
    return app


def _send(app: Flask, openid: str, times: int = 3, client=None) -> None:
    client = client or official_client(app)  # each worker has its own client and session
    for _ in range(times):
        client.message.send_template(openid, "TPL_ALERT", DATA, url="http://qc.example.cn/")


def _process_worker(fake_url: str, redis_url: str, barrier, index: int) -> None:
    barrier.wait(timeout=60)
    _send(_app(fake_url, redis_url), f"oProc{index}")


@pytest.fixture
def shared_redis(fake_wechat):
    """Redis DB 5, without tokens left from an earlier test against this fake."""
    conn = require_redis(TEST_REDIS_URL)
    for key in conn.scan_iter(f"{namespace(fake_wechat.url)}:*"):
        conn.delete(key)
    yield TEST_REDIS_URL
    for key in conn.scan_iter(f"{namespace(fake_wechat.url)}:*"):
        conn.delete(key)


def _burst(fake_url: str, redis_url: str | None) -> None:
    """Send from 8 threads and (with Redis) 4 processes at once; fail on any error."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)
    build_lock = threading.Lock()

    def thread_worker(i: int) -> None:
        try:
            # Only the sends must race (the token under test). Building apps and clients in 8
            # threads at once hit CPython 3.11.7's "AST constructor recursion depth mismatch"
            # (gh-106905, fixed in 3.11.8) once in CI, so each is built one at a time.
            with build_lock:
                client = official_client(_app(fake_url, redis_url))
            barrier.wait(timeout=30)
            _send(None, f"oThread{i}", client=client)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    procs = []
    if redis_url:
        ctx = multiprocessing.get_context("spawn")
        pbarrier = ctx.Barrier(PROCESSES)
        procs = [ctx.Process(target=_process_worker, args=(fake_url, redis_url, pbarrier, i))
                 for i in range(PROCESSES)]
        for p in procs:
            p.start()
    threads = [threading.Thread(target=thread_worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for p in procs:
        p.join(timeout=120)
    assert not errors, errors
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


def test_parallel_threads_and_processes_share_one_token_via_redis(fake_wechat, shared_redis):
    _burst(fake_wechat.url, shared_redis)
    assert fake_wechat.refresh_count == 1
    assert len(fake_wechat.messages) == 3 * (THREADS + PROCESSES)

    fake_wechat.expire_tokens()
    _burst(fake_wechat.url, shared_redis)
    assert fake_wechat.refresh_count == 2
    assert len(fake_wechat.messages) == 6 * (THREADS + PROCESSES)


def test_embedded_default_shares_the_token_between_threads(fake_wechat):
    _burst(fake_wechat.url, None)
    assert fake_wechat.refresh_count == 1
    fake_wechat.expire_tokens()
    _burst(fake_wechat.url, None)
    assert fake_wechat.refresh_count == 2
    assert len(fake_wechat.messages) == 6 * THREADS


def test_token_invalidated_elsewhere_is_refreshed_once_and_retried(fake_wechat):
    app = _app(fake_wechat.url)
    client = official_client(app)
    client.message.send_template("o1", "T", DATA)
    fake_wechat.fail_next("/cgi-bin/message/template/send", 40001)
    assert client.message.send_template("o1", "T", DATA)["errcode"] == 0
    assert fake_wechat.refresh_count == 2
    assert len(fake_wechat.messages) == 2


def test_a_token_error_is_retried_at_most_once(fake_wechat):
    client = official_client(_app(fake_wechat.url))
    fake_wechat.fail_next("/cgi-bin/message/template/send", 40001, times=5)
    with pytest.raises(WeChatClientException) as err:
        client.message.send_template("o1", "T", DATA)
    assert err.value.errcode == 40001
    assert len(fake_wechat.calls_to("/cgi-bin/message/template/send")) == 2
    assert fake_wechat.refresh_count == 2


def test_rate_limit_and_not_subscribed_surface_as_wechatpy_errors(fake_wechat):
    client = official_client(_app(fake_wechat.url))
    fake_wechat.fail_next("/cgi-bin/message/template/send", 45009)
    with pytest.raises(APILimitedException):
        client.message.send_template("o1", "T", DATA)
    fake_wechat.fail_next("/cgi-bin/message/template/send", 43004)
    with pytest.raises(WeChatClientException) as err:
        client.message.send_template("o1", "T", DATA)
    assert err.value.errcode == 43004
    assert fake_wechat.messages == []


def test_wrong_secret_raises_without_looping(fake_wechat):
    app = _app(fake_wechat.url)
    app.config["WECHAT_SECRET"] = "wrong"
    with pytest.raises(WeChatClientException) as err:
        official_client(app).message.send_template("o1", "T", DATA)
    assert err.value.errcode == 40125
    assert len(fake_wechat.calls) == 1


def test_mini_program_client_reaches_wxa_endpoints_on_the_fake(fake_wechat):
    client = mp_client(_app(fake_wechat.url))
    code = fake_wechat.mint_mp_code("oMini")
    assert client.wxa.code_to_session(code)["openid"] == "oMini"
    png = client.wxa.get_wxa_code_unlimited("ts=42", page="pages/entry/entry")
    assert png.content.startswith(b"\x89PNG")
    client.wxa.send_subscribe_message("oMini", "SUB_TPL", {"thing1": {"value": "失控"}},
                                      page="pages/run/run?id=1")
    assert fake_wechat.messages[-1]["kind"] == "subscribe"
    assert fake_wechat.messages[-1]["page"] == "pages/run/run?id=1"
    token_calls = fake_wechat.calls_to("/cgi-bin/token")
    assert {c["args"]["appid"] for c in token_calls} == {WECHAT_SETTINGS["MP_APPID"]}


def test_oauth_client_points_browser_and_api_calls_at_the_fake(fake_wechat):
    o = oauth(_app(fake_wechat.url), "http://qc.example.cn/wechat/oauth/callback", state="s")
    assert o.authorize_url.startswith(f"{fake_wechat.url}/connect/oauth2/authorize?")
    with pytest.raises(WeChatClientException.__mro__[1]):  # WeChatException: invalid code
        o.fetch_access_token("bogus")
    assert fake_wechat.calls_to("/sns/oauth2/access_token")


def test_without_api_base_requests_go_to_wechat_itself(fake_wechat):
    app = _app(fake_wechat.url)
    app.config["WECHAT_API_BASE"] = None
    client = official_client(app)
    adapter = client._http.get_adapter("https://api.weixin.qq.com/cgi-bin/token")
    assert type(adapter).__name__ == "HTTPAdapter"
    assert oauth(app, "http://x/cb").authorize_url.startswith("https://open.weixin.qq.com/")
