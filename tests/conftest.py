"""Shared fixtures: the app on SQLite and on real MariaDB, per-test rollback, a small world.

The ``app`` fixture is parametrised over both databases, so every integration test runs on
both. MariaDB missing is a skip on a laptop and a failure in CI (``CI=true``).
"""

from __future__ import annotations

import os

import pymysql
import pytest
from flask_migrate import upgrade
from sqlalchemy.engine import make_url

from qcwx import create_app
from qcwx.extensions import db
from qcwx.orgs import models as org_models

# Hashing cost is irrelevant to what the tests check; scrypt would dominate their run time.
org_models.PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"

MARIADB_URL = os.environ.get(
    "QCWX_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/qcwx_test?charset=utf8mb4"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def mariadb_reachable(url: str = MARIADB_URL) -> str | None:
    """Return None when the MariaDB server answers, else the reason it does not."""
    u = make_url(url)
    try:
        conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username,
                               password=u.password or "", connect_timeout=2)
        conn.close()
        return None
    except pymysql.MySQLError as exc:
        return str(exc)


def recreate_mariadb_database(url: str = MARIADB_URL) -> None:
    """Drop and create the test database (utf8mb4) so every run starts empty."""
    u = make_url(url)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username,
                           password=u.password or "", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{u.database}`")
        cur.execute(f"CREATE DATABASE `{u.database}` CHARACTER SET utf8mb4 "
                    "COLLATE utf8mb4_unicode_ci")
    conn.close()


def require_mariadb() -> None:
    """Skip (locally) or fail (CI) when MariaDB does not answer."""
    reason = mariadb_reachable()
    if reason:
        if IN_CI:
            pytest.fail(f"MariaDB is required in CI but does not answer: {reason}")
        pytest.skip(f"MariaDB not reachable: {reason}")


def make_test_app(database_url: str, **extra):
    """Create an app in testing mode on ``database_url`` and migrate it to head."""
    config = {"ENV": "testing", "DATABASE_URL": database_url, "SECRET_KEY": "test-secret",
              "WTF_CSRF_ENABLED": False, "REDIS_URL": None, "RATELIMIT_ENABLED": False}
    config.update(extra)
    app = create_app(config)
    with app.app_context():
        upgrade()
    return app


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
def app(request, tmp_path_factory):
    """The app, migrated to head, on SQLite and on MariaDB."""
    if request.param == "mariadb":
        require_mariadb()
        recreate_mariadb_database()
        url = MARIADB_URL
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'qcwx.sqlite3'}"
    application = make_test_app(url)
    application.config["DB_BACKEND"] = request.param
    with application.app_context():
        db.session.remove()
        db.session.configure(join_transaction_mode="create_savepoint")
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def session(app):
    """Run the test inside one outer transaction that is rolled back afterwards.

    Views and services may commit: with ``create_savepoint`` their commits only release
    savepoints of the outer transaction, so no test sees another's data.
    """
    with app.app_context():
        engines = db.engines
        engine = engines[None]
        connection = engine.connect()
        outer = connection.begin()
        engines[None] = connection
        try:
            yield db.session
        finally:
            engines[None] = engine
            try:
                db.session.remove()
            finally:
                outer.rollback()
                connection.close()


@pytest.fixture
def client(app, session):
    """A test client sharing the test's rolled-back transaction."""
    return app.test_client()


@pytest.fixture
def world(session):
    """A small region: see ``tests.factories.build_world``."""
    from tests.factories import build_world

    built = build_world()
    # Requests share the test's app context (Flask reuses it), so an error handler's rollback
    # would undo unreleased test data: commit releases the savepoint; teardown still rolls back.
    session.commit()
    return built


@pytest.fixture
def login(client):
    """Log ``user`` in through the real login form; returns the client."""
    from tests.factories import PASSWORD

    def _login(user):
        db.session.commit()  # see ``world``: make test data survive a request's rollback
        client.post("/logout")
        resp = client.post("/login", data={"username": user.username, "password": PASSWORD})
        assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
        return client

    return _login
