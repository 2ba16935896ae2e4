"""Measure shift detection on the seeded demo: false claims on honest series, injected found.

Run: ``.venv/bin/python bench/bench_shifts.py [--days 120] [--db PATH]``.

Seeds the demo region (deterministic) into a SQLite file (``--db``; reused when it exists,
with the injected events saved beside it), then:

1. Honest series — test systems where nothing was injected — are run through the CUSUM
   (``qcwx.qcstats.shifts.detect_shifts`` on the daily mean z): the share of series with a
   claimed shift, and claims per 100 series-months, is the false-alarm rate in practice.
2. Injected shifts (``shift_*``, ``lot_shift_*``, ``cal_shift``): found within ±3 days or
   not, and the cause the service names (shared lot vs this lab only).
3. For reference, the same CUSUM on simulated normal series of the same length.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import select  # noqa: E402

from qcwx import create_app  # noqa: E402
from qcwx.extensions import db  # noqa: E402
from qcwx.orgs.models import User  # noqa: E402

END = date(2026, 11, 20)


def seeded_app(days: int, path: str | None):
    """Return (app, injected events) for a demo seeded into ``path`` (seeded when new)."""
    from qcwx.demo.seed import INJECTED, seed

    path = path or str(Path(tempfile.mkdtemp()) / "demo.sqlite3")
    side = Path(path + ".injected.json")
    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{path}",
                      "SECRET_KEY": "bench", "REDIS_URL": None})
    with app.app_context():
        if not side.exists():
            upgrade()
            t0 = time.perf_counter()
            seed(days=days, end=END)
            db.session.commit()
            print(f"seeded {days} days in {time.perf_counter() - t0:.0f} s → {path}")
            side.write_text(json.dumps(INJECTED, default=str, ensure_ascii=False))
    return app, json.loads(side.read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--db")
    args = parser.parse_args()
    app, injected = seeded_app(args.days, args.db)
    from qcwx.insights import queries, services
    from qcwx.qcstats import shifts as sh

    with app.app_context():
        centre = db.session.scalars(select(User).where(User.username == "center")).one()
        systems = queries.region_systems(centre.region_id)
        touched = {e["test_system_id"] for e in injected.values() if e["kind"] != "bias"}
        zmap = queries.daily_z(queries.results([ts.id for ts in systems]))
        honest = [zmap[ts.id][1] for ts in systems if ts.id not in touched and ts.id in zmap]
        claims = [len(sh.detect_shifts(z)) for z in honest]
        months = sum(len(z) for z in honest) / 30.4
        print(f"honest series: {len(honest)} (mean {np.mean([len(z) for z in honest]):.0f} "
              f"judged days)")
        print(f"  series with a claimed shift: {sum(c > 0 for c in claims)}/{len(honest)} = "
              f"{np.mean([c > 0 for c in claims]):.1%}")
        print(f"  claims per 100 series-months: {100 * sum(claims) / months:.2f}")
        t0 = time.perf_counter()
        findings, _ = services.analyse(centre, systems)
        print(f"region analysis (all {len(systems)} systems): "
              f"{time.perf_counter() - t0:.2f} s")
        shifts = {k: e for k, e in injected.items() if e["kind"] == "shift"}
        found = 0
        for name, e in sorted(shifts.items()):
            start = date.fromisoformat(e["start"])
            near = [f for f in findings if f.ts.id == e["test_system_id"] and not f.recovery
                    and abs((f.day - start).days) <= 3]
            found += bool(near)
            cause = (f"{near[0].cause.scope} {near[0].cause.lot or ''}".strip() if near
                     else "not found")
            print(f"  {name:12s} {e['lab_code']:12s} {e['analyte']:5s} {e['start']} "
                  f"{e['size']:+.1f} SD → {cause}")
        print(f"injected shifts found within ±3 days: {found}/{len(shifts)}")
        rng = np.random.default_rng(7)
        n = int(np.median([len(z) for z in honest]))
        sim = np.mean([bool(sh.detect_shifts(rng.normal(0, 0.8, n))) for _ in range(1000)])
        print(f"reference: simulated normal series of {n} days with a claimed shift: {sim:.1%}")


if __name__ == "__main__":
    main()
