"""The shared catalogue: only the platform admin changes it, centres propose; values are checked."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select, update

from qcwx import models as m
from qcwx.audit.models import AuditLog
from qcwx.audit.services import set_actor
from qcwx.catalog.models import CatalogueProposal
from qcwx.catalog.services import import_test_systems
from qcwx.errors import UserError
from qcwx.extensions import db


@pytest.fixture(autouse=True)
def _no_audit_actor_from_earlier_requests():
    """A request's audit actor outlives it in this thread; rolled-back users break FKs."""
    set_actor(None)
    yield
    set_actor(None)


@pytest.fixture
def spec(world, session):
    """An active quality specification of the world's glucose, committed like the world."""
    row = m.QualitySpec(analyte=world.systems["a"].analyte, spec_set="WS/T 403-2024",
                        allowable_cv=3.0, allowable_bias=2.0, tea_pct=7.0, source="WS/T 403-2024")
    session.add(row)
    session.commit()
    return row


def _analyte_form(analyte, **overrides) -> dict:
    data = {"code": analyte.code, "name": analyte.name, "unit": analyte.unit,
            "decimals": str(analyte.decimals), "discipline": analyte.discipline,
            "plausible_low": "0", "plausible_high": "50"}
    data.update({k: str(v) for k, v in overrides.items()})
    return data


def _spec_form(world, **overrides) -> dict:
    data = {"analyte": str(world.systems["a"].analyte_id), "spec_set": "测试规范",
            "allowable_cv": "3", "allowable_bias": "2", "tea_pct": "7", "tea_abs": "",
            "tea_abs_unit": "", "tea_threshold": "", "source": "测试", "version": "1",
            "active": "y"}
    data.update({k: str(v) for k, v in overrides.items()})
    return data


def _fresh(model, ident):
    db.session.expire_all()
    return db.session.get(model, ident)


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


# ----------------------------------------------------------------------------- centres read only


def test_centre_forging_decimals_minus_5_on_a_shared_analyte_gets_403_and_changes_nothing(
        world, login):
    glu = world.systems["a"].analyte
    client = login(world.users["center"])
    resp = client.post(f"/admin/analyte/edit/?id={glu.id}", data=_analyte_form(glu, decimals=-5))
    assert resp.status_code == 403
    assert _fresh(m.Analyte, glu.id).decimals == 2
    assert client.get(f"/admin/analyte/edit/?id={glu.id}").status_code == 403
    assert client.post("/admin/analyte/new/", data=_analyte_form(
        glu, code="TST-NEW")).status_code == 403
    assert _count(m.Analyte, m.Analyte.code == "TST-NEW") == 0


@pytest.mark.parametrize("kind", ["reagent", "method", "qualityspec", "calibrator", "qcmaterial",
                                  "analyte", "qclot"])
def test_centre_cannot_delete_shared_rows(world, login, spec, kind):
    ts = world.systems["a"]
    obj = {"reagent": ts.reagent, "method": ts.method, "qualityspec": spec,
           "calibrator": None, "qcmaterial": ts.qc_lot.material, "analyte": ts.analyte,
           "qclot": ts.qc_lot}[kind]
    if obj is None:
        obj = m.Calibrator(maker="Roche", name="C.f.a.s.")
        db.session.add(obj)
        db.session.commit()
    model, ident = type(obj), obj.id
    client = login(world.users["center"])
    assert client.post(f"/admin/{kind}/delete/", data={"id": str(ident)}).status_code == 403
    assert client.post(f"/admin/{kind}/action/", data={
        "action": "delete", "rowid": str(ident)}).status_code == 403
    assert _fresh(model, ident) is not None


def test_centre_cannot_edit_a_shared_spec_or_an_existing_qc_lot(world, login, spec):
    client = login(world.users["center"])
    resp = client.post(f"/admin/qualityspec/edit/?id={spec.id}",
                       data=_spec_form(world, allowable_cv="-1"))
    assert resp.status_code == 403
    assert _fresh(m.QualitySpec, spec.id).allowable_cv == 3.0
    lot = world.systems["a"].qc_lot
    resp = client.post(f"/admin/qclot/edit/?id={lot.id}", data={
        "material": str(lot.material_id), "lot_number": "改批号", "expiry": "2027-12-31"})
    assert resp.status_code == 403
    assert _fresh(m.QcLot, lot.id).lot_number == lot.lot_number


