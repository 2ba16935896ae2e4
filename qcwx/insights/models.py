"""What changed in a test system on a given day, which the catalogue does not record.

A test system names its reagent and calibrator products, not their lots; the lot in use
changes every few weeks without a new test system. To tell "every lab on reagent lot X
shifted on the 12th" from "this lab recalibrated on the 12th" the change has to be dated.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.catalog.models import TestSystem
from qcwx.extensions import db
from qcwx.orgs.models import User
from qcwx.timeutil import utcnow

#: kind -> Chinese label. Lot kinds carry ``lot_number``; the others a note.
CHANGE_KINDS = {
    "reagent_lot": "更换试剂批号",
    "calibrator_lot": "更换校准品批号",
    "calibration": "校准",
    "maintenance": "仪器维护",
}
LOT_CHANGE_KINDS = ("reagent_lot", "calibrator_lot")


class TestSystemChange(db.Model):
    """A dated change of one test system: new reagent/calibrator lot, calibration, upkeep.

    Never edited: a wrong entry is corrected by a new one; who and when are kept.
    """

    __tablename__ = "test_system_change"
    __table_args__ = (Index("ix_ts_change_ts_day", "test_system_id", "changed_on"),)
    __test__ = False
    id: Mapped[int] = mapped_column(primary_key=True)
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"))
    kind: Mapped[str] = mapped_column(String(16))
    lot_number: Mapped[str | None] = mapped_column(String(64), index=True)
    changed_on: Mapped[date]
    note: Mapped[str | None] = mapped_column(String(255))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    test_system: Mapped[TestSystem] = relationship()
    created_by: Mapped[User | None] = relationship()

    @property
    def kind_label(self) -> str:
        """Return the kind in Chinese."""
        return CHANGE_KINDS.get(self.kind, self.kind)
