"""Gather what the evaluation report of one lab and month shows, as plain data.

Everything peer-related comes from :mod:`qcwx.peer.queries`: the month's rows of the lab's
analytes and lots for the whole region (:func:`~qcwx.peer.queries.region_results`, frozen
when the month is frozen), the members of each of the lab's groups
(:func:`~qcwx.peer.queries.members.group_members`) and twelve months of display rows
(:func:`~qcwx.peer.queries.labs.monthly_results`: snapshots for frozen months, live for the
rest). Participation (submission and in-control rates, QC_SPEC §7) is read from the runs.
:mod:`qcwx.qcstats.conclusions` turns both into the monthly facts and the recommendation.

Submission rate [choice]: per test system and month, days with at least one judged run
(accept, warning or reject; pending runs do not count) / expected QC days. Expected days are
every calendar day of the month that lies between the system's first run and today (for an
inactive system, its last run): a system is not expected before it started, nor after today
in the current month. A lab's rate is the mean over its systems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd
from sqlalchemy import case, distinct, extract, func, select
from sqlalchemy.orm import selectinload

from qcwx.catalog.models import Analyte, QcLevel, TestSystem
from qcwx.extensions import db
from qcwx.iqc.models import QcRun
from qcwx.orgs.models import Lab
from qcwx.peer.filters import Period, month_end, month_period, recent_months
from qcwx.peer.models import PeerSnapshot
from qcwx.peer.queries import SystemResult, region_results
from qcwx.peer.queries.labs import monthly_results
from qcwx.peer.queries.lot import Member
from qcwx.peer.queries.members import group_members
from qcwx.qcstats import conclusions

#: The §7 defaults; a region's own thresholds come from :mod:`qcwx.recognition.services`.
CRITERIA = conclusions.RecognitionCriteria()
#: Months of trend shown per analyte (and looked back over to date a problem).
TREND_MONTHS = 12
JUDGED = ("accept", "warning", "reject")


@dataclass(frozen=True)
class Participation:
    """One test system's month: judged days of expected days, judged and rejected runs."""

    judged_days: int
    expected_days: int
    judged_runs: int
    rejected_runs: int

    @property
    def submission_pct(self) -> float | None:
        """Return the submission rate in percent (None without expected days)."""
        return 100.0 * self.judged_days / self.expected_days if self.expected_days else None


@dataclass(frozen=True)
class EvaluationData:
    """The inputs of one lab's evaluation report for one month."""

    lab: Lab
    period: Period
    months: tuple[str, ...]
    window: tuple[str, ...]
    snapshot: PeerSnapshot | None
    systems: tuple[TestSystem, ...]
    analytes: tuple[Analyte, ...]
    levels: dict[int, QcLevel]
    rows: tuple[SystemResult, ...]
    members: dict[tuple[int, int], list[Member]]
    trend: dict[tuple[int, int], dict[str, SystemResult]]
    participation: dict[tuple[int, str], Participation]
    facts: pd.DataFrame
    recommendations: dict[int, dict]
    criteria: conclusions.RecognitionCriteria

    @property
    def month(self) -> str:
        """Return the evaluated month ``YYYY-MM``."""
        return self.period.month

    def rows_of(self, analyte_id: int) -> list[SystemResult]:
        """Return the month's rows of one analyte, by system then level order."""
        order = {ts.id: i for i, ts in enumerate(self.systems)}
        rows = [r for r in self.rows if r.analyte_id == analyte_id]
        return sorted(rows, key=lambda r: (order.get(r.ts_id, 0), self.level_index(r)))

    def level_index(self, row: SystemResult) -> int:
        """Return the QC level's index of a row (its id when the level is unknown)."""
        level = self.levels.get(row.qc_level_id)
        return level.level_index if level is not None else row.qc_level_id

    def systems_of(self, analyte_id: int) -> list[TestSystem]:
        """Return the lab's systems of one analyte."""
        return [ts for ts in self.systems if ts.analyte_id == analyte_id]


def gather(lab: Lab, month: str, today: date,
           criteria: conclusions.RecognitionCriteria | None = None) -> EvaluationData:
    """Return the evaluation inputs of ``lab`` for ``month`` (a completed or current month).

    ``criteria`` defaults to the thresholds in force for the lab's region.
    Raises :class:`qcwx.errors.UserError` (field ``month``) for a malformed or future month.
    """
    from qcwx.recognition.services import criteria_for_lab

    criteria = criteria or criteria_for_lab(lab)
    period = month_period(month, today)
    region_id = lab.hospital.region_id
    systems = tuple(db.session.scalars(
        select(TestSystem).where(TestSystem.lab_id == lab.id)
        .options(selectinload(TestSystem.levels), selectinload(TestSystem.analyte),
                 selectinload(TestSystem.instrument))
        .order_by(TestSystem.analyte_id, TestSystem.id)))
    months = tuple(recent_months(date.fromisoformat(month + "-01"), TREND_MONTHS))
    window = conclusions.window_months(month, criteria.window_months)
    ts_ids = [ts.id for ts in systems]
    if systems:
        every, snap = region_results(region_id, period,
                                     analyte_ids={ts.analyte_id for ts in systems},
                                     lot_ids={ts.qc_lot_id for ts in systems})
    else:
        every, snap = [], None
    rows = tuple(r for r in every if r.lab_id == lab.id)
    trend = monthly_results(region_id, ts_ids, months, today)
    for r in rows:  # the month itself exactly as its table shows it
        trend.setdefault((r.ts_id, r.qc_level_id), {})[month] = r
    participation = system_participation(systems, months, today)
    facts = conclusions.monthly_facts(level_frame(systems, trend),
                                      system_frame(systems, participation), criteria)
    recs = conclusions.recommend(facts, month, criteria)
    used = {r.analyte_id for r in rows} | set(recs["analyte"].tolist())
    analytes = tuple(dict.fromkeys(ts.analyte for ts in systems if ts.analyte_id in used))
    return EvaluationData(
        lab=lab, period=period, months=months, window=window, snapshot=snap,
        systems=tuple(ts for ts in systems if ts.analyte_id in used), analytes=analytes,
        levels={lv.id: lv for ts in systems for lv in ts.levels}, rows=rows,
        members=group_members(region_id, every, rows, highlight_lab=lab.id), trend=trend,
        participation=participation, facts=facts,
        recommendations={int(r["analyte"]): r for r in recs.to_dict("records")},
        criteria=criteria)


