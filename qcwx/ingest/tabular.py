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
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, NoReturn

from .numbers import (
    fold_text,
    normalize_level,
    parse_datetime,
    parse_excel_serial,
    parse_number,
    parse_value,
)
from .records import IssueLog, ParsedRecord, ParseError, ParseResult, SourceRef, truncate_raw
from .registry import register

__all__ = [
    "FIELDS",
    "TEMPLATE_HEADERS",
    "detect_csv",
    "detect_xlsx",
    "parse_csv",
    "parse_xlsx",
    "template_csv",
    "template_xlsx",
]

logger = logging.getLogger(__name__)

#: Target field → (Chinese label, accepted header spellings, compared after folding).
FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "test_code": ("项目", ("项目", "检验项目", "检测项目", "项目代码", "项目编码", "项目名称",
                          "分析物", "analyte", "test_code", "testcode", "test", "item")),
    "value": ("结果", ("结果", "测定值", "检测值", "结果值", "测定结果", "检测结果", "质控结果",
                      "value", "result")),
    "date": ("检测日期", ("检测日期", "日期", "测定日期", "质控日期", "检验日期", "date",
                         "datetime", "measured_at")),
    "time": ("时间", ("时间", "检测时间", "测定时间", "time")),
    "run_no": ("批次", ("批次", "运行批次", "测定批次", "run", "run_no", "runno")),
    "level": ("水平", ("水平", "质控水平", "浓度水平", "质控品水平", "level")),
    "qc_lot": ("质控批号", ("质控批号", "批号", "质控品批号", "质控物批号", "qc_lot", "lot")),
    "unit": ("单位", ("单位", "unit", "units")),
    "instrument": ("仪器", ("仪器", "检测仪器", "仪器名称", "设备", "instrument", "analyzer")),
    "control_name": ("质控品", ("质控品", "质控品名称", "质控物", "质控物名称", "control",
                               "control_name")),
    "client_id": ("记录编号", ("记录编号", "编号", "记录id", "id", "client_id")),
    "target_mean": ("靶值", ("靶值", "均值", "目标均值", "target_mean", "mean")),
    "target_sd": ("标准差", ("标准差", "目标标准差", "sd", "target_sd")),
    "sample_id": ("样本号", ("样本号", "样本编号", "sample_id")),
}
TEMPLATE_HEADERS = (
    "检测日期", "批次", "项目", "水平", "质控批号", "结果", "单位", "仪器", "记录编号",
)
_TEMPLATE_EXAMPLE = {
    "检测日期": datetime(2026, 11, 5, 8, 30),
    "批次": 1,
    "项目": "GLU",
    "水平": "水平1",
    "质控批号": "45872",
    "结果": 5.62,
    "单位": "mmol/L",
    "仪器": "BS-200E",
    "记录编号": "20261105-GLU-1",
}
_TEXT_COLUMNS = ("质控批号", "记录编号", "项目", "水平")
_DELIMITERS = (",", "\t", ";", "，", "|")
_HEADER_SCAN = 20
_BLANK_RUN_END = 1000
DEFAULT_MAX_ROWS = 100_000
_OPTIONS = frozenset({"columns", "sheet", "encoding", "delimiter", "max_rows"})


def _fold_header(text: Any) -> str:
    folded = fold_text(_cell_text(text)).lower()
    folded = re.sub(r"[(\[【].*?[)\]】]", "", folded)
    return re.sub(r"[\s*:]+", "", folded)




# ---------------------------------------------------------------- cells


def _cell_text(cell: Any) -> str:
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


def _is_number(cell: Any) -> bool:
    return isinstance(cell, (int, float)) and not isinstance(cell, bool)


def _cell_datetime(cell: Any) -> datetime:
    if isinstance(cell, datetime):
        return cell.replace(tzinfo=None)
    if isinstance(cell, date):
        return datetime(cell.year, cell.month, cell.day)
    if _is_number(cell):
        if float(cell).is_integer() and 19000101 <= cell <= 99991231:
            return parse_datetime(str(int(cell)))  # 20261105 typed into a number cell
        return parse_excel_serial(cell)
    text = _cell_text(cell)
    if re.fullmatch(r"\d{5}(?:\.\d+)?", text) and 20000 <= float(text) < 80000:
        return parse_excel_serial(float(text))
    return parse_datetime(text)


_TIME_TEXT = re.compile(r"(\d{1,2})\s*(?:[:]|时|点)\s*(\d{1,2})\s*分?(?:\s*:?\s*(\d{1,2})\s*秒?)?")


