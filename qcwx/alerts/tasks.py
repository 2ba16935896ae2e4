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
import time

from celery import shared_task
from sqlalchemy.exc import InterfaceError, OperationalError

from qcwx.alerts import delivery, scheduled
from qcwx.extensions import db

log = logging.getLogger(__name__)

#: How long, and how often, a worker tries to record sends whose commit was lost.
KEEP_SENT_SECONDS = 120.0
KEEP_SENT_PAUSE = 0.5
#: What a lost or refused database connection raises (PyMySQL: 2006/2013 → Operational, a
#: connection already closed → Interface).
DATABASE_AWAY = (OperationalError, InterfaceError)


@shared_task(name="qcwx.alerts.dispatch", acks_late=True, ignore_result=True,
             autoretry_for=DATABASE_AWAY,
             retry_backoff=True, max_retries=5)
def dispatch(outbox_id: int) -> dict | None:
    """Deliver one outbox row (no-op when it is sent, not due or claimed by another worker).

    A database error before anything went out is Celery's to retry: the round is redone as
    if new. After WeChat took a message it is not: the retry would send it again, so the
    sends are recorded here instead (:func:`_keep_sent`).
    """
    outbox_id = int(outbox_id)
    try:
        result = delivery.dispatch(outbox_id)
        db.session.commit()
    except DATABASE_AWAY:
        db.session.rollback()
        sent = delivery.lost_sends(outbox_id)
        if not sent:
            raise
        _keep_sent(outbox_id, sent)
        return None
    delivery.lost_sends(outbox_id)  # committed: nothing to keep
    return None if result is None else result.__dict__


def _keep_sent(outbox_id: int, sent: list[delivery.SentRecord]) -> None:
    """Record sends whose commit was lost, trying until the database answers again.

    Every ``KEEP_SENT_PAUSE`` seconds for up to ``KEEP_SENT_SECONDS`` (a database restart
    takes seconds), so the record lands before the sweep finds the row due. Past that the
    error goes to Celery's retry, which sends again: at-least-once, never lost.
    """
    deadline = time.monotonic() + KEEP_SENT_SECONDS
    while True:
        try:
            kept = delivery.record_sent(outbox_id, sent)
            db.session.commit()
        except DATABASE_AWAY:
            db.session.rollback()
            if time.monotonic() >= deadline:
                log.error("outbox %s: %d sent messages could not be recorded; a retry may "
                          "send them again", outbox_id, len(sent))
                raise
            time.sleep(KEEP_SENT_PAUSE)
            continue
        log.warning("outbox %s: the commit after %d sends was lost; %s", outbox_id, len(sent),
                    "recorded them again" if kept else "another worker has the row now")
        return


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
