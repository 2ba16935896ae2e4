"""The lot page's member table and lab-means axis on a phone: short unique axis labels,
rows that open the lab's page where the viewer may see it, server-side order."""

from __future__ import annotations

import json

import pytest

from qcwx.errors import UserError
from qcwx.peer.queries.lot import Member
from qcwx.peer.queries.lot_table import axis_labels, sort_members
from tests.charts import OPTIONS
from tests.peer.conftest import elements


def lot(client, w, **args):
    return client.get("/peer/lot", query_string={"level": w.level(1).id, "analyte": w.glu.id,
                                                 **args})


def member_rows(html: str) -> list[dict]:
    return [e for e in elements(html, attr="data-code")
            if any(a.get("id") == "members" for a in e["ancestors"])]


def means_chart(html: str) -> dict:
    options = [json.loads(m) for m in OPTIONS.findall(html)]
    return next(o for o in options if o["series"][0]["name"] == "实验室均值")


def test_the_centre_opens_every_member_lab_from_the_table(peer_world, login):
    w = peer_world
    html = lot(login(w.users["center"]), w).get_data(as_text=True)
    rows = member_rows(html)
    assert len(rows) == 8
    for row in rows:
        link = next(e for e in elements(html, "pe-labcell")
                    if e["ancestors"] and row["attrs"] in e["ancestors"])
        assert link["tag"] == "a"
        assert link["attrs"]["href"] == (
            f"/peer/labs/{row['attrs']['data-lab']}?period=month&month={w.month}")


def test_a_lab_opens_only_its_own_row_and_peers_stay_anonymous(peer_world, login):
    w = peer_world
    html = lot(login(w.users["tech_r1"]), w).get_data(as_text=True)
    links = [e for e in elements(html, "pe-labcell") if e["tag"] == "a"]
    assert [e["attrs"]["href"].split("?")[0] for e in links] == [f"/peer/labs/{w.labs['r1'].id}"]
    names = {lab.hospital.name for key, lab in w.labs.items() if key != "r1"}
    table = elements(html, attr="id")
    text = next(e["text"] for e in table if e["attrs"]["id"] == "members")
    assert not any(name in text for name in names)


def test_the_lab_means_axis_shows_short_unique_codes_and_names_stay_in_tooltips(
        peer_world, login):
    w = peer_world
    html = lot(login(w.users["center"]), w).get_data(as_text=True)
    chart = means_chart(html)
    axis = chart["xAxis"][0]["data"]
    codes = {lab.anon_code for key, lab in w.labs.items() if key != "x"}
    assert set(axis) == codes and len(axis) == 8
    assert chart["xAxis"][0]["axisLabel"]["rotate"] == 0  # eight labs fit upright
    names = [d["name"] for d in chart["series"][0]["data"]]
    assert set(names) == {lab.hospital.name for key, lab in w.labs.items() if key != "x"}
    # The table says which axis label each named row is.
    for row in member_rows(html):
        code = w.labs[next(k for k, lab in w.labs.items()
                           if str(lab.id) == row["attrs"]["data-lab"])].anon_code
        assert f"图中 {code}" in " ".join(row["text"].split())


def test_members_sort_by_mean_abs_sdi_or_name_and_refuse_others(peer_world, login):
    w = peer_world
    client = login(w.users["center"])
    by_mean = [float(r["attrs"]["data-mean"]) for r in member_rows(
        lot(client, w).get_data(as_text=True))]
    assert by_mean == sorted(by_mean)
    by_sdi = [abs(float(r["attrs"]["data-sdi"])) for r in member_rows(
        lot(client, w, sort="sdi").get_data(as_text=True))]
    assert by_sdi == sorted(by_sdi, reverse=True)
    by_name = [r["attrs"]["data-code"] for r in member_rows(
        lot(client, w, sort="name").get_data(as_text=True))]
    assert by_name == sorted(by_name)
    resp = lot(client, w, sort="x")
    assert resp.status_code == 400 and "排序方式无效" in resp.get_data(as_text=True)


def _member(ts_id, lab_id, code, anon, mean=1.0, sdi=None):
    return Member(ts_id, lab_id, code, False, 5, mean, None, None, sdi, None, None, None, None,
                  None, anon)


def test_axis_labels_number_a_lab_with_several_systems():
    members = [_member(7, 1, "甲医院（c702）", "L001"), _member(3, 1, "甲医院（AU5800）", "L001"),
               _member(5, 2, "乙医院", "L002"), _member(9, 3, "L003", "")]
    assert axis_labels(members) == {3: "L001-1", 7: "L001-2", 5: "L002", 9: "L003"}


def test_sort_members_puts_missing_sdi_last():
    members = [_member(1, 1, "B", "L1", 2.0, None), _member(2, 2, "A", "L2", 1.0, -1.5),
               _member(3, 3, "C", "L3", 3.0, 0.4)]
    assert [m.ts_id for m in sort_members(members, "sdi")] == [2, 3, 1]
    assert [m.ts_id for m in sort_members(members, "mean")] == [2, 1, 3]
    with pytest.raises(UserError):
        sort_members(members, "bogus")
