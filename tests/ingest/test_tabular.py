"""CSV and XLSX uploads typed by lab staff, and the downloadable templates."""

import io
import zipfile
from datetime import date, datetime, time

import openpyxl
import pytest

from qcwx.ingest import ParseError, parse_bytes, template_csv, template_xlsx

HEADER = "检测日期,批次,项目,水平,质控批号,结果,单位,仪器,记录编号"
ROWS = [
    "2026-11-05 08:30,1,GLU,水平1,45872,5.62,mmol/L,BS-200E,a1",
    "2026-11-05 08:31,1,GLU,水平2,45873,15.1,mmol/L,BS-200E,a2",
]


def csv_bytes(*lines: str, encoding: str = "utf-8", sep: str = ",") -> bytes:
    return "\r\n".join(line.replace(",", sep) for line in lines).encode(encoding)


def xlsx_bytes(rows, sheet="Sheet1", extra_sheets=()) -> bytes:
    wb = openpyxl.Workbook()
    for name in extra_sheets:
        wb.create_sheet(name)
    ws = wb.active
    ws.title = sheet
    for row in rows:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


# ------------------------------------------------------------------ CSV


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "gbk", "gb18030", "utf-16"])
def test_csv_with_chinese_headers_in_every_usual_encoding(encoding):
    result = parse_bytes(csv_bytes(HEADER, *ROWS, encoding=encoding))
    assert result.format == "csv"
    assert result.errors == ()
    first, second = result.records
    assert (first.test_code, first.value, first.value_text) == ("GLU", 5.62, "5.62")
    assert (first.level, first.level_norm, first.qc_lot) == ("水平1", "1", "45872")
    assert (first.unit, first.instrument, first.client_id, first.run_no) == (
        "mmol/L", "BS-200E", "a1", "1",
    )
    assert first.measured_at == datetime(2026, 11, 5, 8, 30)
    assert first.is_qc and second.is_qc
    assert (first.source.row, second.source.row) == (2, 3)


@pytest.mark.parametrize("sep", [",", "\t", ";", "，"])
def test_csv_delimiter_is_sniffed(sep):
    result = parse_bytes(csv_bytes(HEADER, *ROWS, sep=sep))
    assert [r.value for r in result.records] == [5.62, 15.1]


def test_full_width_digits_quoted_thousands_and_spaces():
    data = csv_bytes(
        "项目,水平,日期,结果",
        "GLU,1,2026-11-05,１２．３",
        'TG,1,2026-11-05,"1,234.5"',
        "ALT,1,2026-11-05, 45 ",
        "CRE,1,2026-11-05,－１．５",
    )
    assert [r.value for r in parse_bytes(data).records] == [12.3, 1234.5, 45.0, -1.5]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-05", datetime(2026, 11, 5)),
        ("2026/11/5", datetime(2026, 11, 5)),
        ("2026.11.05", datetime(2026, 11, 5)),
        ("2026年11月5日", datetime(2026, 11, 5)),
        ("20261105", datetime(2026, 11, 5)),
        ("2026-11-05 08:30", datetime(2026, 11, 5, 8, 30)),
        ("2026/11/5 8:30", datetime(2026, 11, 5, 8, 30)),
        ("2026年11月5日 08:30", datetime(2026, 11, 5, 8, 30)),
        ("46331", datetime(2026, 11, 5)),
    ],
)
def test_each_date_format_in_csv(text, expected):
    data = csv_bytes("项目,结果,检测日期", f"GLU,5.1,{text}")
    [record] = parse_bytes(data).records
    assert record.measured_at == expected


def test_separate_time_column_is_combined_with_the_date():
    data = csv_bytes("日期,时间,项目,结果", "2026/11/5,08:30,GLU,5.1", "2026/11/5,9时05分,GLU,5.2")
    times = [r.measured_at for r in parse_bytes(data).records]
    assert times == [datetime(2026, 11, 5, 8, 30), datetime(2026, 11, 5, 9, 5)]


def test_english_headers_and_title_rows_above_the_header():
    data = csv_bytes(
        "某某医院 2026年11月 室内质控数据",
        "",
        "Date,Run,Analyte,Level,Lot,Value,Unit,Instrument,ID",
        "2026-11-05,2,GLU,L,45872,5.62,mmol/L,BS-200E,x9",
    )
    [record] = parse_bytes(data).records
    assert (record.test_code, record.run_no, record.client_id, record.source.row) == (
        "GLU", "2", "x9", 4,
    )


def test_column_mapping_option_overrides_the_aliases():
    data = csv_bytes("检测日期,项目,原始值,结果", "2026-11-05,GLU,5.00,ok")
    result = parse_bytes(data, options={"columns": {"value": "原始值"}})
    assert [r.value for r in result.records] == [5.0]


def test_bad_rows_give_chinese_errors_with_excel_row_numbers():
    data = csv_bytes(
        "检测日期,项目,测定值",
        "2026-11-05,GLU,5.1",
        "2026-11-05,GLU,abc",
        "2026-13-05,GLU,5.2",
        "2026-11-05,,5.3",
        "2026-11-05,GLU,<0.1",
        ",GLU,",
    )
    result = parse_bytes(data)
    assert len(result.records) == 1
    messages = [e.message_zh for e in result.errors]
    assert messages == [
        "第 3 行：测定值“abc”不是有效数字",
        "第 4 行：检测日期“2026-13-05”不是有效日期",
        "第 5 行：缺少项目",
        "第 6 行：测定值“<0.1”是截断值，不能用于质控统计",
        "第 7 行：缺少测定值",
        "第 7 行：缺少检测日期",
    ]
    assert [e.position.row for e in result.errors] == [3, 4, 5, 6, 7, 7]


