"""The lab comparison page shows numbers recomputed independently from the raw results."""

from __future__ import annotations

import pytest

from qcwx.peer import services
from tests.peer.conftest import (
    REJECTED_VALUE,
    SUPERSEDED_VALUE,
    add_run,
    expected,
    f,
    level_blocks,
    month_start,
    raw_values,
)

PEER = ["r1", "r2", "r3", "r4", "r5"]
METHOD = PEER + ["b1", "b2"]
ALL = METHOD + ["s1"]


def page(login, world, user: str, lab: str, **args):
    client = login(world.users[user])
    resp = client.get(f"/peer/labs/{world.labs[lab].id}", query_string=args)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:800]
    return resp.get_data(as_text=True)


def check_block(block: dict, exp, level: str, decimals: int = 2) -> None:
    attrs, shown = block["attrs"], block["fields"]
    assert attrs["data-group-level"] == level
    assert int(attrs["data-n"]) == exp.n
    assert float(attrs["data-mean"]) == pytest.approx(exp.lab_mean, rel=1e-9)
    assert float(attrs["data-group-mean"]) == pytest.approx(exp.group_mean, rel=1e-9)
    assert float(attrs["data-group-sd"]) == pytest.approx(exp.group_sd, rel=1e-6)
    assert float(attrs["data-sdi"]) == pytest.approx(exp.sdi, rel=1e-6, abs=1e-9)
    assert float(attrs["data-cvr"]) == pytest.approx(exp.cvr, rel=1e-6)
    assert shown["mean"] == f"{exp.lab_mean:.{decimals}f}"
    assert shown["sd"] == f"{exp.lab_sd:.{decimals + 1}f}"
    assert shown["cv"] == f"{exp.lab_cv:.2f}"
    assert shown["group-mean"] == f"{exp.group_mean:.{decimals}f}"
    assert shown["group-cv"] == f"{exp.group_cv:.2f}"
    assert shown["sdi"] == f"{exp.sdi:+.2f}"
    assert shown["cvr"] == f"{exp.cvr:.2f}"
    assert shown["bias"] == f"{exp.bias:+.2f}%"
    assert shown["rank"] == f"在 {exp.rank_size} 家中排第 {exp.bias_rank}"  # the centre's view


@pytest.mark.parametrize("cached", [False, True], ids=["raw", "cached"])
@pytest.mark.parametrize("lab, level, members", [("r1", "peer", PEER), ("b1", "method", METHOD),
                                                  ("s1", "all", ALL)])
def test_lab_page_matches_an_independent_recomputation(peer_world, login, session, cached,
                                                       lab, level, members):
    w = peer_world
    if cached:
        services.rebuild_cache(w.region.id)
        session.commit()
    html = page(login, w, "center", lab)
    blocks = level_blocks(html)
    ids = [w.systems[name].id for name in members]
    for index in (1, 2):
        lv = w.level(index)
        values = raw_values(ids, lv.id, month_start(w.today), w.today)
        exp = expected(values, ids, w.systems[lab].id)
        check_block(blocks[(w.systems[lab].id, lv.id)], exp, level)


def test_rejected_runs_and_superseded_versions_do_not_count(peer_world, login):
    w = peer_world
    lv = w.level(1)
    for name in ("r1", "r2"):
        values = raw_values([w.systems[name].id], lv.id, month_start(w.today), w.today)
        assert len(values[w.systems[name].id]) == 5
        assert REJECTED_VALUE not in values[w.systems[name].id]
        assert SUPERSEDED_VALUE not in values[w.systems[name].id]
        block = level_blocks(page(login, w, "center", name))[(w.systems[name].id, lv.id)]
        assert block["attrs"]["data-n"] == "5"
        mean = sum(values[w.systems[name].id]) / 5
        assert float(block["attrs"]["data-mean"]) == pytest.approx(mean, rel=1e-9)


def test_a_group_of_too_few_labs_shows_the_notice_instead_of_numbers(peer_world, login, session):
    w = peer_world
    small_lot = f.qc_lot(2)
    systems = []
    for name in ("r1", "r2", "r3"):
        ts = f.test_system(w.labs[name], w.glu, small_lot)
        systems.append(ts)
        for k in range(10):
            add_run(ts, month_start(w.today), {1: 5.0 + 0.01 * k, 2: 15.0 + 0.02 * k},
                    run_no=k + 1)
    session.commit()
    html = page(login, w, "tech_r1", "r1")
    block = level_blocks(html)[(systems[0].id, small_lot.levels[0].id)]
    assert "比对组实验室不足 5 家或结果不足 20 个，暂不发布统计" in block["text"]
    assert block["attrs"]["data-group-level"] == "" and block["attrs"]["data-sdi"] == ""
    assert "sdi" not in block["fields"] and "group-mean" not in block["fields"]
    lot = login(w.users["tech_r1"]).get("/peer/lot", query_string={
        "level": small_lot.levels[0].id, "analyte": w.glu.id}).get_data(as_text=True)
    assert 'id="unpublished"' in lot and "setOption" not in lot and 'id="members"' not in lot


def test_other_regions_never_enter_the_group(peer_world, login):
    w = peer_world
    html = page(login, w, "center", "r1")
    block = level_blocks(html)[(w.systems["r1"].id, w.level(1).id)]
    assert "同组 · 5 家" in block["text"]
    resp = login(w.users["center2"]).get(f"/peer/labs/{w.labs['r1'].id}")
    assert resp.status_code == 404


def test_lab_users_cannot_open_another_labs_page(peer_world, login):
    w = peer_world
    client = login(w.users["tech_r1"])
    assert client.get(f"/peer/labs/{w.labs['b1'].id}").status_code == 404
    assert client.get(f"/peer/labs/{w.labs['r1'].id}").status_code == 200
    assert client.get("/peer/labs/999999").status_code == 404
    director = login(w.users["director_r1"])
    assert director.get(f"/peer/labs/{w.labs['r1'].id}").status_code == 200
    assert director.get(f"/peer/labs/{w.labs['r2'].id}").status_code == 404


def test_index_sends_each_role_home(peer_world, login):
    w = peer_world
    resp = login(w.users["tech_r1"]).get("/peer/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(
        f"/peer/labs/{w.labs['r1'].id}")
    assert login(w.users["center"]).get("/peer/").headers["Location"].endswith("/peer/centre")


def test_bad_period_is_a_400_naming_the_field(peer_world, login):
    client = login(peer_world.users["tech_r1"])
    resp = client.get(f"/peer/labs/{peer_world.labs['r1'].id}?period=month&month=2026-13",
                      headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "month"
    resp = client.get(f"/peer/labs/{peer_world.labs['r1'].id}?period=decade",
                      headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "period"


def test_cumulative_and_rolling_periods_include_last_month(peer_world, login):
    w = peer_world
    ids = [w.systems[name].id for name in PEER]
    lv = w.level(2)
    html = page(login, w, "center", "r3", period="cum")
    values = raw_values(ids, lv.id, month_start(w.today).replace(year=2000), w.today)
    exp = expected(values, ids, w.systems["r3"].id)
    assert exp.n == 10
    check_block(level_blocks(html)[(w.systems["r3"].id, lv.id)], exp, "peer")
