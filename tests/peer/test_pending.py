"""Peer refreshes parked in Redis and drained in one pass (issue 14: one task per commit).

Real Redis (the shared server, a database of its own), the real submission service and the
real drain task; only the Celery publish is recorded instead of sent.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import event

from qcwx import followups
from qcwx.extensions import celery, db
from qcwx.iqc import services as iqc_services
from qcwx.peer import pending, services, tasks
from qcwx.peer.models import PeerTsState
from tests.fixtures.app import require_redis
from tests.peer.conftest import LEVEL_VALUES, add_run, month_start, previous_month_start

REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture
def parked(app, monkeypatch):
    """Broker mode: REDIS_URL set, tasks not eager; yields the published messages."""
    client = require_redis(REDIS_URL)
    # Keys of this process's own: under xdist another process runs the same tests on the
    # same database, and its drain took this one's schedule flag (CI, 7 Dec).
    monkeypatch.setattr(pending, "HASH_KEY", f"{pending.HASH_KEY}:{os.getpid()}")
    monkeypatch.setattr(pending, "FLAG_KEY", f"{pending.FLAG_KEY}:{os.getpid()}")
    client.delete(pending.HASH_KEY, pending.FLAG_KEY)
    monkeypatch.setitem(app.config, "REDIS_URL", REDIS_URL)
    monkeypatch.setitem(celery.conf, "task_always_eager", False)
    sent = []
    task = celery.tasks[followups.TASK]
    monkeypatch.setattr(task, "apply_async",
                        lambda args, retry, countdown=None: sent.append((args[0], countdown)))
    yield client, sent
    client.delete(pending.HASH_KEY, pending.FLAG_KEY)


def _hash(client) -> dict[int, str]:
    return {int(k): v.decode() for k, v in client.hgetall(pending.HASH_KEY).items()}


def _unchanged_by_a_full_refresh(session, *ts_ids: int) -> None:
    for ts_id in ts_ids:
        full = services.refresh_systems([ts_id])
        assert (full.days_written, full.days_deleted) == (0, 0), ts_id
        session.expire_all()
        assert session.get(PeerTsState, ts_id).n_results == full.results


def test_commits_park_their_systems_and_one_delayed_drain_refreshes_them_all(
        peer_world, session, parked):
    client, sent = parked
    w = peer_world
    r1, r2 = w.systems["r1"].id, w.systems["r2"].id
    services.rebuild_cache(w.region.id)
    session.commit()
    back = previous_month_start(w.today) + timedelta(days=2)

    iqc_services.submit_run(w.users["tech_r1"], test_system_id=r1, run_date=w.today,
                            run_no=7, values={"1": "5.61"})
    session.commit()
    assert sent == [({pending.DRAIN_TASK: [[]]}, pending.DELAY)]  # no per-system refresh
    assert _hash(client) == {r1: w.today.isoformat()}
    assert client.ttl(pending.FLAG_KEY) > 0

    # a back-dated run of the same system: the earlier day wins; no second drain
    iqc_services.submit_run(w.users["tech_r1"], test_system_id=r1, run_date=back, run_no=2,
                            values={"1": "9.90", "2": "30.00"})
    session.commit()
    services.refresh_after_commit(r2, since=w.today)
    session.commit()
    assert [b for b, _ in sent if pending.DRAIN_TASK in b] == [{pending.DRAIN_TASK: [[]]}]
    assert not any("qcwx.peer.refresh" in b for b, _ in sent)  # only the rejected run's alert
    assert _hash(client) == {r1: back.isoformat(), r2: w.today.isoformat()}

    result = tasks.refresh_pending()  # what the worker runs a second later
    assert result["systems"] == 2
    assert _hash(client) == {} and client.exists(pending.FLAG_KEY) == 0
    _unchanged_by_a_full_refresh(session, r1, r2)

    # the next commit schedules the next drain
    services.refresh_after_commit(r2)
    session.commit()
    assert sent[-1] == ({pending.DRAIN_TASK: [[]]}, pending.DELAY)
    assert _hash(client) == {r2: ""}  # "" = every day


def test_a_drain_writes_in_a_few_statements_however_many_systems_it_takes(
        peer_world, session, parked):
    """One DELETE and one UPDATE per distinct count, not one of each per system and level.

    Before: an executemany DELETE and UPDATE, a round trip per row in the driver; a drain
    after 100 submissions spent ~300 statements (issue 14, MariaDB's statement counters).
    """
    client, _ = parked
    w = peer_world
    systems = [ts for name, ts in sorted(w.systems.items())]
    services.rebuild_cache()
    session.commit()
    day = month_start(w.today)  # a cached day: both levels' rows change (a delete and an insert)
    for k, ts in enumerate(systems):
        add_run(ts, day, {i: v * (1.01 + k / 1000) for i, v in LEVEL_VALUES.items()}, run_no=20)
    session.commit()
    client.hset(pending.HASH_KEY, mapping={str(ts.id): day.isoformat() for ts in systems})
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        # the driver sends an executemany DELETE or UPDATE once per parameter set
        verb = statement.lstrip().split()[0].upper()
        seen.extend([verb] * (len(parameters) if executemany and verb != "INSERT" else 1))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        result = tasks.refresh_pending()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert result["systems"] == len(systems) >= 6
    assert result["days_written"] == 2 * len(systems)
    assert seen.count("DELETE") == 1 and seen.count("UPDATE") == 1, seen
    _unchanged_by_a_full_refresh(session, *(ts.id for ts in systems))


def test_an_alert_is_never_delayed_with_the_drain(peer_world, session, parked):
    client, sent = parked
    w = peer_world
    services.rebuild_cache(w.region.id)
    session.commit()
    verdict = iqc_services.submit_run(w.users["tech_r1"], test_system_id=w.systems["r1"].id,
                                      run_date=w.today, run_no=8, values={"1": "40.0"})
    session.commit()
    assert verdict.status == "reject"
    now = [batch for batch, countdown in sent if countdown is None]
    assert len(now) == 1 and list(now[0]) == ["qcwx.alerts.dispatch"]
    assert ({pending.DRAIN_TASK: [[]]}, pending.DELAY) in sent


def test_a_failed_drain_puts_its_systems_back_and_deleted_systems_are_skipped(
        peer_world, session, parked, monkeypatch):
    client, _ = parked
    w = peer_world
    r1 = w.systems["r1"].id
    client.hset(pending.HASH_KEY, mapping={str(r1): "", str(10 ** 8): ""})

    def broken(systems):
        raise RuntimeError("database went away")

    with monkeypatch.context() as m:
        m.setattr(services, "refresh_parked", broken)
        with pytest.raises(RuntimeError):
            tasks.refresh_pending()
    assert _hash(client) == {r1: "", 10 ** 8: ""}  # put back for the next drain
    result = tasks.refresh_pending()
    assert result["systems"] == 1  # the deleted system is skipped, not retried for ever
    assert _hash(client) == {}
    _unchanged_by_a_full_refresh(session, r1)


def test_without_a_broker_commits_refresh_at_once(peer_world, session):
    w = peer_world
    ts = w.systems["r2"].id
    assert session.get(PeerTsState, ts) is None
    services.refresh_after_commit(ts)
    session.commit()  # eager Celery: the refresh ran on commit
    session.expire_all()
    assert session.get(PeerTsState, ts) is not None
