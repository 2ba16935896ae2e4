"""Read the centre's lots and each lab's change-over for pages (scoped, no writes).

Status of a change-over as the centre sees it: 未开始 (the lab has a test system on the
material but has not started), 平行检测中 with n of 20 (n = the fewest, over the levels, of
parallel results and of distinct days — what QC_SPEC §2 needs 20 of), 已切换 with its date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select

from qcwx.catalog.models import QcLot, QcMaterial, TestSystem
from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.iqc import targets
from qcwx.iqc.models import QcResult, QcRun
from qcwx.lots.models import DistributedLot, LotAssignment, LotChangeover
from qcwx.numbers import parse_id
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.orgs.scopes import (
    CENTRE_READERS,
    get_lab_object,
    lab_ids_in_scope,
    region_ids_in_scope,
    region_subtree,
)
from qcwx.qcstats.limits import MIN_DAYS, MIN_RESULTS
from qcwx.timeutil import local_today

STATUS_LABELS = {"none": "未开始", "parallel": "平行检测中", "switched": "已切换"}


def _lot_scope(actor: User):
    """Select the lots a centre reader sees, registered in its subtree or given to it.

    Given: an ancestor centre registered the lot and assigned it to labs of the subtree. A
    district centre follows its own labs' change-over on a lot the city distributed (only
    its labs' rows, :func:`lab_statuses`); managing the lot stays with the centre that
    registered it (:func:`manages`).
    """
    stmt = select(DistributedLot)
    if actor.role not in CENTRE_READERS:
        return stmt.where(DistributedLot.id.is_(None))
    given = select(LotAssignment.distributed_lot_id).where(
        LotAssignment.lab_id.in_(lab_ids_in_scope(actor)))
    return stmt.where(DistributedLot.region_id.in_(region_ids_in_scope(actor))
                      | DistributedLot.id.in_(given))


def manages(actor: User, dlot: DistributedLot) -> bool:
    """Return True when the lot was registered in the actor's own region subtree."""
    return dlot.region_id in set(db.session.scalars(region_ids_in_scope(actor)))


def visible_lab_ids(actor: User) -> set[int]:
    """Return the ids of the labs whose change-over rows the actor may see."""
    return set(db.session.scalars(lab_ids_in_scope(actor)))


def distributed_lots(actor: User) -> list[DistributedLot]:
    """Return the lots of the centre's region tree (admin: all), newest first."""
    return list(db.session.scalars(_lot_scope(actor).order_by(DistributedLot.id.desc())))


def get_distributed_lot(actor: User, lot_id) -> DistributedLot:
    """Return one distributed lot in the actor's scope, else 404."""
    ident = parse_id(lot_id)
    if ident is None:
        raise NotFound()
    row = db.session.scalar(_lot_scope(actor).where(DistributedLot.id == ident))
    if row is None:
        raise NotFound()
    return row


def get_assignment(actor: User, assignment_id) -> LotAssignment:
    """Return an assignment whose lab is in the actor's scope, else 404."""
    ident = parse_id(assignment_id)
    if ident is None:
        raise NotFound()
    return get_lab_object(actor, LotAssignment, ident)


def get_changeover(actor: User, changeover_id) -> LotChangeover:
    """Return a change-over whose lab is in the actor's scope, else 404."""
    ident = parse_id(changeover_id)
    row = db.session.get(LotChangeover, ident) if ident is not None else None
    if row is None:
        raise NotFound()
    get_lab_object(actor, LotAssignment, row.assignment_id)
    return row


def assignable_labs(actor: User, dlot: DistributedLot) -> list[Lab]:
    """Return the labs of the lot's region tree in the actor's scope, by name."""
    stmt = (select(Lab).join(Hospital)
            .where(Hospital.region_id.in_(region_subtree(dlot.region_id)),
                   Lab.id.in_(lab_ids_in_scope(actor)))
            .order_by(Hospital.name, Lab.name))
    return list(db.session.scalars(stmt))


@dataclass(frozen=True)
class Progress:
    """Parallel results so far: per level (name, results, days) and ``n`` of the 20 needed."""

    levels: tuple[tuple[str, int, int], ...]
    n: int
    ready: bool
    needed: int = MIN_RESULTS


@dataclass(frozen=True)
class StatusRow:
    """One line of the status table: a lab's test system and where its change-over stands."""

    lab: Lab
    old_test_system: TestSystem | None
    changeover: LotChangeover | None
    progress: Progress | None

    @property
    def status(self) -> str:
        """Return ``none`` / ``parallel`` / ``switched``."""
        if self.changeover is None:
            return "none"
        return "switched" if self.changeover.switch_date else "parallel"

    @property
    def label(self) -> str:
        """Return the status as the centre reads it, e.g. 平行检测中（12/20）."""
        if self.status == "parallel" and self.progress is not None:
            return f"平行检测中（{self.progress.n}/{self.progress.needed}）"
        if self.status == "switched":
            return f"已切换（{self.changeover.switch_date.isoformat()}）"
        return STATUS_LABELS[self.status]


