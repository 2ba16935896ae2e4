"""Comparison periods: calendar month, quarter and year, rolling 30 days, lot cumulative."""

from __future__ import annotations

from datetime import date

import pytest
from werkzeug.datastructures import MultiDict

from qcwx.errors import UserError
from qcwx.peer.filters import calendar_options, parse_period

TODAY = date(2026, 12, 6)


@pytest.mark.parametrize("args, kind, start, end, label, again", [
    ({"period": "quarter", "quarter": "2026-Q3"}, "quarter", date(2026, 7, 1), date(2026, 9, 30),
     "2026年第3季度", {"period": "quarter", "quarter": "2026-Q3"}),
    ({"period": "quarter", "quarter": "2026-q1"}, "quarter", date(2026, 1, 1), date(2026, 3, 31),
     "2026年第1季度", {"period": "quarter", "quarter": "2026-Q1"}),
    # The running quarter and year end today, never in the future.
    ({"period": "quarter"}, "quarter", date(2026, 10, 1), TODAY, "2026年第4季度",
     {"period": "quarter", "quarter": "2026-Q4"}),
    ({"period": "year"}, "year", date(2026, 1, 1), TODAY, "2026年",
     {"period": "year", "year": "2026"}),
    ({"period": "year", "year": "2024"}, "year", date(2024, 1, 1), date(2024, 12, 31), "2024年",
     {"period": "year", "year": "2024"}),
    ({"period": "month", "month": "2026-02"}, "month", date(2026, 2, 1), date(2026, 2, 28),
     "2026年2月", {"period": "month", "month": "2026-02"}),
])
def test_calendar_periods(args, kind, start, end, label, again):
    p = parse_period(MultiDict(args), TODAY)
    assert (p.kind, p.start, p.end, p.label, p.args()) == (kind, start, end, label, again)
    # The arguments a page links with select the same period again.
    assert parse_period(MultiDict(p.args()), TODAY) == p


def test_complete_end_of_a_running_quarter():
    p = parse_period(MultiDict({"period": "quarter"}), TODAY)
    assert p.complete_end == date(2026, 12, 31) and p.end == TODAY


@pytest.mark.parametrize("args, field", [
    ({"period": "quarter", "quarter": "2026-Q5"}, "quarter"),
    ({"period": "quarter", "quarter": "2026Q1"}, "quarter"),
    ({"period": "quarter", "quarter": "1999-Q4"}, "quarter"),
    ({"period": "quarter", "quarter": "2027-Q1"}, "quarter"),   # future
    ({"period": "year", "year": "²⁰²⁶"}, "year"),
    ({"period": "year", "year": "2027"}, "year"),
    ({"period": "year", "year": "0001"}, "year"),
    ({"period": "decade"}, "period"),
])
def test_bad_periods_name_the_field(args, field):
    with pytest.raises(UserError) as err:
        parse_period(MultiDict(args), TODAY)
    assert err.value.field == field


def test_options_are_newest_first_and_cover_year_boundaries():
    quarters = [key for key, _ in calendar_options("quarter", date(2026, 2, 1))]
    assert quarters[:3] == ["2026-Q1", "2025-Q4", "2025-Q3"]
    assert [key for key, _ in calendar_options("year", TODAY)][:2] == ["2026", "2025"]
    assert calendar_options("month", TODAY)[0] == ("2026-12", "2026年12月")


def test_quarter_pages_render_for_the_centre_and_a_lab(peer_world, login):
    centre = login(peer_world.users["center"])
    for url in ("/peer/centre", "/peer/centre/nccl", "/peer/centre/exceptions"):
        resp = centre.get(url + "?period=quarter&quarter=2026-Q4")
        assert resp.status_code == 200, url
        html = resp.get_data(as_text=True)
        assert "2026年第4季度" in html and 'name="quarter"' in html
    lab = login(peer_world.users["tech_r1"])
    resp = lab.get(f"/peer/labs/{peer_world.labs['r1'].id}?period=year&year=2026")
    assert resp.status_code == 200 and "统计周期：<b>2026年</b>" in resp.get_data(as_text=True)
