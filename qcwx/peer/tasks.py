"""Peer-comparison tasks: thin wrappers that take ids, call one service and commit once.

* ``qcwx.peer.refresh(test_system_id, since=None)`` — after the commit of a submission,
  correction or re-evaluation of that test system, from its first changed day (idempotent).
* ``qcwx.peer.refresh_pending()`` — the same for every system parked in Redis since the last
  drain (:mod:`qcwx.peer.pending`: with a broker, commits park systems instead of queueing).
* ``qcwx.peer.rebuild(region_id=None)`` — nightly safety net and after bulk imports.
* ``qcwx.peer.freeze_month(region_id, month)`` — freeze one region's finished month.
* ``qcwx.peer.freeze_previous_month()`` — on the 1st: freeze last month for every region
  (regions already frozen are skipped, never recomputed).

The periodic ones are scheduled by name in :mod:`qcwx.beat`; ``qcwx.peer.refresh`` is
enqueued by name from :mod:`qcwx.peer.services`. Keep the registered names stable.
"""

from __future__ import annotations

from datetime import date

from celery import shared_task

from qcwx.extensions import db
from qcwx.peer import pending, services
from qcwx.timeutil import local_today


def _commit(result):
    db.session.commit()
    return result


@shared_task(name="qcwx.peer.refresh", acks_late=True)
def refresh(test_system_id: int, since: str | None = None) -> dict:
    """Bring the live peer statistics of one test system up to date (days from ``since`` on)."""
    day = date.fromisoformat(since) if since else None
    result = services.refresh_after_submission(int(test_system_id), day)
    return _commit(result.__dict__)


@shared_task(name="qcwx.peer.refresh_pending", acks_late=True)
def refresh_pending() -> dict:
    """Refresh every system parked in Redis since the last drain (one pass for many commits).

    Scheduled a second after the first commit that parks a system, and by beat every minute
    as a safety net. What it took is put back if it fails, for the next drain.
    """
    systems = pending.take()
    try:
        return _commit(services.refresh_parked(systems).__dict__)
    except Exception:
        db.session.rollback()
        pending.put_back(systems)
        raise


@shared_task(name="qcwx.peer.rebuild")
def rebuild(region_id: int | None = None) -> dict:
    """Refresh the moments cache of every test system (one region or all)."""
    return _commit(services.rebuild_cache(region_id).__dict__)


@shared_task(name="qcwx.peer.freeze_month")
def freeze_month(region_id: int | None, month: str) -> list[dict]:
    """Freeze ``month`` (``YYYY-MM``) for one region, or all regions when ``region_id`` is None."""
    results = services.freeze_month(region_id, month, local_today())
    return _commit([r.__dict__ for r in results])


@shared_task(name="qcwx.peer.freeze_previous_month")
def freeze_previous_month() -> list[dict]:
    """Freeze last month for every region that has not frozen it yet."""
    today = local_today()
    results = services.freeze_month(None, services.previous_month(today), today)
    return _commit([r.__dict__ for r in results])
