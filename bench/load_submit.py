"""Load: simulated phones submit QC runs through the mini-program API of a production-like stack.

Usage::

    .venv/bin/python bench/load_submit.py [--phones 200] [--seconds 60] [--workers 4]
                                          [--think 1,3] [--database-url URL]

Starts gunicorn (``--workers`` sync workers) on MariaDB (a fresh database ``qcwx_load`` on the
shared server, or ``--database-url``), a private ``redis-server`` on a free port, a real
Celery worker and the fake WeChat (a thread of this process, reached over HTTP). Seeds
``--phones`` technicians in labs of four, logs each phone in through ``POST /api/mp/v1/login``
and lets them submit for ``--seconds`` with ``--think`` seconds (uniform) between runs. Then:

1. ``/healthz`` throughput of the same server (as many clients as phones, no think time, 5 s)
   is the baseline, measured in the same run, so the ratio means the same on any machine;
   wrk measures it once before the load and once after (the alerts drained), and their mean
   counts, so a machine whose speed drifts during the run moves both sides of the ratio.
   When ``wrk`` is installed (Debian package ``wrk``) it measures too and the higher figure
   counts: a Python client's own CPU can bound the rate it sees on a two-core machine;
2. prints requests, errors (goal 0), p50/p95/p99 latency of the submissions, runs/s and the
   ratio runs/s ÷ healthz/s (goal ≥ 0.3). Under think time that ratio cannot exceed what
   the phones offer (phones ÷ mean think, printed), so it also prints the **cost ratio**:
   the server's CPU (gunicorn, worker, MariaDB, Redis) per ``/healthz`` answer, measured
   while wrk ran, ÷ the same per accepted run — the throughput ratio a CPU-bound saturated
   server reaches (``--think 0,0`` measures that one directly);
3. waits for the alerts to drain and checks the database holds exactly the accepted
   submissions (no loss, no doubles) and one outbox row and one WeChat message per alerted
   run (:mod:`bench.accounting`). Exit status 1 when there were errors or discrepancies.

The default rate limit is raised for the run (``QCWX_RATELIMIT_DEFAULT``): one loopback address
stands for 200 phones and for the healthz baseline. Bounded: the run, 5 s baselines and at
most 120 s of draining.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``qcwx`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.accounting import Accounting, account, wait_drained  # noqa: E402
from bench.loadgen import (  # noqa: E402
    LoadPlan,
    Seeded,
    Tally,
    healthz_rate,
    healthz_rate_wrk,
    login_all,
    run_coroutine,
    run_phones,
    seed,
)
from bench.stack import (  # noqa: E402
    PrivateMariaDB,
    Stack,
    base_env,
    cpu_seconds,
    family,
    free_port,
    pids_named,
)
from qcwx.peer.pending import DELAY as PEER_DRAIN_DELAY  # noqa: E402

SETTINGS = {"WECHAT_APPID": "wx_test_appid", "WECHAT_SECRET": "test-secret",
            "WECHAT_TOKEN": "qcwx-test-token", "MP_APPID": "wx_test_mp_appid",
            "MP_SECRET": "test-mp-secret", "BASE_URL": "http://qc.load.example",
            "WECHAT_TEMPLATE_ALERT": "LOAD_QC_ALERT"}
SHARED_MARIADB = "mysql+pymysql://root@127.0.0.1:3306/qcwx_load?charset=utf8mb4"
DRAIN_TIMEOUT = 120
#: CPU groups that are the load's clients, not the server (left out of the cost ratio)
CLIENTS = ("phones + fake WeChat",)


class LoadStack:
    """Everything a load or fault run needs, started in order and stopped by pid.

    ``database_url=None`` starts a private ``mariadbd`` (the MariaDB fault restarts it);
    otherwise that database on an existing server is recreated.
    """

    def __init__(self, tmp: Path, phones: int, workers: int = 4,
                 database_url: str | None = SHARED_MARIADB, fake_setup=None):
        self.tmp, self.phones, self.workers = tmp, phones, workers
        self.fake_setup = fake_setup  # called with the fake WeChat's Flask app before it starts
        self.database_url = database_url
        self.stack = Stack(tmp, {})
        self.mariadb: PrivateMariaDB | None = None
        self.fake = None
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis = self.web = self.worker = None
        self.url = ""
        self.seeded: Seeded | None = None

    def start(self) -> LoadStack:
        from qcwx.wechat.fake_server import FakeWeChatServer
        from tests.fixtures.app import recreate_mariadb_database

        appid_secrets = {SETTINGS["WECHAT_APPID"]: SETTINGS["WECHAT_SECRET"],
                         SETTINGS["MP_APPID"]: SETTINGS["MP_SECRET"]}
        t0 = time.monotonic()
        self.fake = FakeWeChatServer(appid_secrets)
        if self.fake_setup is not None:
            self.fake_setup(self.fake.app)
        self.fake.start(port=0)
        if self.database_url is None:
            self.mariadb = PrivateMariaDB(self.stack).install().start()
            self.database_url = self.mariadb.create_database("qcwx_load")
        else:
            recreate_mariadb_database(self.database_url)
        self.redis = self.stack.redis(self.redis_port)
        self.seeded = seed(self.database_url, self.phones)
        print(f"  seeded {self.phones} phones in {time.monotonic() - t0:.1f} s", flush=True)
        self.stack.env = base_env(self.database_url, self.fake.url, self.redis_url, SETTINGS,
                                  RATELIMIT_DEFAULT="1000000 per minute")
        self.worker = self.stack.worker(wait=False)
        self.web, self.url = self.stack.gunicorn(self.workers)
        self.stack.wait_worker(self.worker)
        run_coroutine(login_all(self.url, self.fake, self.seeded.phones))
        print(f"  stack up, phones logged in after {time.monotonic() - t0:.1f} s", flush=True)
        return self

    def cpu_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU a run is charged with, by role.

        MariaDB is every ``mariadbd`` on the machine (the shared server, or the private one);
        "phones" is this process: the simulated phones and the fake WeChat's thread.
        """
        return {"app (gunicorn)": family(self.web.popen.pid),
                "worker": family(self.worker.popen.pid),
                "MariaDB": pids_named("mariadbd"), "Redis": [self.redis.popen.pid],
                "phones + fake WeChat": [os.getpid()]}

    def kick_sweep(self) -> None:
        """Send the sweep task now (beat sends it every minute); a broker failure is ignored."""
        from celery import Celery

        # Not the current app: shared_task proxies follow it, and later publishes of this
        # process (a test module after this one) would go to this bench's broker.
        client = Celery("load-client", broker=self.redis_url, set_as_current=False)
        try:
            client.send_task("qcwx.alerts.sweep", retry=False)
        except Exception as exc:  # noqa: BLE001 - Redis may be down in a fault run
            print(f"  (sweep not sent: {exc})")
        finally:
            client.close()

    def drain_and_account(self, tally: Tally, tag: str = "") -> Accounting:
        waited = wait_drained(self.database_url, DRAIN_TIMEOUT, kick=self.kick_sweep)
        time.sleep(2)  # a duplicate send would show up now
        acc = account(self.database_url, tally, list(self.fake.messages), tag)
        acc.drain_seconds = waited
        return acc

    def close(self) -> None:
        self.stack.stop_all(show=False, fast=True)  # all of it is thrown away
        if self.fake is not None:
            self.fake.stop()
        if self.mariadb is None and self.seeded is not None:  # ours, on a shared server
            _drop_database(self.database_url)


