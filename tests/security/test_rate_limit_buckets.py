"""Authenticated calls are limited per user or key, anonymous ones per address (issue 14).

A whole hospital sits behind one NAT address: its phones (mini-program tokens), its
analyser interfaces (ingest API keys) and its browsers (sessions) must each have their own
budget there, while one user or key moving between addresses keeps a single budget.
"""

from __future__ import annotations

import pytest

from qcwx.extensions import db
from tests.factories import PASSWORD

NAT = "198.51.100.1"
LIMIT = 5


@pytest.fixture
def limited(tmp_path):
    """An app with every limit at 5 per minute (memory storage, one trusted proxy hop)."""
    from qcwx.ingest import apikeys
    from tests.factories import build_world
    from tests.fixtures.app import rate_limited_app

    with rate_limited_app(tmp_path / "buckets.sqlite3", PROXY_FIX=1,
                          RATELIMIT_DEFAULT=f"{LIMIT} per minute",
                          INGEST_API_RATELIMIT=f"{LIMIT} per minute",
                          LOGIN_RATELIMIT_IP="100 per minute") as app:
        with app.app_context():
            world = build_world()
            users = {k: world.users[k] for k in ("technician", "supervisor")}
            for name, user in users.items():
                user.mp_openid = f"openid-{name}"
            keys = [apikeys.create_key(world.users["center"], lab.id, name)[1]
                    for lab, name in ((world.lab_a, "A"), (world.lab_b, "B"))]
            db.session.commit()
            app.config["TEST_IDS"] = {"users": {k: u.id for k, u in users.items()},
                                      "names": {k: u.username for k, u in users.items()},
                                      "keys": keys}
            db.session.remove()
        yield app


def _mp_headers(app, role: str, addr: str) -> dict:
    from miniprogram_api.auth import issue_token
    from qcwx.orgs.models import User

    with app.app_context():
        user = db.session.get(User, app.config["TEST_IDS"]["users"][role])
        token = issue_token(user)["token"]
    return {"Authorization": f"Bearer {token}", "X-Forwarded-For": addr}


def _statuses(client, path: str, headers: dict, n: int) -> list[int]:
    return [client.get(path, headers=headers).status_code for _ in range(n)]


def test_two_mini_program_users_behind_one_address_have_their_own_budgets(limited):
    client = limited.test_client()
    tech = _mp_headers(limited, "technician", NAT)
    sup = _mp_headers(limited, "supervisor", NAT)
    assert _statuses(client, "/api/mp/v1/me", tech, LIMIT) == [200] * LIMIT
    assert _statuses(client, "/api/mp/v1/me", sup, LIMIT) == [200] * LIMIT
    assert client.get("/api/mp/v1/me", headers=tech).status_code == 429
    assert client.get("/api/mp/v1/me", headers=sup).status_code == 429


def test_one_mini_program_user_on_two_addresses_shares_one_budget(limited):
    client = limited.test_client()
    wifi = _mp_headers(limited, "technician", "203.0.113.10")
    mobile = _mp_headers(limited, "technician", "192.0.2.77")
    assert _statuses(client, "/api/mp/v1/me", wifi, 3) == [200] * 3
    assert _statuses(client, "/api/mp/v1/me", mobile, 3) == [200, 200, 429]


def test_a_forged_token_does_not_open_a_budget_of_its_own(limited):
    """Junk tokens fall back to the address, so they cannot multiply an attacker's budget."""
    client = limited.test_client()
    statuses = [client.get("/api/mp/v1/me", headers={
        "Authorization": f"Bearer junk-{i}", "X-Forwarded-For": NAT}).status_code
        for i in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]
    other = _mp_headers(limited, "technician", NAT)  # a real user at that address is not hit
    assert client.get("/api/mp/v1/me", headers=other).status_code == 200


def test_two_ingest_keys_behind_one_address_and_one_key_on_two_addresses(limited):
    client = limited.test_client()
    key_a, key_b = limited.config["TEST_IDS"]["keys"]

    def call(key, addr):
        return client.get("/api/ingest/v1/me", headers={
            "Authorization": f"Bearer {key}", "X-Forwarded-For": addr}).status_code

    assert [call(key_a, NAT) for _ in range(3)] == [200] * 3
    assert [call(key_a, "192.0.2.5") for _ in range(3)] == [200, 200, 429]  # same key
    assert [call(key_b, NAT) for _ in range(LIMIT)] == [200] * LIMIT  # same NAT, own budget


