"""Fault: Redis stopped mid-load — submissions keep succeeding, alerts arrive afterwards, once.

Usage::

    .venv/bin/python bench/fault_redis.py [--phones 50] [--seconds 60] [--at 15] [--down 20]
    .venv/bin/python bench/fault_redis.py --short        # 20 phones, 20 s, down 8 s at 4 s

Starts the load stack (:mod:`bench.load_submit`) with its *private* ``redis-server`` (the
broker, the rate limiter's store; never the shared 6379), stops that server at ``--at``
seconds and starts it again, empty, ``--down`` seconds later — every task queued before the
stop is gone with it. Phones must see no error at all (no 503 either: a submission does
not need Redis). Afterwards the alerts of the runs committed while Redis was down are
delivered by the outbox sweep — sent here every 5 s, standing in for beat's every-minute
tick — and the accounting must be exact: one WeChat message per alerted run, none lost,
none doubled.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``qcwx`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.faults import (  # noqa: E402
    FaultResult,
    common_checks,
    outage_main,
    run_fault,
    stamp,
)
from bench.load_submit import SHARED_MARIADB, LoadStack  # noqa: E402
from bench.loadgen import LoadPlan  # noqa: E402


def outage(at: float, down: float, marks: dict):
    """Return the fault: stop the private redis-server at ``at`` s, start it ``down`` s later."""

    async def fault(ls: LoadStack, events: list[str]) -> None:
        t0 = time.monotonic()
        await asyncio.sleep(at)
        stamp(events, t0, f"stopping the private redis-server (messages so far: "
                          f"{len(ls.fake.messages)})")
        await asyncio.to_thread(ls.redis.stop)
        marks["down"] = (time.monotonic() - t0, len(ls.fake.messages))
        await asyncio.sleep(down)
        marks["sent_while_down"] = len(ls.fake.messages) - marks["down"][1]
        ls.redis = await asyncio.to_thread(ls.stack.redis, ls.redis_port)
        marks["up"] = time.monotonic() - t0
        stamp(events, t0, f"redis-server back, empty (messages sent while it was down: "
                          f"{marks['sent_while_down']})")

    return fault


def run(phones: int, seconds: float, at: float, down: float, workers: int = 4,
        database_url: str = SHARED_MARIADB.replace("qcwx_load", "qcwx_fault_redis"),
        ) -> FaultResult:
    """Run the fault on a stack of its own and judge it."""
    marks: dict = {}
    with tempfile.TemporaryDirectory(prefix="qcwx-fault-redis-") as scratch:
        ls = LoadStack(Path(scratch), phones, workers, database_url).start()
        try:
            result = run_fault(ls, f"Redis stopped {down:.0f} s under {phones} phones",
                               LoadPlan(seconds, reject_share=0.15), outage(at, down, marks))
            during = [s for t, s in result.tally.timeline
                      if marks["down"][0] < t < marks["up"]]
            common_checks(result)
            result.checks += [
                ("submissions stored while Redis was down (201)", during.count(201) > 0),
                ("no 503 either: a submission does not need Redis", not result.tally.statuses[503]),
                ("the worker survived the outage", ls.worker.alive()),
                ("alerts committed during the outage were delivered afterwards",
                 result.accounting.outbox.get("sent", 0) > 0 and not result.accounting.problems),
            ]
            result.events.append(f"submissions answered while Redis was down: {len(during)} "
                                 f"({during.count(201)} × 201)")
            return result
        finally:
            ls.close()


def main(argv: list[str] | None = None) -> int:
    return outage_main(argv, __doc__.split("\n")[0], run, at=15, short=(20, 20, 4, 8))


if __name__ == "__main__":
    sys.exit(main())
