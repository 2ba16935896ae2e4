"""The Excel export: one summary sheet, one sheet per table, numbers kept exactly."""

from __future__ import annotations

import io
import re

import pytest
from openpyxl import load_workbook

from qcwx.reports.document import (
    Column,
    Conclusion,
    Figure,
    Report,
    Section,
    Table,
)
from qcwx.reports.excel import (
    MAX_SHEET_NAME,
    SUMMARY_SHEET,
    TONE_FILLS,
    number_format,
    report_xlsx,
    sheet_names,
)

LONG_TITLE = "二〇二六年十一月 葡萄糖/肌酐 [水平1:水平2] 在控率与 Westgard 规则 汇总表*?"

COLUMNS = (
    Column("项目"),
    Column("均值", decimals=2, unit="mmol/L"),
    Column("CV", decimals=3, unit="%"),
    Column("次数", decimals=0),
    Column("备注"),
    Column("原始值"),  # numbers without configured decimals
)


def make_table(key, title, rows, tones=()):
    return Table(key=key, title=title, columns=COLUMNS, rows=tuple(rows), tones=tuple(tones))


TABLES = (
    make_table("summary", "汇总", [
        ("葡萄糖", 5.123456789, 2.0000000001, 31, "正常", 7),
        ("肌酐", 88.1, None, 0, None, 0.1 + 0.2),
        ("尿素", -0.005, 1e-12, 12345678, "=1+1", 1e20),
        ("总胆固醇 Chol", 1 / 3, 123.456789012345, -4, "含 <b>标签</b> & 引号 \"", None),
    ], tones=("ok", "warn", "bad", "muted")),
    make_table(LONG_TITLE, LONG_TITLE, [("钾", 4.2, 1.5, 3, "", 2)]),
    make_table("summary", "重复的键", [("钠", 140.0, 0.9, 2, "x", 1)]),
    make_table("Summary", "大小写不同的同名键", []),
    make_table("", "没有键的表", [("氯", 101.25, 1.1, 5, "y", 3)]),
)


def make_report(tables=TABLES, **kw):
    args = dict(
        kind="iqc", lab_id=1, title="检验科室内质控报告", period_label="2026年11月",
        description="本报告由系统自动生成", generated_at="2026-12-06T05:09:11+00:00",
        params={"month": "2026-11"}, published_at="2026-12-06T16:30:00Z",
        figures=(Figure("在控率", "98.2 %", "ok", "较上月 +0.4"), Figure("失控次数", "3", "bad")),
        sections=(Section(title="汇总", tables=tables[:2], figures=(Figure("项目数", "12"),),
                          conclusions=(Conclusion("葡萄糖", "合格", "ok", ("CV 1.2 % ≤ 1/3 TEa",
                                                                          "偏倚 0.8 %")),)),
                  Section(title="明细", tables=tables[2:])),
        footnotes=("CV 以 % 表示", "数据截至 2026-11-30"),
    )
    return Report(**(args | kw))


def load(report):
    data = report_xlsx(report)
    assert data[:2] == b"PK"
    return load_workbook(io.BytesIO(data))


def test_every_numeric_cell_is_the_table_value_exactly_with_the_column_decimals():
    report = make_report()
    book = load(report)
    names = sheet_names(report.tables)
    assert book.sheetnames == [SUMMARY_SHEET, *names]
    for table, name in zip(report.tables, names, strict=True):
        sheet = book[name]
        assert [c.value for c in sheet[1]] == [
            f"{c.title} ({c.unit})" if c.unit else c.title for c in table.columns]
        for r, row in enumerate(table.rows, start=2):
            for c, (expected, column) in enumerate(zip(row, table.columns, strict=True), 1):
                cell = sheet.cell(row=r, column=c)
                if expected is None or expected == "":
                    assert cell.value is None  # blank, not "—" or "None"
                elif isinstance(expected, (int, float)):
                    assert cell.data_type == "n"
                    assert type(cell.value) in (int, float)
                    assert float(cell.value) == float(expected)  # never rounded
                    assert cell.number_format == number_format(expected, column.decimals)
                else:
                    assert cell.data_type in ("s", "inlineStr") and cell.value == expected


