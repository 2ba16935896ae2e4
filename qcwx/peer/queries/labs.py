"""The lab comparison page: each test system's levels with their statistics and trends.

Rows come from :func:`qcwx.peer.queries.region_results` (frozen months from their snapshot,
live ones computed); :func:`history` gives 12 months of SDI/CVR from frozen months plus live
ones, for the sparklines here and the lot page's trend charts; :func:`monthly_results` gives
the whole display row of each month (the evaluation report's trends and criteria).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import func, select

from qcwx.catalog.models import (
    QcLevel,
    TestSystem,
)
from qcwx.extensions import db
from qcwx.iqc.models import QcRun
from qcwx.orgs.models import Lab, User
from qcwx.peer import compute
from qcwx.peer.filters import (
    Period,
    month_end,
    month_period,
    recent_months,
)
from qcwx.peer.models import (
    PeerSnapshot,
    PeerSnapshotLab,
)
from qcwx.peer.queries import (
    SystemResult,
    compare_region,
    load_lab,
    num,
    region_results,
    result_from_row,
    result_from_snapshot,
)
from qcwx.peer.queries.frames import load_specs
from qcwx.qcstats import peer as qpeer

# ------------------------------------------------------------------ the lab page


@dataclass(frozen=True)
class LabSystemBlock:
    """One test system of a lab with its levels' rows (the lab page's cards)."""

    ts: TestSystem
    rows: list[SystemResult]

    @property
    def grade(self) -> str | None:
        """Return the system's grade: the worst of its levels."""
        return compute.worst_grade(r.grade for r in self.rows)


@dataclass(frozen=True)
class LabPage:
    """Everything the lab comparison page shows."""

    lab: Lab
    period: Period
    snapshot: PeerSnapshot | None
    blocks: list[LabSystemBlock]
    months: list[str]
    overall: qpeer.OverallGrade | None
    levels: dict[int, QcLevel]


def lab_page(actor: User, lab_id: int, period: Period, today: date) -> LabPage:
    """Return the lab's systems with each level's statistics and 12-month SDI sparklines."""
    lab = load_lab(actor, lab_id)
    region_id = lab.hospital.region_id
    systems = list(db.session.scalars(
        select(TestSystem).where(TestSystem.lab_id == lab.id)
        .order_by(TestSystem.analyte_id, TestSystem.id)))
    analytes = {ts.analyte_id for ts in systems}
    lots = {ts.qc_lot_id for ts in systems}
    rows, snap = region_results(region_id, period, lab_ids=[lab.id], analyte_ids=analytes,
                                lot_ids=lots) if systems else ([], None)
    months = recent_months(today, 12)
    trend = history(region_id, [ts.id for ts in systems], months, today)
    by_ts: dict[int, list[SystemResult]] = {}
    for r in rows:
        series = trend.get((r.ts_id, r.qc_level_id), {})
        by_ts.setdefault(r.ts_id, []).append(replace(
            r, sparkline=tuple(series.get(m, (None, None))[0] for m in months)))
    levels = {lv.id: lv for ts in systems for lv in ts.levels}
    blocks = []
    for ts in systems:
        ts_rows = sorted(by_ts.get(ts.id, []),
                         key=lambda r: levels[r.qc_level_id].level_index
                         if r.qc_level_id in levels else r.qc_level_id)
        if ts_rows or ts.active:
            blocks.append(LabSystemBlock(ts, ts_rows))
    grades = [b.grade for b in blocks if b.grade]
    overall = qpeer.lab_overall_grade(_analyte_grades(blocks)) if grades else None
    return LabPage(lab, period, snap, blocks, months, overall, levels)


def _analyte_grades(blocks: Sequence[LabSystemBlock]) -> list[str]:
    """Return one grade per analyte (the worst of its systems and levels)."""
    per: dict[int, list[str]] = {}
    for b in blocks:
        if b.grade:
            per.setdefault(b.ts.analyte_id, []).append(b.grade)
    return [compute.worst_grade(g) for g in per.values()]


def history(region_id: int, ts_ids: Sequence[int], months: Sequence[str], today: date
            ) -> dict[tuple[int, int], dict[str, tuple[float | None, float | None]]]:
    """Return ``{(ts, level): {month: (SDI, CVR)}}`` from frozen months plus live months.

    The SDI/CVR view of :func:`monthly_results` (without performance details).
    """
    rows = monthly_results(region_id, ts_ids, months, today, details=False)
    return {key: {m: (num(r.sdi), num(r.cvr)) for m, r in per.items()}
            for key, per in rows.items()}


def monthly_results(region_id: int, ts_ids: Sequence[int], months: Sequence[str], today: date,
                    *, details: bool = True
                    ) -> dict[tuple[int, int], dict[str, SystemResult]]:
    """Return ``{(ts, level): {month: row}}``: each month's display row of some systems.

    Frozen months read their snapshot; months without one (the current month is never
    frozen while it runs) are computed live with the default grouping, all in one pass
    (:func:`compare_region` by month, from the first live month to the last one or
    ``today``). ``details`` adds TEa, σ, grade and the specification to live rows (frozen rows
    always have them). Months after ``today``'s or before the systems' first run are absent.
    """
    out: dict[tuple[int, int], dict[str, SystemResult]] = {}
    if not len(ts_ids):
        return out
    wanted = [int(i) for i in ts_ids]
    frozen_months = set(db.session.scalars(select(PeerSnapshot.month).where(
        PeerSnapshot.region_id == region_id, PeerSnapshot.month.in_(list(months)))))
    frozen = db.session.execute(
        select(PeerSnapshot.month, PeerSnapshotLab)
        .join(PeerSnapshot, PeerSnapshot.id == PeerSnapshotLab.snapshot_id)
        .where(PeerSnapshot.region_id == region_id, PeerSnapshot.month.in_(list(months)),
               PeerSnapshotLab.test_system_id.in_(wanted))).all()
    for month, row in frozen:
        out.setdefault((row.test_system_id, row.qc_level_id), {})[month] = \
            result_from_snapshot(row)
    live = sorted(m for m in months if m not in frozen_months and m <= today.strftime("%Y-%m"))
    if not live:
        return out
    ts = db.session.execute(select(TestSystem.analyte_id, TestSystem.qc_lot_id).where(
        TestSystem.id.in_(wanted))).all()
    first = db.session.scalar(select(func.min(QcRun.run_date)).where(
        QcRun.test_system_id.in_(wanted)))
    analytes, lots = {a for a, _ in ts}, {lot for _, lot in ts}
    live = [m for m in live if first is not None and m >= first.strftime("%Y-%m")]
    if not live:
        return out
    window = Period("cum", month_period(live[0], today).start,
                    min(today, month_end(live[-1])))
    labs = compare_region(region_id, window, analyte_ids=analytes, lot_ids=lots, by_month=True,
                          details=details)
    labs = labs[labs["ts_id"].isin(wanted) & labs["month"].isin(live)]
    specs = load_specs(analytes) if details else {}
    for r in labs.to_dict("records"):
        out.setdefault((int(r["ts_id"]), int(r["qc_level_id"])), {})[r["month"]] = \
            result_from_row(r, specs)
    return out
