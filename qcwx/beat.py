"""The beat schedule (``celery -A workers.celery_app beat``), in Asia/Shanghai.

Plain data naming tasks by their registered names, so it imports no task module; it sits
beside :func:`qcwx.extensions.init_celery`, which installs it. Run exactly one beat process:
the tasks are idempotent (dedupe keys, claimed rows), but a second beat only doubles the work.
"""

from __future__ import annotations

from celery.schedules import crontab

BEAT_SCHEDULE = {
    # Delivers rows committed while Redis/the worker was down, and failed sends after back-off.
    "alerts-sweep": {"task": "qcwx.alerts.sweep", "schedule": 60.0},
    "alerts-missing-submission-reminder": {
        "task": "qcwx.alerts.missing_submission_reminder", "schedule": crontab(minute="*/15")},
    "alerts-daily-digest": {"task": "qcwx.alerts.daily_digest",
                            "schedule": crontab(hour=18, minute=0)},
    # Peer refreshes parked in Redis whose drain message was lost (normally a second after
    # the commit: qcwx.peer.pending); nightly peer cache rebuild, month freeze on the 1st.
    "peer-refresh-pending": {"task": "qcwx.peer.refresh_pending", "schedule": 60.0},
    "peer-rebuild-nightly": {"task": "qcwx.peer.rebuild", "schedule": crontab(hour=0, minute=20)},
    "peer-freeze-monthly": {"task": "qcwx.peer.freeze_previous_month",
                            "schedule": crontab(day_of_month=1, hour=1, minute=0)},
    # Each lab's evaluation report of the month just closed, published after the freeze.
    "reports-publish-monthly": {"task": "qcwx.reports.publish_previous_month",
                                "schedule": crontab(day_of_month=1, hour=1, minute=30)},
}
