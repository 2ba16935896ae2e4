"""Run the phones while a fault script breaks something, and judge what they saw.

Why shared: each ``fault_*.py`` is the same experiment — phones submitting, one thing stopped
or killed at a set second and brought back, then the accounting of :mod:`bench.accounting` —
differing only in the fault; this module is that experiment once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.accounting import Accounting
from bench.load_submit import LoadStack
from bench.loadgen import LoadPlan, Tally, run_coroutine, run_phones

Fault = Callable[[LoadStack, list[str]], Awaitable[None]]


@dataclass
class FaultResult:
    """The phones' tally, the accounting, and the fault's own log lines (with timestamps)."""

    name: str
    tally: Tally
    accounting: Accounting
    events: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok in self.checks)

    def report(self) -> str:
        t = self.tally
        lines = [f"fault: {self.name}", *(f"  {e}" for e in self.events),
                 f"  requests {t.requests} · statuses {dict(sorted(t.statuses.items()))} · "
                 f"Retry-After seen {dict(t.retry_after)} · errors {len(t.errors)}",
                 f"  latency p50 {t.percentile(0.5) * 1000:.0f} ms · p95 "
                 f"{t.percentile(0.95) * 1000:.0f} ms · p99 {t.percentile(0.99) * 1000:.0f} ms",
                 f"  accounting: {self.accounting.summary()}",
                 *(f"  PROBLEM: {p}" for p in self.accounting.problems),
                 *(f"  ERROR: {e}" for e in t.errors[:10]),
                 *(f"  [{'ok' if ok else 'FAILED'}] {what}" for what, ok in self.checks)]
        return "\n".join(lines)


def stamp(events: list[str], t0: float, what: str) -> None:
    """Record ``what`` at the seconds since ``t0`` (and print it, for the long runs)."""
    line = f"t={time.monotonic() - t0:5.1f} s  {what}"
    events.append(line)
    print(f"  {line}", flush=True)


def run_fault(ls: LoadStack, name: str, plan: LoadPlan, fault: Fault) -> FaultResult:
    """Run the phones for ``plan.seconds`` with ``fault`` alongside; drain and account."""
    events: list[str] = []

    async def both() -> Tally:
        phones = asyncio.create_task(run_phones(ls.url, ls.seeded.phones, plan))
        await fault(ls, events)
        return await phones

    tally = run_coroutine(both())
    return FaultResult(name, tally, ls.drain_and_account(tally, plan.tag), events)


def common_checks(result: FaultResult) -> None:
    """Append the checks every fault shares: no errors, exact accounting, work done."""
    result.checks += [
        ("no 5xx other than 503, no transport error", not result.tally.errors),
        ("no 500 at all", not result.tally.statuses.get(500)),
        ("accepted submissions stored exactly once, one alert and one message per alerted run",
         not result.accounting.problems),
        ("submissions were accepted", result.accounting.accepted > 0),
    ]


def outage_main(argv, description: str, run, *, at: float, short: tuple,
                flags: dict[str, str] | None = None) -> int:
    """Command line of an outage script: ``--phones --seconds --at --down --workers --short``.

    ``short`` is the CI-sized (phones, seconds, at, down); ``run`` takes them plus workers,
    and each of ``flags`` ({keyword: help}) as a boolean keyword (``--in-send`` for
    ``in_send``).
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--phones", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--at", type=float, default=at)
    parser.add_argument("--down", type=float, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--short", action="store_true",
                        help="{} phones, {} s, down {} s at {} s".format(short[0], short[1],
                                                                      short[3], short[2]))
    for name, text in (flags or {}).items():
        parser.add_argument(f"--{name.replace('_', '-')}", action="store_true", help=text)
    args = parser.parse_args(argv)
    if args.short:
        args.phones, args.seconds, args.at, args.down = short
    result = run(args.phones, args.seconds, args.at, args.down, args.workers,
                 **{name: getattr(args, name) for name in flags or {}})
    print(result.report())
    return 0 if result.ok else 1

