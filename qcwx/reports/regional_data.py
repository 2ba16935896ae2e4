"""Aggregate a region's facts for the regional report: per lab, per hospital level, per month.

Everything is derived from :class:`qcwx.recognition.queries.RegionFacts` (the monthly
facts of every lab × analyte, the test systems' participation by month) so the report and
the mutual-recognition list cannot disagree. Definitions (QC_SPEC §7):

* submission rate of a test system over a period = Σ judged days / Σ expected days of its
  months; of a lab = the mean over its systems; of a hospital level or the region = the mean
  over its labs;
* in-control rate = 1 − Σ rejected / Σ judged runs (pooled over systems, labs, months);
* NCCL pass rate of an analyte = levels that passed / levels assessed, counted per lab ×
  level × month (a level without a published group is not assessed);
* grade distribution = the lab × analyte grades of a month (each the worst of its levels).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from qcwx.orgs.models import HOSPITAL_LEVELS, Lab
from qcwx.qcstats.recognition import TOL, RecognitionCriteria
from qcwx.recognition.queries import ListRow, RegionFacts

GRADES = ("A", "B", "C", "D")


def _mean(values: Iterable[float]) -> float | None:
    items = [v for v in values if v is not None]
    return sum(items) / len(items) if items else None


def _pct(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


@dataclass(frozen=True)
class LabRates:
    """One lab over a period: systems with expected days, rates and run counts."""

    lab: Lab
    systems: int
    submission_pct: float | None
    in_control_pct: float | None
    judged_runs: int
    rejected_runs: int

    @property
    def participated(self) -> bool:
        """Return whether the lab has at least one judged run in the period."""
        return self.judged_runs > 0


def lab_rates(data: RegionFacts, labs: Sequence[Lab], months: Sequence[str]
              ) -> dict[int, LabRates]:
    """Return every lab's rates over ``months`` (labs without systems get ``None`` rates)."""
    wanted = set(months)
    per_ts: dict[int, list] = {}
    for (ts_id, month), p in data.participation.items():
        if month in wanted:
            per_ts.setdefault(ts_id, []).append(p)
    lab_of = {ts.id: ts.lab_id for ts in data.systems}
    rates: dict[int, list[float]] = {}
    runs: dict[int, list[int]] = {}
    for ts_id, items in per_ts.items():
        lab_id = lab_of[ts_id]
        rate = _pct(sum(p.judged_days for p in items), sum(p.expected_days for p in items))
        if rate is not None:
            rates.setdefault(lab_id, []).append(rate)
        counts = runs.setdefault(lab_id, [0, 0])
        counts[0] += sum(p.judged_runs for p in items)
        counts[1] += sum(p.rejected_runs for p in items)
    out = {}
    for lab in labs:
        judged, rejected = runs.get(lab.id, (0, 0))
        out[lab.id] = LabRates(lab, len(rates.get(lab.id, [])), _mean(rates.get(lab.id, [])),
                               _pct(judged - rejected, judged), judged, rejected)
    return out


@dataclass(frozen=True)
class GroupRates:
    """Labs of one hospital level (or the whole region) over a period."""

    name: str
    labs: int
    participating: int
    submission_pct: float | None
    in_control_pct: float | None


def group_rates(name: str, items: Sequence[LabRates]) -> GroupRates:
    """Return a group's counts, mean submission rate over labs and pooled in-control rate."""
    judged = sum(i.judged_runs for i in items)
    rejected = sum(i.rejected_runs for i in items)
    return GroupRates(name, len(items), sum(i.participated for i in items),
                      _mean(i.submission_pct for i in items), _pct(judged - rejected, judged))


def level_rates(rates: dict[int, LabRates]) -> list[GroupRates]:
    """Return one row per hospital level present (一级, 二级, 三级 order)."""
    out = []
    for level in HOSPITAL_LEVELS:
        items = [r for r in rates.values() if r.lab.hospital.level == level]
        if items:
            out.append(group_rates(level, items))
    return out


