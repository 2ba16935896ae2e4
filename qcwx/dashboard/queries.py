"""The centre's dashboard: today's and this month's numbers, each with the list behind it.

Every number here is computed over the labs of the actor's scope (``scopes.lab_ids_in_scope``)
and the lists show other labs by name only where the actor may see names
(``scopes.lab_label``). The definitions are QC_SPEC §7's: submission rate = judged days /
expected QC days per test system, a lab's rate is the mean over its systems, the region's the
mean over its labs; in-control rate = 1 − rejected / judged runs (pending runs excluded). Peer
flags follow §3's bands (|SDI| ≥ 2 or CVR > 2.0 is unacceptable).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from qcwx.catalog.models import TestSystem
from qcwx.extensions import db
from qcwx.iqc.models import CorrectiveAction, QcRun
from qcwx.orgs import scopes
from qcwx.orgs.models import Lab, User
from qcwx.peer.compute import worst_grade
from qcwx.peer.filters import Period, recent_months
from qcwx.peer.queries import centre as centre_q
from qcwx.reports.evaluation_data import Participation, system_participation
from qcwx.timeutil import utcnow

#: §3 bands: at or beyond these a lab's SDI / CVR is unacceptable.
SDI_UNACCEPTABLE = 2.0
CVR_UNACCEPTABLE = 2.0
#: Age buckets of open out-of-control records, in whole days since they were opened.
AGE_BUCKETS = (("le1", "1 天内", 0, 1), ("d2_3", "2–3 天", 2, 3), ("gt3", "超过 3 天", 4, None))
GRADES = ("A", "B", "C", "D")


@dataclass
class LabDay:
    """One lab on one day: its active systems, how many submitted, its last run date."""

    lab: Lab
    label: str
    systems: int
    submitted: int
    last_run: date | None

    @property
    def missing(self) -> bool:
        """Return whether the lab has not submitted any run today."""
        return self.submitted == 0


@dataclass
class LabMonth:
    """One lab's month: §7 submission and in-control rates with their inputs."""

    lab: Lab
    label: str
    systems: int
    submission_pct: float | None
    in_control_pct: float | None
    judged: int
    rejected: int


@dataclass
class OpenRecord:
    """An out-of-control record still open or awaiting signature, with its age."""

    action: CorrectiveAction
    label: str
    age_days: int

    @property
    def bucket(self) -> str:
        """Return the age bucket key of :data:`AGE_BUCKETS`."""
        return next(key for key, _, lo, hi in AGE_BUCKETS
                    if self.age_days >= lo and (hi is None or self.age_days <= hi))


@dataclass
class PeerFlag:
    """One lab × analyte × level whose SDI or CVR is unacceptable this period."""

    lab: Lab
    label: str
    analyte: str
    level: str
    sdi: float | None
    cvr: float | None

    @property
    def severity(self) -> float:
        """Return how far beyond its limit the worst metric is (for sorting)."""
        return max(abs(self.sdi or 0) / SDI_UNACCEPTABLE, (self.cvr or 0) / CVR_UNACCEPTABLE)


@dataclass
class Dashboard:
    """All numbers of the dashboard page."""

    today: date
    period: Period
    days: list[LabDay]
    months: list[LabMonth]
    records: list[OpenRecord]
    flags: list[PeerFlag]
    grades: Counter = field(default_factory=Counter)

    @property
    def expected_today(self) -> int:
        """Return the labs expected to submit today (those with an active test system)."""
        return len(self.days)

    @property
    def submitted_today(self) -> int:
        """Return the labs with at least one run today."""
        return sum(not d.missing for d in self.days)

    @property
    def missing_today(self) -> list[LabDay]:
        """Return the labs that have not submitted today."""
        return [d for d in self.days if d.missing]

    @property
    def submission_pct(self) -> float | None:
        """Return the region's §7 submission rate: the mean over labs."""
        return mean(m.submission_pct for m in self.months)

    @property
    def in_control_pct(self) -> float | None:
        """Return the region's in-control rate: 1 − Σ rejected / Σ judged."""
        judged = sum(m.judged for m in self.months)
        rejected = sum(m.rejected for m in self.months)
        return 100.0 * (judged - rejected) / judged if judged else None

    def records_by_bucket(self) -> dict[str, int]:
        """Return the open records counted per age bucket."""
        counts = Counter(r.bucket for r in self.records)
        return {key: counts.get(key, 0) for key, *_ in AGE_BUCKETS}

    @property
    def flagged_labs(self) -> int:
        """Return the number of distinct labs with at least one unacceptable SDI/CVR."""
        return len({f.lab.id for f in self.flags})


