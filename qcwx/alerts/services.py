"""Deliver outbox rows through the registered channels, exactly once per recipient.

The outbox row is written in the same transaction as the event (a QC run, a reminder), so
nothing is lost while Redis or the worker is down; this module turns rows into messages:

* :func:`dispatch_after_commit` asks for delivery as soon as the writing transaction commits
  (a Celery task; enqueue failures are logged and left to the sweeper).
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
claim's row lock lasts until that commit. A process dying mid-send rolls the round back, so
delivery is at-least-once in that (rare) window and exactly-once otherwise.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from qcwx.alerts import channels
from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.catalog.models import TestSystem
from qcwx.errors import Conflict, NotFound, UserError
from qcwx.extensions import celery, db
from qcwx.iqc.models import QcRun, Violation
from qcwx.orgs.models import Lab, User
from qcwx.orgs.scopes import can_access_lab, get_lab_object, require_role
from qcwx.timeutil import to_local, utcnow
from qcwx.wechat.models import SubscribeConsent

log = logging.getLogger(__name__)

DISPATCH_TASK = "qcwx.alerts.dispatch"
MAX_ATTEMPTS = 8
BACKOFF_BASE = 30  # seconds
BACKOFF_CAP = 3600
SWEEP_LIMIT = 200
DIGEST_ITEMS = 20
RETRYABLE = ("pending", "failed")
CONSENT_RESULTS = ("accept", "reject", "ban", "filter")
_PENDING_KEY = "qcwx.alerts.dispatch_ids"


# ---------------------------------------------------------------- dispatch after commit
def dispatch_after_commit(*outboxes: OutboxMessage) -> None:
    """Enqueue delivery of ``outboxes`` once the current transaction commits.

    Enqueueing before the commit would let a fast worker look for a row it cannot see yet;
    enqueueing after a rollback would announce a row that never existed.
    """
    db.session.flush()
    db.session.info.setdefault(_PENDING_KEY, set()).update(o.id for o in outboxes)


@event.listens_for(Session, "after_commit")
def _enqueue_on_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    ids = session.info.pop(_PENDING_KEY, None)
    if ids:
        enqueue_dispatch(sorted(ids))


@event.listens_for(Session, "after_soft_rollback")
def _forget_on_rollback(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None and not previous_transaction.nested:
        session.info.pop(_PENDING_KEY, None)


def enqueue_dispatch(outbox_ids: Iterable[int]) -> None:
    """Queue one dispatch task per outbox id; a broker failure is logged, never raised.

    The row is already committed, so a failed enqueue only delays the alert until the
    sweeper's next round; failing the request would make the user resubmit a stored run.
    """
    task = celery.tasks.get(DISPATCH_TASK)
    # One connection attempt, no retry loop: kombu would otherwise keep a user's submission
    # waiting for seconds while Redis is down, for a message the sweeper sends anyway.
    with celery.connection_for_write(transport_options={"max_retries": 0}) as connection:
        for outbox_id in outbox_ids:
            try:
                if task is None:
                    raise LookupError(f"task {DISPATCH_TASK} is not registered")
                task.apply_async(args=[outbox_id], retry=False, connection=connection)
            except Exception as exc:  # noqa: BLE001 - any broker failure: the sweeper delivers
                log.warning("could not enqueue dispatch of outbox %s (sweeper will deliver "
                            "it): %s", outbox_id, exc)


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
            rows.append(AlertDelivery(
                outbox_id=outbox.id, channel=channel.name, recipient=recipient.address,
                user_id=recipient.user_id, status="pending", attempts=0,
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
    else:
        outbox.status, outbox.sent_at = "sent", now
        outbox.last_error = None if deliveries else "没有可接收的用户（无人绑定微信）"


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
    deliveries = _deliveries(outbox) or _expand(outbox)
    for delivery in deliveries:
        if delivery.status in RETRYABLE:
            _send(outbox, delivery, now)
    _settle(outbox, deliveries, now)
    db.session.flush()
    count = {s: sum(d.status == s for d in deliveries) for s in ("sent", "failed", "dead")}
    return DispatchResult(outbox.id, outbox.status, count["sent"], count["failed"], count["dead"])


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


# ---------------------------------------------------------------- centre and lab actions
def retry_delivery(actor: User, delivery_id: int) -> AlertDelivery:
    """Put a failed or dead delivery back in line and dispatch its outbox after commit."""
    require_role(actor, "center", "admin")
    delivery = db.session.get(AlertDelivery, delivery_id)
    outbox = db.session.get(OutboxMessage, delivery.outbox_id) if delivery else None
    if outbox is None or not can_access_lab(actor, outbox.lab_id):
        raise NotFound("该发送记录不存在或无权访问", field="delivery_id")
    if delivery.status not in ("failed", "dead"):
        raise Conflict("该消息已发送或正在排队，无需重试", field="delivery_id")
    delivery.status, delivery.last_error = "pending", None
    outbox.status, outbox.attempts, outbox.next_attempt_at = "pending", 0, utcnow()
    dispatch_after_commit(outbox)
    return delivery


def acknowledge(actor: User, outbox_id: int) -> OutboxMessage:
    """Mark an alert of the actor's lab as read (idempotent: the first reader is kept)."""
    outbox = get_lab_object(actor, OutboxMessage, outbox_id)
    if outbox.acked_at is None:
        outbox.acked_at, outbox.acked_by_id = utcnow(), actor.id
        db.session.flush()
    return outbox