def test_shared_lists_offer_centres_proposals_instead_of_edit_links(world, login):
    glu = world.systems["a"].analyte
    page = login(world.users["center"]).get("/admin/analyte/").get_data(as_text=True)
    assert "建议新增" in page and "/admin/proposals/new?table=analyte" in page
    assert f"/admin/analyte/edit/?id={glu.id}" not in page
    assert "/admin/analyte/new/" not in page
    page = login(world.users["admin"]).get("/admin/analyte/").get_data(as_text=True)
    assert f"/admin/analyte/edit/?id={glu.id}" in page and "建议新增" not in page


def test_centre_still_maintains_its_own_regions_rows(world, login):
    client = login(world.users["center"])
    hosp = world.hosp1
    resp = client.post(f"/admin/hospital/edit/?id={hosp.id}", data={
        "region": str(world.region1.id), "code": hosp.code, "name": "市第一人民医院（新院区）",
        "level": "三级", "type": "综合医院"})
    assert resp.status_code == 302
    assert _fresh(m.Hospital, hosp.id).name == "市第一人民医院（新院区）"
    inst = world.systems["a"].instrument
    resp = client.post(f"/admin/instrument/edit/?id={inst.id}", data={
        "lab": str(inst.lab_id), "maker": inst.maker, "model": inst.model, "serial": "SN-NEW",
        "name": "1号机"})
    assert resp.status_code == 302
    assert _fresh(m.Instrument, inst.id).serial == "SN-NEW"


# ----------------------------------------------------------------------------- value checks


@pytest.mark.parametrize("decimals", ["-5", "7", "1.5"])
def test_admin_posting_decimals_outside_0_to_6_gets_a_form_error(world, login, decimals):
    glu = world.systems["a"].analyte
    resp = login(world.users["admin"]).post(f"/admin/analyte/edit/?id={glu.id}",
                                            data=_analyte_form(glu, decimals=decimals))
    assert resp.status_code == 200
    if decimals != "1.5":  # not an integer at all: WTForms says so itself
        assert "“小数位数”须为 0～6 的整数" in resp.get_data(as_text=True)
    assert _fresh(m.Analyte, glu.id).decimals == 2


def test_admin_saves_valid_decimals_and_plausible_limits_must_be_ordered(world, login):
    glu = world.systems["a"].analyte
    client = login(world.users["admin"])
    resp = client.post(f"/admin/analyte/edit/?id={glu.id}",
                       data=_analyte_form(glu, plausible_low=60, plausible_high=50))
    assert resp.status_code == 200 and "“合理上限”须大于“合理下限”" in resp.get_data(as_text=True)
    resp = client.post(f"/admin/analyte/edit/?id={glu.id}",
                       data=_analyte_form(glu, plausible_high="inf"))
    assert resp.status_code == 200 and "须为有限的数值" in resp.get_data(as_text=True)
    resp = client.post(f"/admin/analyte/edit/?id={glu.id}", data=_analyte_form(glu, decimals=3))
    assert resp.status_code == 302
    assert _fresh(m.Analyte, glu.id).decimals == 3


@pytest.mark.parametrize(("overrides", "message"), [
    ({"allowable_cv": "0"}, "“允许CV(%)”须为大于 0 的数值"),
    ({"allowable_bias": "-2"}, "“允许偏倚(%)”须为大于 0 的数值"),
    ({"tea_pct": "nan"}, "“TEa(%)”须为大于 0 的数值"),
    ({"tea_pct": "250"}, "“TEa(%)”不能超过 100"),
    ({"tea_abs": "0.2", "tea_abs_unit": "mmol/L"}, "两段式 TEa 须同时填写"),
    ({"tea_abs": "0.2", "tea_abs_unit": "mmol/L", "tea_threshold": "-3"}, "须为大于 0 的数值"),
    ({"version": "0"}, "“版本”须为 1～10000 的整数"),
])
def test_admin_quality_spec_values_are_checked(world, login, overrides, message):
    resp = login(world.users["admin"]).post("/admin/qualityspec/new/",
                                            data=_spec_form(world, **overrides))
    assert resp.status_code == 200
    assert message in resp.get_data(as_text=True)
    assert _count(m.QualitySpec, m.QualitySpec.spec_set == "测试规范") == 0


def test_admin_saves_a_complete_two_tier_spec(world, login):
    resp = login(world.users["admin"]).post("/admin/qualityspec/new/", data=_spec_form(
        world, tea_abs="0.2", tea_abs_unit="mmol/L", tea_threshold="3.3", tea_pct="6"))
    assert resp.status_code == 302
    row = db.session.scalar(select(m.QualitySpec).where(m.QualitySpec.spec_set == "测试规范"))
    assert row.tea_text == "0.2 mmol/L (≤3.3)；6%"