def test_number_formats_follow_the_column_decimals():
    assert number_format(1.5, 2) == "0.00"
    assert number_format(1.5, 3) == "0.000"
    assert number_format(3, 0) == "0"
    assert number_format(3, None) == "0"
    assert number_format(3.25, None) == "General"
    with pytest.raises(ValueError):
        number_format(1.0, -1)
    sheet = load(make_report())["summary"]
    assert sheet["B2"].number_format == "0.00" and sheet["C2"].number_format == "0.000"
    assert sheet["D2"].number_format == "0" and sheet["F2"].number_format == "0"


def test_text_that_looks_like_a_formula_stays_text():
    sheet = load(make_report())["summary"]
    assert sheet["E4"].value == "=1+1" and sheet["E4"].data_type in ("s", "inlineStr")


def test_sheet_names_are_valid_unique_and_short():
    names = sheet_names(TABLES)
    assert len(names) == len(TABLES)
    assert len({n.casefold() for n in names} | {SUMMARY_SHEET}) == len(names) + 1
    for name in names:
        assert 0 < len(name) <= MAX_SHEET_NAME
        assert not re.search(r"[\[\]:*?/\\]", name)
        assert not name.startswith("'") and not name.endswith("'")
    assert names[0] == "summary" and names[2] == "summary (2)" and names[3] == "Summary (3)"
    assert names[4] == "没有键的表"


def test_duplicate_long_names_stay_within_31_characters():
    tables = [make_table("检" * 40, "t", []) for _ in range(12)]
    names = sheet_names(tables)
    assert len(set(names)) == 12 and all(len(n) <= MAX_SHEET_NAME for n in names)
    assert names[11].endswith(" (12)")


def test_header_row_is_bold_and_frozen_and_rows_carry_their_tone():
    sheet = load(make_report())["summary"]
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.bold for cell in sheet[1])
    for row, tone in zip(range(2, 6), ("ok", "warn", "bad", "muted"), strict=True):
        assert sheet.cell(row=row, column=1).fill.fgColor.rgb.endswith(
            TONE_FILLS[tone].fgColor.rgb[-6:])
    width = sheet.column_dimensions["A"].width
    assert 8 <= width <= 60 and width >= len("总胆固醇 Chol") + 4  # CJK counts double


def test_summary_sheet_shows_title_times_in_shanghai_figures_conclusions_and_notes():
    sheet = load(make_report())[SUMMARY_SHEET]
    text = [[c for c in row if c is not None] for row in sheet.iter_rows(values_only=True)]
    flat = [str(v) for row in text for v in row]
    assert text[0] == ["检验科室内质控报告"]
    assert ["报告期间", "2026年11月"] in text
    assert ["生成时间", "2026-12-06 13:09"] in text
    assert ["发布时间", "2026-12-07 00:30"] in text
    assert ["在控率", "98.2 %", "较上月 +0.4"] in text and ["项目数", "12"] in text
    assert ["葡萄糖", "合格", "CV 1.2 % ≤ 1/3 TEa；偏倚 0.8 %"] in text
    assert "数据截至 2026-11-30" in flat
    assert LONG_TITLE in flat  # the full table title, whatever the sheet is called


def test_a_report_without_tables_is_still_a_valid_workbook():
    report = make_report(sections=(Section(title="空"),), footnotes=(), published_at="")
    book = load(report)
    assert book.sheetnames == [SUMMARY_SHEET]
    flat = [v for row in book[SUMMARY_SHEET].iter_rows(values_only=True) for v in row]
    assert "检验科室内质控报告" in flat and "发布时间" not in flat


def test_frozen_report_round_trip_exports_the_same_cells():
    report = make_report()
    again = Report.from_dict(report.to_dict())
    first, second = load(report), load(again)
    for name in first.sheetnames[1:]:
        assert [[c.value for c in r] for r in first[name].iter_rows()] == [
            [c.value for c in r] for r in second[name].iter_rows()]


def test_non_finite_numbers_and_control_characters_do_not_break_the_file():
    table = make_table("odd", "odd", [("a\x01b", float("nan"), float("inf"), True, "\x0b", 1)])
    sheet = load(make_report(sections=(Section(title="s", tables=(table,)),)))["odd"]
    assert [c.value for c in sheet[2]] == ["ab", None, None, "是", None, 1]
