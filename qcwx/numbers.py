"""Normalise numbers, dates and QC levels as labs and instruments write them.

All functions are pure and raise :class:`ValueError` (with a Chinese message) for text
they cannot read.  Full-width characters (``１２．３``, ``－``) are folded first, so
values typed with a Chinese input method parse like ASCII ones.

A neutral leaf module: the ingest parsers (:mod:`qcwx.ingest.formats`) and the catalogue's
CSV import both use it, and it imports nothing of qcwx (``tests/ingest/test_purity.py``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, timedelta

__all__ = [
    "INT32_MAX",
    "MAX_ID",
    "ascii_int",
    "fold_text",
    "normalize_level",
    "parse_compact_datetime",
    "parse_datetime",
    "parse_excel_serial",
    "parse_id",
    "parse_number",
    "parse_range",
    "parse_value",
]

#: The largest value of a signed 32-bit INTEGER column (MariaDB ``INT``).
INT32_MAX = 2**31 - 1
#: Largest database id accepted from a request: a signed 32-bit INTEGER is the narrowest id
#: column we use (MariaDB ``INT``); SQLite raises ``OverflowError`` above 2**63-1.
MAX_ID = INT32_MAX

_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-", "\ufe63": "-"})
_SPACES = re.compile(r"[\s\u00a0\u3000]+")
_PLAIN = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_CENSORED = re.compile(r"(<=|>=|≤|≥|<|>)\s*(.+)")


def fold_text(text: str) -> str:
    """Fold full-width and compatibility characters to ASCII (NFKC) and unify minus signs."""
    return unicodedata.normalize("NFKC", text).translate(_MINUS_SIGNS)


def parse_number(text: str) -> float:
    """Read a decimal number written by a person or an instrument.

    Accepts full-width digits and punctuation, spaces, a leading ``+``/``-`` (also the
    typographic minus), exponents and thousands separators in proper groups of three
    (``1,234.5``).  Rejects empty text, NaN, infinities and anything else.

    >>> parse_number("１２．３")
    12.3
    >>> parse_number(" 1,234.5 ")
    1234.5
    """
    folded = _SPACES.sub("", fold_text(str(text)))
    if _GROUPED.fullmatch(folded):
        folded = folded.replace(",", "")
    if not _PLAIN.fullmatch(folded):
        raise ValueError(f"“{text}”不是有效数字")
    number = float(folded)
    if not math.isfinite(number):
        raise ValueError(f"“{text}”超出数值范围")
    return number


def parse_value(text: str) -> tuple[float | None, str | None]:
    """Split a result into its float and a censoring sign.

    Returns ``(value, None)`` for a plain number, ``(None, "<")`` or ``(None, ">")`` for
    a censored result such as ``< 1.20`` (``<=``/``≤`` count as ``<``), and
    ``(None, None)`` for text that is not numeric (``NEGATIVE``, ``-----``).
    """
    folded = fold_text(str(text)).strip()
    match = _CENSORED.fullmatch(folded)
    if match:
        try:
            parse_number(match.group(2))
        except ValueError:
            return None, None
        return None, "<" if match.group(1) in ("<", "<=", "≤") else ">"
    try:
        return parse_number(folded), None
    except ValueError:
        return None, None


_RANGE = re.compile(
    r"\s*([+-]?\d+(?:\.\d+)?)\s*(?:-|~|～|to|TO|To|—|–)\s*([+-]?\d+(?:\.\d+)?)\s*"
)


def parse_range(text: str) -> tuple[float, float] | None:
    """Read ``low - high`` ranges (``7.30 - 9.30``, ``0.35 TO 4.94``, ``1~2``); None if not one."""
    match = _RANGE.fullmatch(fold_text(str(text)))
    if not match:
        return None
    low, high = float(match.group(1)), float(match.group(2))
    return (low, high) if low <= high else None


# ---------------------------------------------------------------- dates and times

_DATE_PART = re.compile(
    r"(?P<y>\d{4})\s*(?:(?P<sep>[-/.])\s*(?P<m>\d{1,2})\s*(?P=sep)\s*(?P<d>\d{1,2})"
    r"|年\s*(?P<m2>\d{1,2})\s*月\s*(?P<d2>\d{1,2})\s*[日号]?)"
)
_TIME_PART = re.compile(
    r"(?P<H>\d{1,2})\s*(?:[:：]|时|点)\s*(?P<M>\d{1,2})\s*分?"
    r"(?:\s*(?:[:：])?\s*(?P<S>\d{1,2})(?P<frac>\.\d+)?\s*秒?)?"
)
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(?:(\d{2})(?:\.(\d{1,6})\d*)?)?)?")
_TZ_SUFFIX = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


def parse_compact_datetime(text: str) -> datetime | None:
    """Read ASTM/HL7 timestamps ``YYYYMMDD[HHMM[SS[.ffff]]][+ZZZZ]``; None when empty.

    The offset, if any, is dropped: the result is naive time as the sender wrote it.
    Raises :class:`ValueError` for text that is not such a timestamp.
    """
    text = str(text).strip()
    if not text:
        return None
    match = _COMPACT.fullmatch(_TZ_SUFFIX.sub("", text))
    if not match:
        raise ValueError(f"“{text}”不是有效的时间戳")
    y, mo, d, hh, mm, ss, frac = match.groups()
    try:
        return datetime(
            int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError as exc:
        raise ValueError(f"“{text}”不是有效的日期时间") from exc


def parse_datetime(text: str) -> datetime:
    """Read a date with an optional time in the formats Chinese labs use.

    Dates: ``2026-11-05``, ``2026/11/5``, ``2026.11.05``, ``2026年11月5日``, ``20261105``
    (also ``20261105083000``); times after a space or ``T``: ``08:30``, ``8:30:15``,
    ``8时30分``.  A date alone gives midnight.  Full-width digits are accepted.

    >>> parse_datetime("2026年11月5日 08:30")
    datetime.datetime(2026, 11, 5, 8, 30)
    """
    folded = fold_text(str(text)).strip()
    if not folded:
        raise ValueError("日期为空")
    if folded.isdigit() and len(folded) in (8, 12, 14):
        parsed = parse_compact_datetime(folded)
        if parsed is not None:
            return parsed
    match = _DATE_PART.match(folded)
    if not match:
        raise ValueError(f"“{text}”不是有效日期")
    year = int(match.group("y"))
    month = int(match.group("m") or match.group("m2"))
    day = int(match.group("d") or match.group("d2"))
    rest = folded[match.end():].strip()
    rest = rest[1:].strip() if rest[:1] in ("T", "t") else rest
    hour = minute = second = micro = 0
    if rest:
        tmatch = _TIME_PART.fullmatch(rest)
        if not tmatch:
            raise ValueError(f"“{text}”中的时间无法识别")
        hour, minute = int(tmatch.group("H")), int(tmatch.group("M"))
        second = int(tmatch.group("S") or 0)
        micro = int(round(float(tmatch.group("frac") or 0) * 1_000_000))
    try:
        return datetime(year, month, day, hour, minute, second, min(micro, 999_999))
    except ValueError as exc:
        raise ValueError(f"“{text}”不是有效日期") from exc


_EXCEL_EPOCH = datetime(1899, 12, 30)


def parse_excel_serial(serial: float) -> datetime:
    """Convert an Excel (1900 system) serial day number to a naive datetime.

    Fractions are the time of day, rounded to the second.  Only the range Excel itself
    accepts (1 … 2958465, up to 9999-12-31) is allowed.
    """
    if not (isinstance(serial, (int, float)) and math.isfinite(serial)) or not (
        1 <= serial < 2958466
    ):
        raise ValueError(f"“{serial}”不是有效的 Excel 日期序号")
    seconds = round(float(serial) * 86400)
    return _EXCEL_EPOCH + timedelta(seconds=seconds)


def to_date(value: datetime | None) -> date | None:
    """Return the date part of ``value`` (None stays None)."""
    return value.date() if value is not None else None


# ---------------------------------------------------------------- QC levels

_LEVEL_WORDS = {
    "L": "L", "LO": "L", "LOW": "L", "低": "L", "低值": "L", "低水平": "L", "低浓度": "L",
    "M": "M", "MED": "M", "MID": "M", "MEDIUM": "M", "N": "M", "NORMAL": "M",
    "中": "M", "中值": "M", "中水平": "M", "中浓度": "M", "正常": "M", "正常值": "M",
    "H": "H", "HI": "H", "HIGH": "H", "ABNORMAL": "H",
    "高": "H", "高值": "H", "高水平": "H", "高浓度": "H", "异常": "H",
}
_CN_DIGITS = {"一": "1", "二": "2", "三": "3", "四": "4", "五": "5", "六": "6"}
_LEVEL_NUMBER = re.compile(
    r"(?:LEVEL|LEV|LVL|LV|L|QC|C|CTRL|CONTROL|水平|质控|浓度)?[\s_-]*([0-9一二三四五六])"
    r"\s*(?:水平|级)?"
)


def normalize_level(raw: str | None) -> str | None:
    """Map a level as sent to ``L``/``M``/``H`` or a digit string (``水平2`` → ``2``).

    Unknown spellings come back folded to upper case, so equal spellings still match.
    """
    if raw is None:
        return None
    text = _SPACES.sub(" ", fold_text(str(raw))).strip().upper()
    if not text:
        return None
    compact = text.replace(" ", "")
    if compact in _LEVEL_WORDS:
        return _LEVEL_WORDS[compact]
    match = _LEVEL_NUMBER.fullmatch(compact)
    if match:
        digit = match.group(1)
        return _CN_DIGITS.get(digit, digit)
    return text


def ascii_int(raw: object, low: int, high: int) -> int | None:
    """Return ``raw`` as an int within [low, high], or None when it is anything else.

    Only ASCII digits (and an optional leading minus) are accepted: ``"²"`` passes
    ``str.isdigit`` but ``int`` refuses it, and ``"9" * 400`` would overflow ``float``/SQL.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw if raw is not None else "").strip()
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
            return None
        value = int(text)
    return value if low <= value <= high else None


def parse_id(raw: object) -> int | None:
    """Return ``raw`` as a database id (1…:data:`MAX_ID`), or None for anything else."""
    return ascii_int(raw, 1, MAX_ID)
