"""A MySQL/MariaDB connection goes back to the pool with a ROLLBACK only when it needs one.

Why: SQLAlchemy's default reset sent ROLLBACK every time a session handed its connection
back, a committed one included — a round trip in every request for nothing (issue 14). The
pool now asks the server's own status flag (``qcwx.extensions.reset_open_transactions_only``).
What must not change: a connection returned with a transaction still open is rolled back,
so nothing it wrote survives and the next request starts clean.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from qcwx import create_app
from qcwx.extensions import db
from tests.fixtures.app import derived_mariadb_url, recreate_mariadb_database, require_mariadb


@pytest.fixture
def engine_with_spy():
    """An app on a database of its own; yields (engine, list of DBAPI rollbacks)."""
    require_mariadb()
    url = derived_mariadb_url("pool")
    recreate_mariadb_database(url)
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "SECRET_KEY": "x" * 32,
                      "REDIS_URL": None})
    rollbacks: list[int] = []
    with app.app_context():
        engine = db.engine

        @event.listens_for(engine, "connect")
        def _spy(dbapi_connection, _record):
            real = dbapi_connection.rollback

            def rollback():
                rollbacks.append(1)
                real()

            dbapi_connection.rollback = rollback

        engine.dispose()
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        rollbacks.clear()
        yield engine, rollbacks
        db.session.remove()
        engine.dispose()


def test_a_committed_session_returns_its_connection_without_a_rollback(engine_with_spy):
    engine, rollbacks = engine_with_spy
    db.session.execute(text("INSERT INTO t VALUES (1)"))
    db.session.commit()
    db.session.remove()
    assert rollbacks == []


def test_a_connection_returned_with_an_open_transaction_is_rolled_back(engine_with_spy):
    engine, rollbacks = engine_with_spy
    raw = engine.raw_connection()
    cur = raw.cursor()
    cur.execute("INSERT INTO t VALUES (2)")
    cur.close()
    raw.close()  # back to the pool, never committed
    assert rollbacks == [1]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM t").scalar() == 0
