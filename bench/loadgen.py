"""Simulated phones for the load and fault benches: seed, submit, and account afterwards.

Why a module of its own: ``load_submit.py``, the ``fault_*.py`` scripts and the e2e tests
drive the same phones and check the same invariants — every accepted submission is in the
database exactly once, every alerted run has one outbox row and one WeChat message — so
those checks are written once, here.

A *phone* is one bound technician with its own mini-program session token (obtained through
the real ``POST /api/mp/v1/login`` with a ``wx.login`` code the fake WeChat mints). It loops:
think, submit a run of one of its lab's test systems with a fresh ``client_id`` (about 8 %
rejecting, level 1 at +3.5 SD), and now and then resend the same submission as a phone does
after a dropped answer, which must come back 200 (duplicate) and store nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from unittest import mock

import aiohttp

API = "/api/mp/v1"
MEAN_SD = {1: (5.0, 0.2), 2: (15.0, 0.5)}
ANALYTES = (("GLU", "葡萄糖"), ("UREA", "尿素"), ("CREA", "肌酐"), ("UA", "尿酸"),
            ("TC", "总胆固醇"), ("TG", "甘油三酯"), ("ALT", "丙氨酸氨基转移酶"),
            ("AST", "天门冬氨酸氨基转移酶"))
TECHS_PER_LAB = 4
SYSTEMS_PER_TECH = len(ANALYTES) // TECHS_PER_LAB


def run_coroutine(coro):
    """``asyncio.run(coro)``, also from a thread whose event loop is already running.

    Playwright's sync API leaves a loop running in the test process's main thread (the
    browser tests run before the e2e ones), where ``asyncio.run`` refuses to start; the
    phones then run on a thread of their own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="phones") as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Phone:
    """One technician's phone: its openid, token and the test systems it runs QC on.

    Each phone owns its test systems and numbers their runs of the day (``run_no``) as the
    analyser does, so two phones never claim the same run (that is a 409, not load).
    """

    openid: str
    ts_ids: list[int]
    token: str = ""
    run_nos: dict[int, int] = field(default_factory=dict)

    def next_run(self, ts_id: int) -> int:
        self.run_nos[ts_id] = self.run_nos.get(ts_id, 0) + 1
        return self.run_nos[ts_id]


@dataclass
class Seeded:
    """What the seeding made: phones and the supervisors' openids per lab."""

    phones: list[Phone]
    supervisors: list[str]


