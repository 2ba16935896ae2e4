"""The centre's admin pages: who gets in, region scope, users, test systems (real views)."""

from __future__ import annotations

import json
import re

import pytest
from flask import url_for
from sqlalchemy import func, select

from qcwx import models as m
from qcwx.audit.services import set_actor
from qcwx.extensions import db
from tests import factories as f


@pytest.fixture(autouse=True)
def _no_audit_actor_from_earlier_requests():
    """A request's audit actor outlives it in this thread; rolled-back users break FKs."""
    set_actor(None)
    yield
    set_actor(None)


@pytest.fixture
def world(world, session):
    """The shared world, its savepoint released so a view's rollback cannot undo it.

    Requests in tests share the test's app context and so its session; the outer
    transaction of the ``session`` fixture still discards everything afterwards.
    """
    session.commit()
    return world


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _user(username: str) -> m.User | None:
    db.session.expire_all()
    return db.session.scalar(select(m.User).where(m.User.username == username))


# ----------------------------------------------------------------------------- access


def test_admin_endpoints_have_the_names_the_home_page_links_to(app, world):
    with app.test_request_context():
        assert url_for("admin.index") == "/admin/"
        assert url_for("testsystem.index_view") == "/admin/testsystem/"
        assert url_for("analyte.index_view") == "/admin/analyte/"
        assert url_for("import_test_systems.index") == "/admin/import-test-systems/"


@pytest.mark.parametrize("role", ["admin", "center"])
def test_admin_and_center_get_into_every_admin_page(world, login, role):
    client = login(world.users[role])
    for url in ("/admin/", "/admin/hospital/", "/admin/lab/", "/admin/user/",
                "/admin/instrument/", "/admin/testsystem/", "/admin/testsystem/new/",
                "/admin/analyte/", "/admin/qualityspec/", "/admin/reagent/", "/admin/method/",
                "/admin/calibrator/", "/admin/qcmaterial/", "/admin/qclot/",
                "/admin/qclot/new/", "/admin/user/new/", "/admin/import-test-systems/"):
        resp = client.get(url)
        assert resp.status_code == 200, url
    page = client.get("/admin/").get_data(as_text=True)
    assert "质控中心管理" in page and "检测系统" in page


@pytest.mark.parametrize("role", ["director", "supervisor", "technician"])
def test_other_roles_are_refused_with_403(world, login, role):
    client = login(world.users[role])
    for url in ("/admin/", "/admin/hospital/", "/admin/testsystem/",
                "/admin/import-test-systems/"):
        resp = client.get(url)
        assert resp.status_code == 403, url
        assert "无权" in resp.get_data(as_text=True)


def test_anonymous_user_is_sent_to_login(client, world):
    for url in ("/admin/", "/admin/user/", "/admin/import-test-systems/"):
        resp = client.get(url)
        assert resp.status_code == 302
        assert "/login" in resp.headers["Location"]
        assert "next=" in resp.headers["Location"]


@pytest.mark.parametrize("target", ["/admin/\nx", "/\t/evil.example.com", "//evil.example.com",
                                    "https://evil.example.com/"])
