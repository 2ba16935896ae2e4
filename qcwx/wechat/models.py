"""WeChat binding invites and mini-program subscribe-message consents."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qcwx.extensions import db
from qcwx.orgs.models import User
from qcwx.timeutil import utcnow


class WechatInvite(db.Model):
    """A one-time code (or QR) that binds the WeChat account that redeems it to ``user``."""

    __tablename__ = "wechat_invite"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_openid: Mapped[str | None] = mapped_column(String(64))
    user: Mapped[User] = relationship(foreign_keys=[user_id])


class SubscribeConsent(db.Model):
    """One mini-program subscribe-message consent (each allows one message)."""

    __tablename__ = "subscribe_consent"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    template_id: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime | None]
