"""Deliver outbox rows through the registered channels, exactly once per recipient.

This module is the delivery machinery on its own (claim, send, back-off, sweep) so that the
concurrency rules live in one place; the user actions are in :mod:`qcwx.alerts.services`
and the beat-driven reminders and digests in :mod:`qcwx.alerts.scheduled`.

The outbox row is written in the same transaction as the event (a QC run, a reminder), so
nothing is lost while Redis or the worker is down; this module turns rows into messages:

* :func:`dispatch_after_commit` asks for delivery as soon as the writing transaction commits
  (through :mod:`qcwx.followups`: one Celery message per commit, whatever else the commit
  leaves for the workers; enqueue failures are logged and left to the sweeper).
* :func:`dispatch` claims a due row — ``SELECT … FOR UPDATE SKIP LOCKED`` on MariaDB, a
  conditional ``UPDATE … WHERE status IN (…)`` on SQLite — so two workers never both send,
  expands it into :class:`AlertDelivery` rows (one per channel and recipient, unique
  ``dedupe_key``), sends the pending ones and records the outcome. A redelivered task finds
  the row sent (or not due) and does nothing.
* Failures back off exponentially (30 s × 2^(attempts−1), capped at an hour); after
  ``MAX_ATTEMPTS`` rounds, or at once for errors like 43004 (not following), the delivery is
  ``dead`` and listed for the regional centre, which may retry it.
* :func:`sweep` returns due rows for the beat-driven sweeper: that is what delivers messages
  committed while the broker was down, and the retries.

Everything here flushes and never commits: the task (or request) owns the transaction, and the
claim's row lock lasts until that commit. A round whose commit fails after WeChat took a
message (the database restarting mid-round) would be rolled back and sent again; each send is
therefore also kept outside the session (:func:`lost_sends`), and the task records it again
with :func:`record_sent` once the database answers, sending nothing. Only a process dying
between the send and that record resends, so delivery is at-least-once in that (rare) window
and exactly-once otherwise.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from qcwx import followups
from qcwx.alerts import channels, recipients
from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.extensions import db
from qcwx.timeutil import utcnow

log = logging.getLogger(__name__)

DISPATCH_TASK = "qcwx.alerts.dispatch"
MAX_ATTEMPTS = 8
BACKOFF_BASE = 30  # seconds
BACKOFF_CAP = 3600
SWEEP_LIMIT = 200
RETRYABLE = ("pending", "failed")
#: Why an alert with no recipient stays undelivered (shown to the lab's director and the centre).
NO_RECIPIENT = "没有可接收的用户：本实验室没有绑定微信的质控主管，提醒无法送达"
_PENDING_KEY = "qcwx.alerts.dispatch_ids"
_SENT_KEY = "qcwx.alerts.sent_this_round"


@dataclass(frozen=True)
class SentRecord:
    """A delivery WeChat took, kept outside the session so a lost commit cannot resend it."""

    channel: str
    recipient: str
    user_id: int | None
    dedupe_key: str
    attempts: int
    sent_at: datetime
    response: dict | None


# ---------------------------------------------------------------- dispatch after commit
def dispatch_after_commit(*outboxes: OutboxMessage) -> None:
    """Enqueue delivery of ``outboxes`` once the current transaction commits.

    Enqueueing before the commit would let a fast worker look for a row it cannot see yet;
    enqueueing after a rollback would announce a row that never existed.
    """
    db.session.flush()
    db.session.info.setdefault(_PENDING_KEY, set()).update(o.id for o in outboxes)


followups.register(_PENDING_KEY, DISPATCH_TASK, "could not enqueue dispatch of outbox %s "
                   "(sweeper will deliver it): %s", priority=0)


# ---------------------------------------------------------------- dispatch
@dataclass(frozen=True)
class DispatchResult:
    """What one dispatch round did to one outbox row."""

    outbox_id: int
    status: str
    sent: int
    failed: int
    dead: int


def backoff(attempts: int) -> timedelta:
    """Return the wait after the ``attempts``-th failed round: 30 s × 2^(attempts−1), ≤ 1 h."""
    return timedelta(seconds=min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1)))


def _due(outbox_id: int, now: datetime):
    return ((OutboxMessage.id == outbox_id) & OutboxMessage.status.in_(RETRYABLE)
            & (OutboxMessage.next_attempt_at <= now))


def _claim(outbox_id: int, now: datetime) -> OutboxMessage | None:
    """Lock a due row for this transaction and count the attempt; None if not ours to send.

    MariaDB: a locking read that skips rows another worker holds. SQLite has no row locks:
    the conditional UPDATE takes the database write lock, and a concurrent claimer that waited
    re-checks the condition after our commit, when the row is no longer due.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        result = db.session.execute(
            update(OutboxMessage).where(_due(outbox_id, now))
            .values(attempts=OutboxMessage.attempts + 1)
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            return None
        return db.session.scalars(select(OutboxMessage).where(OutboxMessage.id == outbox_id)
                                  .execution_options(populate_existing=True)).one()
    outbox = db.session.scalars(
        select(OutboxMessage).where(_due(outbox_id, now)).with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)).first()
    if outbox is not None:
        outbox.attempts += 1
    return outbox


