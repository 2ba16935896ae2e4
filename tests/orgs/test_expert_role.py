"""The expert (专家组成员): a centre's region scope, by name, and read-only on data.

Every state-changing rule of ``app.url_map`` is posted to as an expert and must refuse it,
except the few whitelisted views below (each with its reason).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter

from qcwx import models as m
from qcwx.errors import Forbidden, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.services import create_user
from qcwx.wechat import services as wechat_services
from tests import factories as f

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# endpoint -> why a read-only expert may post to it
WHITELIST = {
    "orgs.login": "logging in (again, as someone) changes no data",
    "orgs.logout": "ends the session only",
    "wechat.unbind": "unbinds the expert's own WeChat; the service refuses anyone else's",
    "reports.add_comment": "the expert's own comment beside a published report (its purpose); "
                           "the report's data never changes",
}


def _write_rules(app):
    for rule in app.url_map.iter_rules():
        methods = (rule.methods or set()) & WRITE_METHODS
        if methods and rule.endpoint != "static":
            yield rule, sorted(methods)


def _url(app, rule) -> str:
    values = {arg: ("1" if isinstance(rule._converters[arg], IntegerConverter) else "x")
              for arg in rule.arguments}
    with app.test_request_context():
        return app.url_map.bind("localhost").build(rule.endpoint, values,
                                                   method=sorted(rule.methods)[0])


def _counts() -> dict[str, int]:
    tables = (m.User, m.QcRun, m.QcResult, m.ControlLimit, m.ApiKey, m.ShareLink, m.Region,
              m.Hospital, m.Lab, m.TestSystem, m.WechatInvite)
    return {t.__name__: db.session.scalar(select(func.count()).select_from(t)) for t in tables}


def test_the_url_map_has_write_rules_to_check(app):
    endpoints = {rule.endpoint for rule, _ in _write_rules(app)}
    assert {"orgs.logout", "peer.freeze", "peer.save_grouping"} <= endpoints


def test_expert_is_refused_on_every_state_changing_endpoint(app, tree, login):
    client = login(tree.users["expert"])
    before = _counts()
    checked = 0
    for rule, methods in _write_rules(app):
        if rule.endpoint in WHITELIST:
            continue
        url = _url(app, rule)
        for method in methods:
            resp = client.open(url, method=method, data={"x": "1"})
            assert resp.status_code in (403, 404), (rule.rule, method, resp.status_code)
            checked += 1
    assert checked > 30
    assert _counts() == before
    assert client.get("/").status_code == 200  # still logged in: nothing above logged out


def test_the_whitelist_is_exactly_the_views_marked_read_only_allowed(app):
    endpoints = {rule.endpoint for rule, _ in _write_rules(app)}
    assert set(WHITELIST) <= endpoints
    marked = {name for name, view in app.view_functions.items()
              if getattr(view, scopes.READ_ONLY_OK, False)}
    assert marked == set(WHITELIST)


def test_a_centre_passes_the_hook_that_stops_the_expert(tree, login):
    """The refusal above is the expert's: the same post reaches the service for a centre."""
    resp = login(tree.users["center"]).post("/peer/groupings", data={"name": "方案"})
    assert resp.status_code == 400 and "筛选条件" in resp.get_data(as_text=True)
    resp = login(tree.users["expert"]).post("/peer/groupings", data={"name": "方案"})
    assert resp.status_code == 403 and "专家组成员" in resp.get_data(as_text=True)


def test_expert_reads_the_region_tree_by_name(tree, login):
    client = login(tree.users["expert"])
    for key, ts in tree.systems.items():
        status = client.get(f"/ts/{ts.id}").status_code
        assert status == (200 if key != "x" else 404), key
    assert client.get("/peer/centre").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/admin/").status_code == 403
    expert = tree.users["expert"]
    assert scopes.lab_label(expert, tree.labs["b"]) == tree.labs["b"].full_name
    assert scopes.lab_label(expert, tree.labs["x"]) == tree.labs["x"].anon_code


def test_expert_capabilities(tree):
    expert, center = tree.users["expert"], tree.users["center"]
    assert not scopes.can_write(expert) and scopes.can_write(center)
    assert scopes.is_centre_reader(expert)
    with pytest.raises(Forbidden):
        scopes.require_write(expert)
    assert scopes.ROLE_RANK["expert"] < scopes.ROLE_RANK["center"]


def test_expert_cannot_invite_or_manage_bindings(tree):
    expert = tree.users["expert"]
    with pytest.raises(Forbidden):
        wechat_services.manageable_users(expert)
    assert not wechat_services.manages(expert, tree.users["technician"])
    # the city centre may invite (bind) the expert of its region; a district centre may not
    assert wechat_services.manages(tree.users["center"], expert)
    assert not wechat_services.manages(tree.users["center_a"], expert)


def test_expert_needs_a_region(session):
    with pytest.raises(UserError) as err:
        create_user(username="exp-no-region", display_name="专家", password="password123",
                    role="expert")
    assert err.value.field == "region_id"
    region = f.region()
    user = create_user(username="exp-ok", display_name="专家", password="password123",
                       role="expert", region_id=region.id)
    assert user.role_label == "专家组成员"


def test_admin_creates_an_expert_user(tree, login):
    client = login(tree.users["admin"])
    resp = client.post("/admin/user/new/", data={
        "username": "new-expert", "display_name": "新专家", "password": "password123",
        "role": "expert", "region": str(tree.district_a.id), "active": "y"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    user = db.session.scalar(select(m.User).where(m.User.username == "new-expert"))
    assert user.role == "expert" and user.region_id == tree.district_a.id


def test_expert_cannot_submit_through_the_mini_program(app, tree, client):
    from miniprogram_api.auth import issue_token

    expert = tree.users["expert"]
    expert.mp_openid = "mp-expert-openid"
    db.session.commit()
    token = issue_token(expert)["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/mp/v1/me", headers=headers).status_code == 200
    for rule, methods in _write_rules(app):
        if not rule.rule.startswith("/api/mp/") or rule.endpoint.endswith((".login", ".bind")):
            continue
        for method in methods:
            resp = client.open(_url(app, rule), method=method, json={}, headers=headers)
            assert resp.status_code == 403, (rule.rule, resp.status_code)