def test_qc_lot_levels_are_numbered_1_to_3(world, login):
    material = world.systems["a"].qc_lot.material
    resp = login(world.users["center"]).post("/admin/qclot/new/", data={
        "material": str(material.id), "lot_number": "TST-LOT4", "expiry": "2027-01-31",
        "levels-0-level_index": "1", "levels-0-name": "低值",
        "levels-1-level_index": "4", "levels-1-name": "超高值"})
    assert resp.status_code == 200
    assert "“水平序号”须为 1～3 的整数" in resp.get_data(as_text=True)
    assert _count(m.QcLot, m.QcLot.lot_number == "TST-LOT4") == 0


def test_every_orm_write_is_checked_at_flush(world, session):
    glu = world.systems["a"].analyte
    glu.decimals = -5
    with pytest.raises(UserError, match="小数位数") as caught:
        session.flush()
    assert caught.value.field == "decimals" and caught.value.status == 400
    session.rollback()
    session.add(m.QcLevel(lot=world.systems["a"].qc_lot, level_index=4, name="水平4"))
    with pytest.raises(UserError, match="水平序号"):
        session.flush()
    session.rollback()


def test_csv_import_refuses_more_than_three_levels(world):
    header = "医院名称,实验室名称,项目代码,仪器厂家,仪器型号,质控品厂家,质控品名称,质控批号,水平数"
    row = f"{world.hosp1.name},{world.lab_a.name},GLU,Roche,cobas c702,Bio-Rad,Lyphochek,L4,4"
    report = import_test_systems(world.users["center"], f"{header}\n{row}\n".encode(),
                                 dry_run=True)
    assert "水平数应为 1～3 的整数" in report.rows[0].errors


def test_a_legacy_negative_decimals_is_read_as_0_and_pages_still_render(world, login):
    glu = world.systems["a"].analyte
    db.session.execute(update(m.Analyte).where(m.Analyte.id == glu.id).values(decimals=-5))
    db.session.commit()
    assert _fresh(m.Analyte, glu.id).decimals == 0
    client = login(world.users["technician"])
    ts_id = world.systems["a"].id
    for url in (f"/ts/{ts_id}", f"/ts/{ts_id}/chart"):
        assert client.get(url).status_code == 200, url


# ----------------------------------------------------------------------------- proposals


def _propose(client, analyte, **overrides):
    data = _analyte_form(analyte, **overrides)
    data.setdefault("reason", "WS/T 403-2024 要求两位小数以外的精度")
    return client.post(f"/admin/proposals/new?table=analyte&id={analyte.id}", data=data)


def _proposal() -> CatalogueProposal:
    db.session.expire_all()
    return db.session.scalars(select(CatalogueProposal).order_by(CatalogueProposal.id.desc())
                              ).first()


def test_proposal_accepted_by_the_admin_is_applied_and_audited(world, login):
    glu = world.systems["a"].analyte
    centre = login(world.users["center"])
    assert centre.get(f"/admin/proposals/new?table=analyte&id={glu.id}").status_code == 200
    resp = _propose(centre, glu, decimals=3)
    assert resp.status_code == 302
    proposal = _proposal()
    assert (proposal.status, proposal.action, proposal.row_id) == ("pending", "update", glu.id)
    assert proposal.proposed_values == {"decimals": 3}
    assert proposal.region_id == world.region1.id
    assert _fresh(m.Analyte, glu.id).decimals == 2
    assert centre.post(f"/admin/proposals/{proposal.id}/decide",
                       data={"decision": "accept"}).status_code == 403
    assert _fresh(m.Analyte, glu.id).decimals == 2

    admin = login(world.users["admin"])
    page = admin.get(f"/admin/proposals/{proposal.id}").get_data(as_text=True)
    assert "小数位数" in page and "采纳并应用" in page
    resp = admin.post(f"/admin/proposals/{proposal.id}/decide",
                      data={"decision": "accept", "note": "同意"})
    assert resp.status_code == 302
    assert _fresh(m.Analyte, glu.id).decimals == 3
    proposal = _proposal()
    assert proposal.status == "accepted" and proposal.decided_by_id == world.users["admin"].id
    audited = db.session.scalars(select(AuditLog).where(
        AuditLog.entity == "analyte", AuditLog.entity_id == str(glu.id),
        AuditLog.action == "update")).all()
    assert audited[-1].changes["decimals"] == [2, 3]
    assert admin.post(f"/admin/proposals/{proposal.id}/decide",
                      data={"decision": "reject"}).status_code == 409


