"""The CSV file of the test-system import: its columns, parsing and the per-row checks.

Nothing here touches the database: :func:`parse_test_system_csv` reads the bytes into
:class:`ImportRow` objects and :func:`check_row` types and checks one row's own cells.
``qcwx.catalog.services.import_test_systems`` then matches and creates the catalogue rows.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from qcwx.catalog.validation import LEVEL_INDEX_MAX
from qcwx.errors import UserError
from qcwx.numbers import ascii_int, fold_text, parse_datetime
from qcwx.orgs.models import HOSPITAL_LEVELS

__all__ = [
    "IMPORT_COLUMNS",
    "MAX_IMPORT_BYTES",
    "ImportColumn",
    "ImportReport",
    "ImportRow",
    "RowData",
    "RowError",
    "check_row",
    "parse_test_system_csv",
    "template_csv",
]

MAX_IMPORT_BYTES = 2 * 1024 * 1024
MAX_IMPORT_ROWS = 5000
MAX_LEVELS = LEVEL_INDEX_MAX  # a QC lot has one to three levels


@dataclass(frozen=True)
class ImportColumn:
    """One column of the import file: its Chinese header, row key, length limit, required."""

    header: str
    key: str
    max_len: int
    required: bool = False


IMPORT_COLUMNS: tuple[ImportColumn, ...] = (
    ImportColumn("医院编码", "hospital_code", 32),
    ImportColumn("医院名称", "hospital_name", 100, True),
    ImportColumn("医院等级", "hospital_level", 8),
    ImportColumn("实验室编码", "lab_code", 32),
    ImportColumn("实验室名称", "lab_name", 100, True),
    ImportColumn("项目代码", "analyte_code", 32, True),
    ImportColumn("仪器厂家", "instrument_maker", 64, True),
    ImportColumn("仪器型号", "instrument_model", 64, True),
    ImportColumn("仪器序列号", "instrument_serial", 64),
    ImportColumn("试剂厂家", "reagent_maker", 64),
    ImportColumn("试剂名称", "reagent_name", 100),
    ImportColumn("方法学", "method", 64),
    ImportColumn("校准品厂家", "calibrator_maker", 64),
    ImportColumn("校准品名称", "calibrator_name", 100),
    ImportColumn("单位", "unit", 32),
    ImportColumn("温度", "temperature", 16),
    ImportColumn("质控品厂家", "material_maker", 64, True),
    ImportColumn("质控品名称", "material_name", 100, True),
    ImportColumn("质控批号", "lot_number", 64, True),
    ImportColumn("有效期", "expiry", 32),
    ImportColumn("水平数", "level_count", 8),
    ImportColumn("水平名称", "level_names", 200),
)
_BY_HEADER = {c.header: c for c in IMPORT_COLUMNS}
LEVEL_HEADERS = ("水平数", "水平名称")

OUTCOME_LABELS = {
    "created": "新建",
    "updated": "已存在，更新水平",
    "exists": "已存在，不重复创建",
}


class RowError(ValueError):
    """A row cannot be imported; the message is Chinese and shown beside the row."""


@dataclass
class ImportRow:
    """One data row: its number as the user sees it (header = row 1), values and verdict."""

    line: int
    values: dict[str, str]
    errors: list[str] = field(default_factory=list)
    outcome: str | None = None

    @property
    def ok(self) -> bool:
        """Return whether the row was (or in a preview would be) imported."""
        return not self.errors and self.outcome is not None

    @property
    def outcome_label(self) -> str:
        """Return the verdict in Chinese."""
        if self.errors:
            return "有错误，跳过"
        return OUTCOME_LABELS.get(self.outcome or "", "—")

    def get(self, key: str) -> str:
        """Return the cell for ``key`` ('' when the column is absent)."""
        return self.values.get(key, "")


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do), row by row."""

    rows: list[ImportRow]
    dry_run: bool
    created: Counter = field(default_factory=Counter)

    @property
    def valid_rows(self) -> list[ImportRow]:
        """Return the rows that import."""
        return [r for r in self.rows if r.ok]

    @property
    def error_rows(self) -> list[ImportRow]:
        """Return the rows that are skipped, each with its reasons."""
        return [r for r in self.rows if r.errors]

    def count(self, outcome: str) -> int:
        """Return how many rows ended with ``outcome`` (created / updated / exists)."""
        return sum(1 for r in self.rows if r.ok and r.outcome == outcome)


# ---------------------------------------------------------------------------- the CSV file


