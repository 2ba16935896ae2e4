"""Two workers never both send: the claim, with real commits and real concurrent connections.

These tests need transactions that other connections can see, so they use their own app and
database (``<test db>_alerts_claim`` on MariaDB, a file on SQLite) instead of the rolled-back
test session.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import delete

from qcwx.alerts import delivery
from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.extensions import db
from tests.factories import hospital, lab, region, user
from tests.fixtures.alerts import ALERT_SETTINGS, derived_mariadb_url
from tests.fixtures.app import make_test_app, recreate_mariadb_database, require_mariadb


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def claim_app(request, tmp_path_factory, fake_wechat_server):
    if request.param == "mariadb":
        require_mariadb()
        url = derived_mariadb_url("alerts_claim")
        recreate_mariadb_database(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('claim') / 'claim.sqlite3'}"
    app = make_test_app(url, WECHAT_API_BASE=fake_wechat_server.url, **ALERT_SETTINGS)
    with app.app_context():
        lab_ = lab(hospital(region()))
        for k in range(2):
            sup = user("supervisor", lab_=lab_)
            sup.wechat_openid = f"oClaim{k}{sup.id:021d}"
        db.session.commit()
        app.config["CLAIM_LAB_ID"] = lab_.id
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def outbox_id(claim_app, fake_wechat):
    """A committed, due outbox row of the lab (a reject of a made-up run)."""
    with claim_app.app_context():
        db.session.execute(delete(AlertDelivery))
        db.session.execute(delete(OutboxMessage))
        row = OutboxMessage(
            kind="run_reject", lab_id=claim_app.config["CLAIM_LAB_ID"],
            dedupe_key=f"claim-test-{threading.get_ident()}-{id(fake_wechat)}",
            payload={"test_system_id": 1, "lab_id": 1, "analyte": "葡萄糖",
                     "analyte_code": "GLU", "unit": "mmol/L", "run_id": 99, "run_no": 1,
                     "run_date": "2026-11-25", "status": "reject", "status_label": "失控",
                     "values": [{"level": "水平1", "value": "5.9", "z": 4.5}],
                     "rules": ["1-3s"], "at": "2026-11-25T01:00:00"})
        db.session.add(row)
        db.session.commit()
        return row.id


def _dispatch_in_own_session(app, oid):
    with app.app_context():
        result = delivery.dispatch(oid)
        db.session.commit()
        return result


def test_concurrent_dispatches_send_each_message_once(claim_app, outbox_id, fake_wechat):
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: _dispatch_in_own_session(claim_app, outbox_id),
                                range(4)))
    claimed = [r for r in results if r is not None]
    assert len(claimed) == 1 and claimed[0].sent == 2
    assert len(fake_wechat.messages) == 2
    assert len({m["touser"] for m in fake_wechat.messages}) == 2
    with claim_app.app_context():
        row = db.session.get(OutboxMessage, outbox_id)
        assert row.status == "sent" and row.attempts == 1


def test_a_claimed_row_is_not_sent_by_others_until_the_claimer_finishes(claim_app, outbox_id,
                                                                       fake_wechat):
    """MariaDB skips the locked row at once; SQLite's second claimer waits for the lock.

    Either way nothing is sent while the first claim is held, and after the claimer dies
    (rolls back) the row is delivered exactly once.
    """
    claimed, release = threading.Event(), threading.Event()
    results = []

    def holder():
        with claim_app.app_context():
            assert delivery._claim(outbox_id, delivery.utcnow()) is not None
            claimed.set()
            release.wait(10)
            db.session.rollback()  # the holder "dies": its claim is undone

    first = threading.Thread(target=holder)
    first.start()
    assert claimed.wait(10)
    second = threading.Thread(
        target=lambda: results.append(_dispatch_in_own_session(claim_app, outbox_id)))
    second.start()
    second.join(0.5)
    assert fake_wechat.messages == []
    if claim_app.config["SQLALCHEMY_DATABASE_URI"].startswith("mysql"):
        assert results == [None]  # SKIP LOCKED answered at once
        with claim_app.app_context():
            assert delivery.sweep() == []  # the sweeper skips the locked row too
    release.set()
    first.join(10)
    second.join(10)
    if claim_app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        assert results[0].sent == 2  # it waited for the write lock, then found the row due
    _dispatch_in_own_session(claim_app, outbox_id)
    assert len(fake_wechat.messages) == 2
    with claim_app.app_context():
        row = db.session.get(OutboxMessage, outbox_id)
        assert row.status == "sent"
