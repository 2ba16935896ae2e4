"""Benchmark the peer-comparison service path (qcwx.peer) at national scale.

Usage::

    .venv/bin/python bench/bench_peer_service.py [--quick] [--repeat N] [--skip-db]

1. **Full recompute, in memory.** Builds one national month with a fixed seed — 5,000 labs ×
   30 analytes × 2 levels × 30 days = 9,000,000 results (``--quick``: 500 labs) — with per-lab
   instrument maker, reagent maker and method codes, then times the service path that freezes
   a month: ``compute.results_to_moments`` (n, Σx, Σx² per system × level — what the SQL
   aggregation returns) → join of the grouping codes → ``compute.compare`` (per-system n/mean/
   SD/CV; Algorithm A, group CV, SDI, CVR, bias and ranks at the levels peer, method and all;
   the first publishable level per system) → ``compute.add_performance`` (TEa at the group
   mean, sigma, grade). Baseline, measured in the same run: one pandas
   ``groupby(["lab", "analyte", "level"]).value.agg(["mean", "std", "count"])``. Prints the
   ratio (target ≤ 3×) and the peak memory (tracemalloc peak of one recompute, process max RSS).
2. **Incremental refresh, through the database** (skipped with ``--skip-db``): a SQLite file
   with one peer group of 50 labs and one of 5,000 labs (30 days × 2 levels each, cache
   built). Times, for one new run: ``services.refresh_after_submission`` (re-aggregates that
   one system's results and writes the changed day), and the read of the group's live
   statistics (``queries.compare_region`` for the lot and analyte) — and the same read with
   the cache switched off (raw results), which is why the cache exists.

How the database feeds the recompute. Nothing ever loads the 9 M results into Python: peer
groups never span a QC lot (every group key starts with the QC level), so ``freeze_month``
walks the lots; for each lot one ``SELECT ts, level, COUNT(*), SUM(x), SUM(x*x) … GROUP BY``
(over ``peer_lab_day`` when cached, else over the results) returns one row per system × level
— 10,000 rows for a 5,000-lab lot — and ``compute.compare`` runs on that. Memory is bounded
by the largest lot's system count, not by the number of results.

Splitting across Celery workers (for the lead's README). When one machine is not enough, the
unit of work is one (region, QC lot) chunk — independent because groups never cross lots or
regions: ``freeze_previous_month`` fans out one task per chunk (``group`` of
``freeze_chunk(region_id, lot_id, month)``) writing ``PeerSnapshotLab`` rows into a snapshot
created in state "building", and a ``chord`` callback marks the snapshot frozen when every
chunk reported (a failed chunk is retried alone; the writes are keyed by snapshot × system ×
level, so a redelivered chunk is idempotent). Live refreshes are already per test system
(``qcwx.peer.refresh``) and spread over any number of workers; the only shared state is the
database. The numbers below show a 5,000-lab lot recomputes in well under a second, so a
single worker handles a nation per month; the split is for many regions × lots in parallel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchutil import best_of, maxrss_mb  # noqa: E402 (bench/ is on sys.path as a script)

from qcwx.peer import compute  # noqa: E402
from qcwx.qcstats.specs import Tea  # noqa: E402

SEED = 20261125
N_ANALYTES, N_LEVELS, N_DAYS = 30, 2, 30
MAKERS = ("罗氏", "贝克曼库尔特", "西门子", "雅培", "迈瑞", "日立", "东芝", "科华")
METHODS = ("M1", "M2", "M3", "M4")


def build_month(n_labs: int, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (results, systems): one month of results in arrival order and the codes."""
    rng = np.random.default_rng(seed)
    targets = rng.uniform(1.0, 200.0, size=(N_ANALYTES, N_LEVELS))
    lab_bias = rng.normal(0.0, 0.02, size=(n_labs, N_ANALYTES, N_LEVELS))
    lab_cv = rng.uniform(0.01, 0.06, size=(n_labs, N_ANALYTES, N_LEVELS))
    per_day = n_labs * N_ANALYTES * N_LEVELS
    lab = np.repeat(np.arange(n_labs, dtype=np.int32), N_ANALYTES * N_LEVELS)
    analyte = np.tile(np.repeat(np.arange(N_ANALYTES, dtype=np.int16), N_LEVELS), n_labs)
    level = np.tile(np.arange(1, N_LEVELS + 1, dtype=np.int16), n_labs * N_ANALYTES)
    centre = (targets[None] * (1.0 + lab_bias)).ravel()
    spread = centre * lab_cv.ravel()
    value = np.empty(per_day * N_DAYS)
    for d in range(N_DAYS):
        value[d * per_day:(d + 1) * per_day] = centre + spread * rng.standard_normal(per_day)
    results = pd.DataFrame({"lab": np.tile(lab, N_DAYS), "analyte": np.tile(analyte, N_DAYS),
                            "level": np.tile(level, N_DAYS), "value": value})
    # One test system per lab × analyte; its codes drive the peer / method groups.
    sys_lab = np.repeat(np.arange(n_labs), N_ANALYTES)
    sys_analyte = np.tile(np.arange(N_ANALYTES), n_labs)
    maker = rng.integers(0, len(MAKERS), n_labs)
    third_party = rng.random(n_labs * N_ANALYTES) < 0.2
    reagent = np.where(third_party, rng.integers(0, len(MAKERS), n_labs * N_ANALYTES),
                       np.repeat(maker, N_ANALYTES))
    # Mostly two methods; a few systems on a rare method (small peer groups fall back to the
    # method group) and a handful on a very rare one (falls back to all labs on the lot).
    u = rng.random(n_labs * N_ANALYTES)
    method = np.where(u < 0.0006, 3, np.where(u < 0.006, 2, reagent % 2)).astype(np.int8)
    systems = pd.DataFrame({
        "lab": sys_lab, "analyte": sys_analyte, "lab_id": sys_lab,
        "analyte_id": sys_analyte,
        "instrument_maker": pd.Categorical.from_codes(np.repeat(maker, N_ANALYTES), MAKERS),
        "reagent_maker": pd.Categorical.from_codes(reagent, MAKERS),
        "method": pd.Categorical.from_codes(method, METHODS),
        "unit": "mmol/L", "temperature": "37℃"})
    return results, systems


