"""Region → hospital → lab, and users with exactly one role each."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from qcwx.extensions import db
from qcwx.timeutil import utcnow

HOSPITAL_LEVELS = ("一级", "二级", "三级")
HOSPITAL_TYPES = ("综合医院", "专科医院", "中医医院", "妇幼保健院", "社区卫生服务中心", "民营医院")

# role -> Chinese label; order is from widest to narrowest scope. An expert (专家组成员) has a
# centre's region scope but is read-only on data (qcwx.orgs.scopes.can_write).
ROLES = {
    "admin": "平台管理员",
    "center": "区域质控中心",
    "expert": "专家组成员",
    "director": "医院检验科主任",
    "supervisor": "质控主管",
    "technician": "检验技师",
}


# Werkzeug's default (scrypt) is deliberately slow; tests lower it, production keeps it.
PASSWORD_HASH_METHOD = "scrypt"  # noqa: S105 - a hash method name, not a password


# Region tree levels: a province contains cities, a city districts/counties.
REGION_LEVELS = {"province": "省", "city": "市", "district": "区县"}


class Region(db.Model):
    """A region run by one QC centre (区域质控中心), a node of the province → city → district tree.

    A centre sees its own region and every region below it (``qcwx.orgs.scopes``).
    """

    __tablename__ = "region"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"), index=True)
    level: Mapped[str] = mapped_column(String(16), default="city", server_default="city")
    hospitals: Mapped[list[Hospital]] = relationship(back_populates="region")
    parent: Mapped[Region | None] = relationship(remote_side="Region.id", back_populates="children")
    children: Mapped[list[Region]] = relationship(back_populates="parent")

    @property
    def level_label(self) -> str:
        """Return the level in Chinese (省 / 市 / 区县)."""
        return REGION_LEVELS.get(self.level, self.level)

    def __str__(self) -> str:
        return self.name


class Hospital(db.Model):
    """A hospital (医院) with its grade (一级/二级/三级) and type."""

    __tablename__ = "hospital"
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("region.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(32), default="综合医院")
    region: Mapped[Region] = relationship(back_populates="hospitals")
    labs: Mapped[list[Lab]] = relationship(back_populates="hospital")

    def __str__(self) -> str:
        return self.name


class Lab(db.Model):
    """A laboratory or section (检验科 / 专业组); peers see it only by ``anon_code``."""

    __tablename__ = "lab"
    id: Mapped[int] = mapped_column(primary_key=True)
    hospital_id: Mapped[int] = mapped_column(ForeignKey("hospital.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    anon_code: Mapped[str] = mapped_column(String(16), unique=True)
    timezone: Mapped[str] = mapped_column(String(40), default="Asia/Shanghai")
    # Lab-local "HH:MM" by which today's QC should be in; a reminder goes out after it.
    reminder_time: Mapped[str | None] = mapped_column(String(5))
    hospital: Mapped[Hospital] = relationship(back_populates="labs")

    @property
    def full_name(self) -> str:
        """Return hospital and lab name as users write it."""
        return f"{self.hospital.name}·{self.name}"

    def __str__(self) -> str:
        return self.full_name


class User(UserMixin, db.Model):
    """A person with one role; region/hospital/lab fix the scope that role applies to."""

    __tablename__ = "user"
    __table_args__ = (UniqueConstraint("wechat_openid"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("region.id"), index=True)
    hospital_id: Mapped[int | None] = mapped_column(ForeignKey("hospital.id"), index=True)
    lab_id: Mapped[int | None] = mapped_column(ForeignKey("lab.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    wechat_openid: Mapped[str | None] = mapped_column(String(64))
    # Mini-program openid (a different appid gives a different openid for the same person).
    mp_openid: Mapped[str | None] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Bumped by logout and a password change: sessions and remember-me cookies carry it
    # (``get_id``), so older ones stop working (qcwx.web.security).
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    region: Mapped[Region | None] = relationship()
    hospital: Mapped[Hospital | None] = relationship()
    lab: Mapped[Lab | None] = relationship()

    @property
    def is_active(self) -> bool:  # Flask-Login reads this
        """Return whether the account may log in."""
        return self.active

    @property
    def role_label(self) -> str:
        """Return the role in Chinese."""
        return ROLES.get(self.role, self.role)

    def get_id(self) -> str:
        """Return the session id ``"<id>:<session_version>"`` (Flask-Login stores it)."""
        return f"{self.id}:{self.session_version or 0}"

    def set_password(self, password: str) -> None:
        """Store a salted hash of ``password`` and end the account's other sessions."""
        self.password_hash = generate_password_hash(password, method=PASSWORD_HASH_METHOD)
        self.session_version = (self.session_version or 0) + 1

    def check_password(self, password: str) -> bool:
        """Return whether ``password`` matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    def __str__(self) -> str:
        return f"{self.display_name}（{self.role_label}）"


class ApiKey(db.Model):
    """A lab's key for the lab-interface API: shown once, stored as a SHA-256 hash."""

    __tablename__ = "api_key"
    id: Mapped[int] = mapped_column(primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    lab: Mapped[Lab] = relationship()

    @property
    def active(self) -> bool:
        """Return whether the key still authenticates."""
        return self.revoked_at is None
