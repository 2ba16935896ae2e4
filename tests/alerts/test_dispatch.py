"""Outbox → WeChat: recipients, message fields, dedupe, retries, dead letters, channels.

Eager mode (no Redis): committing a run enqueues ``qcwx.alerts.dispatch``, which runs at once
in its own app context and calls the fake WeChat over HTTP with the real wechatpy client.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from qcwx.alerts import channels, delivery
from qcwx.alerts import tasks as alert_tasks
from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.timeutil import utcnow
from qcwx.wechat.models import SubscribeConsent
from tests.fixtures.alerts import MP_TEMPLATE, TEMPLATE, submit

SEND = "/cgi-bin/message/template/send"
LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")


def outbox_rows(session):
    return session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


def deliveries(session, **where):
    stmt = select(AlertDelivery).order_by(AlertDelivery.id)
    for key, value in where.items():
        stmt = stmt.where(getattr(AlertDelivery, key) == value)
    return session.scalars(stmt).all()


def templates(fake):
    return [m for m in fake.messages if m["kind"] == "template"]


def test_reject_sends_one_template_message_to_each_bound_supervisor(session, bound,
                                                                    fake_wechat):
    verdict = submit(bound, 3.5, 0.1)
    session.commit()  # the run commits; dispatch runs after the commit
    assert verdict.status == "reject"
    sup, sup2 = bound.users["supervisor"], bound.users["supervisor2"]
    msgs = templates(fake_wechat)
    assert sorted(m["touser"] for m in msgs) == sorted([sup.wechat_openid, sup2.wechat_openid])
    msg = msgs[0]
    assert msg["template_id"] == TEMPLATE
    assert msg["url"] == f"http://qc.example.cn/runs/{verdict.run_id}"
    data = {k: v["value"] for k, v in msg["data"].items()}
    assert set(data) == {"first", "keyword1", "keyword2", "keyword3", "keyword4", "remark"}
    assert "葡萄糖质控失控" in data["first"] and bound.lab_a.full_name in data["first"]
    assert data["keyword1"] == "葡萄糖（GLU，mmol/L）"
    assert data["keyword2"] == "水平1 5.700（Z=+3.50）；水平2 15.050（Z=+0.10）"
    assert "1-3s 单值超出3倍标准差" in data["keyword3"]
    assert LOCAL_TIME.match(data["keyword4"])
    assert "失控处理" in data["remark"]
    [outbox] = outbox_rows(session)
    assert outbox.status == "sent" and outbox.attempts == 1 and outbox.sent_at is not None
    rows = deliveries(session)
    assert [(d.channel, d.status, d.attempts) for d in rows] == [("wechat_template", "sent", 1)] * 2
    assert {d.user_id for d in rows} == {sup.id, sup2.id}
    assert all(d.response["msgid"] for d in rows)


def test_keyword4_is_the_event_time_in_asia_shanghai(session, bound, fake_wechat):
    submit(bound, 3.5, 0.1)
    session.commit()
    [outbox] = outbox_rows(session)
    stored = datetime.fromisoformat(outbox.payload["at"])  # naive UTC
    expected = (stored + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")  # Shanghai: UTC+8
    assert templates(fake_wechat)[0]["data"]["keyword4"]["value"] == expected


def test_dispatching_twice_sends_each_message_once(session, bound, fake_wechat):
    submit(bound, 3.5, 0.1)
    session.commit()
    [outbox] = outbox_rows(session)
    assert delivery.dispatch(outbox.id) is None  # already sent: nothing to claim
    alert_tasks.dispatch.apply(args=[outbox.id])  # a redelivered task
    assert len(templates(fake_wechat)) == 2
    # Even if the row looked unsent (a lost commit of the outbox status), the deliveries'
    # dedupe keys keep recipients who already got it from getting it again.
    outbox.status = "failed"
    session.commit()
    result = delivery.dispatch(outbox.id)
    assert result.status == "sent" and result.sent == 2
    assert len(templates(fake_wechat)) == 2
    assert session.scalar(select(func.count()).select_from(AlertDelivery)) == 2


class _LostCommits:
    """The task's commits fail ``times`` times as when the database restarts mid-round."""

    def __init__(self, scoped, times):
        self.scoped, self.left, self.real = scoped, times, scoped.commit

    def __call__(self):
        if self.left:
            self.left -= 1
            self.scoped.rollback()  # what the server kept of the round: nothing
            raise OperationalError("COMMIT", {}, Exception("(2013) Lost connection"))
        return self.real()


