"""Export jobs of the de-identified data set, and the research API's keys.

An export is a row the centre's page polls: the Celery task fills ``n_done`` chunk by chunk
and sets ``status`` to ``done`` with the file name (or ``failed`` with a Chinese message).
A research key reuses the lab-interface key format and hashing
(:mod:`qcwx.ingest.apikeys`) but belongs to a region and carries scopes; only keys with
the ``research`` scope read the research API.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.extensions import db
from qcwx.orgs.models import Region, User
from qcwx.timeutil import utcnow

EXPORT_STATUSES = {"queued": "排队中", "running": "生成中", "done": "已完成", "failed": "失败"}
RESEARCH_SCOPE = "research"


class OpenDataExport(db.Model):
    """One export of a region's data set for a period (CSV + dictionary + FHIR in a zip)."""

    __tablename__ = "opendata_export"
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    period_start: Mapped[date]
    period_end: Mapped[date]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    n_total: Mapped[int] = mapped_column(default=0)
    n_done: Mapped[int] = mapped_column(default=0)
    n_bundles: Mapped[int] = mapped_column(default=0)
    n_validated: Mapped[int] = mapped_column(default=0)
    file_name: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    region: Mapped[Region] = relationship()
    requested_by: Mapped[User | None] = relationship()

    @property
    def status_label(self) -> str:
        """Return the status in Chinese."""
        return EXPORT_STATUSES.get(self.status, self.status)

    @property
    def percent(self) -> int:
        """Return the progress in whole percent (100 once done)."""
        if self.status == "done":
            return 100
        return min(99, int(100 * self.n_done / self.n_total)) if self.n_total else 0


class ResearchApiKey(db.Model):
    """A key of an approved research user: region-wide, read-only, scoped."""

    __tablename__ = "research_api_key"
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list] = mapped_column(JSON, default=lambda: [RESEARCH_SCOPE])
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    region: Mapped[Region] = relationship()
