"""Number, date and level normalisation."""

from datetime import datetime

import pytest

from qcwx.numbers import (
    normalize_level,
    parse_compact_datetime,
    parse_datetime,
    parse_excel_serial,
    parse_number,
    parse_range,
    parse_value,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.3", 12.3),
        (" 12.3 ", 12.3),
        ("１２．３", 12.3),
        ("－１．５", -1.5),
        ("\u22121.5", -1.5),
        ("+4", 4.0),
        ("1,234.5", 1234.5),
        ("1,234,567", 1234567.0),
        ("1 234", 1234.0),
        ("\u30001.0\u3000", 1.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e-3", 0.001),
        ("0", 0.0),
    ],
)
def test_parse_number_accepts_what_people_type(text, expected):
    assert parse_number(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", " ", "abc", "nan", "NaN", "inf", "-Infinity", "1e999", "1,2", "12,34.5",
             "1.2.3", "--1", "1-", "0x10", "5 mmol/L", "<1.2"]
)
def test_parse_number_rejects_non_numbers(text):
    with pytest.raises(ValueError, match="数"):
        parse_number(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("< 1.20", (None, "<")),
        ("<=0.5", (None, "<")),
        ("≤0.5", (None, "<")),
        ("> 500", (None, ">")),
        ("＞500", (None, ">")),
        ("8.30", (8.3, None)),
        ("-----", (None, None)),
        ("NEGATIVE", (None, None)),
        ("<abc", (None, None)),
    ],
)
def test_parse_value_flags_censored_results(text, expected):
    assert parse_value(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-05", datetime(2026, 11, 5)),
        ("2026/11/5", datetime(2026, 11, 5)),
        ("2026.11.05", datetime(2026, 11, 5)),
        ("2026年11月5日", datetime(2026, 11, 5)),
        ("2026年11月5号", datetime(2026, 11, 5)),
        ("20261105", datetime(2026, 11, 5)),
        ("２０２６－１１－０５", datetime(2026, 11, 5)),
        ("2026-11-05 08:30", datetime(2026, 11, 5, 8, 30)),
        ("2026/11/5 8:30:15", datetime(2026, 11, 5, 8, 30, 15)),
        ("2026.11.05 08:30", datetime(2026, 11, 5, 8, 30)),
        ("2026年11月5日 08:30", datetime(2026, 11, 5, 8, 30)),
        ("2026年11月5日8时30分", datetime(2026, 11, 5, 8, 30)),
        ("2026-11-05T08:30:00", datetime(2026, 11, 5, 8, 30)),
        ("2026-11-05 08：30", datetime(2026, 11, 5, 8, 30)),
        ("20261105083000", datetime(2026, 11, 5, 8, 30)),
    ],
)
def test_parse_datetime_reads_chinese_lab_formats(text, expected):
    assert parse_datetime(text) == expected


@pytest.mark.parametrize(
    "text", ["", "2026-13-01", "2026-02-30", "11/05/2026", "26-11-05", "2026-11-05 25:00",
             "2026-11-05 junk", "20261305", "yesterday", "2026-11/05"]
)
def test_parse_datetime_rejects_invalid_dates(text):
    with pytest.raises(ValueError):
        parse_datetime(text)


def test_compact_timestamps_drop_the_offset_and_keep_fractions():
    assert parse_compact_datetime("20070720120143") == datetime(2007, 7, 20, 12, 1, 43)
    assert parse_compact_datetime("202611050830+0800") == datetime(2026, 11, 5, 8, 30)
    assert parse_compact_datetime("20261105083001.25") == datetime(2026, 11, 5, 8, 30, 1, 250000)
    assert parse_compact_datetime("") is None
    with pytest.raises(ValueError):
        parse_compact_datetime("2007-07-20")


def test_excel_serial_dates():
    assert parse_excel_serial(46331) == datetime(2026, 11, 5)
    assert parse_excel_serial(46331.354166666664) == datetime(2026, 11, 5, 8, 30)
    for bad in (0, -1, float("nan"), 3e6):
        with pytest.raises(ValueError):
            parse_excel_serial(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7.30 - 9.30", (7.3, 9.3)), ("0.35 TO 4.94", (0.35, 4.94)), ("1~2", (1.0, 2.0)),
     ("-1.0 - 2", (-1.0, 2.0)), ("-", None), ("", None), ("9 - 1", None), ("<5", None)],
)
def test_parse_range(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("MEDIUM", "M"), ("H", "H"), ("low", "L"), ("低", "L"), ("高值", "H"), ("N", "M"),
     ("1", "1"), ("水平1", "1"), ("水平 2", "2"), ("Level 3", "3"), ("L1", "1"), ("QC2", "2"),
     ("水平二", "2"), ("１", "1"), ("odd one", "ODD ONE"), ("", None), (None, None)],
)
def test_normalize_level(raw, expected):
    assert normalize_level(raw) == expected
