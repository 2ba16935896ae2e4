"""Fixtures for WeChat tests: the fake WeChat on a free port, and the app pointed at it.

``fake_wechat`` is the fake server (started once per session, reset before each test) with
``.url``, ``.calls``, ``.messages``, ``.refresh_count``, ``.reset()``, ``.fail_next()``.
The ``app`` fixture here overrides the shared one so that ``WECHAT_API_BASE`` is the fake's
URL; it still runs every DB test on SQLite and MariaDB.
"""

from __future__ import annotations

import pytest

from qcwx.extensions import db
from qcwx.wechat.fake_server import FakeWeChatServer
from tests.conftest import MARIADB_URL, make_test_app, recreate_mariadb_database, require_mariadb

WECHAT_SETTINGS = {
    "WECHAT_APPID": "wx_test_appid",
    "WECHAT_SECRET": "test-secret",
    "WECHAT_TOKEN": "qcwx-test-token",
    "MP_APPID": "wx_test_mp_appid",
    "MP_SECRET": "test-mp-secret",
    "BASE_URL": "http://qc.example.cn",
}
APPID_SECRETS = {WECHAT_SETTINGS["WECHAT_APPID"]: WECHAT_SETTINGS["WECHAT_SECRET"],
                 WECHAT_SETTINGS["MP_APPID"]: WECHAT_SETTINGS["MP_SECRET"]}
TEST_REDIS_URL = "redis://127.0.0.1:6379/5"


@pytest.fixture(scope="session")
def fake_wechat_server():
    """One fake WeChat for the whole session, on a free port of 127.0.0.1."""
    server = FakeWeChatServer(APPID_SECRETS).start(port=0)
    yield server
    server.stop()


@pytest.fixture
def fake_wechat(fake_wechat_server):
    """The fake WeChat, reset before the test (no calls, messages, tokens or failures)."""
    fake_wechat_server.reset()
    _forget_memory_tokens()
    return fake_wechat_server


def _forget_memory_tokens() -> None:
    """Drop process-wide tokens: the fake's reset invalidated them anyway."""
    from qcwx.wechat import token

    with token._registry_guard:
        token._memory_stores.clear()


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
def app(request, tmp_path_factory, fake_wechat_server):
    """The app on SQLite and MariaDB, its WeChat calls going to the session's fake."""
    if request.param == "mariadb":
        require_mariadb()
        recreate_mariadb_database()
        url = MARIADB_URL
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'qcwx.sqlite3'}"
    application = make_test_app(url, WECHAT_API_BASE=fake_wechat_server.url, **WECHAT_SETTINGS)
    application.config["DB_BACKEND"] = request.param
    with application.app_context():
        db.session.remove()
        db.session.configure(join_transaction_mode="create_savepoint")
    yield application
    with application.app_context():
        db.engine.dispose()
