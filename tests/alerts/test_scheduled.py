"""Beat-driven alerts: the missing-submission reminder and the daily digest."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from celery.schedules import crontab
from sqlalchemy import select

from qcwx.alerts import scheduled
from qcwx.alerts.models import OutboxMessage
from qcwx.beat import BEAT_SCHEDULE
from qcwx.timeutil import local_today, to_utc
from tests import factories
from tests.fixtures.alerts import submit


def at_local(hh: int, mm: int = 0, day=None) -> datetime:
    """Return naive UTC for ``hh:mm`` Asia/Shanghai today (or on ``day``)."""
    return to_utc(datetime.combine(day or local_today(), time(hh, mm)))


def kinds(session, kind):
    return session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                           .order_by(OutboxMessage.id)).all()


def test_reminder_lists_missing_analytes_after_the_lab_reminder_time(session, bound,
                                                                     fake_wechat):
    lab = bound.lab_a
    lab.reminder_time = "09:30"
    crea = factories.test_system(lab, factories.analyte("CREA", "肌酐", "μmol/L", 0, 0, 3000),
                       bound.systems["a"].qc_lot)
    bound.users["technician"].wechat_openid = "oTechReminder00000000000000"
    session.commit()
    assert scheduled.queue_missing_submission_reminders(at_local(9, 15)) == []  # too early
    submit(bound, 0.1, 0.2)  # glucose is done today; creatinine is not
    ids = scheduled.queue_missing_submission_reminders(at_local(9, 45))
    session.commit()
    [row] = kinds(session, "missing_submission")
    assert ids == [row.id] and row.lab_id == lab.id
    assert row.dedupe_key == f"missing-{lab.id}-{local_today().isoformat()}"
    assert [m["analyte"] for m in row.payload["missing"]] == ["肌酐"]
    assert row.payload["missing"][0]["test_system_id"] == crea.id
    to = sorted(m["touser"] for m in fake_wechat.messages)
    expected = sorted([bound.users["supervisor"].wechat_openid,
                       bound.users["supervisor2"].wechat_openid,
                       bound.users["technician"].wechat_openid])
    assert to == expected  # technicians and supervisors, once each
    data = {k: v["value"] for k, v in fake_wechat.messages[0]["data"].items()}
    assert "仍有 1 个项目未提交质控" in data["first"] and data["keyword1"] == "肌酐"
    assert "09:30" in data["keyword3"]
    assert fake_wechat.messages[0]["url"] == "http://qc.example.cn/"
    # Every later beat round the same day is a no-op (one reminder per lab per day).
    assert scheduled.queue_missing_submission_reminders(at_local(10, 0)) == []
    assert scheduled.queue_missing_submission_reminders(at_local(23, 45)) == []
    session.commit()
    assert len(kinds(session, "missing_submission")) == 1 and len(fake_wechat.messages) == 3


def test_no_reminder_when_everything_ran_or_no_time_is_set(session, bound, fake_wechat):
    bound.lab_a.reminder_time = "08:00"
    session.commit()
    submit(bound, 0.1, 0.2)
    assert scheduled.queue_missing_submission_reminders(at_local(12)) == []
    bound.lab_a.reminder_time = None
    bound.lab_b.reminder_time = "bad"  # malformed: ignored, never a crash
    assert scheduled.queue_missing_submission_reminders(at_local(12)) == []


def test_reminder_task_commits_and_dispatches(session, bound, fake_wechat, monkeypatch):
    from qcwx.alerts import tasks as alert_tasks

    bound.lab_a.reminder_time = "00:00"
    session.commit()
    result = alert_tasks.missing_submission_reminder.apply()
    assert len(result.get()) == 1
    assert len(fake_wechat.messages) == 2  # the two bound supervisors (technician unbound)


def test_daily_digest_lists_the_days_warnings_once_per_lab(session, bound, fake_wechat):
    assert submit(bound, 2.2, 0.0, run_no=1).status == "warning"
    assert submit(bound, 3.5, 0.1, run_no=2).status == "reject"
    assert submit(bound, 0.1, 0.0, run_no=3).status in ("accept", "warning")
    session.commit()
    fake_wechat.reset()  # forget the run alerts; look at the digest only
    ids = scheduled.queue_daily_digests(at_local(18))
    session.commit()
    [row] = kinds(session, "daily_digest")
    assert ids == [row.id] and row.lab_id == bound.lab_a.id
    assert row.payload["warnings"] >= 1 and row.payload["rejects"] == 1
    assert row.payload["items"][0]["rules"] == "1-2s"
    msgs = fake_wechat.messages
    assert sorted(m["touser"] for m in msgs) == sorted(
        [bound.users["supervisor"].wechat_openid, bound.users["supervisor2"].wechat_openid])
    data = {k: v["value"] for k, v in msgs[0]["data"].items()}
    assert data["first"].endswith(f"{local_today().isoformat()} 质控日报")
    assert "失控 1 批" in data["keyword1"]
    assert "葡萄糖 第1批 警告（1-2s）" in data["keyword2"]
    assert "葡萄糖 第2批 失控" in data["keyword2"]
    assert scheduled.queue_daily_digests(at_local(18, 30)) == []


def test_no_digest_for_a_quiet_day(session, bound, fake_wechat):
    submit(bound, 0.1, 0.2)
    assert scheduled.queue_daily_digests(at_local(18)) == []
    yesterday = local_today() - timedelta(days=1)
    assert scheduled.queue_daily_digests(at_local(18, day=yesterday)) == []


def test_beat_schedule_runs_sweep_each_minute_reminder_quarterly_digest_at_six(app):
    from qcwx.extensions import celery

    assert BEAT_SCHEDULE["alerts-sweep"] == {"task": "qcwx.alerts.sweep", "schedule": 60.0}
    reminder = BEAT_SCHEDULE["alerts-missing-submission-reminder"]["schedule"]
    assert reminder == crontab(minute="*/15")
    assert BEAT_SCHEDULE["alerts-daily-digest"]["schedule"] == crontab(hour=18, minute=0)
    assert celery.conf.beat_schedule == BEAT_SCHEDULE
    assert celery.conf.timezone == "Asia/Shanghai"  # crontab hours are Shanghai hours
    for entry in BEAT_SCHEDULE.values():
        assert entry["task"] in celery.tasks