def _lose_commits(monkeypatch, times):
    from qcwx.extensions import db

    monkeypatch.setattr(alert_tasks, "KEEP_SENT_PAUSE", 0.0, raising=False)
    monkeypatch.setattr(db.session, "commit", _LostCommits(db.session, times))


def test_a_commit_lost_after_wechat_took_the_messages_is_recorded_not_resent(
        session, bound, fake_wechat, monkeypatch):
    """Found by CI's MariaDB restart under load: one rejected run alerted twice."""
    submit(bound, 3.5, 0.1)
    session.info.pop(delivery._PENDING_KEY)  # dispatched by hand below
    session.commit()
    [outbox] = outbox_rows(session)
    _lose_commits(monkeypatch, times=3)  # the round's commit, then two records, are lost
    alert_tasks.dispatch.apply(args=[outbox.id])
    monkeypatch.undo()
    assert len(templates(fake_wechat)) == 2  # each supervisor once, not twice
    session.expire_all()
    assert outbox.status == "sent" and outbox.attempts == 1
    rows = deliveries(session)
    assert [(d.status, d.attempts) for d in rows] == [("sent", 1)] * 2
    assert all(d.response["msgid"] for d in rows)
    alert_tasks.sweep.apply()  # nothing is due any more
    assert len(templates(fake_wechat)) == 2


def test_after_a_lost_commit_the_recipient_not_reached_is_sent_next(session, bound,
                                                                     fake_wechat, monkeypatch):
    fake_wechat.fail_next(SEND, 45009)  # the first supervisor's send fails this round
    submit(bound, 3.5, 0.1)
    session.info.pop(delivery._PENDING_KEY)
    session.commit()
    [outbox] = outbox_rows(session)
    _lose_commits(monkeypatch, times=1)
    alert_tasks.dispatch.apply(args=[outbox.id])  # records one, re-dispatches the other
    monkeypatch.undo()
    msgs = templates(fake_wechat)
    sup, sup2 = bound.users["supervisor"], bound.users["supervisor2"]
    assert sorted(m["touser"] for m in msgs) == sorted([sup.wechat_openid, sup2.wechat_openid])
    session.expire_all()
    assert outbox.status == "sent"
    assert sorted(d.status for d in deliveries(session)) == ["sent", "sent"]


def test_sends_that_cannot_be_recorded_in_time_go_to_celerys_retry(session, bound,
                                                                    fake_wechat, monkeypatch):
    submit(bound, 3.5, 0.1)
    session.info.pop(delivery._PENDING_KEY)
    session.commit()
    [outbox] = outbox_rows(session)
    _lose_commits(monkeypatch, times=10 ** 6)
    monkeypatch.setattr(alert_tasks, "KEEP_SENT_SECONDS", 0.0)
    with pytest.raises(OperationalError):
        alert_tasks._keep_sent(outbox.id, [delivery.SentRecord(
            "wechat_template", "o-sup", None, "k", 1, utcnow(), None)])
    assert templates(fake_wechat) == []  # recording sends nothing
    monkeypatch.undo()


def test_warning_goes_to_supervisors_only(session, bound, fake_wechat, app, monkeypatch):
    monkeypatch.setitem(app.config, "ALERT_CENTER_ON_REJECT", True)
    assert submit(bound, 2.2, 0.0).status == "warning"
    session.commit()
    msgs = templates(fake_wechat)
    assert len(msgs) == 2 and "质控警告" in msgs[0]["data"]["first"]["value"]
    assert bound.users["center"].wechat_openid not in {m["touser"] for m in msgs}


