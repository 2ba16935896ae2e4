"""Real processes for the end-to-end tests: a Celery worker, the web app, a private Redis.

Each test starts what it needs as child processes (:mod:`bench.stack`, shared with the load
and fault scripts) and stops them (by pid) in teardown: the
worker (``celery -A workers.celery_app worker -P solo``), the app (``tests.e2e.live_server``)
and, for the outage test, its own ``redis-server`` on a free port — the shared Redis on 6379
is never stopped. The fake WeChat runs in a thread of this process; the worker reaches it over
HTTP like it would reach WeChat. The database is a fresh MariaDB database ``<test db>_e2e``.

Redis and MariaDB not answering is a skip on a laptop and a failure in CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import timedelta

import pytest
import redis as redis_lib

from bench.stack import Stack
from bench.stack import base_env as stack_env
from qcwx.extensions import db
from qcwx.wechat.fake_server import FakeWeChatServer
from tests.fixtures.alerts import derived_mariadb_url
from tests.fixtures.app import IN_CI, make_test_app, mariadb_reachable, recreate_mariadb_database
from tests.fixtures.wechat import APPID_SECRETS, WECHAT_SETTINGS

SHARED_REDIS = os.environ.get("QCWX_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
BASE_URL = "http://qc.e2e.example"
TEMPLATE = "E2E_QC_ALERT"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: real Celery worker + Redis + MariaDB + fake WeChat over HTTP "
                   "(skipped locally when Redis/MariaDB do not answer; required in CI)")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"end-to-end test needs {reason} in CI")
    pytest.skip(f"end-to-end test skipped: {reason}")


def require_services() -> None:
    """Skip (locally) or fail (CI) unless MariaDB, the shared Redis and redis-server exist."""
    reason = mariadb_reachable()
    if reason:
        _unavailable(f"MariaDB ({reason})")
    try:
        redis_lib.Redis.from_url(SHARED_REDIS, socket_connect_timeout=2).ping()
    except redis_lib.RedisError as exc:
        _unavailable(f"Redis at {SHARED_REDIS} ({exc})")
    if not shutil.which("redis-server"):
        _unavailable("the redis-server binary")


@pytest.fixture(scope="module")
def fake_server():
    """The fake WeChat in a thread of this process, reachable over HTTP by the children."""
    server = FakeWeChatServer(APPID_SECRETS).start(port=0)
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server):
    """The fake WeChat, reset: no messages, calls or tokens from an earlier test."""
    fake_server.reset()
    return fake_server


def base_env(database_url: str, fake_url: str, redis_url: str | None) -> dict[str, str]:
    """Return the environment of the web and worker processes (configured as in production)."""
    return stack_env(database_url, fake_url, redis_url,
                     {**WECHAT_SETTINGS, "BASE_URL": BASE_URL, "WECHAT_TEMPLATE_ALERT": TEMPLATE})


@pytest.fixture
def stack(tmp_path):
    """Collects the test's child processes and stops them all in teardown."""
    holder = Stack(tmp_path, {})
    yield holder
    holder.stop_all()


@dataclass
class Lab:
    """The seeded lab: ids and openids the tests need."""

    database_url: str
    ts_id: int
    supervisor_openid: str
    technician_mp_openid: str
    supervisor_id: int


def seed(database_url: str) -> Lab:
    """Create the schema and one lab with a bound supervisor and technician, limits set."""
    from qcwx.iqc import targets
    from qcwx.timeutil import local_today
    from tests import factories

    app = make_test_app(database_url)
    with app.app_context():
        region = factories.region()
        lab = factories.lab(factories.hospital(region))
        sup = factories.user("supervisor", lab_=lab, name="李主管")
        tech = factories.user("technician", lab_=lab, name="王技师")
        sup.wechat_openid = "oE2eSupervisor00000000000000"
        tech.mp_openid = "oE2eTechnicianMp000000000000"
        ts = factories.test_system(lab, factories.analyte(), factories.qc_lot(2))
        for lv in ts.levels:
            mean, sd = (5.0, 0.2) if lv.level_index == 1 else (15.0, 0.5)
            targets.set_control_limit(sup, ts, lv, mean=mean, sd=sd, kind="fixed",
                                      effective_from=local_today() - timedelta(days=30),
                                      reason="说明书靶值")
        db.session.commit()
        seeded = Lab(database_url, ts.id, sup.wechat_openid, tech.mp_openid, sup.id)
        db.session.remove()
        db.engine.dispose()
    return seeded


@pytest.fixture
def mariadb_lab(request):
    """A fresh MariaDB database (``<test db>_e2e``) seeded with one lab."""
    require_services()
    url = derived_mariadb_url("e2e")
    recreate_mariadb_database(url)
    return seed(url)


@pytest.fixture
def sqlite_lab(tmp_path):
    """A fresh SQLite file seeded with one lab (the embedded default database)."""
    return seed(f"sqlite:///{tmp_path / 'embedded.sqlite3'}")
