"""Read-only alert queries, each built from the actor's scope (``qcwx.orgs.scopes``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from qcwx.alerts.channels import KIND_LABELS, channel_label
from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.extensions import db
from qcwx.orgs.models import Lab, User
from qcwx.orgs.scopes import in_scope

DELIVERY_STATUS_LABELS = {"pending": "待发送", "sent": "已发送", "failed": "发送失败，等待重试",
                          "dead": "无法送达"}
OUTBOX_STATUS_LABELS = {"pending": "待发送", "sent": "已发送", "failed": "发送失败，等待重试",
                        "unreachable": "无人接收（未绑定微信）",
                        "dead": "部分或全部无法送达"}


def lab_alerts(actor: User, limit: int = 50) -> list[OutboxMessage]:
    """Return the alerts of the labs in the actor's scope, newest first."""
    stmt = (select(OutboxMessage).where(in_scope(actor, OutboxMessage.lab_id))
            .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc()).limit(limit))
    return list(db.session.scalars(stmt))


def acked_by_names(outboxes: list[OutboxMessage]) -> dict[int, str]:
    """Return {user id: display name} of the people who acknowledged ``outboxes``."""
    ids = {o.acked_by_id for o in outboxes if o.acked_by_id}
    if not ids:
        return {}
    rows = db.session.execute(select(User.id, User.display_name).where(User.id.in_(ids)))
    return {user_id: name for user_id, name in rows}


@dataclass(frozen=True)
class FailedDelivery:
    """One message that did not arrive, as the centre's page shows it."""

    id: int
    outbox_id: int
    kind_label: str
    title: str
    lab_name: str
    recipient_name: str
    channel_label: str
    status: str
    status_label: str
    attempts: int
    last_error: str
    created_at: datetime
    next_attempt_at: datetime | None


def _title(outbox: OutboxMessage) -> str:
    p = outbox.payload or {}
    if "analyte" in p:
        return f"{p['analyte']} {p.get('run_date', '')} 第{p.get('run_no', '')}批"
    return p.get("date", "")


def failed_deliveries(actor: User, limit: int = 200) -> list[FailedDelivery]:
    """Return failed (retrying) and dead deliveries of the labs in scope, newest first."""
    recipient = aliased(User)
    stmt = (select(AlertDelivery, OutboxMessage, Lab, recipient.display_name)
            .join(OutboxMessage, AlertDelivery.outbox_id == OutboxMessage.id)
            .join(Lab, OutboxMessage.lab_id == Lab.id)
            .outerjoin(recipient, AlertDelivery.user_id == recipient.id)
            .where(AlertDelivery.status.in_(("failed", "dead")),
                   in_scope(actor, OutboxMessage.lab_id))
            .order_by(AlertDelivery.created_at.desc(), AlertDelivery.id.desc()).limit(limit))
    rows = []
    for delivery, outbox, lab, name in db.session.execute(stmt):
        rows.append(FailedDelivery(
            id=delivery.id, outbox_id=outbox.id, kind_label=KIND_LABELS.get(outbox.kind,
                                                                             outbox.kind),
            title=_title(outbox), lab_name=lab.full_name, recipient_name=name or delivery.recipient,
            channel_label=channel_label(delivery.channel), status=delivery.status,
            status_label=DELIVERY_STATUS_LABELS[delivery.status], attempts=delivery.attempts,
            last_error=delivery.last_error or "", created_at=delivery.created_at,
            next_attempt_at=outbox.next_attempt_at if delivery.status == "failed" else None))
    return rows


def delivery_summary(outbox_ids: list[int]) -> dict[int, dict[str, int]]:
    """Return per outbox the number of deliveries in each status."""
    out: dict[int, dict[str, int]] = {i: {} for i in outbox_ids}
    if outbox_ids:
        for outbox_id, status in db.session.execute(
                select(AlertDelivery.outbox_id, AlertDelivery.status)
                .where(AlertDelivery.outbox_id.in_(outbox_ids))):
            out[outbox_id][status] = out[outbox_id].get(status, 0) + 1
    return out


@dataclass(frozen=True)
class UnreachableLab:
    """A lab whose alerts reach nobody: no supervisor bound to WeChat."""

    lab_id: int
    lab_name: str
    alerts: int
    last_at: datetime


def unreachable_labs(actor: User) -> list[UnreachableLab]:
    """Return the labs in scope with alerts nobody could receive, most alerts first."""
    stmt = (select(Lab, func.count(OutboxMessage.id), func.max(OutboxMessage.created_at))
            .join(OutboxMessage, OutboxMessage.lab_id == Lab.id)
            .where(OutboxMessage.status == "unreachable", in_scope(actor, OutboxMessage.lab_id))
            .group_by(Lab.id).order_by(func.count(OutboxMessage.id).desc(), Lab.id))
    return [UnreachableLab(lab.id, lab.full_name, n, last)
            for lab, n, last in db.session.execute(stmt)]


def unreachable_summary(labs: list[UnreachableLab]) -> str | None:
    """Return the one-line warning for a list of unreachable labs (None when there are none)."""
    if not labs:
        return None
    return f"{len(labs)} 个实验室没有绑定微信的质控主管，失控提醒无法送达"
