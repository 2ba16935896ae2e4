"""The exception report on a phone: one kind at a time, sorted and paged on the server,
"too few results" only once the month has had time, bad arguments a 400 in Chinese."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from qcwx.errors import UserError
from qcwx.peer.filters import month_period, parse_period
from qcwx.peer.paging import PER_PAGE, page_number, paginate
from qcwx.peer.queries import exceptions as exception_report
from tests.peer.conftest import elements, f

URL = "/peer/centre/exceptions"
EXTRA_SYSTEMS = 22  # 8 labs × 2 levels + 22 × 2 levels = 60 "few results" rows last month


def cards(html: str) -> list[dict]:
    return [e["attrs"] for e in elements(html, "pe-card")]


def pager(html: str) -> dict:
    return elements(html, "pe-pager")[0]["attrs"]


@pytest.fixture
def crowded(peer_world, session):
    """Sixty system × level rows with too few results in the previous (finished) month."""
    w = peer_world
    names = list(w.labs)[:8]
    for k in range(EXTRA_SYSTEMS):
        f.test_system(w.labs[names[k % len(names)]], w.glu, w.lot)
    session.commit()
    return w


def get(client, w, **args):
    return client.get(URL, query_string={"period": "month", "month": w.prev_month,
                                         "kind": "few_results", **args})


# ------------------------------------------------------------------ when "too few" is judged


@pytest.mark.parametrize(("day", "due"), [(1, False), (6, False), (19, False), (20, True),
                                          (28, True)])
def test_too_few_results_waits_for_the_20th_day_of_the_month(day, due):
    period = month_period("2026-12", date(2026, 12, day))
    assert exception_report.few_results_due(period) is due
    assert exception_report.days_so_far(period) == day


def test_a_finished_month_rolling_30_days_and_lot_cumulative_are_always_judged():
    today = date(2026, 12, 6)
    assert exception_report.few_results_due(month_period("2026-11", today))
    assert exception_report.few_results_due(month_period("2026-02", today))  # 28 days
    assert exception_report.few_results_due(parse_period({"period": "r30"}, today))
    assert exception_report.few_results_due(parse_period({"period": "cum"}, today))


def test_the_report_lists_too_few_results_only_once_the_month_had_time(peer_world):
    w = peer_world
    first = w.today.replace(day=1)  # every system has 5 results on the 1st: < 10
    early = exception_report.exceptions(w.region.id, month_period(w.month, first + timedelta(5)))
    late = exception_report.exceptions(w.region.id, month_period(w.month, first + timedelta(19)))
    assert early["few_results"] == []
    assert {(i.ts_id, i.level) for i in late["few_results"]} == {
        (ts.id, lv.name) for name, ts in w.systems.items() if name != "x" for lv in ts.levels}
    page = exception_report.report_page(w.region.id, month_period(w.month, first + timedelta(5)),
                                        kind="few_results")
    assert page.counts["few_results"] == 0 and not page.few_results_due
    assert page.days_so_far == 6


def test_early_in_the_month_the_page_says_when_few_results_will_be_checked(peer_world, login):
    w = peer_world
    html = login(w.users["center"]).get(URL).get_data(as_text=True)
    notice = [e for e in elements(html, attr="id") if e["attrs"]["id"] == "few-results-later"]
    assert bool(notice) is (w.today.day < 20)
    if notice:
        assert f"只过了 {w.today.day} 天" in notice[0]["text"]


# ------------------------------------------------------------------ paging and sorting


def test_exceptions_page_fifty_at_a_time_with_counts(crowded, login):
    w = crowded
    client = login(w.users["center"])
    html = get(client, w).get_data(as_text=True)
    total = 2 * (8 + EXTRA_SYSTEMS)
    found = pager(html)
    assert (found["data-total"], found["data-page"], found["data-pages"]) == (str(total), "1", "2")
    kind = next(e for e in elements(html, attr="data-count")
                if e["attrs"]["id"] == "kind-few_results")
    assert kind["attrs"]["data-count"] == str(total)
    count = " ".join(elements(html, "pe-pager__count")[0]["text"].split())
    assert count == f"共 {total} 条 · 第 1–50 条 · 第 1/2 页"
    first = cards(html)
    assert len(first) == PER_PAGE
    second = cards(get(client, w, page=2).get_data(as_text=True))
    assert len(second) == total - PER_PAGE
    rows = [(c["data-ts"], c["data-lab"]) for c in first + second]
    assert len({c["data-ts"] for c in first + second}) == 8 + EXTRA_SYSTEMS
    report = exception_report.exceptions(w.region.id, month_period(w.prev_month, w.today))
    assert sorted(rows) == sorted((str(i.ts_id), str(i.lab_id)) for i in report["few_results"])


def test_a_page_past_the_end_shows_the_last_page(crowded, login):
    w = crowded
    resp = get(login(w.users["center"]), w, page=99)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and pager(html)["data-page"] == "2"
    assert len(cards(html)) == 2 * (8 + EXTRA_SYSTEMS) - PER_PAGE


def test_exceptions_sort_by_lab_or_by_analyte(crowded, login):
    w = crowded
    client = login(w.users["center"])
    by_lab = [c["data-lab"] for c in cards(get(client, w, sort="lab").get_data(as_text=True))]
    names = {str(lab.id): f"{lab.hospital.name}·{lab.name}" for lab in w.labs.values()}
    shown = [names[i] for i in by_lab]
    assert shown == sorted(shown)
    html = get(client, w, sort="analyte").get_data(as_text=True)
    assert len(cards(html)) == PER_PAGE
    chip = next(e for e in elements(html, "pe-chip") if "is-active" in e["attrs"]["class"])
    assert chip["text"].strip() == "按项目"


def test_every_exception_links_to_its_lab_page(crowded, login):
    w = crowded
    html = get(login(w.users["center"]), w).get_data(as_text=True)
    links = elements(html, "pe-card__lab")
    assert len(links) == PER_PAGE
    for link in links:
        lab_id = next(a["data-lab"] for a in link["ancestors"] if "data-lab" in a)
        assert link["attrs"]["href"].startswith(f"/peer/labs/{lab_id}?")


@pytest.mark.parametrize(("args", "field", "message"), [
    ({"page": "²"}, "page", "页码参数无效"), ({"page": "0"}, "page", "页码参数无效"),
    ({"page": "-1"}, "page", "页码参数无效"), ({"page": "abc"}, "page", "页码参数无效"),
    ({"page": "9" * 40}, "page", "页码参数无效"), ({"sort": "x"}, "sort", "排序方式无效"),
    ({"kind": "x"}, "kind", "异常类型无效"), ({"min_n": "²"}, "min_n", "最少结果数参数无效"),
    ({"region": "²"}, "region", "区域参数无效"), ({"lot": "²"}, "lot", "质控品批号参数无效"),
])
def test_bad_paging_arguments_are_a_400_in_chinese(peer_world, login, args, field, message):
    w = peer_world
    client = login(w.users["center"])
    resp = client.get(URL, query_string=args, headers={"Accept": "application/json"})
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field and message in resp.get_json()["error"]
    page = client.get(URL, query_string=args)
    assert page.status_code == 400 and message in page.get_data(as_text=True)


# ------------------------------------------------------------------ the paging helper


def test_paginate_counts_and_clamps():
    items = list(range(101))
    last = paginate(items, 3)
    assert (last.items, last.pages, last.first, last.last) == ([100], 3, 101, 101)
    assert paginate(items, 99).number == 3 and not paginate(items, 3).has_next
    empty = paginate([], 5)
    assert (empty.number, empty.pages, empty.first, empty.last, empty.total) == (1, 1, 0, 0, 0)


@pytest.mark.parametrize("raw", ["²", "٣", "1.5", " ", "0", "1234567"])
def test_page_number_accepts_only_ascii_digits(raw):
    assert page_number({}) == 1 and page_number({"page": ""}) == 1
    assert page_number({"page": " 12 "}) == 12
    with pytest.raises(UserError) as err:
        page_number({"page": raw})
    assert err.value.field == "page" and err.value.status == 400


@pytest.mark.parametrize("raw", ["²", "١٢", "1" * 40, "0", "-1", "x"])
def test_int_arg_refuses_unicode_digits_and_huge_ids_with_a_field_message(raw):
    from qcwx.errors import UserError
    from qcwx.peer.filters import int_arg

    with pytest.raises(UserError) as err:
        int_arg({"lot": raw}, "lot", "质控品批号")
    assert err.value.field == "lot" and "质控品批号参数无效" in err.value.message