def template_csv() -> bytes:
    """Return the import template: the Chinese header row, UTF-8 with BOM (opens in Excel)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([c.header for c in IMPORT_COLUMNS])
    return buf.getvalue().encode("utf-8-sig")


def _decode(data: bytes) -> str:
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise UserError("这是 Excel 文件，请在 Excel 中“另存为 CSV（逗号分隔）”后再上传",
                        field="file")
    if b"\x00" in data:
        raise UserError("文件不是 CSV 文本文件，请保存为 UTF-8 或 GBK 编码的 CSV 后再上传",
                        field="file")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UserError("无法识别文件编码，请保存为 UTF-8 或 GBK 编码的 CSV", field="file")


def _clean_header(cell: str) -> str:
    text = cell.replace("\ufeff", "").strip().rstrip("*＊").strip()
    for bracket in ("（", "("):  # "有效期（YYYY-MM-DD）" → "有效期"
        text = text.split(bracket, 1)[0].strip()
    return text


def _read_header(first: list[str]) -> list[str]:
    header = [_clean_header(c) for c in first]
    known = [h for h in header if h in _BY_HEADER]
    dupes = sorted({h for h in known if known.count(h) > 1})
    if dupes:
        raise UserError(f"表头重复：{'、'.join(dupes)}", field="file")
    missing = [c.header for c in IMPORT_COLUMNS if c.required and c.header not in header]
    if not any(h in header for h in LEVEL_HEADERS):
        missing.append("水平数 或 水平名称")
    if missing:
        raise UserError(f"表头不正确，缺少：{'、'.join(missing)}。请下载模板，按模板的表头填写",
                        field="file")
    return header


def parse_test_system_csv(data: bytes) -> list[ImportRow]:
    """Read the import file into rows; raise ``UserError`` (Chinese) for a file that is unusable.

    UTF-8 (with or without BOM) and GBK/GB18030 are accepted, comma- or tab-separated. Blank
    lines are skipped; row numbers are those Excel shows (the header is row 1).
    """
    if not data or not data.strip():
        raise UserError("文件为空", field="file")
    if len(data) > MAX_IMPORT_BYTES:
        raise UserError(f"文件过大（上限 {MAX_IMPORT_BYTES // 1024 // 1024} MB），请分批导入",
                        field="file")
    text = _decode(data)
    first_line = text.lstrip("\ufeff").split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise UserError(f"CSV 格式错误：{exc}", field="file") from None
    numbered = [(i, r) for i, r in enumerate(records, start=1) if any(c.strip() for c in r)]
    if not numbered:
        raise UserError("文件为空", field="file")
    header = _read_header(numbered[0][1])
    body = numbered[1:]
    if not body:
        raise UserError("文件中没有数据行", field="file")
    if len(body) > MAX_IMPORT_ROWS:
        raise UserError(f"一次最多导入 {MAX_IMPORT_ROWS} 行，请分批导入", field="file")
    return [_make_row(line, header, cells) for line, cells in body]


def _make_row(line: int, header: list[str], cells: list[str]) -> ImportRow:
    values: dict[str, str] = {}
    for name, cell in zip(header, cells, strict=False):
        column = _BY_HEADER.get(name)
        if column is not None:
            values[column.key] = cell.strip()
    row = ImportRow(line=line, values=values)
    if any(c.strip() for c in cells[len(header):]):
        row.errors.append("本行的列数多于表头")
    return row


# ---------------------------------------------------------------------------- row checks


@dataclass(frozen=True)
class RowData:
    """The checked, typed content of one row."""

    hospital_level: str | None
    expiry: date | None
    level_names: tuple[str, ...]
    explicit_level_names: bool


def check_row(row: ImportRow) -> RowData | None:
    """Check one row without the database; append Chinese errors and return None when bad."""
    for column in IMPORT_COLUMNS:
        value = row.get(column.key)
        if column.required and not value:
            row.errors.append(f"“{column.header}”不能为空")
        elif len(value) > column.max_len:
            row.errors.append(f"“{column.header}”超过 {column.max_len} 个字符")
    for maker, name, label in (("reagent_maker", "reagent_name", "试剂"),
                               ("calibrator_maker", "calibrator_name", "校准品")):
        if bool(row.get(maker)) != bool(row.get(name)):
            row.errors.append(f"{label}厂家和{label}名称须同时填写（或同时留空）")
    level = _hospital_level(row)
    expiry = _expiry(row)
    names, explicit = _level_names(row)
    if row.errors:
        return None
    return RowData(level, expiry, names, explicit)


def _hospital_level(row: ImportRow) -> str | None:
    raw = fold_text(row.get("hospital_level")).strip()
    if not raw:
        return None
    for level in HOSPITAL_LEVELS:
        if raw.startswith(level) or raw.startswith(level[0] + "甲") or raw == level[0]:
            return level
    row.errors.append(f"医院等级“{raw}”无效，应为 一级、二级 或 三级")
    return None


def _expiry(row: ImportRow) -> date | None:
    raw = row.get("expiry")
    if not raw:
        return None
    try:
        return parse_datetime(raw).date()
    except ValueError as exc:
        row.errors.append(f"有效期：{exc}")
        return None


def _level_names(row: ImportRow) -> tuple[tuple[str, ...], bool]:
    raw_names = fold_text(row.get("level_names")).replace("、", "/").strip()
    raw_count = fold_text(row.get("level_count")).strip()
    names: tuple[str, ...] = ()
    if raw_names:
        names = tuple(n.strip() for n in raw_names.split("/"))
        if any(not n or len(n) > 32 for n in names) or len(set(names)) != len(names):
            row.errors.append("水平名称应以“/”分隔，不能为空或重复，每个不超过 32 个字符")
            return (), True
    count = None
    if raw_count:
        if ascii_int(raw_count, 1, MAX_LEVELS) is None:
            row.errors.append(f"水平数应为 1～{MAX_LEVELS} 的整数")
            return (), bool(names)
        count = int(raw_count)
    if not names and count is None:
        row.errors.append("“水平数”或“水平名称”须填写其一")
        return (), False
    if names and count is not None and count != len(names):
        row.errors.append(f"水平数 {count} 与水平名称的个数 {len(names)} 不一致")
    if len(names) > MAX_LEVELS:
        row.errors.append(f"水平最多 {MAX_LEVELS} 个")
    if names:
        return names, True
    return tuple(f"水平{i}" for i in range(1, (count or 0) + 1)), False