def test_reject_reaches_the_centre_when_configured(session, bound, fake_wechat, app,
                                                   monkeypatch):
    monkeypatch.setitem(app.config, "ALERT_CENTER_ON_REJECT", True)
    bound.users["center2"].wechat_openid = "oOtherRegionCentre000000000"
    session.commit()
    submit(bound, 3.5, 0.1)
    session.commit()
    to = [m["touser"] for m in templates(fake_wechat)]
    assert bound.users["center"].wechat_openid in to and len(to) == 3  # 2 supervisors + centre
    assert bound.users["center2"].wechat_openid not in to  # another region's centre


def test_an_alert_nobody_can_receive_is_unreachable_not_sent(session, world, fake_wechat):
    from qcwx.iqc import targets
    from qcwx.timeutil import local_today

    ts = world.systems["b"]
    for lv in ts.levels:
        targets.set_control_limit(world.users["admin"], ts, lv, mean=5.0, sd=0.2, kind="fixed",
                                  effective_from=local_today() - timedelta(days=5), reason="靶值")
    from qcwx.iqc import services as iqc

    iqc.submit_run(world.users["technician_b"], test_system_id=ts.id, run_date=local_today(),
                   values={"1": "9.9"})
    session.commit()
    [outbox] = outbox_rows(session)
    assert fake_wechat.messages == []
    assert outbox.status == "unreachable" and "没有绑定微信" in outbox.last_error
    assert outbox.sent_at is None  # an alert that reached nobody is never "sent"


def test_45009_is_retried_with_backoff_then_sent(session, bound, fake_wechat):
    fake_wechat.fail_next(SEND, 45009)
    submit(bound, 3.5, 0.1)
    session.commit()
    [outbox] = outbox_rows(session)
    assert outbox.status == "failed" and outbox.attempts == 1
    wait = (outbox.next_attempt_at - utcnow()).total_seconds()
    assert 20 < wait <= 30
    failed = deliveries(session, status="failed")
    assert len(failed) == 1 and "45009" in failed[0].last_error
    assert "每日上限" in failed[0].last_error
    assert len(templates(fake_wechat)) == 1
    assert delivery.sweep() == []  # not due yet
    later = utcnow() + timedelta(seconds=31)
    assert delivery.sweep(later) == [outbox.id]
    result = delivery.dispatch(outbox.id, now=later)
    session.commit()
    assert result.status == "sent" and result.sent == 2
    assert len(templates(fake_wechat)) == 2  # only the failed recipient was sent again
    assert failed[0].status == "sent" and failed[0].attempts == 2


def test_network_error_is_retried(session, bound, fake_wechat, app, monkeypatch):
    monkeypatch.setitem(app.config, "WECHAT_API_BASE", "http://127.0.0.1:9")  # nothing listens
    submit(bound, 3.5, 0.1)
    session.commit()
    [outbox] = outbox_rows(session)
    assert outbox.status == "failed"
    assert all("无法连接微信服务器" in d.last_error for d in deliveries(session))


def test_43004_is_permanent_for_that_recipient(session, bound, fake_wechat):
    fake_wechat.fail_next(SEND, 43004)
    submit(bound, 3.5, 0.1)
    session.commit()
    [outbox] = outbox_rows(session)
    dead = deliveries(session, status="dead")
    assert len(dead) == 1 and "未关注公众号" in dead[0].last_error and dead[0].attempts == 1
    assert len(deliveries(session, status="sent")) == 1
    assert outbox.status == "dead"
    assert delivery.sweep(utcnow() + timedelta(days=1)) == []


