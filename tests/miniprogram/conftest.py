"""Fixtures for the mini-program API: the app on its own test database, logged-in clients.

Login goes the real way: the fake WeChat mints a ``wx.login`` code for an openid, the API
exchanges it through ``code2session`` over HTTP and answers a JWT.
"""

from __future__ import annotations

import pytest

from qcwx.extensions import db
from tests.alerts.conftest import bound, build_app, submit  # noqa: F401
from tests.wechat.conftest import fake_wechat, fake_wechat_server  # noqa: F401

API = "/api/mp/v1"


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
def app(request, tmp_path_factory, fake_wechat_server):  # noqa: F811
    """The app on SQLite and MariaDB (``<test db>_mp``), WeChat calls going to the fake."""
    application = build_app(request, tmp_path_factory, fake_wechat_server.url, "mp")
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def mp_login(client, fake_wechat):  # noqa: F811
    """Log a user in through POST /login; returns the Authorization headers."""

    def _login(user):
        code = fake_wechat.mint_mp_code(user.mp_openid)
        resp = client.post(f"{API}/login", json={"code": code})
        assert resp.status_code == 200, resp.get_json()
        return {"Authorization": f"Bearer {resp.get_json()['token']}"}

    return _login
