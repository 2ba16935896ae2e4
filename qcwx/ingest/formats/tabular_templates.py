"""The CSV and XLSX templates users download: Chinese headers and one example row."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from .tabular_cells import cell_text

__all__ = ["TEMPLATE_HEADERS", "template_csv", "template_xlsx"]

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


def template_csv() -> bytes:
    """Return a UTF-8 (BOM) CSV template with the Chinese headers and one example row."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TEMPLATE_HEADERS)
    writer.writerow([cell_text(_TEMPLATE_EXAMPLE[h]) for h in TEMPLATE_HEADERS])
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
        ("仪器", "仪器序列号、名称或型号；同一项目在多台仪器上做质控时必填，用于区分检测系统"),
        ("记录编号", "可选；同一编号重复上传不会重复记录"),
    ):
        notes.append(list(line))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
