"""The alert outbox: written in the submission's transaction, delivered by workers later.

Because the row commits with the run, a Redis or worker outage delays an alert but never
loses it; ``dedupe_key`` makes a redelivered task send nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from qcwx.extensions import db
from qcwx.timeutil import utcnow


class OutboxMessage(db.Model):
    """An event waiting for delivery (``pending`` → ``sent`` | ``failed`` → ``dead``)."""

    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    lab_id: Mapped[int | None] = mapped_column(ForeignKey("lab.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("qc_run.id"))
    payload: Mapped[dict] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]
    acked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))


class AlertDelivery(db.Model):
    """One message to one recipient over one channel; ``dedupe_key`` makes sending once-only.

    A worker claims the row before calling WeChat and marks it sent after; a redelivered
    task finds it sent and does nothing.
    """

    __tablename__ = "alert_delivery"
    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox_message.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    response: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
