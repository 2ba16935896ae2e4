"""The period a dynamic QC report covers, kept as the user chose it so a link stays live.

"本月" stored as ``{"kind": "this_month"}`` means this month on the day the link is opened,
so the same link shows today's state tomorrow; a date range is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from qcwx.errors import UserError
from qcwx.peer.filters import (
    MIN_YEAR,
    Period,
    month_period,
    quarter_of,
    quarter_period,
    year_period,
)

#: Period kinds a dynamic report offers, with their Chinese names. "本季度"/"本年" stay live
#: like "本月"; "上季度"/"上年" are the calendar quarter/year before the day the link is opened.
PERIOD_KINDS = {"this_month": "本月", "last_month": "上月", "this_quarter": "本季度",
                "last_quarter": "上季度", "this_year": "本年", "last_year": "上年",
                "days": "最近N天", "range": "日期范围"}
#: The longest range a report covers (a year of daily QC is already 365 points per level).
MAX_DAYS = 366


@dataclass(frozen=True)
class ReportPeriod:
    """A resolved period: lab-local run dates ``start``…``end`` and how to read it."""

    start: date
    end: date
    label: str
    month: str | None = None

    @property
    def days(self) -> int:
        """Return the number of calendar days covered."""
        return (self.end - self.start).days + 1


def _date(raw, field: str, label: str) -> date:
    try:
        value = date.fromisoformat(str(raw).strip())
    except (TypeError, ValueError):
        raise UserError(f"{label}格式无效，应为 YYYY-MM-DD：{str(raw)[:20]}", field=field) from None
    if value.year < MIN_YEAR:
        raise UserError(f"{label}不能早于 {MIN_YEAR} 年：{value}", field=field)
    return value


def _calendar(kind: str, today: date) -> Period:
    """Return the calendar month/quarter/year a relative kind names on ``today``."""
    if kind == "this_month":
        return month_period(today.strftime("%Y-%m"), today)
    if kind == "last_month":
        return month_period((today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m"), today)
    if kind == "this_quarter":
        return quarter_period(quarter_of(today), today)
    if kind == "last_quarter":
        first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        return quarter_period(quarter_of(first - timedelta(days=1)), today)
    if kind == "this_year":
        return year_period(str(today.year), today)
    return year_period(str(today.year - 1), today)


def parse_spec(args: Mapping) -> dict:
    """Return a period spec from query/form arguments (``period``, ``days``, ``start``, ``end``).

    Raises :class:`UserError` naming the field for anything not understood.
    """
    kind = (args.get("period") or "this_month").strip()
    if kind not in PERIOD_KINDS:
        raise UserError(f"报告周期无效：{kind[:20]}", field="period")
    if kind == "days":
        raw = str(args.get("days") or "").strip()
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_DAYS:
            raise UserError(f"天数应为 1～{MAX_DAYS} 的整数：{raw}", field="days")
        return {"kind": "days", "days": int(raw)}
    if kind == "range":
        start = _date(args.get("start"), "start", "开始日期")
        end = _date(args.get("end"), "end", "结束日期")
        return {"kind": "range", "start": start.isoformat(), "end": end.isoformat()}
    return {"kind": kind}


def resolve(spec: Mapping, today: date) -> ReportPeriod:
    """Return the dates a spec covers on ``today`` (lab-local)."""
    kind = spec.get("kind")
    if kind in PERIOD_KINDS and kind not in ("days", "range"):
        p = _calendar(kind, today)
        return ReportPeriod(p.start, p.end, p.label, p.month)
    if kind == "days":
        days = int(spec["days"])
        return ReportPeriod(today - timedelta(days=days - 1), today, f"最近{days}天")
    if kind == "range":
        start, end = date.fromisoformat(spec["start"]), date.fromisoformat(spec["end"])
        if end < start:
            raise UserError("结束日期不能早于开始日期", field="end")
        if (end - start).days + 1 > MAX_DAYS:
            raise UserError(f"日期范围不能超过 {MAX_DAYS} 天", field="end")
        if start > today:
            raise UserError("开始日期不能晚于今天", field="start")
        return ReportPeriod(start, min(end, today), f"{start:%Y-%m-%d} 至 {end:%Y-%m-%d}")
    raise UserError(f"报告周期无效：{kind}", field="period")