def delivery_key(outbox: OutboxMessage, channel: str, address: str) -> str:
    """Return the delivery's unique key ``<outbox key>:<channel>:<address>`` (hashed if long)."""
    key = f"{outbox.dedupe_key}:{channel}:{address}"
    if len(key) <= 160:
        return key
    return f"h:{hashlib.sha256(key.encode()).hexdigest()}"


def _deliveries(outbox: OutboxMessage) -> list[AlertDelivery]:
    return list(db.session.scalars(select(AlertDelivery).where(
        AlertDelivery.outbox_id == outbox.id).order_by(AlertDelivery.id)))


def _expand(outbox: OutboxMessage) -> list[AlertDelivery]:
    """Create the delivery rows of a first round: one per channel and recipient."""
    rows = []
    for channel in channels.all_channels():
        for recipient in channel.recipients(outbox):
            # every column given, None too: one left out is unknown after the insert, and
            # the audit diff of the send read it back, a statement per recipient (issue 14)
            rows.append(AlertDelivery(
                outbox_id=outbox.id, channel=channel.name, recipient=recipient.address,
                user_id=recipient.user_id, status="pending", attempts=0, last_error=None,
                response=None, sent_at=None,
                dedupe_key=delivery_key(outbox, channel.name, recipient.address)))
    db.session.add_all(rows)
    db.session.flush()
    return rows


def _send(outbox: OutboxMessage, delivery: AlertDelivery, now: datetime) -> None:
    """Send one delivery and record sent / failed (retry) / dead (permanent) on it."""
    channel = channels.get(delivery.channel)
    recipient = channels.Recipient(delivery.user_id, delivery.recipient)
    delivery.attempts += 1
    try:
        response = channel.send(channel.render(outbox, recipient))
    except channels.SendError as exc:
        delivery.status = "dead" if exc.permanent else "failed"
        delivery.last_error, delivery.response = exc.message, exc.response
        log.warning("outbox %s → %s %s failed (%s): %s", outbox.id, delivery.channel,
                    delivery.recipient, "permanent" if exc.permanent else "retry", exc.message)
        return
    except Exception as exc:  # noqa: BLE001 - a bug must not lose the other recipients' state
        log.exception("outbox %s → %s %s raised", outbox.id, delivery.channel, delivery.recipient)
        delivery.status, delivery.last_error = "failed", f"内部错误：{exc!r}"[:1000]
        return
    delivery.status, delivery.sent_at, delivery.last_error = "sent", now, None
    delivery.response = response if isinstance(response, dict) else None
    db.session.info.setdefault(_SENT_KEY, {}).setdefault(outbox.id, []).append(SentRecord(
        delivery.channel, delivery.recipient, delivery.user_id, delivery.dedupe_key,
        delivery.attempts, now, delivery.response))
    channel.after_sent(outbox, recipient)