# ------------------------------------------------------------------ participation


def _month_days(month: str, first: date, last: date) -> tuple[date, date] | None:
    start = max(date.fromisoformat(month + "-01"), first)
    end = min(month_end(month), last)
    return (start, end) if start <= end else None


def system_participation(systems: Sequence[TestSystem], months: Sequence[str], today: date
                         ) -> dict[tuple[int, str], Participation]:
    """Return ``{(ts, month): Participation}`` for the months a system was expected to run."""
    ids = [ts.id for ts in systems]
    if not ids:
        return {}
    bounds = {ts_id: (first, last) for ts_id, first, last in db.session.execute(
        select(QcRun.test_system_id, func.min(QcRun.run_date), func.max(QcRun.run_date))
        .where(QcRun.test_system_id.in_(ids), QcRun.run_date <= today)
        .group_by(QcRun.test_system_id))}
    start, end = date.fromisoformat(months[0] + "-01"), min(today, month_end(months[-1]))
    # Aggregated per system and calendar month in SQL (a region-year is ~10^5 run days).
    year, mon = extract("year", QcRun.run_date), extract("month", QcRun.run_date)
    per = {(int(ts_id), f"{int(y):04d}-{int(m):02d}"): (int(days), int(n), int(rejected or 0))
           for ts_id, y, m, days, n, rejected in db.session.execute(
               select(QcRun.test_system_id, year, mon, func.count(distinct(QcRun.run_date)),
                      func.count(QcRun.id),
                      func.sum(case((QcRun.status == "reject", 1), else_=0)))
               .where(QcRun.test_system_id.in_(ids), QcRun.run_date >= start,
                      QcRun.run_date <= end, QcRun.status.in_(JUDGED))
               .group_by(QcRun.test_system_id, year, mon))}
    out = {}
    for ts in systems:
        if ts.id not in bounds:
            continue
        first, last = bounds[ts.id]
        last = today if ts.active else last
        for m in months:
            days = _month_days(m, first, last)
            if days is None:
                continue
            judged_days, judged, rejected = per.get((ts.id, m), (0, 0, 0))
            out[(ts.id, m)] = Participation(judged_days, (days[1] - days[0]).days + 1, judged,
                                            rejected)
    return out


def lab_participation(data: EvaluationData, month: str | None = None
                      ) -> tuple[float | None, float | None, int, int]:
    """Return the lab's (submission %, in-control %, judged runs, rejected runs) of a month.

    Submission = mean of its systems' rates; in control = 1 − Σ rejected / Σ judged.
    """
    month = month or data.month
    items = [p for (_, m), p in data.participation.items() if m == month]
    rates = [p.submission_pct for p in items if p.submission_pct is not None]
    judged = sum(p.judged_runs for p in items)
    rejected = sum(p.rejected_runs for p in items)
    return (sum(rates) / len(rates) if rates else None,
            100.0 * (judged - rejected) / judged if judged else None, judged, rejected)


# ------------------------------------------------------------------ frames for qcstats


def level_frame(systems: Sequence[TestSystem],
                trend: dict[tuple[int, int], dict[str, SystemResult]]) -> pd.DataFrame:
    """Return one row per lab × analyte × month × system level (the levels of monthly_facts)."""
    analyte_of = {ts.id: ts.analyte_id for ts in systems}
    lab_of = {ts.id: ts.lab_id for ts in systems}
    records = [{"lab": lab_of[ts_id], "analyte": analyte_of[ts_id], "month": m, "sdi": r.sdi,
                "cvr": r.cvr, "bias_pct": r.bias_pct, "cv": r.cv, "tea_pct": r.tea_pct,
                "allowable_cv": r.allowable_cv, "allowable_bias": r.allowable_bias,
                "sigma": r.sigma, "grade": r.grade}
               for (ts_id, _), per in trend.items() if ts_id in analyte_of
               for m, r in per.items()]
    return pd.DataFrame(records, columns=["lab", "analyte", "month", "sdi", "cvr", "bias_pct",
                                          "cv", "tea_pct", "allowable_cv", "allowable_bias",
                                          "sigma", "grade"])


def system_frame(systems: Sequence[TestSystem],
                 participation: dict[tuple[int, str], Participation]) -> pd.DataFrame:
    """Return one row per lab × analyte × month × system with its participation counts."""
    analyte_of = {ts.id: ts.analyte_id for ts in systems}
    lab_of = {ts.id: ts.lab_id for ts in systems}
    records = [{"lab": lab_of[ts_id], "analyte": analyte_of[ts_id], "month": m,
                "judged_days": p.judged_days, "expected_days": p.expected_days,
                "judged_runs": p.judged_runs, "rejected_runs": p.rejected_runs}
               for (ts_id, m), p in participation.items()]
    return pd.DataFrame(records, columns=["lab", "analyte", "month", "judged_days",
                                          "expected_days", "judged_runs", "rejected_runs"])

