"""Region thresholds of the mutual-recognition recommendation and the centre's overrides.

Thresholds are versioned, never updated in place: each change by the centre inserts a new
``recognition_criteria`` row (version n + 1) with who and when, so any published list can be
traced to the thresholds it used. An override replaces a computed verdict on the list only
with a written reason; withdrawing it records who and why, and both stay visible.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Double, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.extensions import db
from qcwx.orgs.models import Lab, User
from qcwx.qcstats.recognition import RecognitionCriteria
from qcwx.timeutil import utcnow


class RecognitionCriteriaVersion(db.Model):
    """One version of a region's §7 thresholds (rows are only ever inserted)."""

    __tablename__ = "recognition_criteria"
    __table_args__ = (UniqueConstraint("region_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    version: Mapped[int]
    min_submission_pct: Mapped[float] = mapped_column(Double)
    min_in_control_pct: Mapped[float] = mapped_column(Double)
    window_months: Mapped[int]
    passing_grades: Mapped[str] = mapped_column(String(4))  # e.g. "AB"
    sdi_limit: Mapped[float] = mapped_column(Double)
    cvr_limit: Mapped[float] = mapped_column(Double)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[User | None] = relationship()

    def criteria(self) -> RecognitionCriteria:
        """Return the thresholds as the statistics core takes them."""
        return RecognitionCriteria(
            min_submission_pct=float(self.min_submission_pct),
            min_in_control_pct=float(self.min_in_control_pct),
            window_months=int(self.window_months), passing_grades=tuple(self.passing_grades),
            sdi_limit=float(self.sdi_limit), cvr_limit=float(self.cvr_limit))


class RecognitionOverride(db.Model):
    """The centre's verdict for one lab × analyte × evaluated month, with its reason."""

    __tablename__ = "recognition_override"
    __table_args__ = (Index("ix_recognition_override_key", "lab_id", "analyte_id", "month"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"))
    analyte_id: Mapped[int] = mapped_column(ForeignKey("analyte.id"))
    month: Mapped[str] = mapped_column(String(7))
    computed_verdict: Mapped[str] = mapped_column(String(8))
    verdict: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    withdraw_reason: Mapped[str | None] = mapped_column(Text)
    lab: Mapped[Lab] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    withdrawn_by: Mapped[User | None] = relationship(foreign_keys=[withdrawn_by_id])

    @property
    def active(self) -> bool:
        """Return whether the override is in force (not withdrawn)."""
        return self.withdrawn_at is None