def record_consents(actor: User, results: Mapping[str, str], known: Iterable[str]) -> dict:
    """Store one SubscribeConsent per accepted template; return unused consents per template.

    ``results`` is what ``wx.requestSubscribeMessage`` answered (template id → accept,
    reject, ban or filter). Each accept allows exactly one message, hence one row each.
    """
    known = set(known)
    for template_id, answer in results.items():
        if template_id not in known:
            raise UserError(f"未知的订阅消息模板“{template_id}”", field="template_ids")
        if answer not in CONSENT_RESULTS:
            raise UserError(f"模板“{template_id}”的订阅结果无效", field="results")
    accepted = [t for t, answer in results.items() if answer == "accept"]
    db.session.add_all(SubscribeConsent(user_id=actor.id, template_id=t) for t in accepted)
    db.session.flush()
    return {"recorded": len(accepted), "unused": unused_consents(actor, known)}


def unused_consents(actor: User, templates: Iterable[str]) -> dict[str, int]:
    """Return how many unused consents the actor holds per template."""
    counts = dict.fromkeys(templates, 0)
    rows = db.session.scalars(select(SubscribeConsent.template_id).where(
        SubscribeConsent.user_id == actor.id, SubscribeConsent.used_at.is_(None),
        SubscribeConsent.template_id.in_(list(counts))))
    for template_id in rows:
        counts[template_id] += 1
    return counts


# ---------------------------------------------------------------- scheduled events
def _parse_hhmm(text: str | None) -> time | None:
    try:
        hours, minutes = (int(x) for x in (text or "").split(":"))
        return time(hours, minutes)
    except ValueError:
        log.warning("ignoring malformed reminder_time %r", text)
        return None


def _outbox_exists(dedupe_key: str) -> bool:
    return db.session.scalar(select(OutboxMessage.id).where(
        OutboxMessage.dedupe_key == dedupe_key)) is not None


def _queue(kind: str, lab: Lab, dedupe_key: str, payload: dict) -> OutboxMessage:
    outbox = OutboxMessage(kind=kind, lab_id=lab.id, dedupe_key=dedupe_key, payload=payload)
    db.session.add(outbox)
    dispatch_after_commit(outbox)
    return outbox