def progress(co: LotChangeover) -> Progress:
    """Count the parallel results of the new system per level and whether §2 limits exist."""
    ts = co.new_test_system
    stmt = (select(QcResult.qc_level_id, func.count(), func.count(func.distinct(QcRun.run_date)))
            .join(QcRun, QcRun.id == QcResult.run_id)
            .where(QcRun.test_system_id == ts.id, QcResult.is_current)
            .group_by(QcResult.qc_level_id))
    counts = {lv: (n, d) for lv, n, d in db.session.execute(stmt)}
    levels = tuple((lv.name, *counts.get(lv.id, (0, 0))) for lv in ts.levels)
    n = min((min(r, d) for _, r, d in levels), default=0)
    return Progress(levels, min(n, MIN_DAYS), _ready(ts))


def _ready(ts: TestSystem) -> bool:
    try:
        for lv in ts.levels:
            targets.compute_limits(ts, lv, "provisional")
    except UserError:
        return False
    return True


def status_rows(dlot: DistributedLot, lab_ids=None, *, with_progress: bool = True
                ) -> list[StatusRow]:
    """Return every assigned lab's change-over lines (labs with nothing to change: one line)."""
    rows: list[StatusRow] = []
    for a in sorted(dlot.assignments, key=lambda a: a.lab.full_name):
        if lab_ids is not None and a.lab_id not in lab_ids:
            continue
        lines = [StatusRow(a.lab, c.old_test_system, c,
                           progress(c) if with_progress and not c.switch_date else None)
                 for c in a.changeovers]
        lines += [StatusRow(a.lab, ts, None, None) for ts in candidates(a)]
        rows += lines or [StatusRow(a.lab, None, None, None)]
    return rows


def candidates(a: LotAssignment) -> list[TestSystem]:
    """Return the lab's active test systems on another lot of the material, not yet started."""
    lot = a.distributed_lot.qc_lot
    started = [c.old_test_system_id for c in a.changeovers]
    stmt = (select(TestSystem).join(QcLot, QcLot.id == TestSystem.qc_lot_id)
            .where(TestSystem.lab_id == a.lab_id, TestSystem.active,
                   QcLot.material_id == lot.material_id, TestSystem.qc_lot_id != lot.id,
                   TestSystem.id.not_in(started or [-1]))
            .order_by(TestSystem.id))
    return list(db.session.scalars(stmt))


@dataclass(frozen=True)
class LabStatus:
    """A lab's change-over as the centre sees it: one status over its test systems."""

    lab: Lab
    rows: tuple[StatusRow, ...]

    def _count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.old_test_system and r.status == status)

    @property
    def counts(self) -> dict[str, int]:
        """Return the number of test systems per status."""
        return {key: self._count(key) for key in STATUS_LABELS}

    @property
    def status(self) -> str:
        """Return ``switched`` when every system switched, ``parallel`` when any runs, else none."""
        states = {r.status for r in self.rows if r.old_test_system}
        if states == {"switched"}:
            return "switched"
        return "parallel" if "parallel" in states else "none"

    @property
    def label(self) -> str:
        """Return e.g. 平行检测中（12/20）: the least advanced of the lab's parallel systems."""
        if self.status == "switched":
            last = max(r.changeover.switch_date for r in self.rows)
            return f"已切换（{last.isoformat()}）"
        started = [r.progress.n for r in self.rows if r.status == "parallel" and r.progress]
        if started:
            return f"平行检测中（{min(started)}/{MIN_RESULTS}）"
        return STATUS_LABELS[self.status]


def lab_statuses(dlot: DistributedLot, lab_ids: set[int] | None = None, *,
                 with_progress: bool = True) -> list[LabStatus]:
    """Return one :class:`LabStatus` per assigned lab (of ``lab_ids`` if given), by name."""
    by_lab: dict[int, list[StatusRow]] = {}
    for r in status_rows(dlot, lab_ids, with_progress=with_progress):
        by_lab.setdefault(r.lab.id, []).append(r)
    return [LabStatus(rows[0].lab, tuple(rows)) for rows in by_lab.values()]


def summary(dlot: DistributedLot, lab_ids: set[int] | None = None) -> dict[str, int]:
    """Return how many assigned labs (of ``lab_ids``) are switched, in parallel, not started."""
    out = dict.fromkeys(STATUS_LABELS, 0)
    for lab in lab_statuses(dlot, lab_ids, with_progress=False):
        out[lab.status] += 1
    return out


def lab_assignments(actor: User) -> list[LotAssignment]:
    """Return the assignments of the labs in the actor's scope (a lab: its own), newest first."""
    stmt = (select(LotAssignment).where(LotAssignment.lab_id.in_(lab_ids_in_scope(actor)))
            .order_by(LotAssignment.id.desc()))
    return list(db.session.scalars(stmt))


def lab_today(lab: Lab) -> date:
    """Return the lab's calendar day (default of the start and switch dates)."""
    return local_today(lab.timezone)


def materials() -> list[QcMaterial]:
    """Return the QC materials a lot can be registered under, by maker and name."""
    return list(db.session.scalars(select(QcMaterial).order_by(QcMaterial.maker,
                                                               QcMaterial.name)))


def regions_to_choose(actor: User) -> list[Region]:
    """Return the regions the admin picks from (a centre registers in its own region)."""
    if actor.role != "admin":
        return []
    return list(db.session.scalars(select(Region).order_by(Region.name)))