def service_recompute(results: pd.DataFrame, systems: pd.DataFrame, specs: dict):
    """The freeze path: moments → codes → compare at three levels → TEa, sigma, grade."""
    mom = compute.results_to_moments(results, by=("lab", "analyte", "level"))
    frame = mom.merge(systems, on=["lab", "analyte"], how="inner", sort=False)
    frame = frame.rename(columns={"level": "qc_level_id"})
    labs = compute.compare(frame)
    return compute.add_performance(labs, specs)




def bench_recompute(n_labs: int, repeat: int) -> float:
    t0 = time.perf_counter()
    results, systems = build_month(n_labs)
    print(f"month: {len(results):,} results ({n_labs:,} labs × {N_ANALYTES} analytes × "
          f"{N_LEVELS} levels × {N_DAYS} days), {results.memory_usage().sum() / 2**20:.0f} MiB,"
          f" built in {time.perf_counter() - t0:.1f} s")
    specs = {a: compute.SpecInfo(Tea(float(8 + a % 10)), 3.0, 4.0, "bench")
             for a in range(N_ANALYTES)}
    labs = service_recompute(results, systems, specs)
    assert len(labs) == n_labs * N_ANALYTES * N_LEVELS
    levels = labs["group_level"].astype(object).where(labs["group_level"].notna(), "none")
    t_base = best_of(lambda: results.groupby(["lab", "analyte", "level"]).value.agg(
        ["mean", "std", "count"]), repeat)
    t_full = best_of(lambda: service_recompute(results, systems, specs), repeat)
    ratio = t_full / t_base
    print(f"pandas groupby(lab, analyte, level).agg(mean,std,count): {t_base:.3f} s "
          f"(best of {repeat})")
    print(f"service full recompute (moments→compare×3 levels→grades): {t_full:.3f} s "
          f"(best of {repeat})")
    print(f"ratio service / groupby: {ratio:.2f}x  (target <= 3x: "
          f"{'OK' if ratio <= 3 else 'FAIL'})")
    print(f"systems × levels: {len(labs):,}; reported at {levels.value_counts().to_dict()}; "
          f"grades {labs['grade'].value_counts().to_dict()}")
    tracemalloc.start()
    service_recompute(results, systems, specs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak memory: one recompute (tracemalloc) {peak / 2**20:.0f} MiB; "
          f"process max RSS {maxrss_mb():.0f} MiB")
    return ratio


