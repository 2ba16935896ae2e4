"""Read an uploaded file of paired patient results (CSV or XLSX) into ``[x, y, sample]``.

Why a reader of its own: the ingest parsers turn files into QC records (analyte, level,
lot, time); a comparison file is simply two result columns. The byte-level work is the
ingest machinery's — encoding detection (UTF-8 / GB18030 / UTF-16), the delimiter, opening
workbooks safely, blank-row handling and cell text — taken from
:mod:`qcwx.ingest.formats.tabular`; numbers are read by :func:`qcwx.numbers.parse_number`
(full-width digits, thousands separators). Layout: a header row, then either
``样本号, X, Y`` (first column not numeric) or ``X, Y``; the X and Y headers name the
instruments. Any unreadable row is refused with its row number, never skipped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qcwx.errors import UserError
from qcwx.ingest.formats import tabular
from qcwx.ingest.formats.tabular_cells import cell_text
from qcwx.numbers import parse_number

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 2000
_ID_HEADER = re.compile(r"样本|标本|编号|条码|序号|sample|id|no", re.IGNORECASE)


@dataclass(frozen=True)
class PairFile:
    """The pairs of a file and the names its header gives the two instruments."""

    x_label: str
    y_label: str
    pairs: list[list]


def _rows(data: bytes) -> list[list[str]]:
    try:
        if tabular.detect_xlsx(data):
            wb = tabular._open_workbook(data)  # noqa: SLF001  (the ingest's safe opener)
            try:
                ws = wb.worksheets[0]
                return [[cell_text(c) for c in row] for _, row in tabular._sheet_rows(ws)]  # noqa: SLF001
            finally:
                wb.close()
        if tabular._looks_binary(data):  # noqa: SLF001
            raise UserError("文件不是 CSV 或 XLSX 格式", field="file")
        text = tabular._decode_text(data, None)  # noqa: SLF001
        delimiter = max(",\t;", key=lambda d: text.split("\n", 1)[0].count(d))
        return tabular._csv_rows(text, delimiter)  # noqa: SLF001
    except tabular.ParseError as exc:
        raise UserError(exc.message_zh or "无法读取文件", field="file") from None


def _number(text: str, row: int, what: str) -> float:
    try:
        return parse_number(text)
    except ValueError:
        raise UserError(f"第 {row} 行{what}“{text[:20]}”不是有效数字", field="file") from None


def read_pairs(data: bytes) -> PairFile:
    """Return the pairs of an uploaded file (400 naming the row for anything unreadable)."""
    if not data:
        raise UserError("请选择要上传的文件", field="file")
    if len(data) > MAX_BYTES:
        raise UserError("文件不能超过 2 MB", field="file")
    rows = [(i, [c.strip() for c in r]) for i, r in enumerate(_rows(data), start=1)
            if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise UserError("文件需要一行表头和至少一行数据", field="file")
    (_, header), body = rows[0], rows[1:]
    if len(body) > MAX_ROWS:
        raise UserError(f"最多 {MAX_ROWS} 行数据", field="file")
    with_id = _has_sample_column(header, body)
    offset = 1 if with_id else 0
    if len(header) < offset + 2:
        raise UserError("文件需要两列结果（X 参比仪器、Y 比较仪器）", field="file")
    pairs = []
    for number, row in body:
        cells = row + [""] * (offset + 2 - len(row))
        x = _number(cells[offset], number, "X 结果")
        y = _number(cells[offset + 1], number, "Y 结果")
        pairs.append([x, y, cells[0] if with_id else str(number - 1)])
    x_label = header[offset] or "X"
    y_label = header[offset + 1] or "Y"
    return PairFile(x_label[:120], y_label[:120], pairs)


def _has_sample_column(header: list[str], body) -> bool:
    """Say whether the first column holds sample ids: named so, or any cell not a number."""
    if len(header) >= 3 and _ID_HEADER.search(header[0] or ""):
        return True
    for _, row in body:
        try:
            parse_number(row[0])
        except (ValueError, IndexError):
            return True
    return False
