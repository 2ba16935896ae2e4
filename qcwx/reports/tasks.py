"""Report tasks: thin wrappers that take plain JSON and call one service.

* ``qcwx.reports.render_pdf(html, fingerprint, footer_title)`` — print a report page into the
  PDF cache (:func:`qcwx.reports.pdf.write_pdf`); idempotent: a cached file is returned as
  it is, so a retry or a second request for the same report costs nothing.

Enqueued by name from :mod:`qcwx.reports.exports`. Keep the registered name stable.
"""

from __future__ import annotations

from celery import shared_task

from qcwx.reports import pdf


@shared_task(name="qcwx.reports.render_pdf", acks_late=True, soft_time_limit=120,
             time_limit=180)
def render_pdf(html: str, fingerprint: str, footer_title: str) -> str:
    """Print a report page to ``<instance>/reports/<fingerprint>.pdf``; return the path."""
    return str(pdf.write_pdf(html, fingerprint, footer_title))
