"""Who an alert concerns: the lab's people by role, the centre above it, consents held.

Read system-wide by design: an alert goes to the people of the lab it concerns, not to
whoever triggered it, so there is no actor scope. Channels (:mod:`qcwx.alerts.channels`)
then keep those they can reach.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from qcwx.alerts.models import OutboxMessage
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, User
from qcwx.orgs.scopes import region_ancestors
from qcwx.wechat.models import SubscribeConsent

RUN_KINDS = frozenset({"run_warning", "run_reject"})
#: Notices whose payload names its recipients (``user_ids``), text (``fields``) and ``url``.
NOTICE_KINDS = frozenset({"expert_comment", "comment_reply", "region_report"})


def lab_of(outbox: OutboxMessage) -> Lab | None:
    """The outbox's lab with its hospital (every rendering names both) in one statement."""
    if not outbox.lab_id:
        return None
    return db.session.get(Lab, outbox.lab_id, options=[joinedload(Lab.hospital)])


def _lab_users(lab_id: int | None, roles: tuple[str, ...]) -> list[User]:
    if lab_id is None:
        return []
    return list(db.session.scalars(
        select(User).where(User.lab_id == lab_id, User.role.in_(roles), User.active)
        .order_by(User.id)))


def _centre_users(lab: Lab) -> list[User]:
    """Return the centre users overseeing the lab: its region's and every region's above it."""
    region_id = select(Hospital.region_id).where(Hospital.id == lab.hospital_id).scalar_subquery()
    return list(db.session.scalars(
        select(User).where(User.region_id.in_(region_ancestors(region_id)),
                           User.role == "center", User.active)
        .order_by(User.id)))


def audience(outbox: OutboxMessage) -> list[User]:
    """Return the people an event concerns, by kind (before any channel filters addresses).

    Run alerts go to the lab's supervisors (and, for rejects with ``ALERT_CENTER_ON_REJECT``,
    to the region's centre users); the missing-submission reminder to technicians and
    supervisors; the daily digest to supervisors.
    """
    if outbox.kind in RUN_KINDS:
        users = _lab_users(outbox.lab_id, ("supervisor",))
        lab = lab_of(outbox)
        if (outbox.kind == "run_reject" and lab is not None
                and current_app.config.get("ALERT_CENTER_ON_REJECT", False)):
            users += _centre_users(lab)
        return users
    if outbox.kind == "missing_submission":
        return _lab_users(outbox.lab_id, ("technician", "supervisor"))
    if outbox.kind == "daily_digest":
        return _lab_users(outbox.lab_id, ("supervisor",))
    if outbox.kind in NOTICE_KINDS:  # chosen when the notice was written
        return list(db.session.scalars(select(User).where(
            User.id.in_(outbox.payload.get("user_ids", [])), User.active).order_by(User.id)))
    return []


def unused_consent(user_id: int, template_id: str) -> SubscribeConsent | None:
    """The user's oldest unused consent to ``template_id`` (a send consumes one)."""
    return db.session.scalar(
        select(SubscribeConsent).where(SubscribeConsent.user_id == user_id,
                                       SubscribeConsent.template_id == template_id,
                                       SubscribeConsent.used_at.is_(None))
        .order_by(SubscribeConsent.granted_at, SubscribeConsent.id).limit(1))


def consenting_lab_users(lab_id: int | None, template_id: str) -> list[tuple[int, str]]:
    """Return (user id, mini-program openid) of the lab's users holding an unused consent.

    One statement, not one consent read per lab user: those reads were an eighth of what a
    reject's dispatch cost the worker (issue 14, py-spy).
    """
    if lab_id is None:
        return []
    consented = select(SubscribeConsent.id).where(
        SubscribeConsent.user_id == User.id, SubscribeConsent.template_id == template_id,
        SubscribeConsent.used_at.is_(None)).exists()
    return list(db.session.execute(
        select(User.id, User.mp_openid)
        .where(User.lab_id == lab_id, User.role.in_(("technician", "supervisor")), User.active,
               User.mp_openid.is_not(None), User.mp_openid != "", consented)
        .order_by(User.id)).all())
