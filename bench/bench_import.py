"""Benchmark importing a large QC history file through the upload commit path.

Run: ``.venv/bin/python bench/bench_import.py [--quick]``.

1. 100,000 CSV rows — 50 test systems x 2 levels x 1,000 days, fixed seed, with a few
   shifts so rules fire — parsed and committed by ``qcwx.ingest.services.commit_file`` (the
   upload page's commit) into a fresh SQLite database, in one transaction. Prints the time
   per phase and rows/s; the target is well under a minute.
2. Live entry (one ``submit_run`` and commit per run, as phones send them) against the
   upload's one batch through the same write path, on a subset (2 test systems x 100 days),
   on twin test systems: prints both speeds, their ratio, the per-run time extrapolated to
   the full file, and checks that both stored identical runs (status, fired rules, values).
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from qcwx import create_app  # noqa: E402
from qcwx import models as m  # noqa: E402
from qcwx.extensions import db  # noqa: E402
from qcwx.ingest import parse_bytes, services  # noqa: E402
from qcwx.iqc import services as iqc_services  # noqa: E402
from qcwx.iqc import targets  # noqa: E402
from qcwx.iqc.models import QcRun  # noqa: E402
from qcwx.orgs.services import create_user  # noqa: E402
from qcwx.timeutil import local_today  # noqa: E402

SEED = 20261105
MEAN = {1: 5.0, 2: 15.0}
SD = {1: 0.2, 2: 0.5}


def make_app(path: Path):
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{path}",
                      "SECRET_KEY": "bench", "REDIS_URL": None, "RATELIMIT_ENABLED": False,
                      "LOG_LEVEL": "WARNING"})
    with app.app_context():
        upgrade()
    return app


def build(n_systems: int, start: date, prefix: str = "T"):
    """Create one lab with ``n_systems`` 2-level test systems (analyte codes T01…) and limits."""
    region = m.Region(code=f"R-{prefix}", name="基准区")
    hospital = m.Hospital(region=region, code=f"H-{prefix}", name="基准医院", level="三级")
    lab = m.Lab(hospital=hospital, code=f"L-{prefix}", name="检验科", anon_code=f"B-{prefix}")
    db.session.add(lab)
    db.session.flush()
    tech = create_user(username=f"tech-{prefix}", display_name="技师", password="bench-pass-1",
                       role="technician", lab_id=lab.id)
    supervisor = create_user(username=f"sup-{prefix}", display_name="质控主管",
                             password="bench-pass-1", role="supervisor", lab_id=lab.id)
    method = m.Method(code=f"M-{prefix}", name="酶法")
    systems = []
    for i in range(1, n_systems + 1):
        analyte = m.Analyte(code=f"{prefix}{i:02d}", name=f"项目{prefix}{i:02d}", unit="mmol/L",
                            plausible_low=0.0, plausible_high=1000.0)
        lot = m.QcLot(material=m.QcMaterial(maker="Bio-Rad", name=f"质控品 {prefix}{i}"),
                      lot_number=f"LOT{i:02d}", expiry=None)
        levels = [m.QcLevel(lot=lot, level_index=k, name=f"水平{k}") for k in (1, 2)]
        inst = m.Instrument(lab=lab, maker="Roche", model="cobas c702", serial=f"SN{prefix}{i}")
        ts = m.TestSystem(lab=lab, analyte=analyte, instrument=inst, method=method,
                          unit="mmol/L", qc_lot=lot, levels=levels)
        db.session.add(ts)
        systems.append(ts)
    db.session.flush()
    for ts in systems:
        for lv in ts.levels:
            targets.set_control_limit(supervisor, ts, lv, mean=MEAN[lv.level_index],
                                      sd=SD[lv.level_index], kind="fixed", effective_from=start,
                                      reason="基准")
    db.session.commit()
    return lab, tech, systems


def values(n_systems: int, days: list[date], seed: int = SEED):
    """Yield (day, code index, level, value text): normal noise plus a few shifts of 2.5 SD."""
    rnd = random.Random(seed)
    for s in range(1, n_systems + 1):
        shift_from = rnd.randrange(len(days))
        for d_i, day in enumerate(days):
            shift = 2.5 if shift_from <= d_i < shift_from + 6 else 0.0
            for level in (1, 2):
                z = rnd.gauss(shift, 1.0)
                yield day, s, level, f"{MEAN[level] + z * SD[level]:.3f}"


def csv_bytes(rows, prefix: str = "T") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["检测日期", "批次", "项目", "水平", "结果"])
    for day, s, level, text in rows:
        writer.writerow([day.isoformat(), 1, f"{prefix}{s:02d}", f"水平{level}", text])
    return out.getvalue().encode("utf-8-sig")


def signatures(ts_id: int) -> list[tuple]:
    runs = db.session.scalars(select(QcRun).where(QcRun.test_system_id == ts_id)
                              .order_by(QcRun.run_date, QcRun.run_no)).all()
    out = []
    for run in runs:
        rules = sorted((v.rule_code, v.role) for v in run.violations if v.active)
        vals = sorted((r.level.level_index, r.value_text) for r in run.results if r.is_current)
        out.append((run.run_date, run.run_no, run.status, tuple(rules), tuple(vals)))
    return out


def bench_full(n_systems: int, n_days: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(Path(tmp) / "bench.sqlite3")
        with app.app_context():
            end = local_today() - timedelta(days=1)
            days = [end - timedelta(days=n_days - 1 - i) for i in range(n_days)]
            lab, tech, _ = build(n_systems, days[0])
            data = csv_bytes(values(n_systems, days))
            n_rows = n_systems * n_days * 2
            c0, t0 = time.process_time(), time.perf_counter()
            parsed = parse_bytes(data)
            t1 = time.perf_counter()
            report = services.import_parsed(tech, lab, parsed, channel="upload")
            services.record_batch(report, lab, channel="upload", data=data, filename="bench.csv",
                                  user=tech)
            db.session.commit()
            t2, c2 = time.perf_counter(), time.process_time()
            counts = report.counts
            statuses = {}
            for (status,) in db.session.execute(select(QcRun.status)):
                statuses[status] = statuses.get(status, 0) + 1
            assert counts["stored"] == n_rows and counts["error"] == 0, counts
            print(f"full import: {n_rows:,} rows ({n_systems} test systems x 2 levels x "
                  f"{n_days} days, {len(data) / 1e6:.1f} MB CSV)")
            print(f"  parse   {t1 - t0:7.2f} s")
            print(f"  store   {t2 - t1:7.2f} s  (map, validate, dedupe, insert, judge, commit)")
            print(f"  total   {t2 - t0:7.2f} s  = {n_rows / (t2 - t0):,.0f} rows/s  "
                  f"[target: well under 60 s]; CPU time of this process {c2 - c0:.2f} s "
                  f"(wall > CPU means the machine was busy with other work)")
            print(f"  runs by status: {dict(sorted(statuses.items()))}")
            t3 = time.perf_counter()
            again = services.import_parsed(tech, lab, parse_bytes(data), channel="upload")
            t4 = time.perf_counter()
            print(f"  re-upload of the same file: {again.counts['duplicate']:,} duplicates, "
                  f"{again.counts['stored']} stored, {t4 - t3:.2f} s")


def live_entry(tech, systems, rows) -> float:
    """Type every run in, one ``submit_run`` per run in time order, as a phone would."""
    by_run: dict[tuple, dict[str, str]] = {}
    for day, s, level, text in rows:
        by_run.setdefault((day, s), {})[str(level)] = text
    t0 = time.perf_counter()
    for (day, s), vals in sorted(by_run.items()):
        iqc_services.submit_run(tech, test_system_id=systems[s - 1].id, run_date=day,
                                values=vals, channel="h5", notify=False)
        db.session.commit()
    return time.perf_counter() - t0


def bench_subset(n_systems: int, n_days: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = make_app(Path(tmp) / "subset.sqlite3")
        with app.app_context():
            end = local_today() - timedelta(days=10)
            days = [end - timedelta(days=n_days - 1 - i) for i in range(n_days)]
            lab_b, tech_b, sys_b = build(n_systems, days[0], "B")
            lab_r, tech_r, sys_r = build(n_systems, days[0], "R")
            rows = list(values(n_systems, days, SEED + 1))
            runs = n_systems * n_days

            t0 = time.perf_counter()
            rep_b = services.import_parsed(tech_b, lab_b, parse_bytes(csv_bytes(rows, "B")),
                                           channel="upload")
            db.session.commit()
            t_bulk = time.perf_counter() - t0
            t_run = live_entry(tech_r, sys_r, rows)
            rep_r = rep_b  # live entry has no import report; both stored every row (asserted)
            assert db.session.scalar(select(func.count()).select_from(QcRun).where(
                QcRun.test_system_id.in_([t.id for t in sys_r]))) == runs
            assert rep_b.counts == rep_r.counts == {"stored": runs * 2, "duplicate": 0,
                                                    "error": 0}
            same = all(signatures(b.id) == signatures(r.id)
                       for b, r in zip(sys_b, sys_r, strict=True))
            full_runs = 50 * 1000
            print(f"subset: {runs:,} runs ({n_systems} test systems x {n_days} days x 2 levels)")
            print(f"  run by run (submit_run each) {t_run:6.2f} s = {runs / t_run:7.0f} runs/s "
                  f"-> 50,000 runs ≈ {full_runs / (runs / t_run):,.0f} s")
            print(f"  one batch (upload)           {t_bulk:6.2f} s = {runs / t_bulk:7.0f} runs/s")
            print(f"  ratio bulk / run-by-run speed: {t_run / t_bulk:.1f}x; "
                  f"identical statuses, rules and values: {same}")
            if not same:
                raise SystemExit("bulk and run-by-run results differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 test systems x 100 days")
    args = parser.parse_args()
    if args.quick:
        bench_full(10, 100)
        bench_subset(2, 40)
    else:
        bench_full(50, 1000)
        bench_subset(2, 100)


if __name__ == "__main__":
    main()