def _missing_systems(lab_id: int, day) -> list[TestSystem]:
    ran = select(QcRun.id).where(QcRun.test_system_id == TestSystem.id, QcRun.run_date == day)
    return list(db.session.scalars(
        select(TestSystem).where(TestSystem.lab_id == lab_id, TestSystem.active, ~ran.exists())
        .order_by(TestSystem.analyte_id, TestSystem.id)))


def queue_missing_submission_reminders(now: datetime | None = None) -> list[int]:
    """Write one reminder per lab and day listing active test systems without a run today.

    A lab is due once its ``reminder_time`` (lab-local "HH:MM") has passed today; the date in
    the dedupe key makes a second beat round the same day a no-op. System-wide on purpose:
    it runs for every lab, with no actor.
    """
    now = now or utcnow()
    created = []
    for lab in db.session.scalars(select(Lab).where(Lab.reminder_time.is_not(None))
                                  .order_by(Lab.id)):
        local = to_local(now, lab.timezone)
        due = _parse_hhmm(lab.reminder_time)
        key = f"missing-{lab.id}-{local.date().isoformat()}"
        if due is None or local.time() < due or _outbox_exists(key):
            continue
        missing = _missing_systems(lab.id, local.date())
        if not missing:
            continue
        created.append(_queue("missing_submission", lab, key, {
            "lab_id": lab.id, "lab_name": lab.full_name, "date": local.date().isoformat(),
            "reminder_time": lab.reminder_time, "at": now.isoformat(),
            "missing": [{"test_system_id": ts.id, "analyte": ts.analyte.name,
                         "analyte_code": ts.analyte.code, "instrument": str(ts.instrument)}
                        for ts in missing]}).id)
    return created


def queue_daily_digests(now: datetime | None = None) -> list[int]:
    """Write one digest per lab with warnings or rejects on its local date (once a day).

    Beat runs this at 18:00 Asia/Shanghai; the supervisors see the day's warnings together
    even when the single alerts were read in passing.
    """
    from qcwx.iqc.services import STATUS_LABEL  # iqc.services imports this module

    now = now or utcnow()
    created = []
    for tz in db.session.scalars(select(Lab.timezone).distinct()):
        day = to_local(now, tz).date()
        runs = db.session.execute(
            select(QcRun, TestSystem, Lab).join(TestSystem, QcRun.test_system_id == TestSystem.id)
            .join(Lab, TestSystem.lab_id == Lab.id)
            .where(Lab.timezone == tz, QcRun.run_date == day,
                   QcRun.status.in_(("warning", "reject")))
            .order_by(Lab.id, QcRun.id)).all()
        rules = _active_rules([run.id for run, _, _ in runs])
        by_lab: dict[int, list] = {}
        for run, ts, lab in runs:
            by_lab.setdefault(lab.id, []).append((run, ts, lab))
        for lab_id, rows in by_lab.items():
            key = f"digest-{lab_id}-{day.isoformat()}"
            if _outbox_exists(key):
                continue
            lab = rows[0][2]
            items = [{"run_id": run.id, "analyte": ts.analyte.name, "run_no": run.run_no,
                      "status": run.status, "status_label": STATUS_LABEL[run.status],
                      "rules": "、".join(rules.get(run.id, [])) or "—"} for run, ts, _ in rows]
            created.append(_queue("daily_digest", lab, key, {
                "lab_id": lab.id, "lab_name": lab.full_name, "date": day.isoformat(),
                "warnings": sum(i["status"] == "warning" for i in items),
                "rejects": sum(i["status"] == "reject" for i in items),
                "items": items[:DIGEST_ITEMS], "at": now.isoformat()}).id)
    return created


def _active_rules(run_ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if run_ids:
        for run_id, code in db.session.execute(
                select(Violation.run_id, Violation.rule_code)
                .where(Violation.run_id.in_(run_ids), Violation.active)
                .order_by(Violation.id)):
            if code not in out.setdefault(run_id, []):
                out[run_id].append(code)
    return out