# ------------------------------------------------------------------ the database part


def build_group(n_labs: int, days: int, today: date):
    """Insert one region whose n_labs labs share one lot and analyte (Core bulk inserts)."""
    from sqlalchemy import insert, select

    from qcwx import models as m
    from qcwx.catalog.models import test_system_level
    from qcwx.extensions import db

    region = m.Region(code=f"B{n_labs}", name=f"基准{n_labs}")
    analyte = m.Analyte(code=f"BG{n_labs}", name="葡萄糖", unit="mmol/L", decimals=2)
    material = m.QcMaterial(maker="Bio-Rad", name=f"基准质控品{n_labs}")
    lot = m.QcLot(material=material, lot_number=f"B{n_labs}")
    method = m.Method(code=f"HK{n_labs}", name="己糖激酶法", principle="酶法")
    reagent = m.Reagent(maker="罗氏", name=f"葡萄糖试剂{n_labs}")
    db.session.add_all([region, analyte, lot, method, reagent])
    db.session.flush()
    levels = [m.QcLevel(lot_id=lot.id, level_index=i, name=f"水平{i}") for i in (1, 2)]
    db.session.add_all(levels)
    db.session.flush()
    rng = np.random.default_rng(n_labs)

    def ids(table, rows):
        start = (db.session.scalar(select(db.func.max(table.c.id))) or 0) + 1
        for k, row in enumerate(rows):
            row["id"] = start + k
        db.session.execute(insert(table), rows)
        return [r["id"] for r in rows]

    hosp = ids(m.Hospital.__table__, [{"region_id": region.id, "code": f"BH{n_labs}-{i}",
                                       "name": f"医院{i}", "level": "二级", "type": "综合医院"}
                                      for i in range(n_labs)])
    labs = ids(m.Lab.__table__, [{"hospital_id": h, "code": f"BL{n_labs}-{i}", "name": "检验科",
                                  "anon_code": f"B{n_labs}{i:05d}", "timezone": "Asia/Shanghai"}
                                 for i, h in enumerate(hosp)])
    inst = ids(m.Instrument.__table__, [{"lab_id": lab, "maker": "罗氏", "model": "cobas c702"}
                                        for lab in labs])
    systems = ids(m.TestSystem.__table__, [
        {"lab_id": lab, "analyte_id": analyte.id, "instrument_id": i, "reagent_id": reagent.id,
         "method_id": method.id, "unit": "mmol/L", "temperature": "37℃", "qc_lot_id": lot.id,
         "active": True, "label_version": 1, "created_at": today}
        for lab, i in zip(labs, inst, strict=True)])
    db.session.execute(insert(test_system_level), [
        {"test_system_id": ts, "qc_level_id": lv.id} for ts in systems for lv in levels])
    runs, results = [], []
    run_id = (db.session.scalar(select(db.func.max(m.QcRun.id))) or 0) + 1
    bias = rng.normal(0, 0.02, n_labs)
    for k, ts in enumerate(systems):
        for d in range(days):
            runs.append({"id": run_id, "test_system_id": ts, "run_date": today - timedelta(days=d),
                         "run_no": 1, "status": "accept", "created_at": today})
            for lv, conc in zip(levels, (5.5, 15.8), strict=True):
                v = round(conc * (1 + bias[k]) * (1 + rng.normal(0, 0.02)), 2)
                results.append({"run_id": run_id, "qc_level_id": lv.id, "version": 1,
                                "is_current": True, "value_text": f"{v:.2f}", "value": v,
                                "entered_at": today})
            run_id += 1
    db.session.execute(insert(m.QcRun.__table__), runs)
    db.session.execute(insert(m.QcResult.__table__), results)
    db.session.commit()
    return region.id, analyte.id, lot.id, levels, systems


