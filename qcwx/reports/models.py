"""Share links and published (frozen) reports.

A share link opens exactly one report without logging in: the token is random and only its
SHA-256 is stored, so a database leak does not leak working links. A published evaluation is
a frozen snapshot (the report's JSON as it was published); its numbers never change.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.extensions import db
from qcwx.orgs.models import Lab, Region, User
from qcwx.timeutil import utcnow

#: Report kinds and their Chinese names.
REPORT_KINDS = {"dynamic": "动态质控报告", "evaluation": "质控评测报告", "region": "区域质控报告"}


class PublishedReport(db.Model):
    """A frozen report: a lab's evaluation of a month, or a region's report of a period.

    A lab's report has ``lab_id``; a region's (kind ``region``) has ``region_id`` instead.
    """

    __tablename__ = "published_report"
    __table_args__ = (UniqueConstraint("kind", "lab_id", "period"),
                      UniqueConstraint("kind", "region_id", "period"))
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    lab_id: Mapped[int | None] = mapped_column(ForeignKey("lab.id"), index=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"), index=True)
    # "YYYY-MM" (month), "YYYY-Qn" (quarter) or "YYYY" (year)
    period: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    # qcwx.reports.document.Report.to_dict() at publication; never updated afterwards.
    content: Mapped[dict] = mapped_column(JSON)
    fingerprint: Mapped[str] = mapped_column(String(32))
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    lab: Mapped[Lab | None] = relationship()
    region: Mapped[Region | None] = relationship()
    published_by: Mapped[User | None] = relationship()


class ShareLink(db.Model):
    """A link to one report that can be shared in a WeChat group without logging in.

    ``params`` scopes it: ``{"ts_ids": [...], "period": {...}}`` for a live dynamic report,
    ``{"month": "YYYY-MM"}`` for a live evaluation; ``published_id`` for a frozen one. A
    region's report is always frozen and names ``region_id`` instead of ``lab_id``.
    """

    __tablename__ = "share_link"
    __table_args__ = (Index("ix_share_link_creator", "created_by_id", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    lab_id: Mapped[int | None] = mapped_column(ForeignKey("lab.id"), index=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"), index=True)
    params: Mapped[dict] = mapped_column(JSON)
    published_id: Mapped[int | None] = mapped_column(ForeignKey("published_report.id"))
    title: Mapped[str] = mapped_column(String(200))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    view_count: Mapped[int] = mapped_column(default=0)
    last_viewed_at: Mapped[datetime | None]
    lab: Mapped[Lab | None] = relationship()
    published: Mapped[PublishedReport | None] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    @property
    def kind_label(self) -> str:
        """Return the report kind in Chinese."""
        return REPORT_KINDS.get(self.kind, self.kind)
