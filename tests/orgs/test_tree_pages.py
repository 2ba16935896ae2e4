"""Nested centres on the pages: role × tree position, and names never leak across districts.

A district centre sees its own district's labs by name on every page (peer pages, lot table,
centre matrix, NCCL table, exceptions, reports list, dashboard) and the other district's labs
at most by anonymous code; the city centre and the expert see the whole tree by name.
"""

from __future__ import annotations

import re

import pytest

from tests.orgs.tree_world import LAB_KEYS, SEES

CENTRE_PAGES = ("/peer/centre", "/peer/centre/nccl", "/peer/centre/exceptions")
CENTRE_READERS = {"admin", "center", "expert", "center_a", "center_b", "center_x"}
ALL_ROLES = sorted(SEES)


def _lot_url(tree) -> str:
    ts = tree.systems["a"]
    return f"/peer/lot?level={ts.levels[0].id}&analyte={ts.analyte_id}"


def _identities(lab) -> tuple[str, ...]:
    """What names a lab: hospital name, lab code (the full name contains the hospital's)."""
    return lab.hospital.name, lab.code, lab.hospital.code


def _pages(tree) -> list[str]:
    return [*CENTRE_PAGES, _lot_url(tree), "/peer/", "/reports/", "/", "/dashboard/",
            "/dashboard/today", "/dashboard/month", "/dashboard/peer", "/dashboard/records",
            "/recognition/", "/lots/"]


@pytest.mark.parametrize("role", ALL_ROLES)
def test_centre_pages_by_role(tree, login, role):
    client = login(tree.users[role])
    for path in CENTRE_PAGES:
        status = client.get(path).status_code
        assert status == (200 if role in CENTRE_READERS else 403), (role, path)


def test_centre_pages_ask_anonymous_to_log_in(tree, client):
    for path in (*CENTRE_PAGES, _lot_url(tree), f"/peer/labs/{tree.labs['a'].id}"):
        assert client.get(path).status_code == 302, path


# region filter: role -> region keys it may pick on the centre's pages
PICKS = {"admin": {"city", "a", "b", "x"}, "center": {"city", "a", "b"},
         "expert": {"city", "a", "b"}, "center_a": {"a"}, "center_b": {"b"},
         "center_x": {"x"}}


@pytest.mark.parametrize("role", sorted(PICKS))
def test_region_filter_only_reaches_the_subtree(tree, login, role):
    client = login(tree.users[role])
    regions = {"city": tree.city, "a": tree.district_a, "b": tree.district_b,
               "x": tree.other}
    for key, region in regions.items():
        for path in CENTRE_PAGES:
            status = client.get(path, query_string={"region": region.id}).status_code
            assert status == (200 if key in PICKS[role] else 404), (role, key, path)


def test_region_filter_lists_only_the_subtree(tree, login):
    html = login(tree.users["center"]).get("/peer/centre").get_data(as_text=True)
    picker = re.search(r'<select name="region".*?</select>', html, re.S).group(0)
    for region in (tree.city, tree.district_a, tree.district_b):
        assert f'value="{region.id}"' in picker
    assert tree.other.name not in picker
    html = login(tree.users["center_a"]).get("/peer/centre").get_data(as_text=True)
    assert '<select name="region"' not in html  # one region: nothing to pick
    assert tree.district_b.name not in html


def test_city_centre_narrows_the_matrix_to_one_district(tree, login):
    client = login(tree.users["center"])
    whole = client.get("/peer/centre").get_data(as_text=True)
    assert all(tree.labs[k].hospital.name in whole for k in SEES["center"])
    part = client.get("/peer/centre", query_string={"region": tree.district_a.id}
                      ).get_data(as_text=True)
    assert all(tree.labs[k].hospital.name in part for k in ("a", "a2", "a3"))
    assert not any(tree.labs[k].hospital.name in part for k in ("b", "b2", "b3", "c"))


@pytest.mark.parametrize("role", ALL_ROLES)
def test_lab_peer_page_by_tree_position(tree, login, role):
    client = login(tree.users[role])
    for key in LAB_KEYS:
        status = client.get(f"/peer/labs/{tree.labs[key].id}").status_code
        assert status == (200 if key in SEES[role] else 404), (role, key)


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("role", ["center_a", "center_b", "center", "expert", "center_x",
                                  "technician", "director"])
def test_names_outside_the_subtree_never_appear(app, tree, login, role, pool):
    app.config["PEER_POOL_TREES"] = pool
    try:
        client = login(tree.users[role])
        own = tree.labs[sorted(SEES[role])[0]]
        for path in (*_pages(tree), f"/peer/labs/{own.id}", f"/reports/labs/{own.id}/dynamic"):
            resp = client.get(path, follow_redirects=True)
            assert resp.status_code in (200, 403), (path, resp.status_code)
            html = resp.get_data(as_text=True)
            for key in LAB_KEYS:
                if key in SEES[role]:
                    continue
                for text in _identities(tree.labs[key]):
                    assert text not in html, (role, path, key, text)
    finally:
        app.config["PEER_POOL_TREES"] = False


def test_the_lot_table_shows_other_district_by_anonymous_code(tree, login):
    html = login(tree.users["center_a"]).get(_lot_url(tree)).get_data(as_text=True)
    for key in ("a", "a2", "a3"):
        assert tree.labs[key].hospital.name in html
    for key in ("b", "b2", "b3", "c"):
        assert tree.labs[key].anon_code in html
    assert tree.labs["x"].anon_code not in html  # separate tree, not pooled in this run


def test_pooled_trees_share_the_group_with_anonymous_codes(app, tree, login):
    client = login(tree.users["center"])
    alone = client.get(_lot_url(tree)).get_data(as_text=True)
    assert "7 家" in alone and tree.labs["x"].anon_code not in alone
    app.config["PEER_POOL_TREES"] = True
    try:
        pooled = client.get(_lot_url(tree)).get_data(as_text=True)
        assert "8 家" in pooled and tree.labs["x"].anon_code in pooled
        assert tree.labs["x"].hospital.name not in pooled
        other = login(tree.users["center_x"]).get(_lot_url(tree)).get_data(as_text=True)
        assert tree.labs["x"].hospital.name in other
        assert tree.labs["a"].anon_code in other and tree.labs["a"].hospital.name not in other
    finally:
        app.config["PEER_POOL_TREES"] = False


def test_expert_sees_the_tree_but_no_write_controls(tree, login):
    client = login(tree.users["expert"])
    html = client.get("/peer/centre").get_data(as_text=True)
    assert all(tree.labs[k].hospital.name in html for k in SEES["expert"])
    assert "冻结该月统计" not in html
    assert "冻结该月统计" in login(tree.users["center"]).get("/peer/centre").get_data(as_text=True)
