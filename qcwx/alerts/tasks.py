"""Alert tasks: thin wrappers that take ids, call one service and commit.

``dispatch`` is safe to run twice or concurrently (the service claims the row), which is what
makes ``acks_late`` + redelivery after a lost worker harmless. Retries of failed sends are
not Celery retries: the service stores ``next_attempt_at`` and the beat-driven ``sweep``
re-dispatches due rows — the same path that delivers rows committed while Redis was down, so
there is one retry mechanism, and it survives broker restarts (ETA tasks would not).

The registered names (``qcwx.alerts.*``) are what the beat schedule (:mod:`qcwx.beat`) and
:data:`qcwx.alerts.delivery.DISPATCH_TASK` refer to; keep them stable.
"""

from __future__ import annotations

import logging

from celery import shared_task
from sqlalchemy.exc import OperationalError

from qcwx.alerts import delivery, scheduled
from qcwx.extensions import db

log = logging.getLogger(__name__)


@shared_task(name="qcwx.alerts.dispatch", acks_late=True, ignore_result=True,
             autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=5)
def dispatch(outbox_id: int) -> dict | None:
    """Deliver one outbox row (no-op when it is sent, not due or claimed by another worker)."""
    result = delivery.dispatch(int(outbox_id))
    db.session.commit()
    return None if result is None else result.__dict__


@shared_task(name="qcwx.alerts.sweep", acks_late=True, ignore_result=True)
def sweep() -> list[int]:
    """Re-dispatch every due outbox row (beat, every minute)."""
    ids = delivery.sweep()
    db.session.commit()  # release the skip-locked read before the dispatches claim the rows
    for outbox_id in ids:
        dispatch.apply_async(args=[outbox_id])
    if ids:
        log.info("sweep queued %d outbox rows", len(ids))
    return ids


@shared_task(name="qcwx.alerts.missing_submission_reminder", acks_late=True,
             ignore_result=True)
def missing_submission_reminder() -> list[int]:
    """Queue today's missing-QC reminders (beat, every 15 minutes); dispatch follows commit."""
    ids = scheduled.queue_missing_submission_reminders()
    db.session.commit()
    return ids


@shared_task(name="qcwx.alerts.daily_digest", acks_late=True, ignore_result=True)
def daily_digest() -> list[int]:
    """Queue the day's warning digests (beat, 18:00 Asia/Shanghai); dispatch follows commit."""
    ids = scheduled.queue_daily_digests()
    db.session.commit()
    return ids
