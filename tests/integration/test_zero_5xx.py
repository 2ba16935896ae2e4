"""Regression tests for the 500s the issue-14 probe found on the web pages and forms.

Each case answered 500 before (OverflowError, UnicodeEncodeError, a MariaDB "Data too long"
error); each now answers a 4xx naming the field and stores nothing.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from qcwx.iqc.models import ControlLimit, CorrectiveAction, QcResult, RuleSet
from qcwx.timeutil import local_today
from tests.integration import test_sign_off
from tests.wechat.wx import sign

BIG_IDS = [2**31, 2**63, 10**30, int("9" * 400)]
rejected = test_sign_off.rejected  # lab A with limits and one open out-of-control record


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("big", BIG_IDS)
@pytest.mark.parametrize("path", ["/ts/{id}/chart", "/ts/{id}", "/runs/{id}", "/actions/{id}",
                                  "/ts/{id}/limits", "/ts/{id}/rules"])
def test_huge_ids_in_urls_are_404(world, login, path, big):
    client = login(world.users["supervisor"])
    assert client.get(path.format(id=big)).status_code == 404


def test_every_int_url_converter_is_bounded(app):
    from qcwx.web.inputs import MAX_ID, BoundedIntConverter

    int_rules = [(r.rule, conv) for r in app.url_map.iter_rules()
                 for conv in r._converters.values() if conv.regex == r"\d+"]
    assert int_rules, "expected <int:…> routes"
    for rule, conv in int_rules:
        assert isinstance(conv, BoundedIntConverter) and conv.max == MAX_ID, rule


@pytest.mark.parametrize("days", ["99999999999", "9" * 400, "²", "0", "-3", "abc"])
def test_chart_days_is_bounded(world, login, rejected, days):
    client = login(world.users["technician"])
    resp = client.get(f"/ts/{world.systems['a'].id}/chart", query_string={"days": days})
    assert resp.status_code == 400 and "天数" in resp.get_data(as_text=True)


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_chart_dates_outside_the_plausible_window_are_400(world, login, rejected, day):
    client = login(world.users["technician"])
    resp = client.get(f"/ts/{world.systems['a'].id}/chart", query_string={"end": day})
    assert resp.status_code == 400 and "合理范围" in resp.get_data(as_text=True)


def test_wechat_timestamp_of_400_nines_is_403(client):
    stamp, nonce = "9" * 400, "123"
    resp = client.get("/wechat", query_string={"timestamp": stamp, "nonce": nonce,
                                               "signature": sign("x", stamp, nonce),
                                               "echostr": "e"})
    assert resp.status_code == 403 and "时间戳" in resp.get_data(as_text=True)


@pytest.mark.parametrize("ttl", ["²", "9" * 400, "0", "31"])
def test_invite_ttl_days_must_be_ascii_1_to_30(world, login, ttl):
    client = login(world.users["supervisor"])
    resp = client.post("/wechat/invites", data={"user_id": world.users["technician"].id,
                                                "ttl_days": ttl})
    assert resp.status_code == 400 and "有效期" in resp.get_data(as_text=True)


def test_invite_for_a_huge_user_id_is_404(world, login):
    client = login(world.users["supervisor"])
    resp = client.post("/wechat/invites", data={"user_id": str(10**30), "ttl_days": "7"})
    assert resp.status_code in (400, 404)


# -- limits: SD relative to the mean, plausible dates, reason length -------------------------
def _limit_form(level, **change) -> dict:
    return {"qc_level_id": str(level.id), "mode": "fixed", "target_mean": "5.0",
            "target_sd": "0.2", "effective_from": local_today().isoformat(),
            "reason": "厂商靶值"} | change


@pytest.mark.parametrize("change, message", [
    ({"target_sd": "1e-320"}, "标准差过小"),
    ({"target_mean": "1e6", "target_sd": "1e-3"}, "标准差过小"),
    ({"effective_from": "0001-01-01"}, "合理范围"),
    ({"effective_from": "9999-12-31"}, "合理范围"),
    ({"reason": "原" * 256}, "过长"),
])
def test_bad_limits_are_refused_naming_the_field(world, login, session, change, message):
    ts = world.systems["a"]
    client = login(world.users["supervisor"])
    before = _count(session, ControlLimit)
    resp = client.post(f"/ts/{ts.id}/limits", data=_limit_form(ts.levels[0], **change))
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    assert _count(session, ControlLimit) == before


def test_a_small_but_plausible_sd_is_accepted(world, login, session):
    ts = world.systems["a"]
    client = login(world.users["supervisor"])
    resp = client.post(f"/ts/{ts.id}/limits", data=_limit_form(
        ts.levels[0], target_mean="0.002", target_sd="0.00001"))
    assert resp.status_code == 302


def test_rule_set_reason_over_255_characters_is_400(world, login, session):
    ts = world.systems["a"]
    client = login(world.users["supervisor"])
    resp = client.post(f"/ts/{ts.id}/rules", data={"preset": "default", "reason": "x" * 256})
    assert resp.status_code == 400 and "过长" in resp.get_data(as_text=True)
    assert _count(session, RuleSet) == 0


def test_correction_reason_over_255_characters_is_400(world, login, session, rejected):
    result = session.scalars(select(QcResult).where(QcResult.run_id == rejected.run_id)).first()
    client = login(world.users["supervisor"])
    before = _count(session, QcResult)
    resp = client.post(f"/results/{result.id}/correct", data={"value": "5.1",
                                                               "reason": "错" * 256})
    assert resp.status_code == 400
    assert _count(session, QcResult) == before


def test_sign_off_comment_over_64_kb_is_400(world, login, session, rejected):
    tech = login(world.users["technician"])
    tech.post(f"/actions/{rejected.id}", data={
        "step": "complete", "cause_category": "calibration", "description": "校准过期",
        "action_taken": "重新校准", "rerun_result": "复测在控", "patient_impact": "无"})
    sup = login(world.users["supervisor"])
    for approve in ("1", "0"):
        resp = sup.post(f"/actions/{rejected.id}", data={"step": "sign", "approve": approve,
                                                         "comment": "意" * 70_000})
        assert resp.status_code == 400 and "过长" in resp.get_data(as_text=True)
    session.expire_all()
    assert session.get(CorrectiveAction, rejected.id).status == "submitted"


def test_patient_impact_over_the_limit_is_400(world, login, session, rejected):
    tech = login(world.users["technician"])
    resp = tech.post(f"/actions/{rejected.id}", data={
        "step": "complete", "cause_category": "calibration", "description": "校准过期",
        "action_taken": "重新校准", "rerun_result": "复测在控", "patient_impact": "响" * 70_000})
    assert resp.status_code == 400
    session.expire_all()
    assert session.get(CorrectiveAction, rejected.id).status == "open"


def test_a_fresh_timestamp_still_passes_the_window(client):
    stamp = str(int(time.time()))
    resp = client.get("/wechat", query_string={"timestamp": stamp, "nonce": "n1",
                                               "signature": "bad", "echostr": "e"})
    assert "签名" in resp.get_data(as_text=True)  # reached the signature check, not a 500
