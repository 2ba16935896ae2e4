"""Login throttling per account and address, per-user API buckets, ProxyFix, WeChat replay."""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlencode

import pytest
import redis
from werkzeug.serving import make_server

from qcwx.extensions import db
from tests.factories import PASSWORD
from tests.fixtures.wechat import TEST_REDIS_URL
from tests.wechat.wx import sign

WRONG = "not-the-password"


@pytest.fixture
def limited(tmp_path):
    """An app with rate limits on (memory storage, one proxy hop); the limiter is restored."""
    from tests.factories import build_world
    from tests.fixtures.app import rate_limited_app

    with rate_limited_app(tmp_path / "rl.sqlite3", PROXY_FIX=1,
                          LOGIN_RATELIMIT_ACCOUNT="3 per minute",
                          LOGIN_RATELIMIT_IP="6 per minute",
                          RATELIMIT_DEFAULT="5 per minute") as app:
        with app.app_context():
            world = build_world()
            app.config["TEST_USERS"] = {k: u.username for k, u in world.users.items()}
            db.session.commit()
            db.session.remove()
        yield app


def _try(client, username, password=WRONG, addr="203.0.113.7"):
    return client.post("/login", data={"username": username, "password": password},
                       headers={"X-Forwarded-For": addr}).status_code


def test_login_is_throttled_per_account_across_addresses(limited):
    name = limited.config["TEST_USERS"]["technician"]
    client = limited.test_client()
    statuses = [_try(client, name, addr=f"198.51.100.{i}") for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert _try(client, f"  {name.upper()} ", addr="198.51.100.99") == 429  # same account
    other = limited.config["TEST_USERS"]["supervisor"]
    assert _try(client, other, PASSWORD, addr="198.51.100.50") == 302


def test_login_is_throttled_per_address_across_accounts(limited):
    client = limited.test_client()
    names = list(limited.config["TEST_USERS"].values())
    statuses = [_try(client, names[i % len(names)] + f"-{i}") for i in range(7)]
    assert statuses[:6] == [200] * 6 and statuses[6] == 429
    assert _try(client, "someone-else", addr="203.0.113.8") == 200  # another address


def test_proxy_fix_takes_the_client_address_from_the_proxy(limited, app):
    from werkzeug.test import EnvironBuilder

    def remote_addr(application) -> str:
        environ = EnvironBuilder(path="/healthz", headers={"X-Forwarded-For": "192.0.2.44"},
                                 environ_base={"REMOTE_ADDR": "10.0.0.1"}).get_environ()
        b"".join(application.wsgi_app(environ, lambda *a, **k: None))
        return environ["REMOTE_ADDR"]

    assert remote_addr(limited) == "192.0.2.44"  # QCWX_PROXY_FIX=1: one trusted hop
    assert remote_addr(app) == "10.0.0.1"  # default: a client cannot choose its address


def test_authenticated_calls_are_limited_per_user_not_per_address(limited):
    users = limited.config["TEST_USERS"]
    one, two = limited.test_client(), limited.test_client()
    for client, name in ((one, users["technician"]), (two, users["supervisor"])):
        assert _try(client, name, PASSWORD, addr="198.51.100.1") == 302
    nat = {"X-Forwarded-For": "198.51.100.1"}  # the whole hospital behind one address
    first = [one.get("/me", headers=nat).status_code for _ in range(5)]
    second = [two.get("/me", headers=nat).status_code for _ in range(5)]
    assert first == [200] * 5 and second == [200] * 5
    assert one.get("/me", headers=nat).status_code == 429


# -- the WeChat callback: replay and body cap ----------------------------------------------
def _query(app, nonce: str, **extra) -> dict:
    stamp = str(int(time.time()))
    token = app.config["WECHAT_TOKEN"]
    return {"signature": sign(token, stamp, nonce), "timestamp": stamp, "nonce": nonce,
            **extra}


def test_a_replayed_timestamp_and_nonce_are_refused(app, client):
    query = _query(app, f"n{time.time_ns()}", echostr="hello")
    assert client.get("/wechat", query_string=query).status_code == 200
    again = client.get("/wechat", query_string=query)
    assert again.status_code == 403 and "重复" in again.get_data(as_text=True)
    fresh = _query(app, f"m{time.time_ns()}", echostr="hello")
    assert client.get("/wechat", query_string=fresh).status_code == 200


def test_replays_are_refused_across_processes_through_redis(app, client):
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable: {exc}")
    from qcwx.wechat import guard

    saved = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = TEST_REDIS_URL
    try:
        query = _query(app, f"r{time.time_ns()}", echostr="hello")
        assert client.get("/wechat", query_string=query).status_code == 200
        guard._seen.clear()  # another process: only Redis remembers the pair
        assert client.get("/wechat", query_string=query).status_code == 403
        key = f"qcwx:wechat:nonce:{query['timestamp']}:{query['nonce']}"
        ttl = redis.Redis.from_url(TEST_REDIS_URL).ttl(key)
        assert 0 < ttl <= 2 * guard.MAX_CLOCK_SKEW
    finally:
        app.config["REDIS_URL"] = saved


def test_a_chunked_body_cannot_bypass_the_64_kb_cap(app):
    """A real HTTP/1.1 chunked POST (no Content-Length) to a real server is cut at 64 KB."""
    from qcwx.wechat.guard import MAX_BODY

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        query = urlencode(_query(app, f"c{time.time_ns()}"))
        chunks = (b"<" + b"x" * 1023 for _ in range(MAX_BODY // 1024 + 8))
        conn.request("POST", f"/wechat?{query}", body=chunks, encode_chunked=True,
                     headers={"Content-Type": "text/xml", "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert resp.status == 413 and "消息过大" in resp.read().decode()
        conn.close()
    finally:
        server.shutdown()
        thread.join(5)


def test_limits_count_in_a_moving_window(limited):
    """A fixed window lets twice the limit through across a minute boundary."""
    from qcwx.extensions import limiter as shared

    assert limited.config["RATELIMIT_STRATEGY"] == "moving-window"
    assert type(shared.limiter).__name__ == "MovingWindowRateLimiter"