def test_a_return_address_off_the_site_or_with_a_newline_is_a_400(world, login, target):
    """Regression (issue 14, form fuzzer): Flask-Admin redirects to the posted ``url`` after an
    action; its check ignores whitespace, so a newline reached ``Location``: a 500."""
    client = login(world.users["admin"])
    resp = client.post("/admin/instrument/action/", data={"url": target, "action": "delete"})
    assert resp.status_code == 400
    assert "返回地址 url 无效" in resp.get_data(as_text=True)
    assert client.get("/admin/instrument/", query_string={"url": target}).status_code == 400
    ok = client.post("/admin/instrument/action/",
                     data={"url": "/admin/instrument/?page=0", "action": "delete"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/admin/instrument/?page=0"


def test_region_page_is_for_platform_admins_only(world, login):
    assert login(world.users["center"]).get("/admin/region/").status_code == 403
    assert login(world.users["admin"]).get("/admin/region/").status_code == 200


def test_flask_admin_ui_speaks_chinese(world, login):
    page = login(world.users["center"]).get("/admin/hospital/").get_data(as_text=True)
    assert "创建" in page and "列表" in page and "医院编码" in page
    assert "Create" not in page and "List (" not in page


# ----------------------------------------------------------------------------- region scope


def test_center_lists_only_its_own_region(world, login):
    client = login(world.users["center"])
    hospitals = client.get("/admin/hospital/").get_data(as_text=True)
    assert world.hosp1.name in hospitals and world.hosp2.name in hospitals
    assert world.hosp3.name not in hospitals
    labs = client.get("/admin/lab/").get_data(as_text=True)
    assert world.lab_a.anon_code in labs and world.lab_c.anon_code not in labs
    users = client.get("/admin/user/").get_data(as_text=True)
    for key in ("center", "director", "technician", "technician_b"):
        assert re.search(rf"\b{world.users[key].username}\b", users), key
    for key in ("center2", "technician_c", "admin"):
        assert not re.search(rf"\b{world.users[key].username}\b", users), key
    systems = client.get("/admin/testsystem/").get_data(as_text=True)
    assert "列表 (2)" in systems
    assert world.hosp3.name not in systems


def test_admin_index_counts_only_the_region(world, login):
    page = login(world.users["center"]).get("/admin/").get_data(as_text=True)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "医院 2 " in text and "实验室 2 " in text and "检测系统 2 " in text


@pytest.mark.parametrize("path", ["hospital/edit/?id={hosp3}", "hospital/details/?id={hosp3}",
                                  "lab/edit/?id={lab_c}", "user/edit/?id={tech_c}",
                                  "testsystem/edit/?id={ts_c}", "instrument/edit/?id={inst_c}",
                                  "hospital/edit/?id=999999"])
def test_center_gets_404_on_objects_of_another_region(world, login, path):
    url = "/admin/" + path.format(
        hosp3=world.hosp3.id, lab_c=world.lab_c.id, tech_c=world.users["technician_c"].id,
        ts_c=world.systems["c"].id, inst_c=world.systems["c"].instrument_id)
    assert login(world.users["center"]).get(url).status_code == 404


def test_center_cannot_change_or_delete_another_regions_hospital(world, login):
    client = login(world.users["center"])
    url = f"/admin/hospital/edit/?id={world.hosp3.id}"
    resp = client.post(url, data={"region": str(world.region1.id), "code": world.hosp3.code,
                                  "name": "改名", "level": "三级", "type": "综合医院"})
    assert resp.status_code == 404
    resp = client.post("/admin/hospital/delete/", data={"id": str(world.hosp3.id)})
    assert resp.status_code == 404
    db.session.expire_all()
    assert db.session.get(m.Hospital, world.hosp3.id).name != "改名"


def test_center_creates_hospital_and_lab_only_in_its_region(world, login):
    client = login(world.users["center"])
    refused = client.post("/admin/hospital/new/", data={
        "region": str(world.region2.id), "code": "TST-H2", "name": "外区医院", "level": "二级",
        "type": "综合医院"})
    assert refused.status_code == 200  # form shown again with the error
    assert "所选项无效或不在您的管理范围内" in refused.get_data(as_text=True)
    assert _count(m.Hospital, m.Hospital.code == "TST-H2") == 0
    created = client.post("/admin/hospital/new/", data={
        "region": str(world.region1.id), "code": "TST-H1", "name": "本区新医院", "level": "二级",
        "type": "专科医院"})
    assert created.status_code == 302
    hospital = db.session.scalar(select(m.Hospital).where(m.Hospital.code == "TST-H1"))
    assert hospital.region_id == world.region1.id and hospital.type == "专科医院"

    refused = client.post("/admin/lab/new/", data={
        "hospital": str(world.hosp3.id), "code": "TST-L2", "name": "检验科",
        "timezone": "Asia/Shanghai"})
    assert _count(m.Lab, m.Lab.code == "TST-L2") == 0
    created = client.post("/admin/lab/new/", data={
        "hospital": str(hospital.id), "code": "TST-L1", "name": "检验科",
        "timezone": "Asia/Shanghai"})
    assert created.status_code == 302
    lab = db.session.scalar(select(m.Lab).where(m.Lab.code == "TST-L1"))
    assert re.fullmatch(r"Q[A-Z2-9]{6}", lab.anon_code)


def test_hospital_level_and_type_are_choices(world, login):
    client = login(world.users["center"])
    client.post("/admin/hospital/new/", data={
        "region": str(world.region1.id), "code": "TST-H3", "name": "乱填等级", "level": "四级",
        "type": "综合医院"})
    assert _count(m.Hospital, m.Hospital.code == "TST-H3") == 0
    page = client.get("/admin/hospital/new/").get_data(as_text=True)
    for value in ("一级", "二级", "三级", "社区卫生服务中心"):
        assert f'value="{value}"' in page


def test_centre_dropdowns_hold_only_its_region(world, login):
    page = login(world.users["center"]).get("/admin/testsystem/new/").get_data(as_text=True)
    assert world.lab_a.full_name in page and world.lab_c.full_name not in page
    page = login(world.users["center"]).get("/admin/user/new/").get_data(as_text=True)
    assert world.region1.name in page and world.region2.name not in page
    assert 'value="admin"' not in page  # a centre cannot even pick the admin role


# ----------------------------------------------------------------------------- users


def _user_form(**overrides) -> dict:
    data = {"username": "newtech", "display_name": "新技师", "password": "s3cret-pass",
            "role": "technician", "region": "__None", "hospital": "__None", "lab": "__None",
            "phone": "13800000000", "active": "y"}
    data.update({k: str(v) for k, v in overrides.items()})
    return data


@pytest.mark.parametrize("role", ["admin", "center"])
def test_user_creation_hashes_the_password_and_takes_scope_from_the_lab(world, login, role):
    resp = login(world.users[role]).post("/admin/user/new/", data=_user_form(lab=world.lab_a.id))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    user = _user("newtech")
    assert user.password_hash != "s3cret-pass" and user.check_password("s3cret-pass")
    assert (user.lab_id, user.hospital_id, user.region_id) == (
        world.lab_a.id, world.hosp1.id, world.region1.id)
    assert user.phone == "13800000000" and user.active


@pytest.mark.parametrize(("overrides", "message"), [
    ({}, "该角色必须指定实验室"),
    ({"role": "director"}, "科主任必须指定医院"),
    ({"role": "center"}, "质控中心用户必须指定区域"),
    ({"password": "short"}, "密码至少 8 位"),
])
def test_user_creation_follows_the_role_rules(world, login, overrides, message):
    data = _user_form(**overrides)
    if "password" in overrides:
        data["lab"] = str(world.lab_a.id)
    resp = login(world.users["admin"]).post("/admin/user/new/", data=data)
    assert resp.status_code == 200
    assert message in resp.get_data(as_text=True)
    assert _user("newtech") is None


def test_center_may_not_create_admins_or_users_of_another_region(world, login):
    client = login(world.users["center"])
    client.post("/admin/user/new/", data=_user_form(role="admin"))
    assert _user("newtech") is None
    client.post("/admin/user/new/", data=_user_form(role="center", region=world.region2.id))
    assert _user("newtech") is None
    client.post("/admin/user/new/", data=_user_form(lab=world.lab_c.id))
    assert _user("newtech") is None
    resp = client.post("/admin/user/new/", data=_user_form(role="center", region=world.region1.id))
    assert resp.status_code == 302
    assert _user("newtech").region_id == world.region1.id


def test_admin_may_create_a_centre_user_of_any_region(world, login):
    resp = login(world.users["admin"]).post(
        "/admin/user/new/", data=_user_form(role="center", region=world.region2.id))
    assert resp.status_code == 302
    assert _user("newtech").region_id == world.region2.id


def test_user_edit_keeps_the_password_unless_a_new_one_is_given(world, login):
    tech = world.users["technician_b"]
    client = login(world.users["center"])
    url = f"/admin/user/edit/?id={tech.id}"
    base = _user_form(username=tech.username, display_name="改名技师", password="",
                      lab=world.lab_b.id)
    assert client.post(url, data=base).status_code == 302
    edited = _user(tech.username)
    assert edited.display_name == "改名技师" and edited.check_password(f.PASSWORD)
    assert client.post(url, data={**base, "password": "another-pass"}).status_code == 302
    assert _user(tech.username).check_password("another-pass")
    moved = client.post(url, data={**base, "lab": str(world.lab_c.id)})
    assert moved.status_code == 200
    assert _user(tech.username).lab_id == world.lab_b.id


def test_password_hash_is_never_shown(world, login):
    client = login(world.users["admin"])
    tech = world.users["technician"]
    for url in ("/admin/user/", f"/admin/user/details/?id={tech.id}",
                f"/admin/user/edit/?id={tech.id}"):
        page = client.get(url).get_data(as_text=True)
        assert tech.password_hash not in page and "password_hash" not in page


def test_users_are_deactivated_not_deleted(world, login):
    resp = login(world.users["admin"]).post(
        "/admin/user/delete/", data={"id": str(world.users["technician"].id)})
    assert resp.status_code == 302
    assert _user(world.users["technician"].username) is not None


# ----------------------------------------------------------------------------- test systems


def _system_form(world, lot, levels, **overrides) -> dict:
    ts = world.systems["a"]
    data = {"lab": ts.lab_id, "analyte": ts.analyte_id, "instrument": ts.instrument_id,
            "reagent": "__None", "method": "__None", "calibrator": "__None",
            "unit": "mmol/L", "temperature": "37℃", "qc_lot": lot.id,
            "levels": [str(lv.id) for lv in levels], "active": "y"}
    data.update(overrides)
    return {k: (v if isinstance(v, list) else str(v)) for k, v in data.items()}


def test_test_system_levels_must_belong_to_the_chosen_lot(world, login):
    other_lot = f.qc_lot(3)
    lot = world.systems["a"].qc_lot
    client = login(world.users["center"])
    before = _count(m.TestSystem)
    resp = client.post("/admin/testsystem/new/",
                       data=_system_form(world, lot, [lot.levels[0], other_lot.levels[2]]))
    assert resp.status_code == 200
    assert "所选水平必须属于质控批号" in resp.get_data(as_text=True)
    assert _count(m.TestSystem) == before
    resp = client.post("/admin/testsystem/new/", data=_system_form(world, other_lot, []))
    assert "请至少选择一个质控水平" in resp.get_data(as_text=True)
    resp = client.post("/admin/testsystem/new/",
                       data=_system_form(world, other_lot, other_lot.levels))
    assert resp.status_code == 302
    created = db.session.scalar(select(m.TestSystem).where(m.TestSystem.qc_lot_id == other_lot.id))
    assert [lv.level_index for lv in created.levels] == [1, 2, 3]


def test_test_system_instrument_must_stand_in_the_lab(world, login):
    lot = world.systems["a"].qc_lot
    data = _system_form(world, lot, lot.levels, lab=world.lab_b.id)
    resp = login(world.users["center"]).post("/admin/testsystem/new/", data=data)
    assert "不属于实验室" in resp.get_data(as_text=True)


def test_center_cannot_put_a_test_system_in_another_regions_lab(world, login):
    lot = world.systems["a"].qc_lot
    before = _count(m.TestSystem)
    data = _system_form(world, lot, lot.levels, lab=world.lab_c.id,
                        instrument=world.systems["c"].instrument_id)
    resp = login(world.users["center"]).post("/admin/testsystem/new/", data=data)
    assert resp.status_code == 200
    assert _count(m.TestSystem) == before


def _filter_arg(page: str, label: str, operation: str = "包含") -> str:
    groups = json.loads(re.search(r'id="filter-groups-data"[^>]*>(.*?)</', page, re.S).group(1))
    return next(op["arg"] for op in groups[label] if op["operation"] == operation)


def test_test_systems_filter_by_lab_analyte_maker_and_lot(world, login):
    client = login(world.users["center"])
    page = client.get("/admin/testsystem/").get_data(as_text=True)
    lot_number = world.systems["a"].qc_lot.lot_number
    for label, value, expected in (("实验室名称", world.lab_a.name, 2), ("项目代码", "GLU", 2),
                                   ("仪器厂家", "Roche", 2), ("仪器厂家", "迈瑞", 0),
                                   ("质控批号", lot_number, 2), ("质控批号", "无此批号", 0)):
        arg = _filter_arg(page, label)
        listed = client.get(f"/admin/testsystem/?flt0_{arg}={value}").get_data(as_text=True)
        shown = re.search(r"列表 \((\d+)\)", listed)
        assert (int(shown.group(1)) if shown else 0) == expected, (label, value)
    searched = client.get("/admin/testsystem/?search=GLU&sort=1").get_data(as_text=True)
    assert "列表 (2)" in searched  # region 2's GLU system stays out of the search too


def test_qc_lot_is_created_with_its_levels_inline(world, login):
    material = world.systems["a"].qc_lot.material
    resp = login(world.users["center"]).post("/admin/qclot/new/", data={
        "material": str(material.id), "lot_number": "TST-LOT", "expiry": "2027-01-31",
        "levels-0-level_index": "1", "levels-0-name": "低值",
        "levels-1-level_index": "2", "levels-1-name": "高值"})
    assert resp.status_code == 302
    db.session.expire_all()
    lot = db.session.scalar(select(m.QcLot).where(m.QcLot.lot_number == "TST-LOT"))
    assert [(lv.level_index, lv.name) for lv in lot.levels] == [(1, "低值"), (2, "高值")]


def test_platform_admin_edits_the_shared_catalogue(world, login):
    client = login(world.users["admin"])
    resp = client.post("/admin/analyte/new/", data={
        "code": "TST-ALT", "name": "丙氨酸氨基转移酶", "unit": "U/L", "decimals": "0",
        "discipline": "生化", "plausible_low": "0", "plausible_high": "2000"})
    assert resp.status_code == 302
    assert _count(m.Analyte, m.Analyte.code == "TST-ALT") == 1
    resp = client.post("/admin/reagent/new/", data={"maker": "迈瑞", "name": "ALT 测定试剂盒"})
    assert resp.status_code == 302


def test_duplicates_are_refused_with_a_chinese_message(world, login):
    client = login(world.users["admin"])
    resp = client.post("/admin/method/new/", data={"code": "HK", "name": "重复"})
    assert resp.status_code == 200 and "已经存在" in resp.get_data(as_text=True)
    reagent = world.systems["a"].reagent
    resp = client.post("/admin/reagent/new/", data={"maker": reagent.maker, "name": reagent.name})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "与已有数据冲突" in page
    assert "IntegrityError" not in page and "constraint" not in page.lower()


@pytest.mark.parametrize("ident", ["9" * 30, "-1", "0", "٣"])
@pytest.mark.parametrize("kind", ["hospital", "instrument", "qualityspec", "user"])
def test_an_id_that_is_no_database_id_is_404_never_500(world, login, kind, ident):
    """Regression (the fuzz sweep): ``POST /admin/<kind>/delete/`` with ``id=10**30`` took
    ``int()`` and overflowed SQLite's INTEGER (500); ``int("٣")`` also read a Unicode digit."""
    client = login(world.users["admin"])
    assert client.post(f"/admin/{kind}/delete/", data={"id": ident}).status_code in (302, 404)
    for page in ("edit", "details"):
        resp = client.get(f"/admin/{kind}/{page}/", query_string={"id": ident})
        assert resp.status_code in (302, 404)


@pytest.mark.parametrize("page", ["9" * 30, "-1", "1000001"])
def test_a_list_page_the_database_cannot_offset_to_is_404(world, login, page):
    """Regression: ``?page=10**30`` overflowed SQLite's OFFSET and ``-1`` gave MariaDB a
    negative one: 500s."""
    client = login(world.users["admin"])
    assert client.get("/admin/hospital/", query_string={"page": page}).status_code == 404
    assert client.get("/admin/hospital/", query_string={"page": "2"}).status_code == 200
