"""IQC pages through the real views: entry, verdict JSON, corrections, charts, limits, rules,
monthly summary and the out-of-control workflow."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from qcwx.iqc import services, targets
from qcwx.iqc import views as iqc_views
from qcwx.iqc.models import ControlLimit, CorrectiveAction, QcResult, QcRun, RuleSet
from qcwx.timeutil import local_today


@pytest.fixture
def ts(session, world):
    system = world.systems["a"]
    for lv, (mean, sd) in zip(system.levels, ((5.0, 0.2), (15.0, 0.5)), strict=True):
        targets.set_control_limit(world.users["supervisor"], system, lv, mean=mean, sd=sd,
                                  kind="fixed", effective_from=local_today() - timedelta(days=90),
                                  reason="说明书靶值")
    session.commit()
    return system


def _count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_entry_form_post_redirects_to_the_verdict(world, login, ts, session):
    client = login(world.users["technician"])
    page = client.get(f"/ts/{ts.id}").get_data(as_text=True)
    assert "靶值 5.00 ± 0.40（2SD）" in page and 'inputmode="decimal"' in page
    resp = client.post(f"/ts/{ts.id}", data={"level_1": "5.05", "level_2": "15.2",
                                              "client_id": "form-1"})
    assert resp.status_code == 302 and "/runs/" in resp.headers["Location"]
    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "通过" in html and "5.05" in html


def test_entry_form_error_is_shown_beside_the_field_and_nothing_is_stored(
        world, login, ts, session):
    client = login(world.users["technician"])
    resp = client.post(f"/ts/{ts.id}", data={"level_1": "5,0x", "client_id": "form-2"})
    assert resp.status_code == 400
    assert "不是有效数字" in resp.get_data(as_text=True)
    assert _count(session, QcResult) == 0


def test_json_submit_returns_verdict_and_card_html(world, login, ts):
    client = login(world.users["technician"])
    resp = client.post(f"/api/ts/{ts.id}/runs", json={"values": {"1": "5.9", "2": "15.0"},
                                                      "client_id": "js-1"})
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["status"] == "reject" and "1-3s" in [r["rule"] for r in body["rules"]]
    assert 'data-status="reject"' in body["html"]
    again = client.post(f"/api/ts/{ts.id}/runs", json={"values": {"1": "5.9", "2": "15.0"},
                                                       "client_id": "js-1"})
    assert again.status_code == 200 and again.get_json()["duplicate"] is True


def test_json_submit_resent_after_midnight_without_a_date_is_the_duplicate(
        world, login, ts, monkeypatch):
    """The entry page sends no date: the server's today. A resend after 00:00 (its answer
    lost) is the stored run, not a reused client id (409)."""
    client = login(world.users["technician"])
    today, sent = local_today(), {"values": {"1": "5.1", "2": "15.0"}, "client_id": "js-late"}
    monkeypatch.setattr(iqc_views, "local_today", lambda tz=None: today - timedelta(days=1))
    first = client.post(f"/api/ts/{ts.id}/runs", json=sent)
    assert first.status_code == 201, first.get_json()
    monkeypatch.setattr(iqc_views, "local_today", lambda tz=None: today)
    again = client.post(f"/api/ts/{ts.id}/runs", json=sent)
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert again.get_json()["run_id"] == first.get_json()["run_id"]


@pytest.mark.parametrize("body, field", [
    ({"values": {"1": "abc"}}, "level_1"),
    ({"values": {"1": "5"}, "run_date": "2099-01-01"}, "run_date"),
    ({"values": {"1": "5"}, "run_date": "11/05"}, "run_date"),
    ({"values": {"1": "5"}, "run_no": "x"}, "run_no"),
    ({"values": {"7": "5"}}, "level"),
])
def test_json_submit_bad_input_is_400_with_chinese_message(world, login, ts, body, field):
    resp = login(world.users["technician"]).post(f"/api/ts/{ts.id}/runs", json=body)
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field
    assert any("\u4e00" <= ch <= "\u9fff" for ch in resp.get_json()["error"])


def test_json_submit_rejects_non_object_body(world, login, ts):
    resp = login(world.users["technician"]).post(f"/api/ts/{ts.id}/runs", data="[1,2]",
                                                 content_type="application/json")
    assert resp.status_code == 400


@pytest.mark.parametrize("body", [{}, {"values": [1]}, {"run_no": "x", "values": {"1": "5"}}])
def test_json_submit_outside_scope_is_404_whatever_the_body(world, login, body):
    """Regression: the declared body was checked before the scope, so junk answered 400."""
    other = world.systems["b"]  # lab B: not the technician's
    resp = login(world.users["technician"]).post(f"/api/ts/{other.id}/runs", json=body)
    assert resp.status_code == 404 and resp.get_json()["field"] == "test_system_id"


@pytest.mark.parametrize("body", [{}, {"values": [1]}, {"values": {"1": "5.0"}}])
def test_json_submit_by_a_role_that_cannot_submit_is_403_whatever_the_body(world, login, body):
    """Regression: the declared body was checked before the role, so junk answered 400."""
    resp = login(world.users["center"]).post(f"/api/ts/{world.systems['a'].id}/runs", json=body)
    assert resp.status_code == 403 and "不能录入" in resp.get_json()["error"]


def test_correction_through_the_page_keeps_history(world, login, ts, session):
    client = login(world.users["technician"])
    run_id = client.post(f"/api/ts/{ts.id}/runs",
                         json={"values": {"1": "59.0"}}).get_json()
    assert run_id.get("field") == "level_1"  # implausible value refused outright
    body = client.post(f"/api/ts/{ts.id}/runs", json={"values": {"1": "5.9"}}).get_json()
    result = session.scalar(select(QcResult).where(QcResult.run_id == body["run_id"]))
    resp = client.post(f"/results/{result.id}/correct", data={"value": "5.1", "reason": "录错"})
    assert resp.status_code == 302
    html = client.get(f"/runs/{body['run_id']}").get_data(as_text=True)
    assert "已更正" in html and "录错" in html and "通过" in html


def test_chart_page_escapes_user_text_and_uses_local_echarts(world, login, ts, session):
    ts.qc_lot.lot_number = "</script><script>alert(1)</script>"
    ts.analyte.name = "葡萄糖</script>"
    session.commit()
    client = login(world.users["technician"])
    for day, v in enumerate(("5.0", "5.3", "4.8")):
        services.submit_run(world.users["technician"], test_system_id=ts.id,
                            run_date=local_today() - timedelta(days=5 - day), values={"1": v})
    session.commit()
    html = client.get(f"/ts/{ts.id}/chart").get_data(as_text=True)
    assert "/static/vendor/echarts-qcwx.min.js" in html and "cdn" not in html.lower()
    assert "<script>alert(1)</script>" not in html
    assert html.count("</script>") == html.count("<script")


def test_monthly_summary_page(world, login, ts, session):
    today = local_today()
    for d in range(10):
        services.submit_run(world.users["technician"], test_system_id=ts.id,
                            run_date=today - timedelta(days=d), values={"1": f"{5 + 0.02 * d:.2f}"})
    session.commit()
    html = login(world.users["technician"]).get(
        f"/ts/{ts.id}/summary?month={today:%Y-%m}").get_data(as_text=True)
    assert "本月" in html and "批号累积" in html
    client = login(world.users["technician"])
    # regression: pandas read "NaN" as no month (500) and could not hold year 1 (500)
    for month in ("2026-13", "NaN", "nat", "0001-01", "９９９９-01", "2026-1"):
        bad = client.get(f"/ts/{ts.id}/summary", query_string={"month": month})
        assert bad.status_code == 400, month
        assert "月份" in bad.get_data(as_text=True) or "日期" in bad.get_data(as_text=True)


def test_supervisor_sets_fixed_limit_as_new_version(world, login, ts, session):
    client = login(world.users["supervisor"])
    level = ts.levels[0]
    resp = client.post(f"/ts/{ts.id}/limits", data={
        "qc_level_id": str(level.id), "mode": "fixed", "target_mean": "5.10",
        "target_sd": "0.18", "effective_from": local_today().isoformat(), "reason": "新批号"})
    assert resp.status_code == 302
    versions = session.scalars(select(ControlLimit).where(
        ControlLimit.test_system_id == ts.id, ControlLimit.qc_level_id == level.id)
        .order_by(ControlLimit.version)).all()
    assert [(v.version, v.target_mean) for v in versions] == [(1, 5.0), (2, 5.1)]
    assert versions[1].reason == "新批号" and versions[1].created_by_id == world.users[
        "supervisor"].id


@pytest.mark.parametrize("data, field", [
    ({"target_mean": "5", "target_sd": "0", "reason": "x"}, "target_sd"),
    ({"target_mean": "abc", "target_sd": "0.1", "reason": "x"}, "target_mean"),
    ({"target_mean": "5", "target_sd": "0.1", "reason": ""}, "reason"),
    ({"mode": "provisional", "reason": "自建"}, "mode"),
])
def test_limit_form_errors_name_the_field(world, login, ts, session, data, field):
    client = login(world.users["supervisor"])
    form = {"qc_level_id": str(ts.levels[0].id), "mode": "fixed"} | data
    resp = client.post(f"/ts/{ts.id}/limits", data=form)
    assert resp.status_code == 400
    assert "has-error" in resp.get_data(as_text=True)
    assert _count(session, ControlLimit) == 2


def test_technician_cannot_change_limits_or_rules(world, login, ts, session):
    client = login(world.users["technician"])
    assert client.post(f"/ts/{ts.id}/limits", data={"qc_level_id": str(ts.levels[0].id),
                       "target_mean": "5", "target_sd": "1", "reason": "x"}).status_code == 403
    assert client.post(f"/ts/{ts.id}/rules", data={"rule_1-3s": "reject",
                                                   "reason": "x"}).status_code == 403
    assert _count(session, RuleSet) == 0


def test_rule_set_page_saves_a_version_and_refuses_empty(world, login, ts, session):
    client = login(world.users["supervisor"])
    page = client.get(f"/ts/{ts.id}/rules").get_data(as_text=True)
    assert "2 个水平的默认规则" in page
    empty = client.post(f"/ts/{ts.id}/rules", data={"reason": "测试"})
    assert empty.status_code == 400 and "至少启用一条规则" in empty.get_data(as_text=True)
    ok = client.post(f"/ts/{ts.id}/rules", data={"rule_1-3s": "reject", "rule_2-2s": "reject",
                                                 "rule_1-2s": "warning", "reason": "σ≥5"})
    assert ok.status_code == 302
    assert targets.current_rule_set(ts)["R-4s"] == "off"
    assert targets.current_rule_set(ts)["1-3s"] == "reject"


def test_out_of_control_workflow_through_the_pages(world, login, ts, session):
    tech = login(world.users["technician"])
    body = tech.post(f"/api/ts/{ts.id}/runs", json={"values": {"1": "5.9"}}).get_json()
    action_id = body["action_id"]
    missing = tech.post(f"/actions/{action_id}", data={"step": "complete",
                                                       "cause_category": "reagent"})
    assert missing.status_code == 400 and "请填写原因分析" in missing.get_data(as_text=True)
    done = tech.post(f"/actions/{action_id}", data={
        "step": "complete", "cause_category": "reagent", "description": "试剂过期",
        "action_taken": "更换试剂", "rerun_result": "在控"})
    assert done.status_code == 302
    assert tech.post(f"/actions/{action_id}", data={"step": "sign", "approve": "1"}
                     ).status_code == 403
    sup = login(world.users["supervisor"])
    assert "待审核" in sup.get("/actions").get_data(as_text=True)
    signed = sup.post(f"/actions/{action_id}", data={"step": "sign", "approve": "1",
                                                     "comment": "同意"})
    assert signed.status_code == 302
    record = session.get(CorrectiveAction, action_id)
    session.refresh(record)
    assert record.status == "signed" and record.signed_by_id == world.users["supervisor"].id


def test_action_of_another_lab_is_404(world, login, ts, session):
    body = login(world.users["technician"]).post(
        f"/api/ts/{ts.id}/runs", json={"values": {"1": "5.9"}}).get_json()
    other = login(world.users["technician_b"])
    assert other.get(f"/actions/{body['action_id']}").status_code == 404
    assert other.get(f"/runs/{body['run_id']}").status_code == 404
    assert _count(session, QcRun) == 1
