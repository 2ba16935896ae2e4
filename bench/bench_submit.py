"""Measure what one QC submission costs: SQL statements, Celery publishes and CPU time.

Run: ``.venv/bin/python bench/bench_submit.py [--runs 150] [--history 300] [--db URL]
[--profile mp|ts [--sort tottime]]``, e.g. on MariaDB (the production database; SQLite's
commit is a file sync that dwarfs the app's own CPU)::

    .venv/bin/python bench/bench_submit.py \
        --db 'mysql+pymysql://root@127.0.0.1:3306/qcwx_bench_submit?charset=utf8mb4'


Seeds a realistic lab into a fresh SQLite file (or ``--db``, an empty database URL): one test
system with two levels, fixed control limits and ``--history`` days of judged runs. Then it
submits ``--runs`` runs through the Flask test client, one per day up to today, on both
capture APIs a phone uses:

* ``POST /api/mp/v1/runs`` with a mini-program JWT (the WeChat mini-program);
* ``POST /api/ts/<id>/runs`` with a logged-in session (the H5 entry page's fetch).

Values are drawn around the target (seeded), so some runs warn or reject and write alerts,
as in a real lab. Celery is not eager: a publish goes to an in-memory broker and is counted
(``before_task_publish``), never run, so the numbers are the request's own cost, as under
gunicorn with a separate worker. Per submission it prints the SQL statements (SQLAlchemy
``before_cursor_execute``), the publishes and the process CPU time, and the CPU ratio against
``GET /healthz`` through the same client in the same run (the floor of any request).
``--profile`` prints a cProfile of one path's submissions instead of running both.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from celery.signals import before_task_publish  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import event  # noqa: E402

from qcwx import create_app  # noqa: E402
from qcwx.extensions import db  # noqa: E402
from qcwx.orgs import models as org_models  # noqa: E402
from qcwx.timeutil import local_today  # noqa: E402
from tests.factories import PASSWORD  # noqa: E402

MEAN, SD = 5.5, 0.2


class Counters:
    """SQL statements and Celery publishes seen since the last :meth:`reset`."""

    def __init__(self):
        self.sql = 0
        self.published = 0

    def reset(self) -> None:
        """Start a new count."""
        self.sql = self.published = 0

    def on_sql(self, *_args, **_kwargs) -> None:
        """Count one statement (SQLAlchemy ``before_cursor_execute``)."""
        self.sql += 1

    def on_publish(self, *_args, **_kwargs) -> None:
        """Count one task message (Celery ``before_task_publish``)."""
        self.published += 1


def make_app(url: str | None):
    """Return a migrated app on ``url`` (a fresh SQLite file by default), tasks not eager.

    A MariaDB URL names a database of the bench's own: it is dropped and created empty.
    """
    url = url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'submit.sqlite3'}"
    if url.startswith("mysql"):
        from tests.fixtures.app import recreate_mariadb_database

        recreate_mariadb_database(url)
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "SECRET_KEY": "bench-secret",
                      "BASE_URL": "http://127.0.0.1:5000", "WTF_CSRF_ENABLED": False,
                      "REDIS_URL": None, "CELERY_EAGER": False, "RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade()
    return app


def value(rng: random.Random, level_index: int) -> str:
    """Return a value as typed: mostly in control, now and then 2–3.5 SD off."""
    z = rng.gauss(0, 1) if rng.random() > 0.06 else rng.choice((-1, 1)) * rng.uniform(2.1, 3.6)
    return f"{MEAN * level_index + z * SD:.2f}"


def seed(app, history: int, fresh: int, rng: random.Random) -> dict:
    """Seed one lab's test system (2 levels, limits, ``history`` days of runs); return ids."""
    from qcwx.iqc import services, targets
    from tests import factories as f

    org_models.PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
    with app.app_context():
        world = f.build_world()
        ts = world.systems["a"]
        sup, tech = world.users["supervisor"], world.users["technician"]
        today = local_today(ts.lab.timezone)
        first = today - timedelta(days=history + fresh)
        for lv in ts.levels:
            targets.set_control_limit(sup, ts, lv, mean=MEAN * lv.level_index, sd=SD,
                                      kind="fixed", effective_from=first, reason="说明书靶值")
        rows = [services.RunInput(ts.id, first + timedelta(days=d),
                                  {str(lv.level_index): value(rng, lv.level_index)
                                   for lv in ts.levels}, 1, f"hist-{d}")
                for d in range(history)]
        prepared = services.prepare_runs(tech, "h5", rows)
        services.store_runs(tech, "h5", prepared, notify_from=None)
        tech.mp_openid = "bench-openid-tech"
        db.session.commit()
        return {"ts": ts.id, "tech": tech.id, "username": tech.username,
                "first_fresh": first + timedelta(days=history)}