def _facts_in(data: RegionFacts, months: Sequence[str]) -> pd.DataFrame:
    return data.facts[data.facts["month"].isin(list(months))]


def nccl_by_analyte(data: RegionFacts, months: Sequence[str]) -> list[tuple[str, int, int]]:
    """Return ``(analyte name, levels assessed, levels passed)`` over ``months``."""
    part = _facts_in(data, months)
    out = []
    for analyte_id, group in part.groupby("analyte", sort=True):
        assessed = int(group["levels_assessed"].sum())
        failed = int(group["levels_failed"].sum())
        out.append((data.analytes[int(analyte_id)].name, assessed, assessed - failed))
    return out


def grade_counts(data: RegionFacts, month: str) -> dict[str, dict[str, int]]:
    """Return ``{analyte name: {grade: labs}}`` of one month (ungraded rows left out)."""
    part = _facts_in(data, [month])
    out: dict[str, dict[str, int]] = {}
    for rec in part.to_dict("records"):
        grade = rec.get("grade")
        if isinstance(grade, str) and grade in GRADES:
            name = data.analytes[int(rec["analyte"])].name
            out.setdefault(name, dict.fromkeys(GRADES, 0))[grade] += 1
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class MonthPoint:
    """The region in one month: the trend charts' values."""

    month: str
    submission_pct: float | None
    in_control_pct: float | None
    nccl_pct: float | None
    grades: dict[str, int]

    @property
    def ab_pct(self) -> float | None:
        """Return the share of graded lab × analyte at A or B, percent."""
        total = sum(self.grades.values())
        return _pct(self.grades["A"] + self.grades["B"], total)


def monthly_points(data: RegionFacts, labs: Sequence[Lab]) -> list[MonthPoint]:
    """Return the region's figures for every month of ``data.months`` (oldest first)."""
    out = []
    for month in data.months:
        region = group_rates("region", list(lab_rates(data, labs, [month]).values()))
        part = _facts_in(data, [month])
        assessed = int(part["levels_assessed"].sum()) if len(part) else 0
        failed = int(part["levels_failed"].sum()) if len(part) else 0
        grades = dict.fromkeys(GRADES, 0)
        for counts in grade_counts(data, month).values():
            for g, n in counts.items():
                grades[g] += n
        out.append(MonthPoint(month, region.submission_pct, region.in_control_pct,
                              _pct(assessed - failed, assessed), grades))
    return out


@dataclass(frozen=True)
class Attention:
    """A lab needing the centre's attention, with every reason."""

    lab: Lab
    reasons: tuple[str, ...]


def attention(rates: dict[int, LabRates], rows: Sequence[ListRow],
              criteria: RecognitionCriteria) -> list[Attention]:
    """Return labs below a threshold or with an analyte judged 不合格, worst first.

    Reasons: no judged run at all; submission or in-control rate below the region's
    threshold over the period; each analyte whose verdict in force is 不合格, with what
    failed.
    """
    reasons: dict[int, list[str]] = {}
    for r in rates.values():
        mine = reasons.setdefault(r.lab.id, [])
        if r.systems and not r.participated:
            mine.append("本期没有已评价的质控批次")
        if r.submission_pct is not None and \
                r.submission_pct < criteria.min_submission_pct - TOL:
            mine.append(f"填报率 {r.submission_pct:.1f}%，低于 {criteria.min_submission_pct:g}%")
        if r.in_control_pct is not None and \
                r.in_control_pct < criteria.min_in_control_pct - TOL:
            mine.append(f"在控率 {r.in_control_pct:.1f}%，低于 {criteria.min_in_control_pct:g}%")
    for row in rows:
        if row.verdict == "不合格":
            why = "；".join(row.gaps) or "—"
            reasons.setdefault(row.lab.id, []).append(f"{row.analyte.name}不合格（{why}）")
    found = [Attention(rates[lab_id].lab, tuple(items)) for lab_id, items in reasons.items()
             if items and lab_id in rates]
    return sorted(found, key=lambda a: (-len(a.reasons), a.lab.anon_code))
