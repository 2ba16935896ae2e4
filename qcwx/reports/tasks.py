"""Report tasks: thin wrappers that take plain JSON and call one service.

* ``qcwx.reports.render_pdf(html, fingerprint, footer_title)`` — print a report page into the
  PDF cache (:func:`qcwx.reports.pdf.write_pdf`); idempotent: a cached file is returned as
  it is, so a retry or a second request for the same report costs nothing.

* ``qcwx.reports.publish_previous_month()`` — on the 1st (beat): freeze last month,
  publish every lab's evaluation report (labs already published are skipped), then every
  region's report of the month, announced to its centre and directors through the outbox.

``render_pdf`` is enqueued by name from :mod:`qcwx.reports.exports`; the monthly one is
scheduled in :mod:`qcwx.beat`. Keep the registered names stable.
"""

from __future__ import annotations

from celery import shared_task

from qcwx.extensions import db
from qcwx.reports import pdf


@shared_task(name="qcwx.reports.render_pdf", acks_late=True, soft_time_limit=120,
             time_limit=180)
def render_pdf(html: str, fingerprint: str, footer_title: str) -> str:
    """Print a report page to ``<instance>/reports/<fingerprint>.pdf``; return the path."""
    return str(pdf.write_pdf(html, fingerprint, footer_title))


@shared_task(name="qcwx.reports.publish_previous_month")
def publish_previous_month() -> dict:
    """Publish last month's evaluation of every lab and report of every region (idempotent)."""
    from qcwx.peer.filters import month_period
    from qcwx.reports import queries, services
    from qcwx.reports.regional_publish import publish_regions
    from qcwx.timeutil import local_today

    today = local_today()
    month = queries.previous_month(today)
    done, existing = services.publish_month(month, today, commit=db.session.commit)
    regions = publish_regions(month_period(month, today), today, commit=db.session.commit)
    return {"month": month, "published": done, "already": existing,
            "regions": {r.code: {"published_id": p.item.id, "new": p.created,
                                 "recipients": len(p.outbox.payload.get("user_ids", []))
                                 if p.outbox else 0} for r, p in regions}}
