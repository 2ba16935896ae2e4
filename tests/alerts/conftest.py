"""Alert tests: the app with the alert templates, WeChat on the fake (``<test db>_alerts``)."""

from __future__ import annotations

from tests.fixtures.alerts import ALERT_SETTINGS
from tests.fixtures.app import app_fixture

app = app_fixture("alerts", fake_wechat=True, **ALERT_SETTINGS)