def _drop_database(url: str) -> None:
    """Drop the run's database on the shared server (nothing else there is touched)."""
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username,
                           password=u.password or "", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{u.database}`")
    finally:
        conn.close()


@dataclass
class LoadResult:
    """The figures of one load run."""

    tally: Tally
    seconds: float
    healthz_per_s: float
    accounting: Accounting
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per accepted run
    #: the server's CPU ms per /healthz answer (while wrk measured it), else None
    healthz_cpu_ms: float | None = None
    #: the most runs/s the phones can offer (phones ÷ mean think time); None without think
    offered_per_s: float | None = None

    @property
    def server_ms_per_run(self) -> float:
        """The server's CPU ms per accepted run (the clients and the total left out)."""
        return sum(ms for name, ms in self.cpu_ms.items() if name not in (*CLIENTS, "total"))

    @property
    def cost_ratio(self) -> float | None:
        """Server CPU per /healthz answer ÷ server CPU per accepted run.

        The throughput ratio a saturated server reaches when CPU is what bounds it, read off
        any run: under think time the throughput ratio only echoes the offered load.
        """
        run = self.server_ms_per_run
        return self.healthz_cpu_ms / run if self.healthz_cpu_ms and run else None

    @property
    def runs_per_s(self) -> float:
        return len(self.tally.accepted) / self.seconds

    @property
    def ratio(self) -> float:
        return self.runs_per_s / self.healthz_per_s if self.healthz_per_s else 0.0

    def report(self, phones: int, workers: int) -> str:
        t = self.tally
        return "\n".join([
            f"load: {phones} phones, gunicorn {workers} workers, {self.seconds:.0f} s",
            f"  requests {t.requests} (resends {t.resends}) · errors {len(t.errors)} · "
            f"statuses {dict(sorted(t.statuses.items()))}",
            f"  latency p50 {t.percentile(0.5) * 1000:.0f} ms · p95 "
            f"{t.percentile(0.95) * 1000:.0f} ms · p99 {t.percentile(0.99) * 1000:.0f} ms",
            f"  throughput {self.runs_per_s:.1f} runs/s · healthz {self.healthz_per_s:.1f}/s · "
            f"ratio {self.ratio:.2f} (goal ≥ 0.3)",
            *([f"  offered at most {self.offered_per_s:.0f} runs/s (phones ÷ mean think): "
               f"ratio ≤ {self.offered_per_s / self.healthz_per_s:.2f} at this load"]
              if self.offered_per_s and self.healthz_per_s else []),
            *([f"  server CPU per request: /healthz {self.healthz_cpu_ms:.2f} ms · accepted "
               f"run {self.server_ms_per_run:.2f} ms · cost ratio "
               f"{self.cost_ratio:.2f} (what saturation would reach)"]
              if self.cost_ratio else []),
            "  CPU per accepted run: " + " · ".join(
                f"{name} {ms:.1f} ms" for name, ms in self.cpu_ms.items()),
            f"  accounting: {self.accounting.summary()}",
            *(f"  PROBLEM: {p}" for p in self.accounting.problems),
            *(f"  ERROR: {e}" for e in t.errors[:10]),
        ])


def run_load(phones: int, seconds: float, workers: int = 4, think=(1.0, 3.0),
             database_url: str | None = SHARED_MARIADB, tmp: Path | None = None) -> LoadResult:
    """Start the stack, measure the healthz baseline, run the phones, account; stop all."""
    with tempfile.TemporaryDirectory(prefix="qcwx-load-") as scratch:
        ls = LoadStack(Path(tmp or scratch), phones, workers, database_url)
        try:
            ls.start()
            healthz = run_coroutine(healthz_rate(ls.url, phones, 5.0))
            groups = ls.cpu_groups()
            server = [pid for name, pids in groups.items() if name not in CLIENTS
                      for pid in pids]
            first = _wrk_window(ls.url, server)
            before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in groups.items()}
            t0 = time.monotonic()
            tally = run_coroutine(run_phones(ls.url, ls.seeded.phones,
                                           LoadPlan(seconds, think=tuple(think))))
            elapsed = time.monotonic() - t0
            runs = max(1, len(tally.accepted))
            cpu = {name: 1000 * (sum(cpu_seconds(p) for p in pids) - before[name]) / runs
                   for name, pids in groups.items()}
            cpu["total"] = sum(cpu.values())
            accounting = ls.drain_and_account(tally)
            time.sleep(2 * PEER_DRAIN_DELAY)  # the last peer drain, then a quiet worker
            second = _wrk_window(ls.url, server) if first else None
            wrk, healthz_cpu = _baseline(first, second)
            if wrk is not None:  # the faster client's figure: the server's, not the client's
                print(f"  healthz baseline: aiohttp {healthz:.1f}/s, wrk {first[0]:.1f}/s "
                      f"before and {second[0]:.1f}/s after the load", flush=True)
                healthz = max(healthz, wrk)
            else:
                print(f"  healthz baseline: aiohttp {healthz:.1f}/s (install wrk for a baseline "
                      "not bound by the client)", flush=True)
            return LoadResult(tally, elapsed, healthz, accounting, cpu,
                              healthz_cpu, phones / (sum(think) / 2) if sum(think) else None)
        finally:
            ls.close()


def _wrk_window(url: str, server: list[int]) -> tuple[float, float] | None:
    """Measure ``/healthz`` with wrk for 5 s: (answers/s, server CPU seconds), None without wrk."""
    cpu0, t0 = sum(cpu_seconds(p) for p in server), time.monotonic()
    rate = healthz_rate_wrk(url, 5.0)
    if rate is None:
        return None
    spent = sum(cpu_seconds(p) for p in server) - cpu0
    return rate, 1000 * spent / (rate * (time.monotonic() - t0))


def _baseline(first, second) -> tuple[float | None, float | None]:
    """The baseline of a run: the mean of the wrk windows before and after the load.

    This machine's speed drifts by ±15 % over minutes; one window before the load put every
    drift into the ratio (the same code measured 0.24 and 0.29 in consecutive runs). A
    window on each side of the load brackets it. Returns (answers/s, CPU ms per answer).
    """
    if first is None or second is None:
        return (None, None)
    return (first[0] + second[0]) / 2, (first[1] + second[1]) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phones", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--think", default="1,3", help="think time range in seconds: lo,hi")
    parser.add_argument("--database-url", default=SHARED_MARIADB)
    args = parser.parse_args(argv)
    think = tuple(float(x) for x in args.think.split(","))
    result = run_load(args.phones, args.seconds, args.workers, think, args.database_url)
    print(result.report(args.phones, args.workers))
    return 1 if result.tally.errors or result.accounting.problems else 0


if __name__ == "__main__":
    sys.exit(main())
