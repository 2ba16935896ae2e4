"""Open-data tasks: thin wrappers taking ids.

* ``qcwx.opendata.build_export(export_id)`` — write the export's zip in chunks, committing
  progress after each chunk (:func:`qcwx.opendata.services.run_export`); idempotent, so a
  redelivered task after a worker died rebuilds the file or leaves a finished one alone.
"""

from __future__ import annotations

from celery import shared_task

from qcwx.extensions import db


@shared_task(name="qcwx.opendata.build_export", acks_late=True)
def build_export(export_id: int) -> dict:
    """Build one export; return its status and row count."""
    from qcwx.opendata import services

    row = services.run_export(int(export_id), commit=db.session.commit)
    return {"status": row.status if row else "missing", "rows": row.n_done if row else 0}