def test_rejected_proposal_leaves_the_catalogue_alone(world, login):
    glu = world.systems["a"].analyte
    _propose(login(world.users["center"]), glu, name="血糖")
    proposal = _proposal()
    resp = login(world.users["admin"]).post(f"/admin/proposals/{proposal.id}/decide",
                                            data={"decision": "reject", "note": "名称按标准"})
    assert resp.status_code == 302
    assert _fresh(m.Analyte, glu.id).name == "葡萄糖"
    proposal = _proposal()
    assert proposal.status == "rejected" and proposal.decision_note == "名称按标准"


def test_invalid_proposal_is_refused_with_the_field_named(world, login):
    glu = world.systems["a"].analyte
    client = login(world.users["center"])
    resp = _propose(client, glu, decimals=-5)
    assert resp.status_code == 400
    assert "“小数位数”须为 0～6 的整数" in resp.get_data(as_text=True)
    resp = _propose(client, glu, decimals=3, reason="")
    assert resp.status_code == 400 and "请填写修改理由" in resp.get_data(as_text=True)
    assert _propose(client, glu).status_code == 400  # nothing changed
    assert _count(CatalogueProposal) == 0


def test_accepting_rechecks_against_the_catalogue_as_it_is_then(world, login):
    glu = world.systems["a"].analyte
    _propose(login(world.users["center"]), glu, plausible_low=40)
    glu = _fresh(m.Analyte, glu.id)
    glu.plausible_high = 30
    db.session.commit()
    proposal = _proposal()
    resp = login(world.users["admin"]).post(f"/admin/proposals/{proposal.id}/decide",
                                            data={"decision": "accept"})
    assert resp.status_code == 400
    assert "“合理上限”须大于“合理下限”" in resp.get_data(as_text=True)
    assert _fresh(m.Analyte, glu.id).plausible_low == 0.0
    assert _proposal().status == "pending"


def test_proposal_for_a_new_row_creates_it_once(world, login):
    centre = login(world.users["center"])
    resp = centre.post("/admin/proposals/new?table=reagent", data={
        "maker": "迈瑞", "name": "ALT 测定试剂盒", "reason": "本区新增"})
    assert resp.status_code == 302
    first = _proposal()
    centre.post("/admin/proposals/new?table=reagent", data={
        "maker": "迈瑞", "name": "ALT 测定试剂盒", "reason": "重复提交"})
    second = _proposal()
    admin = login(world.users["admin"])
    assert admin.post(f"/admin/proposals/{first.id}/decide",
                      data={"decision": "accept"}).status_code == 302
    assert _count(m.Reagent, m.Reagent.name == "ALT 测定试剂盒") == 1
    assert _fresh(CatalogueProposal, first.id).row_id is not None
    resp = admin.post(f"/admin/proposals/{second.id}/decide", data={"decision": "accept"})
    assert resp.status_code == 409 and "与已有数据冲突" in resp.get_data(as_text=True)
    assert _count(m.Reagent, m.Reagent.name == "ALT 测定试剂盒") == 1


def test_proposals_stay_inside_the_centres_region(world, login):
    glu = world.systems["a"].analyte
    _propose(login(world.users["center"]), glu, decimals=3)
    proposal = _proposal()
    other = login(world.users["center2"])
    assert other.get(f"/admin/proposals/{proposal.id}").status_code == 404
    listed = other.get("/admin/proposals/").get_data(as_text=True)
    assert not re.search(rf">{proposal.id}<", listed)
    page = login(world.users["admin"]).get("/admin/proposals/").get_data(as_text=True)
    assert "待审核" in page
    assert login(world.users["technician"]).get("/admin/proposals/").status_code == 403


@pytest.mark.parametrize("junk", ["9" * 30, "٣", "-1"])
def test_a_proposal_with_junk_in_every_field_is_refused_beside_its_fields(world, login, junk):
    """Regression: a quality spec's ``analyte_id`` of 10**30 went through ``int()`` to the
    database (SQLite overflowed: 500); ``int("٣")`` read a Unicode digit as 3."""
    from qcwx.catalog.proposals import PROPOSABLE

    client = login(world.users["center"])
    for name in ("analyte", "quality_spec"):
        data = {f.name: junk for f in PROPOSABLE[name].fields} | {"reason": "核对"}
        resp = client.post(f"/admin/proposals/new?table={name}", data=data)
        assert resp.status_code == 400, name
    page = resp.get_data(as_text=True)
    assert "所选检验项目不存在" in page
    assert db.session.scalar(select(func.count()).select_from(CatalogueProposal)) == 0
