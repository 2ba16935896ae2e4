"""Beat-driven alerts: the missing-submission reminder and the daily warning digest.

They are events nobody submits — the clock raises them — so they live apart from the
delivery machinery they feed (:mod:`qcwx.alerts.delivery`): each writes outbox rows with a
per-lab, per-day dedupe key (a second beat round the same day is a no-op) and hands them to
:func:`~qcwx.alerts.delivery.dispatch_after_commit`. Flushes only; the task commits.
"""

from __future__ import annotations

import logging
from datetime import datetime, time

from sqlalchemy import select

from qcwx.alerts.delivery import dispatch_after_commit
from qcwx.alerts.models import OutboxMessage
from qcwx.catalog.models import TestSystem
from qcwx.extensions import db
from qcwx.iqc.models import STATUS_LABEL, QcRun, Violation
from qcwx.orgs.models import Lab
from qcwx.timeutil import to_local, utcnow

log = logging.getLogger(__name__)

DIGEST_ITEMS = 20


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
