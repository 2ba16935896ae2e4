"""A centre's distributed QC lots, their assignment to labs and each lab's change-over.

The lot itself (material, number, expiry, levels) stays the catalogue's :class:`QcLot`, so
peer comparison, labels and ingest keep working on it; these tables add what the centre
manages around it. A change-over is one test system of a lab moving from its old lot to the
distributed one: the new lot runs in a *new* test system (same six codes, new lot) beside the
old one while both are entered in parallel; targets are established from those parallel runs
and the switch date is recorded when the lab's supervisor confirms it.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Double, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.catalog.models import Analyte, QcLevel, QcLot, TestSystem
from qcwx.extensions import db
from qcwx.orgs.models import Lab, Region, User
from qcwx.timeutil import utcnow


class DistributedLot(db.Model):
    """A QC lot a region's centre registered for distribution to its labs."""

    __tablename__ = "distributed_lot"
    __table_args__ = (UniqueConstraint("region_id", "qc_lot_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    qc_lot_id: Mapped[int] = mapped_column(ForeignKey("qc_lot.id"), index=True)
    note: Mapped[str | None] = mapped_column(String(200))
    registered_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    region: Mapped[Region] = relationship()
    qc_lot: Mapped[QcLot] = relationship()
    registered_by: Mapped[User | None] = relationship()
    targets: Mapped[list[MakerTarget]] = relationship(
        back_populates="distributed_lot", order_by="MakerTarget.id")
    assignments: Mapped[list[LotAssignment]] = relationship(
        back_populates="distributed_lot", order_by="LotAssignment.id")


class MakerTarget(db.Model):
    """The maker's target mean and SD of one analyte at one level of the lot, when given."""

    __tablename__ = "distributed_lot_target"
    __table_args__ = (UniqueConstraint("distributed_lot_id", "analyte_id", "qc_level_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    distributed_lot_id: Mapped[int] = mapped_column(ForeignKey("distributed_lot.id"), index=True)
    analyte_id: Mapped[int] = mapped_column(ForeignKey("analyte.id"))
    qc_level_id: Mapped[int] = mapped_column(ForeignKey("qc_level.id"))
    target_mean: Mapped[float] = mapped_column(Double)
    target_sd: Mapped[float] = mapped_column(Double)
    distributed_lot: Mapped[DistributedLot] = relationship(back_populates="targets")
    analyte: Mapped[Analyte] = relationship()
    level: Mapped[QcLevel] = relationship()


class LotAssignment(db.Model):
    """A distributed lot given to one lab, from a date (the lab may use it from then)."""

    __tablename__ = "lot_assignment"
    __table_args__ = (UniqueConstraint("distributed_lot_id", "lab_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    distributed_lot_id: Mapped[int] = mapped_column(ForeignKey("distributed_lot.id"), index=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    from_date: Mapped[date]
    assigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    distributed_lot: Mapped[DistributedLot] = relationship(back_populates="assignments")
    lab: Mapped[Lab] = relationship()
    changeovers: Mapped[list[LotChangeover]] = relationship(
        back_populates="assignment", order_by="LotChangeover.id")


class LotChangeover(db.Model):
    """One test system of a lab moving from its old lot to the assigned one.

    ``new_test_system`` receives the parallel runs from ``parallel_start``; at the switch the
    new lot's targets are established from them (QC_SPEC §2) and the old system is retired.
    """

    __tablename__ = "lot_changeover"
    __table_args__ = (UniqueConstraint("assignment_id", "old_test_system_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("lot_assignment.id"), index=True)
    old_test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"))
    new_test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"))
    parallel_start: Mapped[date]
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    targets_established_at: Mapped[datetime | None]
    switch_date: Mapped[date | None]
    switched_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    switched_at: Mapped[datetime | None]
    assignment: Mapped[LotAssignment] = relationship(back_populates="changeovers")
    old_test_system: Mapped[TestSystem] = relationship(foreign_keys=[old_test_system_id])
    new_test_system: Mapped[TestSystem] = relationship(foreign_keys=[new_test_system_id])
    switched_by: Mapped[User | None] = relationship(foreign_keys=[switched_by_id])