def _settle(outbox: OutboxMessage, deliveries: list[AlertDelivery], now: datetime) -> None:
    """Set the outbox status from its deliveries: sent, failed (retry later) or dead."""
    failed = [d for d in deliveries if d.status == "failed"]
    if failed and outbox.attempts >= MAX_ATTEMPTS:
        for d in failed:
            d.status = "dead"
            d.last_error = f"{d.last_error}（已重试 {outbox.attempts} 次，放弃发送）"
        failed = []
    dead = [d for d in deliveries if d.status == "dead"]
    if failed:
        outbox.status, outbox.next_attempt_at = "failed", now + backoff(outbox.attempts)
        outbox.last_error = f"{len(failed)} 个接收人发送失败，将于稍后重试：{failed[0].last_error}"
    elif dead:
        outbox.status = "dead"
        outbox.last_error = f"{len(dead)} 个接收人无法送达：{dead[0].last_error}"
    elif not deliveries:  # nobody to send to is a failure to see, never "sent"
        outbox.status = "unreachable"
        outbox.last_error = NO_RECIPIENT
    else:
        outbox.status, outbox.sent_at, outbox.last_error = "sent", now, None


def dispatch(outbox_id: int, now: datetime | None = None) -> DispatchResult | None:
    """Deliver one outbox row if it is due and unclaimed; return what happened (None = skip).

    Calling it twice, or from two workers at once, sends each message once: the second call
    either waits for / skips the first one's lock, or finds the row sent or not yet due.
    """
    now = now or utcnow()
    outbox = _claim(outbox_id, now)
    if outbox is None:
        log.info("outbox %s not due or claimed elsewhere; nothing to do", outbox_id)
        return None
    db.session.info.setdefault(_SENT_KEY, {})[outbox.id] = []
    # A strong reference for the round: the identity map alone let the lab be collected
    # between renders, and each recipient's message read it again.
    held = recipients.lab_of(outbox)
    deliveries = _deliveries(outbox) or _expand(outbox)
    for delivery in deliveries:
        if delivery.status in RETRYABLE:
            _send(outbox, delivery, now)
    _settle(outbox, deliveries, now)
    db.session.flush()
    del held
    count = {s: sum(d.status == s for d in deliveries) for s in ("sent", "failed", "dead")}
    return DispatchResult(outbox.id, outbox.status, count["sent"], count["failed"], count["dead"])


def lost_sends(outbox_id: int) -> list[SentRecord]:
    """Return and forget what the last round of ``outbox_id`` in this session sent."""
    return db.session.info.get(_SENT_KEY, {}).pop(outbox_id, [])


def record_sent(outbox_id: int, sent: list[SentRecord], now: datetime | None = None) -> bool:
    """Record deliveries that went out in a round whose commit was lost; send nothing.

    The rollback forgot them, so the row is due again and the next round would send them a
    second time. This claims the row as a round does (counting the lost round's attempt),
    marks them sent, creating their rows when the lost round had created them, and leaves
    any other recipient due at once. False when the row is not ours to claim: another
    worker holds it, or has recorded a round since.
    """
    now = now or utcnow()
    outbox = _claim(outbox_id, now)
    if outbox is None:
        return False
    rows = {d.dedupe_key: d for d in (_deliveries(outbox) or _expand(outbox))}
    for s in sent:
        row = rows.get(s.dedupe_key)
        if row is None:  # the recipients changed since the lost round: keep what went out
            row = rows[s.dedupe_key] = AlertDelivery(
                outbox_id=outbox.id, channel=s.channel, recipient=s.recipient,
                user_id=s.user_id, dedupe_key=s.dedupe_key)
            db.session.add(row)
        row.status, row.attempts, row.sent_at = "sent", s.attempts, s.sent_at
        row.response, row.last_error = s.response, None
        channels.get(s.channel).after_sent(outbox, channels.Recipient(s.user_id, s.recipient))
    deliveries = list(rows.values())
    if any(d.status in RETRYABLE for d in deliveries):  # the others go out in a new round
        outbox.status, outbox.next_attempt_at = "failed", now
        outbox.last_error = "数据库中断后已补记已发送的消息，其余接收人稍后发送"
        dispatch_after_commit(outbox)
    else:
        _settle(outbox, deliveries, now)
    db.session.flush()
    return True


def sweep(now: datetime | None = None, limit: int = SWEEP_LIMIT) -> list[int]:
    """Return the ids of due outbox rows (oldest first) that no worker is sending right now.

    Run by beat every minute: rows committed while the broker was down and rows waiting for
    their back-off are found here. Rows locked by a dispatching worker are skipped (MariaDB).
    """
    now = now or utcnow()
    stmt = (select(OutboxMessage.id)
            .where(OutboxMessage.status.in_(RETRYABLE), OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit)
            .with_for_update(skip_locked=True))
    return list(db.session.scalars(stmt))
