"""Production hardening: refused configurations, headers, cookies, session versions."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from flask import g

from qcwx.config import DEV_SECRET_KEY, build_config
from qcwx.errors import ConfigError
from qcwx.extensions import db
from tests.factories import PASSWORD

GOOD_PRODUCTION = {
    "ENV": "production", "DATABASE_URL": "sqlite://", "SECRET_KEY": "k" * 32,
    "BASE_URL": "https://qc.example.cn", "WECHAT_APPID": "wxreal", "WECHAT_SECRET": "s2",
    "WECHAT_TOKEN": "real-token", "WECHAT_AES_KEY": "a" * 43, "REDIS_URL": "redis://r:6379/0",
}
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


# -- configuration -------------------------------------------------------------------------
def test_a_complete_production_configuration_starts():
    cfg = build_config(GOOD_PRODUCTION)
    assert cfg["SESSION_COOKIE_SECURE"] and cfg["REMEMBER_COOKIE_SECURE"]


@pytest.mark.parametrize("change, variable", [
    ({"SECRET_KEY": DEV_SECRET_KEY}, "QCWX_SECRET_KEY"),
    ({"SECRET_KEY": "x" * 31}, "QCWX_SECRET_KEY"),
    ({"SECRET_KEY": "密" * 10}, "QCWX_SECRET_KEY"),  # 30 bytes
    ({"WECHAT_TOKEN": "qcwx-dev-token"}, "QCWX_WECHAT_TOKEN"),
    ({"WECHAT_AES_KEY": None}, "QCWX_WECHAT_AES_KEY"),
    ({"WECHAT_AES_KEY": "short"}, "QCWX_WECHAT_AES_KEY"),
    ({"REDIS_URL": None}, "QCWX_REDIS_URL"),
])
def test_production_refuses_weak_settings_naming_the_variable(change, variable):
    with pytest.raises(ConfigError, match=variable):
        build_config(GOOD_PRODUCTION | change)


def test_development_cookies_are_not_secure_but_http_only_and_lax():
    cfg = build_config({"DATABASE_URL": "sqlite://"})
    assert not cfg["SESSION_COOKIE_SECURE"] and not cfg["REMEMBER_COOKIE_SECURE"]
    assert cfg["SESSION_COOKIE_HTTPONLY"] and cfg["REMEMBER_COOKIE_HTTPONLY"]
    assert cfg["SESSION_COOKIE_SAMESITE"] == cfg["REMEMBER_COOKIE_SAMESITE"] == "Lax"
    assert cfg["REMEMBER_COOKIE_DURATION"] <= timedelta(days=30)


# -- headers -------------------------------------------------------------------------------
def _check_headers(resp, *, production: bool = False):
    h = resp.headers
    csp = h["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    assert h["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert ("Strict-Transport-Security" in h) is production
    if production:
        assert "max-age=31536000" in h["Strict-Transport-Security"]


def test_headers_on_a_page_json_an_error_and_a_static_file(client, world, login):
    _check_headers(client.get("/login"))
    _check_headers(client.get("/api/mp/v1/openapi.json"))
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    _check_headers(missing)
    _check_headers(client.get("/static/js/charts.js"))
    api_error = client.post("/api/mp/v1/runs", data="[", content_type="application/json")
    assert api_error.status_code == 401
    _check_headers(api_error)
    _check_headers(login(world.users["supervisor"]).get("/"))


def test_hsts_only_in_production(app, client):
    saved = app.config["ENV"]
    app.config["ENV"] = "production"
    try:
        _check_headers(client.get("/login"), production=True)
    finally:
        app.config["ENV"] = saved


def test_no_template_has_inline_script_or_handler():
    """The CSP runs only files from /static: JSON data blocks are fine, code is not."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>")
    handler = re.compile(r"<[a-z][^>]*\son[a-z]+(\s*=|\s|>)", re.IGNORECASE)  # bare too
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        if inline.search(text) or handler.search(text) or "javascript:" in text:
            offenders.append(str(path.relative_to(TEMPLATES)))
    assert offenders == []


# -- cookies and session versions ----------------------------------------------------------
def _cookie(resp, name: str) -> str:
    for value in resp.headers.getlist("Set-Cookie"):
        if value.startswith(f"{name}="):
            return value
    raise AssertionError(f"no {name} cookie in {resp.headers.getlist('Set-Cookie')}")


def _login(client, user, remember=True):
    resp = client.post("/login", data={"username": user.username, "password": PASSWORD,
                                       "remember": "y" if remember else ""})
    assert resp.status_code == 302
    return resp


def test_session_and_remember_cookies_are_http_only_lax_and_at_most_30_days(app, world):
    db.session.commit()
    resp = _login(app.test_client(), world.users["technician"])
    for name in ("session", "remember_token"):
        cookie = _cookie(resp, name)
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    expires = re.search(r"Expires=([^;]+)", _cookie(resp, "remember_token")).group(1)
    lifetime = parsedate_to_datetime(expires) - datetime.now(timezone.utc)
    assert timedelta(days=29) < lifetime <= timedelta(days=30, minutes=1)


def _is_logged_in(client) -> bool:
    return client.get("/me").status_code == 200


def _remember_only(app, remember_cookie: str):
    """A fresh browser holding only the remember-me cookie."""
    fresh = app.test_client()
    token = remember_cookie.split(";", 1)[0].split("=", 1)[1]
    fresh.set_cookie("remember_token", token)
    return fresh


def test_logout_ends_every_session_and_remember_cookie(app, world):
    db.session.commit()
    tech = world.users["technician"]
    phone, desktop = app.test_client(), app.test_client()
    remembered = _cookie(_login(phone, tech), "remember_token")
    _login(desktop, tech, remember=False)
    assert _is_logged_in(phone) and _is_logged_in(desktop)
    assert _is_logged_in(_remember_only(app, remembered))
    desktop.post("/logout")
    assert not _is_logged_in(phone) and not _is_logged_in(desktop)
    assert not _is_logged_in(_remember_only(app, remembered))
    _login(phone, tech)
    assert _is_logged_in(phone)  # a new login works again


def test_a_password_change_ends_old_sessions(app, world, session):
    db.session.commit()
    tech = world.users["technician"]
    phone = app.test_client()
    remembered = _cookie(_login(phone, tech), "remember_token")
    tech.set_password(PASSWORD + "-new")
    session.commit()
    g.pop("_login_user", None)  # test requests share this app context: forget the last user
    assert not _is_logged_in(phone)
    assert not _is_logged_in(_remember_only(app, remembered))


def test_a_session_id_without_a_version_or_with_junk_is_no_session(app, world):
    from qcwx.web.security import load_session_user

    uid = world.users["technician"].id
    with app.test_request_context():
        assert load_session_user(f"{uid}:{world.users['technician'].session_version}")
        for junk in (str(uid), f"{uid}:999", "x:0", f"{10**30}:0", "²:0", ""):
            assert load_session_user(junk) is None