def _cell_time(cell: Any) -> time | datetime:
    if isinstance(cell, datetime):
        return cell.replace(tzinfo=None)
    if isinstance(cell, time):
        return cell.replace(tzinfo=None)
    if _is_number(cell) and 0 <= cell < 1:
        moment = parse_excel_serial(1 + cell)
        return moment.time()
    text = fold_text(_cell_text(cell))
    match = _TIME_TEXT.fullmatch(text)
    if match:
        hour, minute, second = (int(g or 0) for g in match.groups())
        try:
            return time(hour, minute, second)
        except ValueError as exc:
            raise ValueError(f"“{text}”不是有效时间") from exc
    return parse_datetime(text)


# ---------------------------------------------------------------- header

_ALIASES = {_fold_header(a): name for name, (_, aliases) in FIELDS.items() for a in aliases}



@dataclass(frozen=True)
class _Layout:
    header_row: int
    columns: dict[str, int]
    labels: dict[str, str]


def _find_layout(
    rows: Sequence[tuple[int, Sequence[Any]]], mapping: Mapping[str, str]
) -> _Layout | None:
    wanted = {_fold_header(src): target for target, src in mapping.items()}
    for number, row in rows:
        columns: dict[str, int] = {}
        labels: dict[str, str] = {}
        for index, cell in enumerate(row):
            key = _fold_header(cell)
            target = wanted.get(key)
            if target is None:
                alias = _ALIASES.get(key)
                target = alias if alias not in mapping else None
            if target and target not in columns:
                columns[target] = index
                labels[target] = _cell_text(cell)
        if "test_code" in columns and "value" in columns:
            return _Layout(number, columns, labels)
    return None


def _check_mapping(options: Mapping[str, Any]) -> dict[str, str]:
    mapping = options.get("columns") or {}
    if not isinstance(mapping, Mapping):
        raise ParseError("选项 columns 必须是“目标字段 → 列名”的映射")
    unknown = [str(k) for k in mapping if k not in FIELDS]
    if unknown:
        raise ParseError(f"未知的目标字段：{'、'.join(unknown)}（可选：{'、'.join(FIELDS)}）")
    if not all(isinstance(v, str) and v.strip() for v in mapping.values()):
        raise ParseError("选项 columns 中的列名必须是非空文字")
    return dict(mapping)


def _no_header(mapping: Mapping[str, str]) -> NoReturn:
    names = "、".join(mapping.values()) if mapping else "“项目”“结果”“检测日期”"
    raise ParseError(f"找不到表头行：前 {_HEADER_SCAN} 行中没有包含 {names} 等列的行")


def _require(layout: _Layout | None, mapping: Mapping[str, str]) -> _Layout:
    if layout is None:
        _no_header(mapping)
    missing_sources = [src for target, src in mapping.items() if target not in layout.columns]
    if missing_sources:
        raise ParseError(f"找不到列：{'、'.join(missing_sources)}")
    if "date" not in layout.columns and "time" not in layout.columns:
        raise ParseError("缺少必需的列：检测日期")
    return layout


# ---------------------------------------------------------------- rows


