"""The beat schedule (``celery -A workers.celery_app beat``), in Asia/Shanghai.

Run exactly one beat process: the tasks are idempotent (dedupe keys, claimed rows), but a
second beat only doubles the work.
"""

from __future__ import annotations

from celery.schedules import crontab

from workers.tasks.peer import BEAT_SCHEDULE as PEER_BEAT

BEAT_SCHEDULE = {
    # Delivers rows committed while Redis/the worker was down, and failed sends after back-off.
    "alerts-sweep": {"task": "qcwx.alerts.sweep", "schedule": 60.0},
    "alerts-missing-submission-reminder": {
        "task": "qcwx.alerts.missing_submission_reminder", "schedule": crontab(minute="*/15")},
    "alerts-daily-digest": {"task": "qcwx.alerts.daily_digest",
                            "schedule": crontab(hour=18, minute=0)},
}
BEAT_SCHEDULE.update(PEER_BEAT)  # nightly peer cache rebuild, month freeze on the 1st
