"""Nested centres: scopes follow the region tree (role × tree position), in the SQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.config import SETTINGS
from qcwx.extensions import db
from qcwx.orgs import scopes
from tests.integration.test_admin import _user_form
from tests.orgs.tree_world import LAB_KEYS, SEES

ROLES = sorted(SEES)


@pytest.mark.parametrize("role", ROLES)
def test_scope_query_and_names_follow_the_tree(tree, role):
    actor = tree.users[role]
    ids = set(db.session.scalars(scopes.lab_ids_in_scope(actor)))
    mine = {tree.labs[k].id for k in SEES[role]}
    assert ids & {lab.id for lab in tree.labs.values()} == mine
    for key in LAB_KEYS:
        lab = tree.labs[key]
        assert scopes.can_access_lab(actor, lab.id) is (key in SEES[role]), key
        expected = lab.full_name if key in SEES[role] else lab.anon_code
        assert scopes.lab_label(actor, lab) == expected, key


@pytest.mark.parametrize("role", ROLES)
def test_entry_pages_answer_404_outside_the_subtree(tree, login, role):
    client = login(tree.users[role])
    for key, ts in tree.systems.items():
        status = client.get(f"/ts/{ts.id}").status_code
        assert status == (200 if key in SEES[role] else 404), (role, key)


def test_anonymous_is_sent_to_login(tree, client):
    assert client.get(f"/ts/{tree.systems['a'].id}").status_code == 302


def test_regions_in_scope_are_the_subtree(tree):
    def ids(role):
        return set(db.session.scalars(scopes.region_ids_in_scope(tree.users[role])))

    t = tree
    assert ids("center") == ids("expert") == {t.city.id, t.district_a.id, t.district_b.id}
    assert ids("center_a") == {t.district_a.id}
    assert ids("center_x") == {t.other.id}
    assert {t.city.id, t.other.id} <= ids("admin")
    assert [r.id for r in scopes.regions_in_scope(t.users["center"])] == [
        t.city.id, *sorted((t.district_a.id, t.district_b.id),
                           key=lambda i: db.session.get(m.Region, i).code)]
    assert scopes.root_region_id(t.district_b.id) == t.city.id


def test_a_deeper_tree_is_followed_to_every_level(tree):
    street = m.Region(code="TREE-DEEP", name="树状甲区街道", level="district",
                      parent=tree.district_a)
    db.session.add(street)
    db.session.flush()
    hospital = m.Hospital(region=street, code="TREE-DEEP-H", name="街道医院", level="一级")
    lab = m.Lab(hospital=hospital, code="TREE-DEEP-L", name="检验科", anon_code="QDEEP")
    db.session.add(lab)
    db.session.flush()
    for role, sees in (("center", True), ("center_a", True), ("center_b", False),
                       ("expert", True), ("center_x", False)):
        assert scopes.can_access_lab(tree.users[role], lab.id) is sees, role


def test_alerts_reach_the_centres_above_a_lab(tree):
    from qcwx.alerts.recipients import _centre_users

    def names(key):
        return {u.id for u in _centre_users(tree.labs[key])}

    t = tree
    assert names("b") == {t.users["center"].id, t.users["center_b"].id}
    assert names("c") == {t.users["center"].id}
    assert names("x") == {t.users["center_x"].id}


def test_peer_regions_pool_trees_by_setting(app, tree):
    assert SETTINGS["PEER_POOL_TREES"] == (bool, True)  # the product default: pool
    app.config["PEER_POOL_TREES"] = True
    try:
        assert scopes.peer_regions(tree.district_a.id) is None
        app.config["PEER_POOL_TREES"] = False
        pooled = set(db.session.scalars(scopes.peer_regions(tree.district_a.id)))
        assert pooled == {tree.city.id, tree.district_a.id, tree.district_b.id}
    finally:
        app.config["PEER_POOL_TREES"] = False


# ------------------------------------------------------------------ admin along the tree


def _user(username: str) -> m.User | None:
    return db.session.scalar(select(m.User).where(m.User.username == username))


def test_city_centre_manages_users_of_its_districts(tree, login):
    client = login(tree.users["center"])
    resp = client.post("/admin/user/new/", data=_user_form(lab=tree.labs["b"].id))
    assert resp.status_code == 302
    assert _user("newtech").region_id == tree.district_b.id
    resp = client.post("/admin/user/new/", data=_user_form(
        username="treeexpert", role="expert", region=tree.district_a.id))
    assert resp.status_code == 302 and _user("treeexpert").role == "expert"


def test_district_centre_cannot_reach_the_other_district(tree, login):
    client = login(tree.users["center_a"])
    client.post("/admin/user/new/", data=_user_form(lab=tree.labs["b"].id))
    assert _user("newtech") is None
    client.post("/admin/user/new/", data=_user_form(role="center", region=tree.city.id))
    assert _user("newtech") is None
    user_b = tree.users["center_b"]
    assert client.get(f"/admin/user/edit/?id={user_b.id}").status_code == 404
    hosp_b = tree.labs["b"].hospital
    assert client.get(f"/admin/hospital/edit/?id={hosp_b.id}").status_code == 404
    listing = client.get("/admin/hospital/").get_data(as_text=True)
    assert "树A医院" in listing and "树B医院" not in listing


def test_admin_creates_a_region_under_a_parent_and_refuses_a_cycle(tree, login):
    client = login(tree.users["admin"])
    resp = client.post("/admin/region/new/", data={
        "parent": str(tree.district_a.id), "code": "TREE-NEW", "name": "新街道",
        "level": "district"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    region = db.session.scalar(select(m.Region).where(m.Region.code == "TREE-NEW"))
    assert region.parent_id == tree.district_a.id and region.level_label == "区县"
    resp = client.post(f"/admin/region/edit/?id={tree.city.id}", data={
        "parent": str(tree.district_a.id), "code": tree.city.code, "name": tree.city.name,
        "level": "city"})
    db.session.expire_all()
    assert db.session.get(m.Region, tree.city.id).parent_id is None
    assert login(tree.users["center"]).get("/admin/region/").status_code == 403
