"""Short forms of the load and MariaDB-restart benches, run in CI (the long ones: bench/).

Why here: the benches in ``bench/`` take minutes and print figures; these run the same code
(:mod:`bench.load_submit`, :mod:`bench.fault_mariadb`) for seconds and assert only what must
hold on any machine — no error, nothing lost or doubled, 503 with ``Retry-After`` while the
database is down, recovery without restarting the app, an alert taken by WeChat just before
the database stopped sent once, a Redis outage survived by the worker — never a latency or
a rate.

One stack for the module (gunicorn with 4 workers, a real Celery worker, a private
``redis-server`` and a private ``mariadbd`` in a temp dir, the fake WeChat), started once:
on two cores the processes take ~20 s to come up, which is most of this module's time.
"""

from __future__ import annotations

import shutil

import pytest

from bench import fault_mariadb, fault_redis
from bench.load_submit import LoadStack
from bench.loadgen import LoadPlan, run_coroutine, run_phones
from tests.e2e.conftest import _unavailable

pytestmark = pytest.mark.e2e
PHONES = 20


def _need_private_servers() -> None:
    missing = [b for b in ("redis-server", "mariadbd", "mariadb-install-db") if not
               shutil.which(b) and not shutil.which(b, path="/usr/sbin")]
    if missing:
        _unavailable(f"the {', '.join(missing)} binaries")


@pytest.fixture(scope="module")
def load_stack(tmp_path_factory):
    """The load stack on private Redis and MariaDB servers (nothing shared is touched)."""
    _need_private_servers()
    ls = LoadStack(tmp_path_factory.mktemp("load"), PHONES, workers=4, database_url=None)
    try:
        yield ls.start()
    finally:
        ls.close()


def test_twenty_phones_for_ten_seconds_lose_nothing_and_double_nothing(load_stack):
    tally = run_coroutine(run_phones(load_stack.url, load_stack.seeded.phones,
                                   LoadPlan(10, reject_share=0.15, tag="ci-load")))
    acc = load_stack.drain_and_account(tally, "ci-load")
    assert tally.errors == []
    assert acc.problems == [], acc.summary()
    assert acc.accepted > PHONES  # every phone got through more than once
    assert tally.resends == tally.statuses[200]  # each resend answered as the duplicate
    assert acc.rejects > 0 and acc.outbox == {"sent": acc.rejects + acc.warnings}


def test_mariadb_restart_answers_503_with_retry_after_and_recovers(load_stack):
    result = fault_mariadb.run(PHONES, seconds=14, at=3, down=4, ls=load_stack, tag="ci-fault")
    assert result.ok, result.report()


def test_mariadb_stopped_inside_an_alert_send_sends_it_once(tmp_path):
    """The round's commit fails after WeChat took the message: recorded later, not resent.

    A stack of its own: the send gate goes into the fake WeChat before it starts.
    """
    _need_private_servers()
    result = fault_mariadb.run(PHONES, seconds=20, at=3, down=4, tmp=tmp_path, in_send=True,
                               tag="ci-in-send")
    assert result.ok, result.report()


def test_redis_stopped_mid_load_the_worker_survives_and_alerts_arrive_once():
    """Redis (broker, limiter store) stopped 8 s and started empty; the worker rides it out.

    Celery 5.7.0's worker died here whenever it held an unacked message (a delayed peer
    drain) as Redis went away, and the alerts committed meanwhile were never sent.
    """
    _need_private_servers()
    result = fault_redis.run(PHONES, seconds=20, at=4, down=8)
    assert result.ok, result.report()
