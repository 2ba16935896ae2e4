"""QC results typed into spreadsheets: CSV (any usual encoding) and XLSX.

The header row may use Chinese or English names (see :data:`FIELDS` for the aliases) and
may be preceded by title rows; ``options["columns"]`` maps target fields to the file's
own column names when the aliases do not fit.  Each data row becomes one QC record
(``is_qc=True``) or, when a cell cannot be read, issues naming the row as Excel shows it
(header = row 1) and the column in the file's own words.

CSV text is decoded as UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030 (a
superset of GBK/GB2312); the delimiter is sniffed among ``,`` tab ``;`` ``，`` and ``|``.
XLSX is read with openpyxl in read-only mode using cached formula values; date cells,
Excel serial numbers and text dates are all accepted.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from qcwx.numbers import normalize_level, parse_number, parse_value

from . import xlsx_guard
from .records import IssueLog, ParsedRecord, ParseError, ParseResult, SourceRef, truncate_raw
from .registry import register
from .tabular_cells import cell_datetime, cell_text, cell_time, is_number
from .tabular_layout import (
    FIELDS,
    HEADER_SCAN,
    Layout,
    check_mapping,
    find_layout,
    header_target,
    no_header,
    require_layout,
)
from .tabular_templates import TEMPLATE_HEADERS, template_csv, template_xlsx

__all__ = [
    "FIELDS",
    "TEMPLATE_HEADERS",
    "detect_csv",
    "header_target",
    "sniff_headers",
    "detect_xlsx",
    "parse_csv",
    "parse_xlsx",
    "template_csv",
    "template_xlsx",
]

logger = logging.getLogger(__name__)

_DELIMITERS = (",", "\t", ";", "，", "|")
_BLANK_RUN_END = 1000
DEFAULT_MAX_ROWS = 100_000
_OPTIONS = frozenset({"columns", "sheet", "encoding", "delimiter", "max_rows"})


# ---------------------------------------------------------------- rows


class _Rows:
    def __init__(self, fmt: str, layout: Layout, sheet: str | None, max_rows: int) -> None:
        self.fmt, self.layout, self.sheet, self.max_rows = fmt, layout, sheet, max_rows
        self.issues = IssueLog(fmt)
        self.records: list[ParsedRecord] = []
        self.data_rows = 0

    def feed(self, number: int, row: Sequence[Any]) -> None:
        if not any(cell_text(c) for c in row):
            return
        self.data_rows += 1
        if self.data_rows > self.max_rows:
            raise ParseError(f"数据行超过 {self.max_rows} 行的上限，请拆分文件后再上传")
        where = SourceRef(self.fmt, row=number, sheet=self.sheet)
        cells = {t: row[i] if i < len(row) else None for t, i in self.layout.columns.items()}
        record = self.build(cells, where, row)
        if record is not None:
            self.records.append(record)

    def label(self, target: str) -> str:
        return self.layout.labels.get(target) or FIELDS[target][0]

    def fail(self, where: SourceRef, target: str, message: str) -> None:
        self.issues.add(where, target, message)

    def build(
        self, cells: dict[str, Any], where: SourceRef, row: Sequence[Any]
    ) -> ParsedRecord | None:
        ok = True
        code = cell_text(cells.get("test_code"))
        if not code:
            self.fail(where, "test_code", f"缺少{self.label('test_code')}")
            ok = False
        value_text, value = self.value(cells.get("value"), where)
        ok = ok and value is not None
        measured = self.moment(cells, where)
        ok = ok and measured is not None
        targets = {}
        for target in ("target_mean", "target_sd"):
            targets[target], good = self.optional_number(cells.get(target), where, target)
            ok = ok and good
        if not ok:
            return None
        level = cell_text(cells.get("level")) or None
        text = {k: cell_text(cells.get(k)) or None for k in (
            "qc_lot", "unit", "instrument", "control_name", "client_id", "sample_id", "run_no"
        )}
        return ParsedRecord(
            test_code=code,
            value_text=value_text,
            value=value,
            level=level,
            level_norm=normalize_level(level),
            measured_at=measured,
            is_qc=True,
            source=where,
            raw=truncate_raw("\t".join(cell_text(c) for c in row)),
            **targets,
            **text,
        )

    def value(self, cell: Any, where: SourceRef) -> tuple[str, float | None]:
        label = self.label("value")
        text = cell_text(cell)
        if not text:
            self.fail(where, "value", f"缺少{label}")
            return text, None
        if is_number(cell):
            if math.isfinite(cell):
                return text, float(cell)
            self.fail(where, "value", f"{label}“{text}”不是有效数字")
            return text, None
        try:
            return text, parse_number(text)
        except ValueError:
            _, censored = parse_value(text)
            if censored:
                self.fail(where, "value", f"{label}“{text}”是截断值，不能用于质控统计")
            else:
                self.fail(where, "value", f"{label}“{text}”不是有效数字")
            return text, None

    def optional_number(
        self, cell: Any, where: SourceRef, target: str
    ) -> tuple[float | None, bool]:
        text = cell_text(cell)
        if not text:
            return None, True
        try:
            return (float(cell) if is_number(cell) else parse_number(text)), True
        except (ValueError, OverflowError):
            self.fail(where, target, f"{self.label(target)}“{text}”不是有效数字")
            return None, False

    def moment(self, cells: dict[str, Any], where: SourceRef) -> datetime | None:
        day_cell, time_cell = cells.get("date"), cells.get("time")
        day: datetime | None = None
        if cell_text(day_cell):
            try:
                day = cell_datetime(day_cell)
            except ValueError:
                text = cell_text(day_cell)
                self.fail(where, "date", f"{self.label('date')}“{text}”不是有效日期")
                return None
        if cell_text(time_cell):
            try:
                moment = cell_time(time_cell)
            except ValueError:
                text = cell_text(time_cell)
                self.fail(where, "time", f"{self.label('time')}“{text}”不是有效时间")
                return None
            if isinstance(moment, datetime):
                return moment if day is None else datetime.combine(day.date(), moment.time())
            if day is not None:
                return datetime.combine(day.date(), moment)
        if day is None:
            target = "date" if "date" in self.layout.columns else "time"
            self.fail(where, target, f"缺少{self.label(target)}")
        return day

    def result(self) -> ParseResult:
        if not self.data_rows:
            self.issues.add(SourceRef(self.fmt, sheet=self.sheet), None, "表头之后没有数据行")
        return self.issues.result(self.records)


def _max_rows(options: Mapping[str, Any]) -> int:
    value = options.get("max_rows", DEFAULT_MAX_ROWS)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ParseError("选项 max_rows 必须是正整数")
    return value


# ---------------------------------------------------------------- CSV


def _looks_binary(data: bytes) -> bool:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            strict = "strict" if len(data) <= 8192 else "ignore"
            sample = data[:8192].decode("utf-16", errors=strict)
        except UnicodeDecodeError:
            return True
        controls = sum(1 for c in sample if c < " " and c not in "\t\n\x0c\r")
        return controls > max(2, len(sample) // 100)
    sample = data[:4096]
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 0x20 and b not in (0x09, 0x0A, 0x0C, 0x0D))
    return controls > max(2, len(sample) // 100)


def detect_csv(data: bytes) -> bool:
    """Say whether ``data`` is plausibly delimited text (the fallback format)."""
    return not _looks_binary(data)


def _decode_text(data: bytes, forced: str | None) -> str:
    if forced:
        try:
            return data.decode(forced)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"无法按 {forced} 编码读取文件") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        candidates = ["utf-8-sig"]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "gb18030"]
    for enc in candidates:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise ParseError("无法识别文件编码，请另存为 UTF-8 或 GBK 编码的 CSV 文件")


def _csv_rows(text: str, delimiter: str) -> list[list[str]]:
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise ParseError(f"CSV 格式错误：{exc}") from exc


def parse_csv(data: bytes, options: Mapping[str, Any]) -> ParseResult:
    """Parse CSV/TSV text into QC records."""
    if _looks_binary(data):
        raise ParseError("文件不是文本格式，无法按 CSV 读取")
    mapping = check_mapping(options)
    text = _decode_text(data, options.get("encoding"))
    forced = options.get("delimiter")
    if forced is not None and not (isinstance(forced, str) and len(forced) == 1):
        raise ParseError("选项 delimiter 必须是单个字符")
    head = "\n".join(text.splitlines()[:HEADER_SCAN])
    best: tuple[int, str, Layout] | None = None
    for delimiter in (forced,) if forced else _DELIMITERS:
        if delimiter not in head:
            continue
        scan = list(enumerate(_csv_rows(head, delimiter), start=1))
        layout = find_layout(scan, mapping)
        if layout and (best is None or len(layout.columns) > best[0]):
            best = (len(layout.columns), delimiter, layout)
    if best is None:
        no_header(mapping)
    _, delimiter, layout = best
    layout = require_layout(layout, mapping)
    rows = _Rows("csv", layout, None, _max_rows(options))
    for number, row in enumerate(_csv_rows(text, delimiter), start=1):
        if number > layout.header_row:
            rows.feed(number, row)
    return rows.result()


# ---------------------------------------------------------------- XLSX


def detect_xlsx(data: bytes) -> bool:
    """Say whether ``data`` is a zip container (XLSX); old .xls is refused with a hint."""
    return data[:4] == b"PK\x03\x04" or data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _open_workbook(data: bytes) -> Any:
    import openpyxl  # imported lazily: CSV/ASTM/HL7 users need not pay for it

    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise ParseError("不支持旧版 .xls 文件，请在 Excel 中另存为 .xlsx 或 CSV 后上传")
    xlsx_guard.check_container(data)  # a decompression bomb is refused before parsing
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, EOFError) as exc:
        raise ParseError("无法读取 XLSX 文件，文件可能已损坏或不是 Excel 工作簿") from exc
    except Exception as exc:  # openpyxl raises many types (xml errors, InvalidFileException)
        logger.info("openpyxl could not open an upload: %r", exc)
        raise ParseError("无法读取 XLSX 文件，文件可能已损坏或不是 Excel 工作簿") from exc


def _sheet_rows(ws: Any) -> Any:
    ws.reset_dimensions()
    blank = 0
    rows = ws.iter_rows(values_only=True, max_col=xlsx_guard.MAX_COLUMNS)
    for number, row in enumerate(rows, start=1):
        if any(c is not None and cell_text(c) for c in row):
            blank = 0
        else:
            blank += 1
            if blank > _BLANK_RUN_END:
                return
        yield number, row


def parse_xlsx(data: bytes, options: Mapping[str, Any]) -> ParseResult:
    """Parse the first sheet with a recognisable header (or ``options["sheet"]``)."""
    mapping = check_mapping(options)
    max_rows = _max_rows(options)
    wb = _open_workbook(data)
    try:
        return _read_workbook(wb, options.get("sheet"), mapping, max_rows)
    except ParseError:
        raise
    except Exception as exc:  # corrupt sheet XML surfaces while iterating
        logger.info("openpyxl failed while reading rows: %r", exc)
        raise ParseError("XLSX 文件内容损坏，无法读取") from exc
    finally:
        wb.close()


def _read_workbook(
    wb: Any, wanted: Any, mapping: Mapping[str, str], max_rows: int
) -> ParseResult:
    sheets = {ws.title: ws for ws in wb.worksheets}  # chart sheets are left out
    names = list(sheets)
    if wanted is not None and wanted not in sheets:
        raise ParseError(f"找不到工作表“{wanted}”（现有：{'、'.join(names)}）")
    for name in [wanted] if wanted is not None else names:
        rows = _sheet_rows(sheets[name])
        head: list[tuple[int, Sequence[Any]]] = []
        for item in rows:
            head.append(item)
            if len(head) >= HEADER_SCAN:
                break
        layout = find_layout(head, mapping)
        if layout is None:
            continue
        layout = require_layout(layout, mapping)
        sheet = name if len(names) > 1 else None
        reader = _Rows("xlsx", layout, sheet, max_rows)
        for number, row in head:
            if number > layout.header_row:
                reader.feed(number, row)
        for number, row in rows:
            reader.feed(number, row)
        return reader.result()
    no_header(mapping)


# ---------------------------------------------------------------- templates


register("xlsx", detect_xlsx, parse_xlsx, priority=30, options=_OPTIONS)
register("csv", detect_csv, parse_csv, priority=90, options=_OPTIONS)


def sniff_headers(data: bytes) -> list[str]:
    """Return the header cells of a CSV/XLSX (the fullest of its first 20 rows).

    Used to offer the file's own column names when the automatic header aliases fail.
    Raises ParseError (Chinese message) when the file cannot be read at all.
    """
    rows: list[list[str]] = []
    try:
        if detect_xlsx(data):
            wb = _open_workbook(data)
            try:
                for number, cells in _sheet_rows(wb.worksheets[0]):
                    rows.append([cell_text(c) for c in cells])
                    if number >= 20:
                        break
            finally:
                wb.close()
        else:
            text = _decode_text(data, None)
            head = "\n".join(text.splitlines()[:20])
            best = max(_DELIMITERS, key=lambda d: max(
                (len(r) for r in _csv_rows(head, d)), default=0))
            rows = _csv_rows(head, best)
    except IndexError:
        raise ParseError("无法读取表头") from None
    best_row = max(rows, key=lambda r: sum(1 for c in r if c.strip()), default=[])
    return [c.strip() for c in best_row if c and c.strip()]
