"""Parse the peer-group filter stack and the comparison period from query arguments.

A peer group is always one QC level (which fixes the lot) and one analyte; on top of that
users stack any of :data:`DIMENSIONS` (each may hold several values: "罗氏 or 贝克曼").
Everything here is pure parsing and validation: a bad value is a ``UserError`` naming the
field (a 400 in Chinese), while a well-formed value that matches nothing is simply an empty
group for the caller to show as an empty state.
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from qcwx.errors import UserError
from qcwx.numbers import parse_id

#: Filter dimensions: query name → Chinese label. The SQL column of each is in ``queries``.
DIMENSIONS: dict[str, str] = {
    "instrument_maker": "仪器厂家",
    "instrument_model": "仪器型号",
    "reagent_maker": "试剂厂家",
    "method": "方法学",
    "method_principle": "方法原理",
    "calibrator": "校准品",
    "unit": "单位",
    "temperature": "反应温度",
    "hospital_level": "医院等级",
}
#: The default peer group of a test system: same instrument maker, reagent maker, method, unit
#: and temperature as the lab's own system (plus lot, level, analyte). Instrument *model* is a
#: subtype users stack on the lot page: in a region of a few dozen labs six-code groups hold
#: 5–6 labs, and Algorithm A over 5 means that include a biased lab inflates s* so much that
#: the lab hides (demo: a +9 % creatinine lab at SDI 1.5–1.8 among 5 BS-800 labs, 3–4 among
#: the 7 Mindray-reagent enzymatic labs, and 76 vs 312 of 896 rows judged in a peer group).
PEER_KEYS = ("instrument_maker", "reagent_maker", "method", "unit", "temperature")
#: The method group: same method only.
METHOD_KEYS = ("method",)

MAX_VALUES = 20
MAX_VALUE_LENGTH = 100
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$", re.IGNORECASE)
_YEAR = re.compile(r"^(\d{4})$")
#: Earliest year a period may start in (older dates are typing mistakes, not QC history).
MIN_YEAR = 2000

PERIOD_KINDS = {"month": "自然月", "quarter": "季度", "year": "年度", "r30": "滚动30天",
                "cum": "批号累积"}
#: Calendar periods: a fixed span chosen by its key (``month``/``quarter``/``year`` argument).
CALENDAR_KINDS = ("month", "quarter", "year")


def parse_filters(args: Mapping) -> dict[str, list[str]]:
    """Return ``{dimension: [values]}`` from query arguments (repeated keys = several values).

    Empty values are dropped; duplicates collapse; order is kept. ``args`` may be a Werkzeug
    ``MultiDict`` (``getlist``) or a plain mapping of str / list values (saved groupings).
    """
    out: dict[str, list[str]] = {}
    for dim, label in DIMENSIONS.items():
        raw = args.getlist(dim) if hasattr(args, "getlist") else _as_list(args.get(dim))
        values: list[str] = []
        for value in raw:
            text = str(value).strip()
            if not text:
                continue
            if len(text) > MAX_VALUE_LENGTH:
                raise UserError(f"筛选条件“{label}”过长（最多{MAX_VALUE_LENGTH}个字符）", field=dim)
            if dim == "calibrator" and parse_id(text) is None:  # "²" passes isdigit
                raise UserError(f"筛选条件“{label}”无效：{text}", field=dim)
            if text not in values:
                values.append(text)
        if len(values) > MAX_VALUES:
            raise UserError(f"筛选条件“{label}”最多选择{MAX_VALUES}项", field=dim)
        if values:
            out[dim] = values
    return out


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def describe(filters: Mapping[str, list[str]], names: Mapping[str, Mapping[str, str]] | None = None
             ) -> str:
    """Return a short Chinese description, e.g. ``仪器厂家：罗氏；单位：mmol/L``.

    ``names`` maps a dimension's raw values to display names (calibrator ids → names).
    """
    names = names or {}
    parts = []
    for dim, values in filters.items():
        shown = [names.get(dim, {}).get(v, v) for v in values]
        parts.append(f"{DIMENSIONS[dim]}：{'、'.join(shown)}")
    return "；".join(parts) if parts else "不限"


def int_arg(args: Mapping, name: str, label: str) -> int | None:
    """Return an optional positive integer argument, or raise ``UserError`` naming it."""
    raw = args.get(name)
    if raw in (None, ""):
        return None
    text = str(raw).strip()
    # isascii: "²" and other Unicode digits pass isdigit() but int() refuses them; the length
    # cap keeps a 400-digit id from reaching the database as an overflowing integer.
    if not (text.isascii() and text.isdigit()) or len(text) > 12 or int(text) < 1:
        raise UserError(f"{label}参数无效：{text[:40]}", field=name)
    return int(text)


@dataclass(frozen=True)
class Period:
    """A comparison period: calendar month, quarter or year, rolling 30 days, or lot cumulative.

    ``start``/``end`` bound the lab-local run dates (``start`` None = from the first result);
    ``end`` is capped at today for a period still running. ``key`` names a quarter
    (``2026-Q3``) or a year (``2026``); ``month`` is set for a calendar month only, because the
    monthly peer snapshots and evaluation reports are keyed by it.
    """

    kind: str
    start: date | None
    end: date
    month: str | None = None
    key: str | None = None

    @property
    def label(self) -> str:
        """Return the period as users read it."""
        if self.kind == "month":
            return f"{self.month[:4]}年{int(self.month[5:])}月"
        if self.kind == "quarter":
            return f"{self.key[:4]}年第{self.key[-1]}季度"
        if self.kind == "year":
            return f"{self.key}年"
        if self.kind == "r30":
            return f"滚动30天（{self.start:%m-%d}～{self.end:%m-%d}）"
        return f"批号累积（截至{self.end:%Y-%m-%d}）"

    @property
    def complete_end(self) -> date:
        """Return the calendar period's last day even while it is still running."""
        if self.kind == "month":
            return month_end(self.month)
        if self.kind == "quarter":
            return month_end(f"{self.key[:4]}-{int(self.key[-1]) * 3:02d}")
        if self.kind == "year":
            return date(int(self.key), 12, 31)
        return self.end

    def args(self) -> dict[str, str]:
        """Return the query arguments that select this period again."""
        if self.kind == "month":
            return {"period": "month", "month": self.month}
        if self.kind in ("quarter", "year"):
            return {"period": self.kind, self.kind: self.key}
        return {"period": self.kind}


