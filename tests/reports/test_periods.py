"""Report periods: kept as chosen (so 本月 stays live), resolved on the day a link opens."""

from __future__ import annotations

from datetime import date

import pytest

from qcwx.errors import UserError
from qcwx.reports.periods import parse_spec, resolve

TODAY = date(2026, 12, 6)


def test_this_month_follows_the_day_the_link_is_opened():
    spec = parse_spec({})
    assert spec == {"kind": "this_month"}
    assert (resolve(spec, TODAY).start, resolve(spec, TODAY).end) == (date(2026, 12, 1), TODAY)
    later = date(2027, 1, 3)
    assert (resolve(spec, later).start, resolve(spec, later).end) == (date(2027, 1, 1), later)


def test_last_month_covers_the_whole_calendar_month():
    p = resolve(parse_spec({"period": "last_month"}), date(2026, 3, 1))
    assert (p.start, p.end, p.month, p.label) == (date(2026, 2, 1), date(2026, 2, 28),
                                                  "2026-02", "2026年2月")


def test_last_n_days_and_a_range():
    p = resolve(parse_spec({"period": "days", "days": "30"}), TODAY)
    assert (p.start, p.end, p.days) == (date(2026, 11, 7), TODAY, 30)
    p = resolve(parse_spec({"period": "range", "start": "2026-10-01", "end": "2026-12-31"}),
                TODAY)
    assert (p.start, p.end) == (date(2026, 10, 1), TODAY)  # never beyond today


@pytest.mark.parametrize("args, field", [
    ({"period": "fortnight"}, "period"),
    ({"period": "days", "days": "0"}, "days"),
    ({"period": "days", "days": "367"}, "days"),
    ({"period": "days", "days": "３0"}, "days"),
    ({"period": "days", "days": "²"}, "days"),
    ({"period": "range", "start": "2026-02-30", "end": "2026-03-01"}, "start"),
    ({"period": "range", "start": "2026-01-01"}, "end"),
    ({"period": "range", "start": "0001-01-01", "end": "2026-12-01"}, "start"),  # implausible
])
def test_bad_arguments_name_the_field(args, field):
    with pytest.raises(UserError) as err:
        parse_spec(args)
    assert err.value.field == field


@pytest.mark.parametrize("start, end, field", [
    ("2026-12-01", "2026-11-01", "end"),      # backwards
    ("2025-01-01", "2026-12-01", "end"),      # longer than a year
    ("9999-01-01", "9999-12-31", "start"),    # in the future
])
def test_an_impossible_range_is_refused_when_resolved(start, end, field):
    spec = parse_spec({"period": "range", "start": start, "end": end})
    with pytest.raises(UserError) as err:
        resolve(spec, TODAY)
    assert err.value.field == field


@pytest.mark.parametrize("kind, today, start, end, label", [
    ("this_quarter", date(2026, 12, 6), date(2026, 10, 1), date(2026, 12, 6), "2026年第4季度"),
    ("this_quarter", date(2026, 1, 1), date(2026, 1, 1), date(2026, 1, 1), "2026年第1季度"),
    ("last_quarter", date(2026, 12, 6), date(2026, 7, 1), date(2026, 9, 30), "2026年第3季度"),
    ("last_quarter", date(2026, 3, 31), date(2025, 10, 1), date(2025, 12, 31), "2025年第4季度"),
    ("last_quarter", date(2026, 4, 1), date(2026, 1, 1), date(2026, 3, 31), "2026年第1季度"),
    ("this_year", date(2026, 12, 6), date(2026, 1, 1), date(2026, 12, 6), "2026年"),
    ("last_year", date(2026, 1, 1), date(2025, 1, 1), date(2025, 12, 31), "2025年"),
])
def test_quarters_and_years_are_calendar_spans(kind, today, start, end, label):
    p = resolve(parse_spec({"period": kind}), today)
    assert (p.start, p.end, p.label, p.month) == (start, end, label, None)
    assert p.days == (end - start).days + 1
