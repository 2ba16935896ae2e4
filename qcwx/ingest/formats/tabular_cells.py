"""Spreadsheet cells as users see them: text, numbers, dates and times (CSV and XLSX)."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time
from typing import Any

from qcwx.numbers import fold_text, parse_datetime, parse_excel_serial

__all__ = ["cell_datetime", "cell_text", "cell_time", "fold_header", "is_number"]


def fold_header(text: Any) -> str:
    """Fold a header cell for comparison: width, case, brackets, blanks and colons."""
    folded = fold_text(cell_text(text)).lower()
    folded = re.sub(r"[(\[【].*?[)\]】]", "", folded)
    return re.sub(r"[\s*:]+", "", folded)





def cell_text(cell: Any) -> str:
    """Return a cell as the text a user would see (numbers without a spurious ``.0``)."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell.strip()
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float):
        if math.isfinite(cell) and cell.is_integer() and abs(cell) < 1e15:
            return str(int(cell))
        return repr(cell)
    if isinstance(cell, datetime):
        return cell.isoformat(sep=" ", timespec="minutes" if not cell.second else "seconds")
    if isinstance(cell, (date, time)):
        return cell.isoformat()
    return str(cell).strip()


def is_number(cell: Any) -> bool:
    """Say whether a cell holds a real number (not a bool)."""
    return isinstance(cell, (int, float)) and not isinstance(cell, bool)


def cell_datetime(cell: Any) -> datetime:
    """Read a date cell: datetime, date, Excel serial, 20261105 or date text."""
    if isinstance(cell, datetime):
        return cell.replace(tzinfo=None)
    if isinstance(cell, date):
        return datetime(cell.year, cell.month, cell.day)
    if is_number(cell):
        if float(cell).is_integer() and 19000101 <= cell <= 99991231:
            return parse_datetime(str(int(cell)))  # 20261105 typed into a number cell
        return parse_excel_serial(cell)
    text = cell_text(cell)
    if re.fullmatch(r"\d{5}(?:\.\d+)?", text) and 20000 <= float(text) < 80000:
        return parse_excel_serial(float(text))
    return parse_datetime(text)


_TIME_TEXT = re.compile(r"(\d{1,2})\s*(?:[:]|时|点)\s*(\d{1,2})\s*分?(?:\s*:?\s*(\d{1,2})\s*秒?)?")


def cell_time(cell: Any) -> time | datetime:
    """Read a time cell: time, datetime, day fraction or text such as 8:30 or 8时30分."""
    if isinstance(cell, datetime):
        return cell.replace(tzinfo=None)
    if isinstance(cell, time):
        return cell.replace(tzinfo=None)
    if is_number(cell) and 0 <= cell < 1:
        moment = parse_excel_serial(1 + cell)
        return moment.time()
    text = fold_text(cell_text(cell))
    match = _TIME_TEXT.fullmatch(text)
    if match:
        hour, minute, second = (int(g or 0) for g in match.groups())
        try:
            return time(hour, minute, second)
        except ValueError as exc:
            raise ValueError(f"“{text}”不是有效时间") from exc
    return parse_datetime(text)
