"""Fault: the Celery worker SIGKILLed in the middle of sending an alert, under load.

Usage::

    .venv/bin/python bench/fault_worker.py [--phones 30] [--seconds 40] [--at 10]
                                           [--window before-send|after-send]
    .venv/bin/python bench/fault_worker.py --short       # 20 phones, 20 s, kill at 5 s

The fake WeChat holds the next template-message request (a gate in the fake's Flask app), so
the worker is provably inside the dispatch task — outbox row claimed with ``FOR UPDATE``,
deliveries expanded, the HTTP send under way, nothing committed — when it gets SIGKILL.
Then a new worker starts. What must hold: the task is still in the broker's ``unacked`` set
(``acks_late``: Redis redelivers it after the visibility timeout), the dead worker's
transaction was rolled back so the row is due again, the outbox sweep (sent every 5 s here,
beat's every-minute task) re-dispatches it, and every alerted run gets exactly one message.

``--window before-send`` (default): the held request is dropped after the kill — the worker
died before WeChat took the message. ``--window after-send``: WeChat takes the message, the
worker dies before committing that it did: the documented at-least-once window of
:mod:`qcwx.alerts.delivery` — a second message is expected there, and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis as redis_lib

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``qcwx`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.faults import FaultResult, common_checks, run_fault, stamp  # noqa: E402
from bench.load_submit import SHARED_MARIADB, LoadStack  # noqa: E402
from bench.loadgen import LoadPlan  # noqa: E402

SEND = "/cgi-bin/message/template/send"


class SendGate:
    """Hold the next template send inside the fake WeChat until released."""

    def __init__(self, after_send: bool):
        self.after_send = after_send
        self.armed = False
        self.hit = threading.Event()
        self.release = threading.Event()
        self.run_id: int | None = None

    async def catch(self, at: float, events: list[str], t0: float, nothing: str) -> bool:
        """Arm the gate at ``at`` s; True once a send is held, False after 60 s without one."""
        await asyncio.sleep(at)
        self.armed = True
        if await asyncio.to_thread(self.hit.wait, 60):
            return True
        stamp(events, t0, f"no template send within 60 s: {nothing}")
        return False

    def install(self, app) -> None:
        """Register the gate on the fake's Flask app (before it serves its first request)."""
        from flask import request

        def held() -> bool:
            if not (self.armed and request.path == SEND):
                return False
            self.armed = False
            url = json.loads(request.get_data() or b"{}").get("url", "")
            self.run_id = int(url.rsplit("/", 1)[1]) if "/runs/" in url else None
            self.hit.set()
            self.release.wait(120)
            return True

        @app.before_request
        def before():
            if not self.after_send and held():
                return {"errcode": -1, "errmsg": "dropped: the sender died"}, 502
            return None

        @app.after_request
        def after(response):
            if self.after_send:
                held()
            return response


def kill_mid_send(gate: SendGate, at: float, marks: dict):
    """Return the fault: at ``at`` s hold a send, SIGKILL the worker, start a new one."""

    async def fault(ls: LoadStack, events: list[str]) -> None:
        t0 = time.monotonic()
        if not await gate.catch(at, events, t0, "nothing to kill"):
            return
        stamp(events, t0, f"worker held in the template send of run {gate.run_id} "
                          f"({'WeChat has taken it' if gate.after_send else 'not yet taken'})")
        ls.worker.kill()
        marks["exit"] = ls.worker.popen.returncode
        marks["unacked"] = redis_lib.Redis(port=ls.redis_port).hlen("unacked")
        stamp(events, t0, f"worker SIGKILLed (exit {marks['exit']}); tasks unacked in the "
                          f"broker: {marks['unacked']}")
        gate.release.set()
        ls.worker = await asyncio.to_thread(ls.stack.worker)
        stamp(events, t0, "a new worker is ready")

    return fault


def run(phones: int, seconds: float, at: float, window: str, workers: int = 4) -> FaultResult:
    """Run the fault on a stack of its own and judge it."""
    marks: dict = {}
    gate = SendGate(after_send=window == "after-send")
    db_url = SHARED_MARIADB.replace("qcwx_load", "qcwx_fault_worker")
    with tempfile.TemporaryDirectory(prefix="qcwx-fault-worker-") as scratch:
        ls = LoadStack(Path(scratch), phones, workers, db_url, fake_setup=gate.install).start()
        try:
            result = run_fault(ls, f"worker SIGKILLed mid-send ({window}) under {phones} phones",
                               LoadPlan(seconds, reject_share=0.15), kill_mid_send(gate, at, marks))
            held = [m for m in ls.fake.messages
                    if gate.run_id and (m.get("url") or "").endswith(f"/runs/{gate.run_id}")]
            result.events.append(f"messages for the held run {gate.run_id}: {len(held)}")
            common_checks(result)
            result.checks += [
                ("the worker was killed by SIGKILL mid-send", marks.get("exit") == -9),
                ("the task stayed unacked in the broker (acks_late)", marks.get("unacked", 0) >= 1),
                ("the held alert was delivered exactly once", len(held) == 1),
            ]
            return result
        finally:
            ls.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phones", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--at", type=float, default=10)
    parser.add_argument("--window", choices=("before-send", "after-send"), default="before-send")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--short", action="store_true", help="20 phones, 20 s, kill at 5 s")
    args = parser.parse_args(argv)
    if args.short:
        args.phones, args.seconds, args.at = 20, 20, 5
    result = run(args.phones, args.seconds, args.at, args.window, args.workers)
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