def clients(app, ids: dict):
    """Return (mini-program client + headers, logged-in session client)."""
    from miniprogram_api.auth import issue_token

    with app.app_context():
        tech = db.session.get(org_models.User, ids["tech"])
        token = issue_token(tech)["token"]
    mp = app.test_client()
    web = app.test_client()
    resp = web.post("/login", data={"username": ids["username"], "password": PASSWORD})
    assert resp.status_code == 302, f"login failed: {resp.status_code}"
    return (mp, {"Authorization": f"Bearer {token}"}), web


def measure(counters: Counters, call) -> tuple[float, int, int]:
    """Return (CPU seconds, SQL statements, publishes) of one ``call``."""
    counters.reset()
    t0 = time.process_time()
    call()
    return time.process_time() - t0, counters.sql, counters.published


def submissions(app, ids, rng, n, offset):
    """Yield (path, call) pairs: alternate mini-program and session submissions, one a day."""
    (mp, headers), web = clients(app, ids)
    ts_id = ids["ts"]
    for i in range(n):
        day = (ids["first_fresh"] + timedelta(days=offset + i)).isoformat()
        values = {"1": value(rng, 1), "2": value(rng, 2)}
        if i % 2 == 0:
            body = {"test_system_id": ts_id, "run_date": day, "values": values,
                    "client_id": f"mp-{offset + i}"}
            yield "mp", lambda b=body: _ok(mp.post("/api/mp/v1/runs", json=b, headers=headers))
        else:
            body = {"run_date": day, "values": values, "client_id": f"ts-{offset + i}"}
            yield "ts", lambda b=body: _ok(web.post(f"/api/ts/{ts_id}/runs", json=b))


def _ok(resp):
    assert resp.status_code == 201, (resp.status_code, resp.get_data(as_text=True)[:300])
    return resp.get_json()["status"]


def report(name: str, samples: list[tuple[float, int, int]], floor: float) -> None:
    """Print one path's per-submission numbers and its CPU ratio against the floor."""
    cpu = statistics.median(s[0] for s in samples)
    sql = [s[1] for s in samples]
    pub = [s[2] for s in samples]
    print(f"  {name:<26} n={len(samples):<4} CPU median {cpu * 1e3:6.2f} ms "
          f"(= {cpu / floor:5.1f}× /healthz)   SQL mean {statistics.mean(sql):5.1f} "
          f"[{min(sql)}–{max(sql)}]   publishes mean {statistics.mean(pub):.2f} "
          f"[{min(pub)}–{max(pub)}]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--history", type=int, default=300)
    parser.add_argument("--db")
    parser.add_argument("--profile", choices=("mp", "ts"))
    parser.add_argument("--sort", default="cumulative", help="pstats order of --profile")
    args = parser.parse_args()
    rng = random.Random(14)
    app = make_app(args.db)
    ids = seed(app, args.history, args.runs + 10, rng)
    counters = Counters()
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", counters.on_sql)
    before_task_publish.connect(counters.on_publish, weak=False)

    warm = list(submissions(app, ids, rng, 4, 0))  # imports, caches, first connection
    for _, call in warm:
        call()
    health = app.test_client()
    floor = [measure(counters, lambda: health.get("/healthz")) for _ in range(200)]
    floor_cpu = statistics.median(s[0] for s in floor)

    calls = list(submissions(app, ids, rng, args.runs, 4))
    if args.profile:
        prof = cProfile.Profile(time.process_time)  # CPU only: waits on the database are not ours
        for path, call in calls:
            if path == args.profile:
                prof.runcall(call)
        pstats.Stats(prof).sort_stats(args.sort).print_stats(45)
        return
    samples: dict[str, list] = {}
    for path, call in calls:
        counters.reset()
        t0 = time.process_time()
        status = call()
        sample = (time.process_time() - t0, counters.sql, counters.published)
        samples.setdefault(path, []).append(sample)
        samples.setdefault(f"{path} {status}", []).append(sample)
    print(f"submit cost: {args.runs} submissions after {args.history} days of history on "
          f"{app.config['DATABASE_URL'].split(':')[0]}")
    report("GET /healthz (baseline)", floor, floor_cpu)
    for label, key in (("POST /api/mp/v1/runs", "mp"), ("POST /api/ts/<id>/runs", "ts")):
        report(label, samples[key], floor_cpu)
        for status in ("accept", "warning", "reject"):
            if f"{key} {status}" in samples:
                report(f"  … {status}", samples[f"{key} {status}"], floor_cpu)


if __name__ == "__main__":
    main()
