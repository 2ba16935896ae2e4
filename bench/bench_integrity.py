"""Measure the integrity signals on the seeded demo: false positives on honest labs.

Run: ``.venv/bin/python bench/bench_integrity.py [--days 120] [--db PATH] [--window 30]``.

Uses the same seeded demo as ``bench_shifts.py`` (``--db`` reuses it). Prints the share of
honest series (test system × level, every lab except the two fabricated series and the lab
copied from) that raise any flag, per flag, whether both fabricated series are found with
the right flag, and the report's time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_shifts import END, seeded_app  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from qcwx.extensions import db  # noqa: E402
from qcwx.iqc.models import QcResult, QcRun  # noqa: E402
from qcwx.orgs.models import User  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--db")
    parser.add_argument("--window", type=int, default=30, choices=(30, 60, 90))
    args = parser.parse_args()
    app, injected = seeded_app(args.days, args.db)
    from qcwx.insights import integrity

    with app.app_context():
        centre = db.session.scalars(select(User).where(User.username == "center")).one()
        start = date.fromordinal(END.toordinal() - args.window + 1)
        series = db.session.execute(
            select(QcRun.test_system_id, QcResult.qc_level_id).join(QcResult)
            .where(QcRun.run_date >= start, QcRun.run_date <= END)
            .group_by(QcRun.test_system_id, QcResult.qc_level_id)
            .having(func.count() >= 20)).all()
        t0 = time.perf_counter()
        rows = integrity.report(centre, centre.region_id, END, args.window)
        elapsed = time.perf_counter() - t0
        copied = injected["copied"]
        fabricated = {injected["smooth"]["test_system_id"], copied["test_system_id"],
                      copied["source_test_system_id"]}
        honest = [s for s in series if s[0] not in fabricated]
        flagged = [r for r in rows if r.ts.id not in fabricated]
        print(f"window {args.window} days ending {END}; report in {elapsed:.2f} s")
        print(f"honest series (≥ 20 results): {len(honest)}; flagged: {len(flagged)} = "
              f"{len(flagged) / max(1, len(honest)):.2%}")
        per = Counter(code for r in flagged for code, _, _ in r.flags)
        for code, title in integrity.TITLES.items():
            print(f"  {title:10s} {per.get(code, 0)}")
        for r in flagged:
            print(f"    {r.lab_name} {r.ts.analyte.code} {r.level.name}: "
                  + "；".join(text for _, _, text in r.flags))
        for name, code in (("smooth", "sd_low"), ("copied", "copied")):
            ts_id = injected[name]["test_system_id"]
            got = {c for r in rows if r.ts.id == ts_id for c, _, _ in r.flags}
            print(f"fabricated {name}: {'found' if code in got else 'MISSED'} "
                  f"({', '.join(sorted(got)) or 'no flag'})")


if __name__ == "__main__":
    main()
