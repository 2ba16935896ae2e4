"""Reads for the import pages: which labs a user may import into, and recent batches.

Scope is in the query (ARCHITECTURE rule 5): labs and batches outside the actor's
region / hospital / lab are never loaded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from qcwx.errors import Forbidden, NotFound
from qcwx.extensions import db
from qcwx.ingest.models import UploadBatch
from qcwx.iqc import services as iqc
from qcwx.numbers import parse_id
from qcwx.orgs.models import Hospital, Lab, User
from qcwx.orgs.scopes import can_access_lab, scoped

UPLOAD_ROLES = iqc.SUBMITTER_ROLES


def check_uploader(actor: User, lab_id: Any) -> Lab:
    """Return the lab ``actor`` may import into (404 outside scope, 403 for other roles)."""
    if actor.role not in UPLOAD_ROLES:
        raise Forbidden("当前角色不能导入质控结果")
    if lab_id in (None, ""):  # a lab role's own lab, else the first lab in scope
        labs = [actor.lab_id] if actor.lab_id else [lab.id for lab in uploadable_labs(actor)[:1]]
        lab_id = labs[0] if labs else None
    ident = parse_id(lab_id)
    lab = db.session.get(Lab, ident) if ident is not None else None
    if lab is None or not can_access_lab(actor, lab.id):
        raise NotFound("实验室不存在或无权访问", field="lab_id")
    return lab


def recent_batches(actor: User, limit: int = 50) -> list[UploadBatch]:
    """Return the latest upload batches of the labs in the actor's scope."""
    return list(db.session.scalars(scoped(select(UploadBatch), actor, UploadBatch.lab_id)
                                   .order_by(UploadBatch.id.desc()).limit(limit)))


def uploadable_labs(actor: User) -> list[Lab]:
    """Return the labs the actor may import into, by hospital and name."""
    if actor.role not in UPLOAD_ROLES:
        return []
    return list(db.session.scalars(scoped(select(Lab).join(Hospital), actor, Lab.id)
                                   .order_by(Hospital.name, Lab.name)))
