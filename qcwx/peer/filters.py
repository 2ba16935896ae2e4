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

PERIOD_KINDS = {"month": "自然月", "r30": "滚动30天", "cum": "批号累积"}


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
            if dim == "calibrator" and not text.isdigit():
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
    """A comparison period: calendar month, rolling 30 days or cumulative for the lot.

    ``start``/``end`` bound the lab-local run dates (``start`` None = from the first result).
    """

    kind: str
    start: date | None
    end: date
    month: str | None = None

    @property
    def label(self) -> str:
        """Return the period as users read it."""
        if self.kind == "month":
            return f"{self.month[:4]}年{int(self.month[5:])}月"
        if self.kind == "r30":
            return f"滚动30天（{self.start:%m-%d}～{self.end:%m-%d}）"
        return f"批号累积（截至{self.end:%Y-%m-%d}）"

    def args(self) -> dict[str, str]:
        """Return the query arguments that select this period again."""
        return {"period": self.kind, "month": self.month} if self.kind == "month" else {
            "period": self.kind}


def month_period(month: str, today: date) -> Period:
    """Return the calendar month ``YYYY-MM`` (refusing months after ``today``'s)."""
    match = _MONTH.match(month or "")
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise UserError(f"月份格式无效，应为 YYYY-MM：{month}", field="month")
    year, mon = int(match.group(1)), int(match.group(2))
    first = date(year, mon, 1)
    if first > today:
        raise UserError("不能选择未来的月份", field="month")
    last = date(year, mon, monthrange(year, mon)[1])
    return Period("month", first, min(last, today), month)


def parse_period(args: Mapping, today: date, default: str = "month") -> Period:
    """Return the period chosen by ``period`` (and ``month``) query arguments."""
    kind = (args.get("period") or default).strip()
    if kind not in PERIOD_KINDS:
        raise UserError(f"统计周期无效：{kind}", field="period")
    if kind == "month":
        return month_period((args.get("month") or today.strftime("%Y-%m")).strip(), today)
    if kind == "r30":
        return Period("r30", today - timedelta(days=29), today)
    return Period("cum", None, today)


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