def test_dead_after_max_attempts_is_listed_for_the_centre_and_retry_sends(
        session, bound, fake_wechat, login):
    fake_wechat.fail_next(SEND, 45009, times=2 * delivery.MAX_ATTEMPTS)
    verdict = submit(bound, 3.5, 0.1)
    session.commit()
    [outbox] = outbox_rows(session)
    now = utcnow()
    while outbox.status == "failed":
        now = outbox.next_attempt_at + timedelta(seconds=1)
        assert delivery.sweep(now) == [outbox.id]
        delivery.dispatch(outbox.id, now=now)
        session.commit()
    assert outbox.status == "dead" and outbox.attempts == delivery.MAX_ATTEMPTS
    gaps = delivery.backoff(1), delivery.backoff(7)
    assert gaps == (timedelta(seconds=30), timedelta(seconds=1920))
    dead = deliveries(session, status="dead")
    assert len(dead) == 2 and all(d.attempts == delivery.MAX_ATTEMPTS for d in dead)
    assert fake_wechat.messages == []

    page = login(bound.users["center"]).get("/alerts/failed")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count("无法送达") >= 2 and "接口调用已达每日上限" in html
    assert f"第{verdict.run_no}批" in html and "重新发送" in html
    assert "已重试 8 次" in html

    other = login(bound.users["center2"]).get("/alerts/failed").get_data(as_text=True)
    assert "接口调用已达每日上限" not in other and "没有发送失败的消息" in other
    assert login(bound.users["technician"]).get("/alerts/failed").status_code == 403

    client = login(bound.users["center"])
    resp = client.post(f"/alerts/deliveries/{dead[0].id}/retry")
    assert resp.status_code == 302
    session.expire_all()
    assert dead[0].status == "sent"
    assert [m["touser"] for m in templates(fake_wechat)] == [dead[0].recipient]
    assert client.post(f"/alerts/deliveries/{dead[0].id}/retry").status_code == 409
    assert login(bound.users["center2"]).post(
        f"/alerts/deliveries/{dead[1].id}/retry").status_code == 404


def test_mp_subscribe_goes_to_consenting_lab_users_and_uses_the_consent(session, bound,
                                                                       fake_wechat):
    tech = bound.users["technician"]
    session.add(SubscribeConsent(user_id=tech.id, template_id=MP_TEMPLATE))
    session.commit()
    verdict = submit(bound, 3.5, 0.1)
    session.commit()
    [msg] = [m for m in fake_wechat.messages if m["kind"] == "subscribe"]
    assert msg["touser"] == tech.mp_openid and msg["template_id"] == MP_TEMPLATE
    assert msg["page"] == f"pages/run/run?id={verdict.run_id}"
    data = {k: v["value"] for k, v in msg["data"].items()}
    assert data["thing1"] == "葡萄糖（GLU）" and data["phrase2"] == "失控"
    assert "1-3s" in data["thing3"] and LOCAL_TIME.match(data["time4"])
    assert all(len(data[k]) <= 20 for k in ("thing1", "thing3", "thing5"))
    consent = session.scalars(select(SubscribeConsent)).one()
    assert consent.used_at is not None
    submit(bound, 3.6, 0.1, day=1)
    session.commit()
    assert len([m for m in fake_wechat.messages if m["kind"] == "subscribe"]) == 1


def test_mp_subscribe_recipients_are_read_in_one_statement(session, bound):
    """Only active lab users with an openid and an unused consent to the alert template.

    Regression (issue 14): the channel read each lab user's consents one by one.
    """
    from sqlalchemy import event

    from qcwx.alerts.models import OutboxMessage
    from qcwx.extensions import db
    from tests.factories import user

    lab, other = bound.lab_a, bound.lab_b
    people = {name: user(role, lab_=where, name=name) for name, role, where in [
        ("有授权", "technician", lab), ("主管有授权", "supervisor", lab),
        ("已用完", "technician", lab), ("别的模板", "technician", lab),
        ("停用", "technician", lab), ("无openid", "technician", lab),
        ("别的实验室", "technician", other)]}
    for name, u in people.items():
        if name != "无openid":
            u.mp_openid = f"oMpX{u.id:024d}"
    people["停用"].active = False
    for name, template, used in [("有授权", MP_TEMPLATE, None), ("主管有授权", MP_TEMPLATE, None),
                                 ("已用完", MP_TEMPLATE, utcnow()), ("别的模板", "OTHER", None),
                                 ("停用", MP_TEMPLATE, None), ("无openid", MP_TEMPLATE, None),
                                 ("别的实验室", MP_TEMPLATE, None)]:
        session.add(SubscribeConsent(user_id=people[name].id, template_id=template,
                                     used_at=used))
    session.commit()
    outbox = OutboxMessage(kind="run_reject", lab_id=lab.id, payload={}, dedupe_key="x")
    seen: list[str] = []
    listener = lambda *a: seen.append(a[2])  # noqa: E731 - the statement text
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        found = channels.get("mp_subscribe").recipients(outbox)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    expected = sorted(people[n].id for n in ("有授权", "主管有授权"))
    assert sorted(r.user_id for r in found) == expected
    assert {r.address for r in found} == {people[n].mp_openid for n in ("有授权", "主管有授权")}
    assert len(seen) == 1