def _calendar(kind: str, first: date, last: date, today: date, **keys) -> Period:
    if first > today:
        raise UserError("不能选择未来的统计周期", field=kind)
    return Period(kind, first, min(last, today), **keys)


def month_period(month: str, today: date) -> Period:
    """Return the calendar month ``YYYY-MM`` (refusing months after ``today``'s)."""
    match = _MONTH.match(month or "")
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < MIN_YEAR:
        raise UserError(f"月份格式无效，应为 YYYY-MM：{month}", field="month")
    year, mon = int(match.group(1)), int(match.group(2))
    if date(year, mon, 1) > today:
        raise UserError("不能选择未来的月份", field="month")
    return _calendar("month", date(year, mon, 1), month_end(month), today, month=month)


def quarter_of(day: date) -> str:
    """Return the quarter key ``YYYY-Qn`` containing ``day``."""
    return f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}"


def quarter_period(quarter: str, today: date) -> Period:
    """Return the calendar quarter ``YYYY-Qn`` (Q1 = January–March)."""
    match = _QUARTER.match((quarter or "").strip())
    if not match or int(match.group(1)) < MIN_YEAR:
        raise UserError(f"季度格式无效，应为 YYYY-Qn（n 为 1～4）：{quarter[:20]}", field="quarter")
    year, q = int(match.group(1)), int(match.group(2))
    key = f"{year:04d}-Q{q}"
    return _calendar("quarter", date(year, 3 * q - 2, 1), month_end(f"{year:04d}-{3 * q:02d}"),
                     today, key=key)


def year_period(year: str, today: date) -> Period:
    """Return the calendar year ``YYYY``."""
    match = _YEAR.match((year or "").strip())
    if not match or int(match.group(1)) < MIN_YEAR:
        raise UserError(f"年份格式无效，应为 YYYY：{year[:20]}", field="year")
    value = int(match.group(1))
    return _calendar("year", date(value, 1, 1), date(value, 12, 31), today, key=str(value))


def parse_period(args: Mapping, today: date, default: str = "month") -> Period:
    """Return the period chosen by ``period`` (and ``month``/``quarter``/``year``) arguments."""
    kind = (args.get("period") or default).strip()
    if kind not in PERIOD_KINDS:
        raise UserError(f"统计周期无效：{kind[:20]}", field="period")
    if kind == "month":
        return month_period((args.get("month") or today.strftime("%Y-%m")).strip(), today)
    if kind == "quarter":
        return quarter_period(str(args.get("quarter") or quarter_of(today)), today)
    if kind == "year":
        return year_period(str(args.get("year") or today.year), today)
    if kind == "r30":
        return Period("r30", today - timedelta(days=29), today)
    return Period("cum", None, today)


def calendar_options(kind: str, today: date, count: int = 24) -> list[tuple[str, str]]:
    """Return ``(key, label)`` choices of a calendar period kind, newest first."""
    if kind == "quarter":
        keys, day = [], today
        for _ in range(min(count, 12)):
            keys.append(quarter_of(day))
            day = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1) - timedelta(days=1)
        return [(k, f"{k[:4]}年第{k[-1]}季度") for k in keys]
    if kind == "year":
        first = max(MIN_YEAR, today.year - 5)
        return [(str(y), f"{y}年") for y in range(today.year, first - 1, -1)]
    return [(m, f"{m[:4]}年{int(m[5:])}月") for m in recent_months(today, count)[::-1]]


def month_end(month: str) -> date:
    """Return the last day of ``YYYY-MM``."""
    year, mon = int(month[:4]), int(month[5:7])
    return date(year, mon, monthrange(year, mon)[1])


def recent_months(today: date, count: int = 12) -> list[str]:
    """Return the ``count`` months up to and including ``today``'s, oldest first."""
    year, mon = today.year, today.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{mon:02d}")
        year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
    return out[::-1]