def seed(database_url: str, phones: int, seed_value: int = 14) -> Seeded:
    """Create the schema and ``phones`` technicians in labs of four, limits set, bound.

    Each lab has a supervisor bound to WeChat (the alert's recipient) and one test system per
    analyte on region-wide QC lots; each technician runs two of them. Passwords are hashed
    once (scrypt costs ~0.1 s each and nobody logs in with them here).
    """
    from qcwx.extensions import db
    from qcwx.iqc import targets
    from qcwx.orgs.models import User
    from qcwx.timeutil import local_today
    from tests import factories
    from tests.fixtures.app import make_test_app

    app = make_test_app(database_url)
    result = Seeded([], [])
    with app.app_context(), mock.patch.object(User, "set_password", _one_hash()):
        region = factories.region("压测区")
        lots = {code: factories.qc_lot(2) for code, _ in ANALYTES}
        analytes = {code: factories.analyte(code, name) for code, name in ANALYTES}
        for n in range(-(-phones // TECHS_PER_LAB)):
            lab = factories.lab(factories.hospital(region))
            sup = factories.user("supervisor", lab_=lab, name=f"主管{n}")
            sup.wechat_openid = f"oLoadSup{seed_value:02d}{n:06d}000000000000"
            result.supervisors.append(sup.wechat_openid)
            systems = [factories.test_system(lab, analytes[c], lots[c]) for c, _ in ANALYTES]
            for ts in systems:
                for lv in ts.levels:
                    mean, sd = MEAN_SD[lv.level_index]
                    targets.set_control_limit(
                        sup, ts, lv, mean=mean, sd=sd, kind="fixed", reason="说明书靶值",
                        effective_from=local_today() - timedelta(days=30))
            for t in range(min(TECHS_PER_LAB, phones - n * TECHS_PER_LAB)):
                tech = factories.user("technician", lab_=lab, name=f"技师{n}-{t}")
                tech.mp_openid = f"oLoadTech{seed_value:02d}{n:06d}{t:02d}000000000"
                own = systems[t * SYSTEMS_PER_TECH:(t + 1) * SYSTEMS_PER_TECH]
                result.phones.append(Phone(tech.mp_openid, [ts.id for ts in own]))
            db.session.flush()
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return result


def _one_hash():
    from werkzeug.security import generate_password_hash

    hashed = generate_password_hash("load-bench-password")

    def set_password(self, password: str) -> None:
        self.password_hash = hashed

    return set_password


@dataclass
class Answer:
    """One HTTP answer, read whole: what a phone looks at (status, headers, JSON body)."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive, as HTTP headers are
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def client_session(url: str, connections: int, timeout: float) -> aiohttp.ClientSession:
    """Return the phones' HTTP client: aiohttp, one new connection per request.

    Why aiohttp, not httpx: the phones share the two cores with the server they load. httpx's
    pure-Python HTTP and connection pool cost ~3.5 ms of CPU a request at 200 connections
    (measured against a trivial server), 16 % of the machine at 80 runs/s — the load
    generator was competing with the stack it measures; aiohttp's C parser costs ~0.2 ms.
    ``force_close``: the gunicorn sync workers close every connection anyway.
    """
    return aiohttp.ClientSession(
        base_url=url, timeout=aiohttp.ClientTimeout(total=timeout),
        connector=aiohttp.TCPConnector(limit=connections, force_close=True))


async def request(session: aiohttp.ClientSession, method: str, path: str, **kwargs) -> Answer:
    """Send one request and read its whole answer."""
    async with session.request(method, path, **kwargs) as resp:
        return Answer(resp.status, resp.headers.copy(), await resp.read())


async def login_all(url: str, fake, phones: list[Phone]) -> None:
    """Log every phone in as the mini-program does: ``wx.login`` code → JWT."""
    async with client_session(url, 8, 30) as client:
        for phone in phones:
            resp = await request(client, "POST", f"{API}/login",
                                 json={"code": fake.mint_mp_code(phone.openid)})
            if resp.status_code != 200:
                raise RuntimeError(f"login failed: {resp.status_code} {resp.text[:200]}")
            phone.token = resp.json()["token"]


@dataclass
class Tally:
    """What the phones saw: every answer, the accepted submissions and the latencies."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    accepted: dict[str, tuple[int, str]] = field(default_factory=dict)  # client_id → run
    resends: int = 0
    retry_after: Counter = field(default_factory=Counter)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (t, status)

    @property
    def requests(self) -> int:
        transport = sum(1 for e in self.errors if e.startswith("transport"))
        return sum(self.statuses.values()) + transport

    def percentile(self, q: float) -> float:
        """Return the ``q``-quantile of the latencies (nearest rank), 0 when none."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def values_for(rng: random.Random, reject_share: float) -> dict[str, str]:
    """Return both levels' values: in control (|z| ≤ 1.5), or level 1 at +3.5 SD (1-3s)."""
    z1 = 3.5 if rng.random() < reject_share else rng.uniform(-1.5, 1.5)
    z2 = rng.uniform(-1.5, 1.5)
    (m1, s1), (m2, s2) = MEAN_SD[1], MEAN_SD[2]
    return {"1": f"{m1 + z1 * s1:.2f}", "2": f"{m2 + z2 * s2:.2f}"}


@dataclass
class LoadPlan:
    """How the phones behave: run time, think time range, shares of rejects and resends."""

    seconds: float
    think: tuple[float, float] = (1.0, 3.0)
    reject_share: float = 0.08
    resend_share: float = 0.05
    allowed: frozenset[int] = frozenset()  # statuses that are not errors (faults: 503)
    tag: str = "load"  # client_id prefix: tells this run's submissions from an earlier one's


async def _post(client: aiohttp.ClientSession, phone: Phone, body: dict, tally: Tally,
                t0: float, allowed: frozenset[int]) -> Answer | None:
    start = time.monotonic()
    try:
        resp = await request(client, "POST", f"{API}/runs", json=body,
                             headers={"Authorization": f"Bearer {phone.token}"})
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        tally.errors.append(f"transport: {type(exc).__name__}: {exc}")
        return None
    elapsed = time.monotonic() - start
    tally.statuses[resp.status_code] += 1
    tally.timeline.append((start - t0, resp.status_code))
    if resp.status_code in (200, 201):
        tally.latencies.append(elapsed)
    elif resp.status_code in allowed:
        tally.retry_after[resp.headers.get("Retry-After", "missing")] += 1
    else:
        tally.errors.append(f"{resp.status_code}: {resp.text[:200]}")
    return resp


async def _submit(client, phone: Phone, body: dict, plan: LoadPlan, tally: Tally,
                  t0: float) -> Answer | None:
    """Send ``body`` until it is answered 2xx; a 503 is retried after its ``Retry-After``.

    That is what the mini-program does (same ``client_id``, so a run stored just before the
    database went away comes back as a duplicate, never twice). Gives up 60 s after the run.
    """
    while True:
        resp = await _post(client, phone, body, tally, t0, plan.allowed)
        if resp is None or resp.status_code not in plan.allowed:
            return resp
        if time.monotonic() - t0 > plan.seconds + 60:
            tally.errors.append(f"gave up after {resp.status_code}s: {body['client_id']}")
            return None
        await asyncio.sleep(min(10.0, float(resp.headers.get("Retry-After") or 1)))


async def _phone(client, phone: Phone, plan: LoadPlan, tally: Tally, rng: random.Random,
                 t0: float) -> None:
    await asyncio.sleep(rng.uniform(0, plan.think[1]))  # phones do not start in step
    while time.monotonic() - t0 < plan.seconds:
        ts_id = rng.choice(phone.ts_ids)
        body = {"test_system_id": ts_id, "run_no": phone.next_run(ts_id),
                "client_id": f"{plan.tag}-{uuid.uuid4().hex}",
                "values": values_for(rng, plan.reject_share)}
        resp = await _submit(client, phone, body, plan, tally, t0)
        if resp is not None and resp.status_code in (200, 201):
            answer = resp.json()
            tally.accepted[body["client_id"]] = (answer["run_id"], answer["status"])
            if rng.random() < plan.resend_share:  # the answer "got lost": send it again
                tally.resends += 1
                again = await _submit(client, phone, body, plan, tally, t0)
                if again is not None and not (again.status_code == 200
                                              and again.json().get("duplicate")
                                              and again.json()["run_id"] == answer["run_id"]):
                    tally.errors.append(f"resend not answered as the duplicate: "
                                        f"{again.status_code} {again.text[:200]}")
        await asyncio.sleep(rng.uniform(*plan.think))


async def run_phones(url: str, phones: list[Phone], plan: LoadPlan, seed_value: int = 14) -> Tally:
    """Run every phone for ``plan.seconds`` against ``url``; return what they saw."""
    tally = Tally()
    async with client_session(url, len(phones) + 8, 60) as client:
        t0 = time.monotonic()
        await asyncio.gather(*(
            _phone(client, p, plan, tally, random.Random(seed_value * 1000 + i), t0)
            for i, p in enumerate(phones)))
    return tally


def healthz_rate_wrk(url: str, seconds: float, connections: int = 32) -> float | None:
    """Return ``/healthz`` answers per second measured by ``wrk``, or None without it.

    Why a second client: with 200 coroutines, httpx (pure Python, the phones' client until
    December 2026) saturated its own core at ~220 answers/s on the two-core machine while
    wrk, written in C, got ~410/s from the same server — a baseline bound by the client
    would make the ratio look twice as good as it is. ``Connection: close`` as the phones'
    gunicorn sync workers answer.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                          "-H", "Connection: close", f"{url}/healthz"],
                         capture_output=True, text=True, timeout=seconds + 30, check=False)
    found = re.search(r"Requests/sec:\s*([0-9.]+)", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out.stdout)
    if found is None or errors is not None:
        raise RuntimeError(f"wrk failed: {out.stdout[-400:]} {out.stderr[-400:]}")
    return float(found.group(1))


async def healthz_rate(url: str, concurrency: int, seconds: float) -> float:
    """Return ``/healthz`` answers per second with ``concurrency`` clients, no think time."""
    done = 0
    async with client_session(url, concurrency + 4, 30) as client:
        t0 = time.monotonic()

        async def loop():
            nonlocal done
            while time.monotonic() - t0 < seconds:
                resp = await request(client, "GET", "/healthz")
                if resp.status_code != 200:
                    raise RuntimeError(f"/healthz answered {resp.status_code}")
                done += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.monotonic() - t0)
