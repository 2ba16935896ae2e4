"""The centre's matrix, NCCL table and exception report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qcwx.peer.filters import month_period
from qcwx.peer.queries import exceptions as exception_report
from qcwx.peer.queries.centre import rank_labs, sort_matrix
from qcwx.qcstats import peer as qpeer
from tests.peer.conftest import (
    add_run,
    elements,
    expected,
    f,
    level_blocks,
    month_start,
    raw_values,
)

GROUPS = {"r": ["r1", "r2", "r3", "r4", "r5"], "b": ["r1", "r2", "r3", "r4", "r5", "b1", "b2"],
          "s": ["r1", "r2", "r3", "r4", "r5", "b1", "b2", "s1"]}


def test_non_centre_roles_get_403(peer_world, login):
    w = peer_world
    for user in ("tech_r1", "director_r1"):
        client = login(w.users[user])
        for url in ("/peer/centre", "/peer/centre/nccl", "/peer/centre/exceptions"):
            assert client.get(url).status_code == 403


def test_matrix_cells_equal_the_lab_pages(peer_world, login):
    w = peer_world
    client = login(w.users["center"])
    html = client.get("/peer/centre", query_string={"metric": "sdi"}).get_data(as_text=True)
    cells = {}
    for e in elements(html, "pe-cellv"):
        row = next(a for a in e["ancestors"] if "data-lab" in a)
        cells[(int(row["data-lab"]), int(e["attrs"]["data-level"]))] = e["attrs"]["data-value"]
    assert len(cells) == 16
    for name in ("r1", "b2", "s1"):
        page = client.get(f"/peer/labs/{w.labs[name].id}").get_data(as_text=True)
        for (_ts_id, level_id), block in level_blocks(page).items():
            index = next(lv.level_index for lv in w.lot.levels if lv.id == level_id)
            assert cells[(w.labs[name].id, index)] == block["attrs"]["data-sdi"]
    grades = client.get("/peer/centre").get_data(as_text=True)
    shown = {int(next(a for a in e["ancestors"] if "data-lab" in a)["data-lab"]):
             e["attrs"]["data-grade"] for e in elements(grades, attr="data-grade")}
    page = client.get(f"/peer/labs/{w.labs['b1'].id}").get_data(as_text=True)
    worst = max(b["attrs"]["data-grade"] for b in level_blocks(page).values())
    assert shown[w.labs["b1"].id] == worst


def test_matrix_row_filters_only_choose_rows(peer_world, login):
    w = peer_world
    client = login(w.users["center"])
    html = client.get("/peer/centre", query_string={"metric": "sdi", "hospital_level": "二级"}
                      ).get_data(as_text=True)
    labs = {int(e["attrs"]["data-lab"]) for e in elements(html, attr="data-lab")}
    assert labs == {w.labs[n].id for n in ("r5", "b1", "b2", "s1")}
    full = client.get("/peer/centre", query_string={"metric": "sdi"}).get_data(as_text=True)
    value = {e["attrs"]["data-value"] for e in elements(full, "pe-cellv")
             if str(w.labs["b1"].id) in [a.get("data-lab") for a in e["ancestors"]]}
    filtered = {e["attrs"]["data-value"] for e in elements(html, "pe-cellv")
                if str(w.labs["b1"].id) in [a.get("data-lab") for a in e["ancestors"]]}
    assert value == filtered  # statistics are still against the full group
    empty = client.get("/peer/centre", query_string={"hospital_level": "一级"})
    assert empty.status_code == 200 and 'id="empty-state"' in empty.get_data(as_text=True)


def test_nccl_pass_counts_match_an_independent_assessment(peer_world, login):
    w = peer_world
    html = login(w.users["center"]).get("/peer/centre/nccl").get_data(as_text=True)
    rows = {int(e["attrs"]["data-level"]): e["attrs"] for e in elements(html, attr="data-passed")}
    for index in (1, 2):
        lv = w.level(index)
        passed = 0
        for name in GROUPS["s"]:
            members = GROUPS[name[0]]
            ids = [w.systems[n].id for n in members]
            values = raw_values(ids, lv.id, month_start(w.today), w.today)
            exp = expected(values, ids, w.systems[name].id)
            passed += exp.lab_cv <= 3.0 and abs(exp.bias) <= 2.0  # GLU: CV 3%, bias 2%
        assert int(rows[index]["data-n"]) == 8
        assert int(rows[index]["data-passed"]) == passed


def test_exception_report_finds_unit_mismatch_outliers_unknown_units_and_few_results(
        peer_world, login, session):
    w = peer_world
    mgdl = f.test_system(w.labs["r3"], w.glu, w.lot)
    mgdl.unit = "mg/dL"
    for k in range(5):  # glucose reported in mg/dL: 18 × the mmol/L value
        add_run(mgdl, month_start(w.today), {1: 99.0 + k * 0.5, 2: 284.0 + k}, run_no=k + 1)
    wrong = f.test_system(w.labs["r5"], w.glu, w.lot)
    wrong.unit = "ｍｍｏｌ／ｌ"  # one unit with mmol/L once normalised: not a mismatch
    for k in range(5):  # ... but it reports mg/dL numbers: an outlier among mmol/L labs
        add_run(wrong, month_start(w.today), {1: 99.0 + k * 0.5, 2: 284.0 + k}, run_no=k + 1)
    odd = f.test_system(w.labs["r4"], w.glu, w.lot)
    odd.unit = "毫摩尔"
    session.commit()
    # Judged late in the month: "too few results" waits for the 20th day (test_exceptions_paging).
    late = month_period(w.month, max(w.today, w.today.replace(day=28)))
    report = exception_report.exceptions(w.region.id, late, min_n=6)
    assert [(i.ts_id, i.level) for i in report["unit_mismatch"]] == [
        (mgdl.id, "水平1"), (mgdl.id, "水平2"), (odd.id, "水平1"), (odd.id, "水平2")]
    assert "mg/dL（1 家）" in report["unit_mismatch"][0].detail
    assert "8 家为 mmol/L" in report["unit_mismatch"][0].detail
    assert {i.ts_id for i in report["outlier"]} == {wrong.id}
    assert [i.ts_id for i in report["unknown_unit"]] == [odd.id]
    few = {(i.ts_id, i.level) for i in report["few_results"]}
    assert (w.systems["r1"].id, "水平1") in few and (odd.id, "水平2") in few
    client = login(w.users["center"])
    html = client.get("/peer/centre/exceptions", query_string={"min_n": 6}).get_data(as_text=True)
    assert "mg/dL（1 家）" in html and "本系统单位 毫摩尔" in html  # the first kind with items
    html = client.get("/peer/centre/exceptions", query_string={"min_n": 6, "kind": "outlier"}
                      ).get_data(as_text=True)
    assert [int(e["attrs"]["data-ts"]) for e in elements(html, "pe-card")] == [wrong.id] * 2
    assert "偏离 +" in html
    resp = login(w.users["center"]).get("/peer/centre/exceptions", query_string={"min_n": "x"},
                                        headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "min_n"


# ------------------------------------------------------------------ ranking, sorting, links


def _matrix_rows(html: str) -> list[dict]:
    return [e["attrs"] for e in elements(html, attr="data-rank")]


def _lab_values(html: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for e in elements(html, "pe-cellv"):
        row = next(a for a in e["ancestors"] if "data-lab" in a)
        if e["attrs"]["data-value"]:
            out.setdefault(int(row["data-lab"]), []).append(float(e["attrs"]["data-value"]))
    return out


def test_matrix_ranks_labs_by_ab_share_then_mean_abs_sdi(peer_world, login):
    w = peer_world
    client = login(w.users["center"])
    html = client.get("/peer/centre").get_data(as_text=True)
    grades = {int(next(a for a in e["ancestors"] if "data-lab" in a)["data-lab"]):
              e["attrs"]["data-grade"] for e in elements(html, attr="data-grade")}
    sdis = _lab_values(client.get("/peer/centre", query_string={"metric": "sdi"})
                       .get_data(as_text=True))
    # The rule, recomputed from what the page shows: one analyte here, so share is 0 or 1.
    keys = {lab: (-(grades[lab] in "AB"), round(sum(abs(v) for v in sdis[lab]) / len(sdis[lab]), 2))
            for lab in grades}
    expected_rank = {lab: 1 + sum(1 for other in keys if keys[other] < key)
                     for lab, key in keys.items()}
    rows = _matrix_rows(html)
    assert {int(r["data-lab"]): int(r["data-rank"]) for r in rows if r["data-rank"]} == \
        expected_rank
    assert [int(r["data-rank"]) for r in rows] == sorted(expected_rank.values())
    rule = next(e for e in elements(html, attr="id") if e["attrs"]["id"] == "ranking-rule")
    assert "A/B 级项目占比高者在前" in rule["text"] and "平均 |SDI|" in rule["text"]


def test_rank_labs_shares_ties_and_leaves_ungraded_labs_unranked():
    def entry(code, grades, sdi):
        return {"lab": SimpleNamespace(anon_code=code), "cells": {},
                "overall": qpeer.lab_overall_grade(grades) if grades else None,
                "mean_abs_sdi": sdi}

    entries = [entry("L1", ["A", "C"], 0.5), entry("L2", ["A", "B"], 1.9),
               entry("L3", ["B", "D"], 0.501), entry("L4", [], None),
               entry("L5", ["D", "D"], 0.1), entry("L6", ["A", "D"], 0.2)]
    rank_labs(entries)
    assert {e["lab"].anon_code: e["rank"] for e in entries} == {
        "L2": 1, "L6": 2, "L1": 3, "L3": 3, "L5": 5, "L4": None}
    order = [e["lab"].anon_code for e in sort_matrix(entries, "rank")]
    assert order == ["L2", "L6", "L1", "L3", "L5", "L4"]
    assert [e["lab"].anon_code for e in sort_matrix(entries, "attention")] == [
        "L5", "L1", "L3", "L6", "L2", "L4"]


def test_matrix_sorts_by_rank_attention_code_or_one_analyte(peer_world, login):
    w = peer_world
    client = login(w.users["center"])
    ranked = [int(r["data-rank"]) for r in _matrix_rows(
        client.get("/peer/centre").get_data(as_text=True))]
    attention = [int(r["data-rank"]) for r in _matrix_rows(
        client.get("/peer/centre", query_string={"sort": "attention"}).get_data(as_text=True))]
    assert ranked == sorted(ranked) and attention == sorted(ranked, reverse=True)
    codes = {str(lab.id): lab.anon_code for lab in w.labs.values()}
    by_code = [codes[r["data-lab"]] for r in _matrix_rows(
        client.get("/peer/centre", query_string={"sort": "code"}).get_data(as_text=True))]
    assert by_code == sorted(by_code)
    html = client.get("/peer/centre", query_string={"sort": f"a{w.glu.id}", "metric": "sdi"}
                      ).get_data(as_text=True)
    values = _lab_values(html)
    worst = [max(abs(v) for v in values[int(r["data-lab"])]) for r in _matrix_rows(html)]
    assert worst == sorted(worst, reverse=True)
    header = next(e for e in elements(html, "pe-colsort"))
    assert f"sort=a{w.glu.id}" in header["attrs"]["href"]
    assert any("葡萄糖差者在前" in e["text"] for e in elements(html, "pe-chip"))


def test_every_matrix_row_links_its_lab_page_with_the_period(peer_world, login):
    w = peer_world
    html = login(w.users["center"]).get("/peer/centre").get_data(as_text=True)
    rows = _matrix_rows(html)
    links = elements(html, "pe-labcell")
    assert len(rows) == len(links) == 8
    for row, link in zip(rows, links, strict=True):
        assert link["attrs"]["href"] == (
            f"/peer/labs/{row['data-lab']}?period=month&month={w.month}")
    pager = elements(html, "pe-pager")[0]["attrs"]
    assert (pager["data-total"], pager["data-pages"]) == ("8", "1")


def test_nccl_sorts_by_pass_rate_and_pages(peer_world, login):
    w = peer_world
    client = login(w.users["center"])
    html = client.get("/peer/centre/nccl", query_string={"sort": "pass"}).get_data(as_text=True)
    rates = [int(e["attrs"]["data-passed"]) / int(e["attrs"]["data-n"])
             for e in elements(html, attr="data-passed")]
    assert len(rates) == 2 and rates == sorted(rates)
    assert elements(html, "pe-pager")[0]["attrs"]["data-total"] == "2"
    far = client.get("/peer/centre/nccl", query_string={"page": 7}).get_data(as_text=True)
    assert elements(far, "pe-pager")[0]["attrs"]["data-page"] == "1"


BAD_ARGS = [({"sort": "bogus"}, "sort"), ({"sort": "a１"}, "sort"), ({"page": "²"}, "page"),
            ({"page": "0"}, "page"), ({"lot": "²"}, "lot")]


@pytest.mark.parametrize(("url", "args", "field"), [
    *[("/peer/centre", a, f) for a, f in [*BAD_ARGS, ({"level_index": "²"}, "level_index")]],
    *[("/peer/centre/nccl", a, f) for a, f in BAD_ARGS]])
def test_centre_lists_refuse_bad_arguments_with_a_400(peer_world, login, url, args, field):
    w = peer_world
    resp = login(w.users["center"]).get(url, query_string=args,
                                        headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == field
    assert "无效" in resp.get_json()["error"]
