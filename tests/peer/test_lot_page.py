"""The QC-lot comparison page: stacked filters, fallback, privacy, saved groupings."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from qcwx.peer.models import SavedGrouping
from tests.charts import OPTIONS
from tests.peer.conftest import elements, expected, month_start, raw_values


def lot(client, w, level: int = 1, **args):
    query = {"level": w.level(level).id, "analyte": w.glu.id, **args}
    return client.get("/peer/lot", query_string=query)


def summary(html: str) -> dict:
    found = elements(html, attr="id")
    return next((e["attrs"] for e in found if e["attrs"]["id"] == "group-summary"), {})


def chart_options(html: str) -> list[dict]:
    return [json.loads(m) for m in OPTIONS.findall(html)]


def test_filters_stack_and_change_the_group(peer_world, login):
    w = peer_world
    client = login(w.users["center"])
    html = lot(client, w, instrument_maker="罗氏").get_data(as_text=True)
    assert summary(html)["data-level"] == "peer" and summary(html)["data-labs"] == "5"
    ids = [w.systems[n].id for n in ("r1", "r2", "r3", "r4", "r5")]
    values = raw_values(ids, w.level(1).id, month_start(w.today), w.today)
    exp = expected(values, ids, ids[0])
    assert float(summary(html)["data-mean"]) == pytest.approx(exp.group_mean, rel=1e-9)
    assert float(summary(html)["data-sd"]) == pytest.approx(exp.group_sd, rel=1e-6)
    size = client.get("/peer/lot/size", query_string={
        "level": w.level(1).id, "analyte": w.glu.id, "instrument_maker": "罗氏",
        "hospital_level": "三级"}).get_json()
    assert size == {"level": "peer", "label": "同组", "labs": 4, "systems": 4, "results": 20,
                    "publishable": False}
    size = client.get("/peer/lot/size", query_string={
        "level": w.level(1).id, "analyte": w.glu.id}).get_json()
    assert size["labs"] == 8 and size["level"] == "all"


def test_filters_that_match_nothing_show_an_empty_state(peer_world, login):
    w = peer_world
    client = login(w.users["tech_r1"])
    resp = lot(client, w, instrument_maker="罗氏", reagent_maker="贝克曼库尔特")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'id="empty-state"' in html
    assert "setOption" not in html
    resp = lot(client, w, unit="mg/dL")
    assert resp.status_code == 200 and 'id="empty-state"' in resp.get_data(as_text=True)


def test_a_small_filtered_group_falls_back_to_method_then_all(peer_world, login):
    w = peer_world
    client = login(w.users["center"])
    html = lot(client, w, instrument_maker="贝克曼库尔特").get_data(as_text=True)
    assert summary(html)["data-level"] == "all" and summary(html)["data-labs"] == "8"
    assert "筛选出的比对组不足 5 家实验室或 20 个结果，统计采用全部组" in html
    html = lot(client, w, instrument_maker="贝克曼库尔特", method="HK").get_data(as_text=True)
    assert summary(html)["data-level"] == "method" and summary(html)["data-labs"] == "7"
    ids = [w.systems[n].id for n in ("r1", "r2", "r3", "r4", "r5", "b1", "b2")]
    exp = expected(raw_values(ids, w.level(1).id, month_start(w.today), w.today), ids, ids[0])
    assert float(summary(html)["data-mean"]) == pytest.approx(exp.group_mean, rel=1e-9)


def test_lab_users_see_other_labs_only_by_anonymous_code(peer_world, login):
    w = peer_world
    html = lot(login(w.users["tech_r1"]), w).get_data(as_text=True)
    members = {e["attrs"]["data-code"]: e for e in elements(html, attr="data-code")}
    own = w.labs["r1"]
    assert own.hospital.name in members and "pe-own" in members[own.hospital.name]["attrs"]["class"]
    for name in ("r2", "r3", "b1", "s1"):
        assert w.labs[name].anon_code in members
        assert w.labs[name].hospital.name not in html
        assert w.labs[name].name + w.labs[name].code not in html
    lab_chart = next(o for o in chart_options(html) if o["series"][0]["name"] == "实验室均值")
    codes = [d["name"] for d in lab_chart["series"][0]["data"]]
    assert len(codes) == 8  # one aggregate point per lab, never individual results
    assert set(codes) - {own.hospital.name} == {w.labs[n].anon_code for n in
                                                ("r2", "r3", "r4", "r5", "b1", "b2", "s1")}


def test_the_centre_sees_names(peer_world, login):
    w = peer_world
    html = lot(login(w.users["center"]), w).get_data(as_text=True)
    for name in ("r1", "b1", "s1"):
        assert w.labs[name].hospital.name in html
    assert w.labs["x"].hospital.name not in html  # another region


def test_director_sees_own_hospital_by_name_and_others_anonymous(peer_world, login):
    w = peer_world
    html = lot(login(w.users["director_r1"]), w).get_data(as_text=True)
    assert w.labs["r1"].hospital.name in html
    assert w.labs["r2"].hospital.name not in html and w.labs["r2"].anon_code in html


def test_bad_filter_values_are_400_naming_the_field(peer_world, login):
    w = peer_world
    client = login(w.users["tech_r1"])
    resp = client.get("/peer/lot", query_string={"calibrator": "abc"},
                      headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "calibrator"
    resp = client.get("/peer/lot/size", query_string={"level": "x1"},
                      headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "level"
    other_lot_level = w.level(1).id + 1000
    resp = client.get("/peer/lot", query_string={"level": other_lot_level},
                      headers={"Accept": "application/json"})
    assert resp.status_code == 404


def test_the_centre_saves_and_reuses_named_groupings(peer_world, login, session):
    w = peer_world
    client = login(w.users["center"])
    form = {"name": "罗氏 c702 组", "instrument_maker": "罗氏", "level": w.level(1).id,
            "analyte": w.glu.id}
    resp = client.post("/peer/groupings", data=form)
    assert resp.status_code == 302
    saved = session.scalars(select(SavedGrouping)).all()
    assert [(g.name, g.filters, g.region_id) for g in saved] == [
        ("罗氏 c702 组", {"instrument_maker": ["罗氏"]}, w.region.id)]
    html = lot(client, w, grouping=saved[0].id).get_data(as_text=True)
    assert summary(html)["data-labs"] == "5" and "罗氏 c702 组" in html
    assert client.post("/peer/groupings", data=form).status_code == 409
    assert client.post("/peer/groupings", data={**form, "name": ""}).status_code == 400
    assert client.post("/peer/groupings", data={"name": "空"}).status_code == 400
    tech = login(w.users["tech_r1"])
    assert tech.post("/peer/groupings", data={**form, "name": "技师"}).status_code == 403
    assert "罗氏 c702 组" in lot(tech, w).get_data(as_text=True)  # usable by the region's labs
    other = login(w.users["center2"])
    assert lot(other, w, grouping=saved[0].id).status_code == 404
    assert other.post(f"/peer/groupings/{saved[0].id}/delete").status_code == 404
    client = login(w.users["center"])  # one test client: log the region's centre back in
    resp = client.post(f"/peer/groupings/{saved[0].id}/delete")
    assert resp.status_code == 302
    assert session.scalars(select(SavedGrouping)).all() == []


def test_charts_render_for_a_publishable_group_with_the_own_lab_highlighted(peer_world, login):
    w = peer_world
    html = lot(login(w.users["tech_b1"]), w).get_data(as_text=True)
    options = chart_options(html)
    titles = {(o["title"][0] if isinstance(o["title"], list) else o["title"])["text"]
              for o in options}
    assert {"葡萄糖 水平1 实验室均值比较", "葡萄糖 水平1 SDI–CVR", "葡萄糖 水平1 实验室均值分布",
            "葡萄糖 水平1 方法决定图"} <= titles
    means = next(o for o in options if o["series"][0]["name"] == "实验室均值")
    own = [d for d in means["series"][0]["data"] if d.get("symbol") == "diamond"]
    assert [d["name"] for d in own] == [w.labs["b1"].hospital.name]
    assert html.count("/static/vendor/echarts-qcwx.min.js") == 1


def test_small_group_sizes_show_only_the_lab_count_below_the_centre(peer_world, login):
    w = peer_world
    query = {"level": w.level(1).id, "analyte": w.glu.id, "instrument_maker": "贝克曼库尔特"}
    tech = login(w.users["tech_r1"]).get("/peer/lot/size", query_string=query).get_json()
    assert tech == {"level": "peer", "label": "同组", "labs": 2, "systems": None,
                    "results": None, "publishable": False}
    html = login(w.users["tech_r1"]).get("/peer/lot", query_string=query).get_data(as_text=True)
    assert "2 家 · 10 个结果" not in html and "2 家 · 不足" in html
    centre = login(w.users["center"]).get("/peer/lot/size", query_string=query).get_json()
    assert centre["results"] == 10 and centre["systems"] == 2


@pytest.mark.parametrize("calibrator", ["²", "9" * 30])
def test_a_calibrator_filter_that_is_no_id_is_a_field_error(peer_world, login, calibrator):
    """Regression: "²" passed ``str.isdigit`` and was taken as a calibrator id."""
    w = peer_world
    resp = lot(login(w.users["center"]), w, calibrator=calibrator)
    assert resp.status_code == 400 and "校准品" in resp.get_data(as_text=True)
