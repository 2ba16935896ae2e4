"""Act on alerts for a user: retry a dead delivery, read an alert, record consents.

The regional centre retries a failed delivery, a lab member marks an alert read, a
mini-program user grants one-time subscribe-message consents. These are the request-driven
services of the package, kept apart from the delivery machinery (:mod:`qcwx.alerts.delivery`)
and the beat-driven reminders (:mod:`qcwx.alerts.scheduled`) so each module has one concern.
:func:`dispatch_after_commit` is re-exported here: it is how other packages (a QC run's
evaluation) hand an outbox row over for delivery. Everything flushes, nothing commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select

from qcwx.alerts.delivery import dispatch_after_commit
from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.errors import Conflict, NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs.models import User
from qcwx.orgs.scopes import can_access_lab, get_lab_object, require_role
from qcwx.timeutil import utcnow
from qcwx.wechat.models import SubscribeConsent

__all__ = ["acknowledge", "dispatch_after_commit", "record_consents", "retry_delivery",
           "unused_consents"]

CONSENT_RESULTS = ("accept", "reject", "ban", "filter")


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