class _Rows:
    def __init__(self, fmt: str, layout: _Layout, sheet: str | None, max_rows: int) -> None:
        self.fmt, self.layout, self.sheet, self.max_rows = fmt, layout, sheet, max_rows
        self.issues = IssueLog(fmt)
        self.records: list[ParsedRecord] = []
        self.data_rows = 0

    def feed(self, number: int, row: Sequence[Any]) -> None:
        if not any(_cell_text(c) for c in row):
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
        code = _cell_text(cells.get("test_code"))
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
        level = _cell_text(cells.get("level")) or None
        text = {k: _cell_text(cells.get(k)) or None for k in (
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
            raw=truncate_raw("\t".join(_cell_text(c) for c in row)),
            **targets,
            **text,
        )

    def value(self, cell: Any, where: SourceRef) -> tuple[str, float | None]:
        label = self.label("value")
        text = _cell_text(cell)
        if not text:
            self.fail(where, "value", f"缺少{label}")
            return text, None
        if _is_number(cell):
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
        text = _cell_text(cell)
        if not text:
            return None, True
        try:
            return (float(cell) if _is_number(cell) else parse_number(text)), True
        except (ValueError, OverflowError):
            self.fail(where, target, f"{self.label(target)}“{text}”不是有效数字")
            return None, False

    def moment(self, cells: dict[str, Any], where: SourceRef) -> datetime | None:
        day_cell, time_cell = cells.get("date"), cells.get("time")
        day: datetime | None = None
        if _cell_text(day_cell):
            try:
                day = _cell_datetime(day_cell)
            except ValueError:
                text = _cell_text(day_cell)
                self.fail(where, "date", f"{self.label('date')}“{text}”不是有效日期")
                return None
        if _cell_text(time_cell):
            try:
                moment = _cell_time(time_cell)
            except ValueError:
                text = _cell_text(time_cell)
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
    mapping = _check_mapping(options)
    text = _decode_text(data, options.get("encoding"))
    forced = options.get("delimiter")
    if forced is not None and not (isinstance(forced, str) and len(forced) == 1):
        raise ParseError("选项 delimiter 必须是单个字符")
    head = "\n".join(text.splitlines()[:_HEADER_SCAN])
    best: tuple[int, str, _Layout] | None = None
    for delimiter in (forced,) if forced else _DELIMITERS:
        if delimiter not in head:
            continue
        scan = list(enumerate(_csv_rows(head, delimiter), start=1))
        layout = _find_layout(scan, mapping)
        if layout and (best is None or len(layout.columns) > best[0]):
            best = (len(layout.columns), delimiter, layout)
    if best is None:
        _no_header(mapping)
    _, delimiter, layout = best
    layout = _require(layout, mapping)
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
    for number, row in enumerate(ws.iter_rows(values_only=True), start=1):
        if any(c is not None and _cell_text(c) for c in row):
            blank = 0
        else:
            blank += 1
            if blank > _BLANK_RUN_END:
                return
        yield number, row


def parse_xlsx(data: bytes, options: Mapping[str, Any]) -> ParseResult:
    """Parse the first sheet with a recognisable header (or ``options["sheet"]``)."""
    mapping = _check_mapping(options)
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
            if len(head) >= _HEADER_SCAN:
                break
        layout = _find_layout(head, mapping)
        if layout is None:
            continue
        layout = _require(layout, mapping)
        sheet = name if len(names) > 1 else None
        reader = _Rows("xlsx", layout, sheet, max_rows)
        for number, row in head:
            if number > layout.header_row:
                reader.feed(number, row)
        for number, row in rows:
            reader.feed(number, row)
        return reader.result()
    _no_header(mapping)


# ---------------------------------------------------------------- templates


def template_csv() -> bytes:
    """Return a UTF-8 (BOM) CSV template with the Chinese headers and one example row."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TEMPLATE_HEADERS)
    writer.writerow([_cell_text(_TEMPLATE_EXAMPLE[h]) for h in TEMPLATE_HEADERS])
    return out.getvalue().encode("utf-8-sig")


def template_xlsx() -> bytes:
    """Return an XLSX template: sheet “质控数据” (header + example row) and “填写说明”."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "质控数据"
    ws.append(list(TEMPLATE_HEADERS))
    ws.append([_TEMPLATE_EXAMPLE[h] for h in TEMPLATE_HEADERS])
    for index, header in enumerate(TEMPLATE_HEADERS, start=1):
        letter = get_column_letter(index)
        ws[f"{letter}1"].font = Font(bold=True)
        ws.column_dimensions[letter].width = 18 if header in ("检测日期", "记录编号") else 12
        if header in _TEXT_COLUMNS:
            ws[f"{letter}2"].number_format = "@"
    ws["A2"].number_format = "yyyy-mm-dd hh:mm"
    ws.freeze_panes = "A2"
    notes = wb.create_sheet("填写说明")
    for line in (
        ("列名", "说明"),
        ("检测日期", "如 2026-11-05 08:30、2026/11/5、2026年11月5日；时间可省略"),
        ("批次", "当天第几批（运行批次），如 1、2"),
        ("项目", "检验项目代码或名称，与系统中的项目对应"),
        ("水平", "质控水平，如 水平1、水平2、L、H"),
        ("质控批号", "质控品批号（请按文本填写，保留前导 0）"),
        ("结果", "测定值，只填数字"),
        ("单位", "如 mmol/L"),
        ("仪器", "仪器名称或型号"),
        ("记录编号", "可选；同一编号重复上传不会重复记录"),
    ):
        notes.append(list(line))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


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
                    rows.append([_cell_text(c) for c in cells])
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


def header_target(header: str) -> str | None:
    """Return the target field a header's usual spelling maps to (None if unknown)."""
    return _ALIASES.get(_fold_header(header))
