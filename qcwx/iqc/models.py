"""IQC records. Nothing here is ever overwritten: corrections and limit changes are versions.

ISO 15189 asks who changed what, when and why; every versioned row carries those four, and
the current value is the highest version (results) or the latest effective version (limits).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Double, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.catalog.models import QcLevel, TestSystem
from qcwx.extensions import db
from qcwx.orgs.models import User
from qcwx.timeutil import utcnow

RUN_STATUSES = {"accept": "在控", "warning": "警告", "reject": "失控", "pending": "待评价"}
STATUS_LABEL = RUN_STATUSES  # the one place run verdicts are named (alerts, pages, APIs)


class ControlLimit(db.Model):
    """Target mean and SD of one test system × QC level, versioned.

    ``kind`` is ``fixed`` (manufacturer or lab-assigned) or ``established`` (computed from the
    lab's own results, QC_SPEC §2). A new version applies from ``effective_from``.
    """

    __tablename__ = "control_limit"
    __table_args__ = (UniqueConstraint("test_system_id", "qc_level_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"), index=True)
    qc_level_id: Mapped[int] = mapped_column(ForeignKey("qc_level.id"))
    version: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    target_mean: Mapped[float] = mapped_column(Double)
    target_sd: Mapped[float] = mapped_column(Double)
    n_used: Mapped[int | None]
    effective_from: Mapped[date]
    reason: Mapped[str] = mapped_column(String(255))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    test_system: Mapped[TestSystem] = relationship()
    level: Mapped[QcLevel] = relationship()
    created_by: Mapped[User | None] = relationship()


class RuleSet(db.Model):
    """The Westgard rules of a test system, each ``off``/``warning``/``reject``; versioned."""

    __tablename__ = "rule_set"
    __table_args__ = (UniqueConstraint("test_system_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"), index=True)
    version: Mapped[int]
    rules: Mapped[dict] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(255))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[User | None] = relationship()


class QcRun(db.Model):
    """A QC run (批): a lab-local date plus a run number, with its current verdict."""

    __tablename__ = "qc_run"
    __table_args__ = (
        UniqueConstraint("test_system_id", "run_date", "run_no"),
        Index("ix_qc_run_ts_date", "test_system_id", "run_date"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    test_system_id: Mapped[int] = mapped_column(ForeignKey("test_system.id"))
    run_date: Mapped[date]
    run_no: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    evaluated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    test_system: Mapped[TestSystem] = relationship()
    results: Mapped[list[QcResult]] = relationship(back_populates="run")
    violations: Mapped[list[Violation]] = relationship(back_populates="run")

    @property
    def status_label(self) -> str:
        """Return the verdict in Chinese (在控 / 警告 / 失控)."""
        return RUN_STATUSES.get(self.status, self.status)


class Submission(db.Model):
    """One accepted request from a capture channel, keyed by the client's own id.

    A retry with the same ``client_id`` finds this row and returns the stored verdict, so a
    phone that resends after a timeout never creates a duplicate. The id is unique per lab,
    never across the platform: two labs whose LIS both number runs 1, 2, 3 must not refuse
    each other, and no one may probe whether an id exists in another lab.
    """

    __tablename__ = "submission"
    __table_args__ = (UniqueConstraint("lab_id", "client_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"))
    client_id: Mapped[str] = mapped_column(String(64))
    payload_hash: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int] = mapped_column(ForeignKey("qc_run.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    run: Mapped[QcRun] = relationship()


class QcResult(db.Model):
    """One control result of one level in one run; a correction adds a higher ``version``."""

    __tablename__ = "qc_result"
    __table_args__ = (UniqueConstraint("run_id", "qc_level_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("qc_run.id"), index=True)
    qc_level_id: Mapped[int] = mapped_column(ForeignKey("qc_level.id"))
    version: Mapped[int] = mapped_column(default=1)
    is_current: Mapped[bool] = mapped_column(default=True)
    value_text: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Double)
    measured_at: Mapped[datetime | None]
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    entered_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    submission_id: Mapped[int | None] = mapped_column(ForeignKey("submission.id"))
    reason: Mapped[str | None] = mapped_column(String(255))
    run: Mapped[QcRun] = relationship(back_populates="results")
    level: Mapped[QcLevel] = relationship()
    entered_by: Mapped[User | None] = relationship()


class Violation(db.Model):
    """A Westgard rule that fired at a run; superseded (not deleted) on re-evaluation."""

    __tablename__ = "violation"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("qc_run.id"), index=True)
    rule_code: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    levels: Mapped[list] = mapped_column(JSON)
    points: Mapped[list] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    run: Mapped[QcRun] = relationship(back_populates="violations")


CAUSE_CATEGORIES = {
    "reagent": "试剂问题",
    "calibration": "校准问题",
    "control": "质控品问题",
    "instrument": "仪器故障",
    "operation": "操作问题",
    "environment": "环境因素",
    "random": "随机误差",
    "other": "其他",
}


class CorrectiveAction(db.Model):
    """The out-of-control record (失控处理记录) a rejected run opens.

    open → submitted (technician filled cause, action, re-run) → signed (supervisor).
    """

    __tablename__ = "corrective_action"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("qc_run.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    cause_category: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    action_taken: Mapped[str | None] = mapped_column(Text)
    rerun_result: Mapped[str | None] = mapped_column(Text)
    patient_impact: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    completed_at: Mapped[datetime | None]
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    signed_at: Mapped[datetime | None]
    sign_comment: Mapped[str | None] = mapped_column(Text)
    run: Mapped[QcRun] = relationship()
    completed_by: Mapped[User | None] = relationship(foreign_keys=[completed_by_id])
    signed_by: Mapped[User | None] = relationship(foreign_keys=[signed_by_id])