def bench_refresh(sizes=(50, 5000), repeat: int = 5) -> dict[int, tuple[float, float, float]]:
    """Return {n_labs: (refresh s, cached read s, raw read s)} for one new run."""
    from sqlalchemy import delete, insert, text

    from qcwx import create_app
    from qcwx import models as m
    from qcwx.extensions import db
    from qcwx.peer import queries, services
    from qcwx.peer.filters import Period
    from qcwx.peer.models import PeerTsState

    tmp = Path(tempfile.mkdtemp()) / "bench_peer.sqlite3"
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp}", "LOG_LEVEL": "WARNING",
                      "SECRET_KEY": "bench"})
    out = {}
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        today = date(2026, 11, 25)
        period = Period("month", today.replace(day=1), today, today.strftime("%Y-%m"))
        for n in sizes:
            t0 = time.perf_counter()
            region, analyte, lot, levels, systems = build_group(n, 30, today)
            for table in ("qc_run", "qc_result"):
                db.session.execute(text(f"ANALYZE {table}"))
            services.rebuild_cache(region)
            db.session.commit()
            print(f"  group of {n:,} labs: {n * 60:,} results stored and cached in "
                  f"{time.perf_counter() - t0:.1f} s")
            refresh, read, raw = [], [], []
            for k in range(repeat):
                ts = systems[k * 7 % len(systems)]
                run = db.session.execute(insert(m.QcRun.__table__).values(
                    test_system_id=ts, run_date=today, run_no=2 + k, status="accept",
                    created_at=today)).inserted_primary_key[0]
                db.session.execute(insert(m.QcResult.__table__), [
                    {"run_id": run, "qc_level_id": lv.id, "version": 1, "is_current": True,
                     "value_text": "5.60", "value": 5.6 + 10 * i, "entered_at": today}
                    for i, lv in enumerate(levels)])
                db.session.commit()
                t0 = time.perf_counter()
                services.refresh_after_submission(ts)
                db.session.commit()
                t1 = time.perf_counter()
                labs = queries.compare_region(region, period, analyte_ids=[analyte],
                                              lot_ids=[lot])
                t2 = time.perf_counter()
                assert len(labs) == 2 * n
                refresh.append(t1 - t0)
                read.append(t2 - t1)
            with db.session.begin_nested():
                db.session.execute(delete(PeerTsState.__table__))
                for _ in range(min(repeat, 3)):
                    t0 = time.perf_counter()
                    queries.compare_region(region, period, analyte_ids=[analyte], lot_ids=[lot])
                    raw.append(time.perf_counter() - t0)
                db.session.rollback()
            out[n] = (min(refresh), min(read), min(raw))
        db.session.remove()
    os.unlink(tmp)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 labs instead of 5,000")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per variant (best)")
    parser.add_argument("--skip-db", action="store_true", help="only the in-memory recompute")
    args = parser.parse_args(argv)
    ratio = bench_recompute(500 if args.quick else 5000, args.repeat)
    if not args.skip_db:
        print("incremental refresh after one submission (SQLite, best of 5):")
        res = bench_refresh((50, 500) if args.quick else (50, 5000))
        (small, s), (large, b) = sorted(res.items())
        for n, (refresh, read, raw) in sorted(res.items()):
            print(f"  {n:>5,} labs: refresh_after_submission {refresh * 1e3:7.1f} ms; "
                  f"group statistics read {read * 1e3:7.1f} ms (cache) vs {raw * 1e3:7.1f} ms "
                  f"(raw results); submission → fresh numbers {(refresh + read) * 1e3:7.1f} ms")
        print(f"  ratio {large:,} / {small:,} labs: refresh {b[0] / s[0]:.1f}x, "
              f"refresh + read {(b[0] + b[1]) / (s[0] + s[1]):.1f}x")
    return 0 if ratio <= 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
