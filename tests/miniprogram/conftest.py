"""Fixtures for the mini-program API: the app on its own test database, logged-in clients.

Login goes the real way: the fake WeChat mints a ``wx.login`` code for an openid, the API
exchanges it through ``code2session`` over HTTP and answers a JWT.
"""

from __future__ import annotations

import pytest

from tests.fixtures.alerts import ALERT_SETTINGS
from tests.fixtures.app import app_fixture

API = "/api/mp/v1"


app = app_fixture("mp", fake_wechat=True, **ALERT_SETTINGS)


@pytest.fixture
def mp_login(client, fake_wechat):
    """Log a user in through POST /login; returns the Authorization headers."""

    def _login(user):
        code = fake_wechat.mint_mp_code(user.mp_openid)
        resp = client.post(f"{API}/login", json={"code": code})
        assert resp.status_code == 200, resp.get_json()
        return {"Authorization": f"Bearer {resp.get_json()['token']}"}

    return _login