def mean(values: Iterable[float | None]) -> float | None:
    """Return the mean of the values that are present (None when none is)."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _labs(actor: User) -> dict[int, Lab]:
    stmt = (select(Lab).where(Lab.id.in_(scopes.lab_ids_in_scope(actor)))
            .options(joinedload(Lab.hospital)).order_by(Lab.code))
    return {lab.id: lab for lab in db.session.scalars(stmt)}


def lab_days(actor: User, today: date) -> list[LabDay]:
    """Return each lab in scope with an active test system and its submissions on ``today``."""
    labs = _labs(actor)
    active = dict(db.session.execute(
        select(TestSystem.lab_id, func.count(TestSystem.id))
        .where(TestSystem.active, TestSystem.lab_id.in_(list(labs)))
        .group_by(TestSystem.lab_id)).all()) if labs else {}
    submitted = dict(db.session.execute(
        select(TestSystem.lab_id, func.count(func.distinct(QcRun.test_system_id)))
        .join(TestSystem, QcRun.test_system_id == TestSystem.id)
        .where(QcRun.run_date == today, TestSystem.lab_id.in_(list(active)))
        .group_by(TestSystem.lab_id)).all()) if active else {}
    last = dict(db.session.execute(
        select(TestSystem.lab_id, func.max(QcRun.run_date))
        .join(TestSystem, QcRun.test_system_id == TestSystem.id)
        .where(QcRun.run_date <= today, TestSystem.lab_id.in_(list(active)))
        .group_by(TestSystem.lab_id)).all()) if active else {}
    return [LabDay(labs[i], scopes.lab_label(actor, labs[i]), n, submitted.get(i, 0), last.get(i))
            for i, n in active.items()]


def _systems(lab_ids: Sequence[int]) -> list[TestSystem]:
    if not lab_ids:
        return []
    return list(db.session.scalars(select(TestSystem).where(TestSystem.lab_id.in_(lab_ids))))


Scoped = tuple[dict[int, Lab], list[TestSystem], dict[tuple[int, str], Participation]]


def participation(actor: User, months: Sequence[str], today: date) -> Scoped:
    """Return the labs, systems and per-system participation of ``months`` over the scope."""
    labs = _labs(actor)
    systems = _systems(list(labs))
    return labs, systems, system_participation(systems, months, today)


def lab_months(actor: User, month: str, today: date) -> list[LabMonth]:
    """Return each lab's §7 submission and in-control rates for ``month``."""
    labs, systems, per = participation(actor, [month], today)
    lab_of = {ts.id: ts.lab_id for ts in systems}
    grouped: dict[int, list[Participation]] = defaultdict(list)
    for (ts_id, _), p in per.items():
        grouped[lab_of[ts_id]].append(p)
    out = []
    for lab_id, items in grouped.items():
        judged = sum(p.judged_runs for p in items)
        rejected = sum(p.rejected_runs for p in items)
        out.append(LabMonth(labs[lab_id], scopes.lab_label(actor, labs[lab_id]), len(items),
                            mean(p.submission_pct for p in items),
                            100.0 * (judged - rejected) / judged if judged else None,
                            judged, rejected))
    return sorted(out, key=lambda m: m.lab.code)


def trend(actor: User, today: date, count: int = 12) -> dict[str, list]:
    """Return the last ``count`` months' region submission %, in-control % and active labs."""
    months = recent_months(today, count)
    labs, systems, per = participation(actor, months, today)
    lab_of = {ts.id: ts.lab_id for ts in systems}
    out: dict[str, list] = {"months": months, "submission": [], "in_control": [], "labs": []}
    for m in months:
        grouped: dict[int, list[Participation]] = defaultdict(list)
        for (ts_id, month), p in per.items():
            if month == m:
                grouped[lab_of[ts_id]].append(p)
        judged = sum(p.judged_runs for items in grouped.values() for p in items)
        rejected = sum(p.rejected_runs for items in grouped.values() for p in items)
        out["submission"].append(mean(mean(p.submission_pct for p in items)
                                      for items in grouped.values()))
        out["in_control"].append(100.0 * (judged - rejected) / judged if judged else None)
        out["labs"].append(sum(any(p.judged_days for p in items) for items in grouped.values()))
    return out


def open_records(actor: User, now: datetime | None = None) -> list[OpenRecord]:
    """Return open or unsigned out-of-control records in scope, oldest first."""
    now = now or utcnow()
    stmt = (select(CorrectiveAction).join(QcRun).join(TestSystem)
            .where(CorrectiveAction.status.in_(("open", "submitted")),
                   scopes.in_scope(actor, TestSystem.lab_id))
            .options(joinedload(CorrectiveAction.run).joinedload(QcRun.test_system)
                     .joinedload(TestSystem.lab).joinedload(Lab.hospital))
            .order_by(CorrectiveAction.opened_at))
    return [OpenRecord(a, scopes.lab_label(actor, a.run.test_system.lab),
                       max(0, (now - a.opened_at).days))
            for a in db.session.scalars(stmt).unique()]


def peer_flags(actor: User, region_id: int, period: Period) -> tuple[list[PeerFlag], Counter]:
    """Return unacceptable SDI/CVR cells and the lab × analyte grade counts of the period."""
    entries, analytes, _ = centre_q.matrix(region_id, period)
    names = {a.id: a.name for a in analytes}
    own = set(db.session.scalars(scopes.lab_ids_in_scope(actor)))
    flags, grades = [], Counter()
    for entry in entries:
        lab = entry["lab"]
        if lab.id not in own:
            continue
        for analyte_id, cells in entry["cells"].items():
            worst = worst_grade(c["row"].grade for c in cells)
            if worst:
                grades[worst] += 1
            for cell in cells:
                row = cell["row"]
                sdi = row.sdi if row.sdi is not None and math.isfinite(row.sdi) else None
                cvr = row.cvr if row.cvr is not None and math.isfinite(row.cvr) else None
                if (sdi is not None and abs(sdi) >= SDI_UNACCEPTABLE - 1e-9) or (
                        cvr is not None and cvr > CVR_UNACCEPTABLE):
                    flags.append(PeerFlag(lab, scopes.lab_label(actor, lab),
                                          names.get(analyte_id, str(analyte_id)),
                                          cell["level"].name, sdi, cvr))
    return flags, grades


def dashboard(actor: User, region_id: int, period: Period, today: date) -> Dashboard:
    """Return every number of the dashboard for ``period`` (this month by default)."""
    flags, grades = peer_flags(actor, region_id, period)
    return Dashboard(today=today, period=period, days=lab_days(actor, today),
                     months=lab_months(actor, period.month or today.strftime("%Y-%m"), today),
                     records=open_records(actor), flags=flags, grades=grades)