def test_blank_rows_are_skipped_but_still_counted():
    data = csv_bytes("项目,结果,日期", "", "GLU,5.1,2026-11-05", ",,", "GLU,x,2026-11-05")
    result = parse_bytes(data)
    assert [r.source.row for r in result.records] == [3]
    assert result.errors[0].message_zh.startswith("第 5 行")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (csv_bytes("a,b,c", "1,2,3"), "找不到表头行"),
        (csv_bytes("项目,结果", "GLU,5.1"), "缺少必需的列：检测日期"),
    ],
)
def test_files_without_the_required_columns_raise(data, message):
    with pytest.raises(ParseError, match=message):
        parse_bytes(data)


def test_mapping_to_an_unknown_field_or_missing_column_raises():
    data = csv_bytes(HEADER, *ROWS)
    with pytest.raises(ParseError, match="未知的目标字段"):
        parse_bytes(data, options={"columns": {"colour": "结果"}})
    with pytest.raises(ParseError, match="找不到"):
        parse_bytes(data, options={"columns": {"value": "不存在的列"}})


def test_max_rows_limit():
    data = csv_bytes(HEADER, *ROWS)
    with pytest.raises(ParseError, match="上限"):
        parse_bytes(data, options={"max_rows": 1})


def test_header_only_file_reports_no_data():
    result = parse_bytes(csv_bytes(HEADER))
    assert result.records == () and "没有数据行" in result.errors[0].message_zh


# ------------------------------------------------------------------ XLSX


def test_xlsx_with_date_cells_numbers_and_serials():
    rows = [
        ["检测日期", "时间", "项目", "水平", "质控批号", "结果", "单位"],
        [datetime(2026, 11, 5, 8, 30), None, "GLU", "水平1", "45872", 5.62, "mmol/L"],
        [date(2026, 11, 6), time(9, 15), "GLU", "水平1", 45872, 5, "mmol/L"],
        [46331, None, "GLU", "水平2", "45873", "１５．１", "mmol/L"],
        ["2026年11月7日", "10:00", "GLU", "水平2", "45873", "bad", "mmol/L"],
        [20261108, 0.375, "GLU", "水平2", "45873", 14.9, "mmol/L"],
    ]
    result = parse_bytes(xlsx_bytes(rows))
    assert result.format == "xlsx"
    first, second, third, fourth = result.records
    assert first.measured_at == datetime(2026, 11, 5, 8, 30)
    assert (first.value, first.value_text) == (5.62, "5.62")
    assert second.measured_at == datetime(2026, 11, 6, 9, 15)
    assert (second.value_text, second.qc_lot) == ("5", "45872")
    assert third.measured_at == datetime(2026, 11, 5)
    assert third.value == 15.1
    assert fourth.measured_at == datetime(2026, 11, 8, 9, 0)
    [issue] = result.errors
    assert issue.message_zh == "第 5 行：结果“bad”不是有效数字"


def test_xlsx_picks_the_sheet_with_a_header_and_names_it_in_errors():
    wb = openpyxl.Workbook()
    wb.active.title = "说明"
    wb.active.append(["这里是说明"])
    ws = wb.create_sheet("数据")
    ws.append(["项目", "结果", "日期"])
    ws.append(["GLU", "x", "2026-11-05"])
    ws.append(["GLU", 5.1, "2026-11-05"])
    out = io.BytesIO()
    wb.save(out)
    result = parse_bytes(out.getvalue())
    assert [r.value for r in result.records] == [5.1]
    assert result.errors[0].message_zh == "工作表“数据” 第 2 行：结果“x”不是有效数字"
    with pytest.raises(ParseError, match="找不到工作表"):
        parse_bytes(out.getvalue(), options={"sheet": "nope"})


def test_xlsx_rows_start_where_excel_shows_them():
    rows = [[], [], ["项目", "结果", "日期"], ["GLU", 5.1, date(2026, 11, 5)]]
    [record] = parse_bytes(xlsx_bytes(rows)).records
    assert record.source.row == 4


def test_old_xls_and_broken_zip_raise_parse_error():
    with pytest.raises(ParseError, match="xls"):
        parse_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    with pytest.raises(ParseError, match="XLSX"):
        parse_bytes(b"PK\x03\x04 not really a zip")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("hello.txt", "not a workbook")
    with pytest.raises(ParseError, match="XLSX"):
        parse_bytes(buf.getvalue())


# ------------------------------------------------------------------ templates


def _example(record):
    return (
        record.measured_at, record.run_no, record.test_code, record.level, record.qc_lot,
        record.value, record.unit, record.instrument, record.client_id,
    )


EXAMPLE = (
    datetime(2026, 11, 5, 8, 30), "1", "GLU", "水平1", "45872", 5.62, "mmol/L", "BS-200E",
    "20261105-GLU-1",
)


def test_csv_template_round_trip():
    data = template_csv()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.decode("utf-8-sig").splitlines()[0] == (
        "检测日期,批次,项目,水平,质控批号,结果,单位,仪器,记录编号"
    )
    result = parse_bytes(data)
    assert result.format == "csv" and result.errors == ()
    assert [_example(r) for r in result.records] == [EXAMPLE]


def test_xlsx_template_round_trip():
    data = template_xlsx()
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert [c.value for c in wb["质控数据"][1]] == [
        "检测日期", "批次", "项目", "水平", "质控批号", "结果", "单位", "仪器", "记录编号",
    ]
    assert isinstance(wb["质控数据"]["A2"].value, datetime)
    result = parse_bytes(data)
    assert result.format == "xlsx" and result.errors == ()
    assert [_example(r) for r in result.records] == [EXAMPLE]
