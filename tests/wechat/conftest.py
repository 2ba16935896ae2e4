"""WeChat tests: the app's WeChat calls go to the session's fake (its own MariaDB database)."""

from __future__ import annotations

from tests.fixtures.app import app_fixture
from tests.fixtures.wechat import WECHAT_SETTINGS

app = app_fixture("wechat", fake_wechat=True, **WECHAT_SETTINGS)