def test_a_dispatch_round_reads_the_lab_once(session, bound, fake_wechat):
    """Regression (issue 14): each recipient's rendering read the lab and its hospital again,
    and each delivery was read back before its send was recorded."""
    from sqlalchemy import event

    from qcwx.extensions import db

    submit(bound, 3.5, 0.1)
    session.info.pop(delivery._PENDING_KEY)  # dispatched below, by hand
    session.commit()
    [outbox] = outbox_rows(session)
    session.expunge_all()  # as in a worker: nothing in the identity map yet
    seen: list[str] = []
    listener = lambda *a: seen.append(a[2])  # noqa: E731 - the statement text
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        result = delivery.dispatch(outbox.id)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    session.commit()
    assert result.sent == 2 and len(templates(fake_wechat)) == 2
    assert sum(bool(re.search(r"\bFROM lab\b", s)) for s in seen) == 1
    assert not any(re.search(r"\bFROM hospital\b", s) for s in seen)
    # the deliveries just inserted are never read back one by one
    assert not [s for s in seen if re.match(r"SELECT\b.*WHERE alert_delivery\.id = ", s, re.S)]


def test_sweep_task_delivers_rows_that_were_never_enqueued(session, bound, fake_wechat):
    """What happens after a Redis outage: the row is committed, no task was ever queued."""
    from qcwx.iqc.models import QcRun

    verdict = submit(bound, 3.5, 0.1)
    session.info.pop(delivery._PENDING_KEY)  # as if the enqueue after commit had failed
    session.commit()
    assert fake_wechat.messages == []
    run = session.get(QcRun, verdict.run_id)
    assert run.status == "reject"
    alert_tasks.sweep.apply()
    assert len(templates(fake_wechat)) == 2
    assert outbox_rows(session)[0].status == "sent"


def test_enqueue_failure_is_swallowed_and_logged(session, bound, monkeypatch, caplog):
    from qcwx import followups

    task = followups.celery.tasks[followups.TASK]  # the one publish of every commit

    def broker_down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    monkeypatch.setattr(task, "apply_async", broker_down)
    submit(bound, 3.5, 0.1)
    session.commit()  # must not raise
    assert "sweeper will deliver it" in caplog.text
    assert outbox_rows(session)[0].status == "pending"


def test_rollback_enqueues_nothing(session, bound, fake_wechat):
    submit(bound, 3.5, 0.1)
    session.rollback()
    session.commit()
    assert fake_wechat.messages == [] and delivery._PENDING_KEY not in session.info


def test_registry_lists_both_channels_and_rejects_unknown_names():
    names = [c.name for c in channels.all_channels()]
    assert names[:2] == ["wechat_template", "mp_subscribe"]
    with pytest.raises(ValueError):
        channels.get("sms")


def test_a_new_channel_is_one_registered_class(session, bound, fake_wechat):
    sent = []

    @channels.register
    class Recorder(channels.Channel):
        name = "test_recorder"
        label = "测试"

        def recipients(self, outbox):
            return [channels.Recipient(None, "desk-1")]

        def render(self, outbox, recipient):
            return {"to": recipient.address, "kind": outbox.kind}

        def send(self, rendered):
            sent.append(rendered)
            return {"ok": True}

    try:
        submit(bound, 3.5, 0.1)
        session.commit()
    finally:
        channels._REGISTRY.pop("test_recorder")
    assert sent == [{"to": "desk-1", "kind": "run_reject"}]
    assert len(deliveries(session, channel="test_recorder", status="sent")) == 1
