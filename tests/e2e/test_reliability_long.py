"""The long load and fault runs, behind a flag: ``QCWX_E2E_LONG=1 pytest tests/e2e``.

Why behind a flag: together they take ~15 minutes on two cores (each starts its own stack,
the load run has 200 phones for 60 s), too long for every CI run; their short forms run in
:mod:`tests.e2e.test_load_and_faults`. Each asserts the same invariants as its script in
``bench/`` (which also prints the figures): no error, nothing lost or doubled, the fault's
own goal. Latency and throughput are printed by the scripts, never asserted.
"""

from __future__ import annotations

import os

import pytest

from bench import fault_mariadb, fault_redis, fault_worker
from bench.load_submit import run_load

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.environ.get("QCWX_E2E_LONG") != "1",
                                 reason="long reliability runs: set QCWX_E2E_LONG=1")]


def test_two_hundred_phones_for_a_minute_lose_nothing_and_double_nothing():
    result = run_load(phones=200, seconds=60, workers=4)
    print(result.report(200, 4))
    assert result.tally.errors == []
    assert result.accounting.problems == []


def test_redis_stopped_twenty_seconds_under_load():
    result = fault_redis.run(phones=50, seconds=60, at=15, down=20)
    assert result.ok, result.report()


def test_mariadb_restarted_under_load():
    result = fault_mariadb.run(phones=50, seconds=60, at=20, down=20)
    assert result.ok, result.report()


def test_worker_killed_while_sending():
    result = fault_worker.run(phones=30, seconds=40, at=10, window="before-send")
    assert result.ok, result.report()
