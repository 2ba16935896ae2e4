"""Time conventions: the database stores naive UTC; people see Asia/Shanghai.

A QC run belongs to a lab-local calendar date, so "today" is always asked of the lab's zone,
never of the server clock's zone.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Asia/Shanghai"


def utcnow() -> datetime:
    """Return the current UTC time as a naive datetime (the storage convention)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def to_local(value: datetime | None, tz: str = DEFAULT_TZ) -> datetime | None:
    """Convert a stored naive-UTC datetime to an aware datetime in ``tz``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(ZoneInfo(tz))


def to_utc(value: datetime, tz: str = DEFAULT_TZ) -> datetime:
    """Convert a datetime (naive = local wall time in ``tz``) to naive UTC for storage."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def local_today(tz: str = DEFAULT_TZ) -> date:
    """Return today's date in ``tz`` (the lab's calendar)."""
    return datetime.now(ZoneInfo(tz)).date()