def test_one_logged_in_user_on_two_addresses_shares_one_budget(limited):
    names = limited.config["TEST_IDS"]["names"]
    one, two = limited.test_client(), limited.test_client()
    for client, addr in ((one, "203.0.113.10"), (two, "192.0.2.77")):
        resp = client.post("/login", data={"username": names["technician"],
                                           "password": PASSWORD},
                           headers={"X-Forwarded-For": addr})
        assert resp.status_code == 302
    first = _statuses(one, "/me", {"X-Forwarded-For": "203.0.113.10"}, 3)
    second = _statuses(two, "/me", {"X-Forwarded-For": "192.0.2.77"}, 3)
    assert first == [200] * 3 and second == [200, 200, 429]


def test_anonymous_calls_are_limited_per_address(limited):
    client = limited.test_client()
    here = _statuses(client, "/healthz", {"X-Forwarded-For": NAT}, LIMIT + 1)
    assert here == [200] * LIMIT + [429]
    assert client.get("/healthz", headers={"X-Forwarded-For": "192.0.2.200"}).status_code == 200


def test_a_refused_call_says_when_to_retry_in_whole_seconds_rounded_up(limited):
    """Regression: 429s carried no Retry-After, so clients could not wait the right time
    (Flask-Limiter's own header, when enabled, rounds down and often says 0)."""
    client = limited.test_client()
    tech = _mp_headers(limited, "technician", NAT)
    assert _statuses(client, "/api/mp/v1/me", tech, LIMIT) == [200] * LIMIT
    refused = client.get("/api/mp/v1/me", headers=tech)
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "请求过于频繁，请稍后再试"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61  # "5 per minute", a moving window
    page = limited.test_client()
    for _ in range(LIMIT):
        page.get("/login", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    refused_page = page.get("/login", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert refused_page.status_code == 429 and 1 <= int(refused_page.headers["Retry-After"]) <= 61


def test_each_app_of_a_process_keeps_its_own_default_limit(tmp_path):
    """Regression: Flask-Limiter's one ``Limiter`` kept the first limited app's default limit
    (the 600/min of a test that ran earlier in the same process), so a later app's 5/min
    never refused anything: the suite failed or passed depending on its order."""
    from tests.fixtures.app import rate_limited_app

    with rate_limited_app(tmp_path / "first.sqlite3", RATELIMIT_DEFAULT="600 per minute") as app:
        assert _statuses(app.test_client(), "/healthz", {}, LIMIT + 1) == [200] * (LIMIT + 1)
    with rate_limited_app(tmp_path / "second.sqlite3", PROXY_FIX=1,
                          RATELIMIT_DEFAULT=f"{LIMIT} per minute") as app:
        here = _statuses(app.test_client(), "/healthz", {"X-Forwarded-For": NAT}, LIMIT + 1)
        assert here == [200] * LIMIT + [429]


def test_a_testing_app_without_the_switch_is_unlimited_whatever_came_before(tmp_path):
    """Regression: the "off when testing" default was set after ``init_app``, which had
    already filled the missing switch from the previous app (on, if that one was limited)."""
    from qcwx import create_app
    from qcwx.extensions import limiter

    saved = limiter.enabled
    limiter.enabled = True  # what a limited app leaves behind
    try:
        app = create_app({"ENV": "testing", "SECRET_KEY": "test-secret", "REDIS_URL": None,
                          "DATABASE_URL": f"sqlite:///{tmp_path / 'quiet.sqlite3'}",
                          "RATELIMIT_DEFAULT": "1 per minute"})
        assert app.config["RATELIMIT_ENABLED"] is False and limiter.enabled is False
        assert _statuses(app.test_client(), "/healthz", {}, 3) == [200] * 3
    finally:
        limiter.enabled = saved


def test_an_unlimited_app_stays_unlimited_while_a_limited_one_is_on(app, tmp_path):
    """Regression: the limiter's switch is one flag shared by every app of the process; a
    limited app (the uploader's test) left it on, and the suite's own app began refusing its
    21st login a minute from 127.0.0.1 and its 61st label."""
    from tests.fixtures.app import rate_limited_app

    with rate_limited_app(tmp_path / "on.sqlite3", LOGIN_RATELIMIT_IP="2 per minute",
                          RATELIMIT_DEFAULT="2 per minute") as limited:
        limited_client = limited.test_client()
        tries = [limited_client.post("/login", data={"username": "x", "password": "y"}
                                     ).status_code for _ in range(3)]
        assert tries == [200, 200, 429]
        client = app.test_client()
        tries = [client.post("/login", data={"username": "x", "password": "y"}).status_code
                 for _ in range(25)]  # its own LOGIN_RATELIMIT_IP would be 20 per minute
        assert tries == [200] * 25
        assert _statuses(client, "/healthz", {}, 5) == [200] * 5
