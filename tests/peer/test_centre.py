"""The centre's matrix, NCCL table and exception report."""

from __future__ import annotations

from qcwx.peer.filters import month_period
from qcwx.peer.queries import exceptions as exception_report
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
    report = exception_report.exceptions(w.region.id, month_period(w.month, w.today), min_n=6)
    assert [(i.ts_id, i.level) for i in report["unit_mismatch"]] == [
        (mgdl.id, "水平1"), (mgdl.id, "水平2"), (odd.id, "水平1"), (odd.id, "水平2")]
    assert "mg/dL（1 家）" in report["unit_mismatch"][0].detail
    assert "8 家为 mmol/L" in report["unit_mismatch"][0].detail
    assert {i.ts_id for i in report["outlier"]} == {wrong.id}
    assert [i.ts_id for i in report["unknown_unit"]] == [odd.id]
    few = {(i.ts_id, i.level) for i in report["few_results"]}
    assert (w.systems["r1"].id, "水平1") in few and (odd.id, "水平2") in few
    html = login(w.users["center"]).get("/peer/centre/exceptions",
                                        query_string={"min_n": 6}).get_data(as_text=True)
    assert "mg/dL" in html and "偏离" in html and "毫摩尔" in html
    resp = login(w.users["center"]).get("/peer/centre/exceptions", query_string={"min_n": "x"},
                                        headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "min_n"
