"""Fault: MariaDB restarted under load — 503 with Retry-After meanwhile, recovery without a restart.

Usage::

    .venv/bin/python bench/fault_mariadb.py [--phones 50] [--seconds 60] [--at 20] [--down 20]
    .venv/bin/python bench/fault_mariadb.py --short      # 20 phones, 20 s, down 5 s (CI form)

Starts the load stack (:mod:`bench.load_submit`) on a *private* ``mariadbd`` in a temp dir on a
free port (the shared server on 3306 is never touched), lets the phones submit, stops the
server with SIGTERM at ``--at`` seconds, keeps it down ``--down`` seconds and starts it again
on the same data directory. The phones behave like the mini-program: a 503 is retried with
the same ``client_id`` after ``Retry-After``. Passes when: no answer was a 500 or another
non-503 error; every 503 carried ``Retry-After``; submissions succeed again after the restart
with the same gunicorn master (no app restart); and the accounting is exact.

``--in-send``: the server is stopped while the worker is inside an alert's send — WeChat has
taken the message (the fake holds its answer), nothing is committed — and the answer is
released once it is down, so the round's commit fails. The worker must record that send when
the server is back instead of sending it again: the held alert reaches WeChat exactly once
(:func:`qcwx.alerts.tasks._keep_sent`; CI once saw a second message here).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``qcwx`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_worker import SendGate  # noqa: E402
from bench.faults import (  # noqa: E402
    FaultResult,
    common_checks,
    outage_main,
    run_fault,
    stamp,
)
from bench.load_submit import LoadStack  # noqa: E402
from bench.loadgen import LoadPlan, client_session, request  # noqa: E402


async def _probe(url: str) -> tuple[int, str | None]:
    async with client_session(url, 2, 30) as client:
        resp = await request(client, "GET", "/healthz")
        return resp.status_code, resp.headers.get("Retry-After")


def restart(at: float, down: float, marks: dict):
    """Return the fault: stop the private mariadbd at ``at`` s, start it ``down`` s later."""

    async def fault(ls: LoadStack, events: list[str]) -> None:
        t0 = time.monotonic()
        await asyncio.sleep(at)
        stamp(events, t0, "stopping the private mariadbd (SIGTERM)")
        await asyncio.to_thread(ls.mariadb.stop)
        stamp(events, t0, "mariadbd is down")
        marks["down_health"] = await _probe(ls.url)
        stamp(events, t0, f"/healthz while down: {marks['down_health']}")
        await asyncio.sleep(down)
        await asyncio.to_thread(ls.mariadb.start)
        marks["up_at"] = time.monotonic() - t0
        stamp(events, t0, "mariadbd answers again (same data directory)")

    return fault


def restart_in_send(gate: SendGate, at: float, down: float, marks: dict):
    """Return the fault: from ``at`` s, stop mariadbd while WeChat holds a taken alert."""

    async def fault(ls: LoadStack, events: list[str]) -> None:
        t0 = time.monotonic()
        if not await gate.catch(at, events, t0, "nothing to interrupt"):
            return
        stamp(events, t0, f"WeChat took the alert of run {gate.run_id}; its answer is held")
        await asyncio.to_thread(ls.mariadb.stop)
        marks["down_health"] = await _probe(ls.url)
        stamp(events, t0, "mariadbd is down, the round uncommitted; WeChat answers now")
        gate.release.set()
        await asyncio.sleep(down)
        await asyncio.to_thread(ls.mariadb.start)
        marks["up_at"] = time.monotonic() - t0
        stamp(events, t0, "mariadbd answers again (same data directory)")

    return fault


def run(phones: int, seconds: float, at: float, down: float, workers: int = 4,
        tmp: Path | None = None, ls: LoadStack | None = None, tag: str = "fault",
        in_send: bool = False) -> FaultResult:
    """Run the fault (on ``ls`` when given, else on a stack of its own) and judge it.

    ``in_send`` needs a stack of its own: the send gate is installed before the fake starts.
    """
    marks: dict = {}
    gate = SendGate(after_send=True) if in_send else None
    with tempfile.TemporaryDirectory(prefix="qcwx-fault-mariadb-") as scratch:
        own = ls is None
        ls = ls or LoadStack(Path(tmp or scratch), phones, workers, database_url=None,
                             fake_setup=gate.install if gate else None).start()
        try:
            master = ls.web.popen.pid
            name = (f"MariaDB {'stopped inside an alert send' if in_send else 'restarted'} "
                    f"({down:.0f} s down) under {phones} phones")
            fault = restart_in_send(gate, at, down, marks) if gate else restart(at, down, marks)
            plan = LoadPlan(seconds, allowed=frozenset({503}), tag=tag)
            if in_send:  # alerts often enough that one is soon under way
                plan = dataclasses.replace(plan, reject_share=0.15)
            result = run_fault(ls, name, plan, fault)
            after = [s for t, s in result.tally.timeline if t > marks.get("up_at", 1e9)]
            common_checks(result)
            result.checks += [
                ("503 answered while the database was down", result.tally.statuses[503] > 0),
                ("every 503 carried Retry-After", "missing" not in result.tally.retry_after),
                ("/healthz answered 503 while down", marks.get("down_health", (0,))[0] == 503),
                ("submissions stored again after the restart", after.count(201) > 0),
                ("same gunicorn master, still running (no app restart)",
                 ls.web.alive() and ls.web.popen.pid == master),
            ]
            if gate:
                held = [m for m in ls.fake.messages
                        if gate.run_id and (m.get("url") or "").endswith(f"/runs/{gate.run_id}")]
                result.events.append(f"messages for the held run {gate.run_id}: {len(held)}")
                result.checks.append(("the alert taken before the stop reached WeChat once",
                                      len(held) == 1))
            return result
        finally:
            if own:
                ls.close()


def main(argv: list[str] | None = None) -> int:
    return outage_main(argv, __doc__.split("\n")[0], run, at=20, short=(20, 20, 5, 5),
                       flags={"in_send": "stop the server while WeChat holds a taken alert"})


if __name__ == "__main__":
    sys.exit(main())
