"""An XLSX decompression bomb is refused before openpyxl inflates it; rows stay bounded."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import openpyxl
import pytest

from qcwx.ingest import ParseError, parse_bytes
from qcwx.ingest.formats import xlsx_guard

_CT = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
       'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.'
       'openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="'
       'application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.'
       'openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/'
       'worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
       'spreadsheetml.worksheet+xml"/></Types>')
_RELS = ('<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
         'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
         'schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="'
         'xl/workbook.xml"/></Relationships>')
_WB = ('<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org'
       '/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
       'relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WB_RELS = ('<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http:'
            '//schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="'
            'worksheets/sheet1.xml"/></Relationships>')


def _workbook(sheet_xml_chunks, extra: dict[str, bytes] | None = None) -> bytes:
    """Build an XLSX by hand, streaming the sheet XML into the zip (as an attacker would)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", _CT)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", _WB)
        z.writestr("xl/_rels/workbook.xml.rels", _WB_RELS)
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            for chunk in sheet_xml_chunks:
                sheet.write(chunk)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def _rows(n: int):
    yield (b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.'
           b'openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
           b'<row r="1"><c r="A1" t="inlineStr"><is><t>test_code</t></is></c>'
           b'<c r="B1" t="inlineStr"><is><t>value</t></is></c></row>')
    row = (b'<row><c t="inlineStr"><is><t>GLU</t></is></c><c><v>5.1</v></c></row>')
    block = row * 10_000
    for _ in range(n // 10_000):
        yield block
    yield b"</sheetData></worksheet>"


def test_a_bomb_is_refused_before_parsing_and_memory_stays_small():
    bomb = _workbook(_rows(2_000_000))  # ~140 MB of XML
    assert len(bomb) < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ParseError, match="解压后过大"):
            parse_bytes(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak


def test_a_huge_shared_strings_table_is_refused():
    strings = (b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
               + b"<si><t>" + b"A" * (17 * 1024 * 1024) + b"</t></si></sst>")
    data = _workbook(_rows(0), {"xl/sharedStrings.xml": strings})
    with pytest.raises(ParseError, match="解压后过大"):
        xlsx_guard.check_container(data)


def test_rows_padded_to_the_last_excel_column_are_cut_to_max_columns():
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["检测日期", "项目", "水平", "结果"])
    ws.append(["2026-11-30", "GLU", "水平1", 5.1])
    ws.cell(row=2, column=16384, value="x")  # XFD2
    buf = io.BytesIO()
    wb.save(buf)
    result = parse_bytes(buf.getvalue())
    assert len(result.records) == 1 and result.records[0].value == pytest.approx(5.1)


def test_an_ordinary_workbook_passes_the_guard():
    wb = openpyxl.Workbook()
    wb.active.append(["test_code", "value"])
    buf = io.BytesIO()
    wb.save(buf)
    xlsx_guard.check_container(buf.getvalue())
