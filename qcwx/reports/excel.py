"""Export a :class:`~qcwx.reports.document.Report` as an Excel workbook (openpyxl, write-only).

The first sheet, ``概要``, holds what the page shows above and between the tables: title,
period, generated/published time (Asia/Shanghai), headline figures, conclusions, footnotes
and an index of the table sheets with their full titles. Then comes one sheet per
:class:`~qcwx.reports.document.Table`: a bold, frozen header row, numbers as numbers with the
column's decimals as ``number_format`` (the value itself is never rounded), blanks as empty
cells, text as text (never as a formula), row tones as light fills.
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
from datetime import datetime
from typing import Any, Iterable

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from qcwx.reports.document import Column, Report, Table
from qcwx.timeutil import to_local

SUMMARY_SHEET = "概要"
MAX_SHEET_NAME = 31
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
#: Excel refuses these names (case-insensitive) for a worksheet.
_RESERVED_SHEET_NAMES = {"history"}
#: Light fills for the row tones of a table (the page's colours, paler).
TONE_FILLS = {
    "ok": PatternFill("solid", fgColor="E8F5E9"),
    "warn": PatternFill("solid", fgColor="FFF4D6"),
    "bad": PatternFill("solid", fgColor="FDE2E1"),
    "muted": PatternFill("solid", fgColor="EFEFEF"),
}
_BOLD = Font(bold=True)
_TITLE = Font(bold=True, size=14)
_WRAP = Alignment(wrap_text=True, vertical="top")
_MIN_WIDTH, _MAX_WIDTH = 8, 60


def report_xlsx(report: Report) -> bytes:
    """Return the report as ``.xlsx`` bytes: the summary sheet, then one sheet per table."""
    workbook = Workbook(write_only=True)
    workbook.properties.title = report.title
    workbook.properties.creator = "qcwx"
    names = sheet_names(report.tables)
    _write_summary(workbook, report, names)
    for table, name in zip(report.tables, names, strict=True):
        _write_table(workbook.create_sheet(name), table)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def sheet_names(tables: Iterable[Table]) -> list[str]:
    r"""Return one valid, unique (case-insensitive) sheet name per table, in order.

    A name comes from the table's ``key`` (its ``title`` when the key is empty): characters
    Excel forbids (``[]:*?/\``) are dropped and it is cut to 31 characters; a repeated
    name gets `` (2)``, `` (3)`` … within those 31 characters.
    """
    taken = {SUMMARY_SHEET.casefold()} | _RESERVED_SHEET_NAMES
    names = []
    for number, table in enumerate(tables, start=1):
        base = _clean_sheet_name(table.key or table.title) or f"表{number}"
        name, copy = base, 1
        while name.casefold() in taken:
            copy += 1
            suffix = f" ({copy})"
            name = base[: MAX_SHEET_NAME - len(suffix)] + suffix
        taken.add(name.casefold())
        names.append(name)
    return names


def _clean_sheet_name(raw: str) -> str:
    text = _BAD_SHEET_CHARS.sub("", ILLEGAL_CHARACTERS_RE.sub("", raw or ""))
    # A name may not start or end with an apostrophe, nor be blank.
    return text.strip().strip("'")[:MAX_SHEET_NAME].strip().strip("'")


# -- the summary sheet ------------------------------------------------------------------
def _write_summary(workbook: Workbook, report: Report, names: list[str]) -> None:
    sheet = workbook.create_sheet(SUMMARY_SHEET)
    sheet.column_dimensions["A"].width = 24
    sheet.column_dimensions["B"].width = 28
    sheet.column_dimensions["C"].width = 60
    for values, font in _summary_rows(report, names):
        sheet.append([_summary_cell(sheet, value, font) for value in values])


def _summary_cell(sheet, value: Any, font: Font | None) -> WriteOnlyCell:
    cell = _cell(sheet, value)
    if font is not None:
        cell.font = font
    if isinstance(value, str) and len(value) > 30:
        cell.alignment = _WRAP
    return cell


def _summary_rows(report: Report, names: list[str]) -> Iterable[tuple[tuple, Font | None]]:
    yield (report.title,), _TITLE
    yield ("报告期间", report.period_label), None
    yield ("生成时间", local_time_text(report.generated_at)), None
    if report.published_at:
        yield ("发布时间", local_time_text(report.published_at)), None
    if report.description:
        yield ("说明", report.description), None
    yield from _figure_rows(report)
    yield from _conclusion_rows(report)
    if report.tables:
        yield (), None
        yield ("表格", "工作表", "说明"), _BOLD
        for table, name in zip(report.tables, names, strict=True):
            yield (table.title, name, table.note), None
    if report.footnotes:
        yield (), None
        yield ("注",), _BOLD
        for note in report.footnotes:
            yield ("", note), None


def _figure_rows(report: Report) -> Iterable[tuple[tuple, Font | None]]:
    groups = [("主要指标", report.figures)]
    groups += [(section.title, section.figures) for section in report.sections]
    for heading, figures in groups:
        if figures:
            yield (), None
            yield (heading,), _BOLD
            for figure in figures:
                yield (figure.label, figure.value, figure.hint), None


def _conclusion_rows(report: Report) -> Iterable[tuple[tuple, Font | None]]:
    conclusions = [c for section in report.sections for c in section.conclusions]
    if not conclusions:
        return
    yield (), None
    yield ("结论",), _BOLD
    for conclusion in conclusions:
        yield (conclusion.heading, conclusion.verdict, "；".join(conclusion.reasons)), None


def local_time_text(iso_utc: str) -> str:
    """Return an ISO UTC time (``2026-12-06T05:09:11Z``) as Asia/Shanghai ``YYYY-MM-DD HH:MM``.

    Text that is not an ISO time is returned unchanged (never an error in an export).
    """
    try:
        moment = datetime.fromisoformat(iso_utc)
    except (TypeError, ValueError):
        return iso_utc or ""
    return to_local(moment).strftime("%Y-%m-%d %H:%M")


# -- one sheet per table ----------------------------------------------------------------
def _write_table(sheet, table: Table) -> None:
    for index, width in enumerate(column_widths(table), start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.freeze_panes = "A2"
    header = [_cell(sheet, _header_text(column)) for column in table.columns]
    for cell in header:
        cell.font = _BOLD
    sheet.append(header)
    for index, row in enumerate(table.rows):
        fill = TONE_FILLS.get(table.tones[index] if index < len(table.tones) else "")
        sheet.append([_table_cell(sheet, value, column, fill)
                      for value, column in zip(row, table.columns, strict=False)])


def _header_text(column: Column) -> str:
    return f"{column.title} ({column.unit})" if column.unit else column.title


def _table_cell(sheet, value: Any, column: Column, fill: PatternFill | None) -> WriteOnlyCell:
    cell = _cell(sheet, value)
    if cell.data_type == "n" and cell.value is not None:
        cell.number_format = number_format(value, column.decimals)
    if fill is not None:
        cell.fill = fill
    return cell


def _cell(sheet, value: Any) -> WriteOnlyCell:
    """Return a cell holding ``value`` as Excel should keep it: number, blank or plain text."""
    if isinstance(value, bool):
        value = "是" if value else "否"
    elif isinstance(value, float) and not math.isfinite(value):
        value = None  # Excel has no NaN/inf; the page shows these as blank too
    elif value is not None and not isinstance(value, (int, float)):
        value = ILLEGAL_CHARACTERS_RE.sub("", str(value))
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        cell.data_type = "s"  # "=…" typed by a user is text, never a formula
    elif isinstance(value, float):
        # openpyxl 3.1 writes numbers as "%.16g", which changes some doubles in the last
        # digit (0.1 + 0.2 → 0.3); repr() is the shortest text that reads back exactly.
        cell._value = repr(value)
    return cell


def number_format(value: int | float, decimals: int | None) -> str:
    """Return the Excel number format for a value shown with ``decimals`` (``0.00``).

    Without configured decimals an integer shows as ``0`` and a float as Excel's General.
    """
    if decimals is None:
        return "0" if isinstance(value, int) else "General"
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    return "0" if decimals == 0 else "0." + "0" * decimals


def column_widths(table: Table) -> list[float]:
    """Return a width per column that fits its header and cells (CJK characters count 2)."""
    widths = []
    for col, column in enumerate(table.columns):
        texts = [_header_text(column)]
        texts += [table.cell_text(row, col) for row in range(len(table.rows))
                  if col < len(table.rows[row])]
        longest = max(display_width(text) for text in texts)
        widths.append(float(min(max(longest + 2, _MIN_WIDTH), _MAX_WIDTH)))
    return widths


def display_width(text: str) -> int:
    """Return how many Latin character widths ``text`` takes (wide CJK characters count 2)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
