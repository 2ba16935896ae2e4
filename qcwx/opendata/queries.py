"""Reads of the open-data pages and API: exports and keys in scope, and one API page of rows.

A centre sees its own region's exports and keys; the platform admin sees all. An export or
key outside that answers 404 like one that does not exist.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date

from sqlalchemy import select

from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.opendata import dataset
from qcwx.opendata.columns import NAMES
from qcwx.opendata.models import OpenDataExport, ResearchApiKey
from qcwx.orgs.models import User
from qcwx.orgs.scopes import region_ids_in_scope, region_in_scope

MAX_LIMIT = 1000
CENTRE_ROLES = frozenset({"center", "admin"})  # who exports and issues research keys


def _in_scope(actor: User, column):
    if actor.role not in CENTRE_ROLES:
        return False
    return column.in_(region_ids_in_scope(actor))


def exports(actor: User, limit: int = 20) -> list[OpenDataExport]:
    """Return the newest exports the actor may see."""
    return list(db.session.scalars(select(OpenDataExport).where(
        _in_scope(actor, OpenDataExport.region_id)).order_by(OpenDataExport.id.desc())
        .limit(limit)))


def get_export(actor: User, export_id: int) -> OpenDataExport:
    """Return one export in scope, else 404."""
    row = db.session.get(OpenDataExport, export_id)
    if row is None or actor.role not in CENTRE_ROLES or not region_in_scope(actor, row.region_id):
        raise NotFound("导出记录不存在或无权访问")
    return row


def research_keys(actor: User) -> list[ResearchApiKey]:
    """Return the research keys the actor may see, newest first."""
    return list(db.session.scalars(select(ResearchApiKey).where(
        _in_scope(actor, ResearchApiKey.region_id)).order_by(ResearchApiKey.id.desc())))


def encode_cursor(lab_id: int, run_date: str, result_id: int) -> str:
    """Return an opaque cursor for the row after which the next page starts."""
    return base64.urlsafe_b64encode(f"{lab_id}|{run_date}|{result_id}".encode()).decode()


def decode_cursor(text: str | None) -> tuple[int, date, int] | None:
    """Read a cursor made by :func:`encode_cursor`; a forged one is a 400 naming ``cursor``."""
    if not text:
        return None
    try:
        lab, day, rid = base64.urlsafe_b64decode(text.encode()).decode().split("|")
        return int(lab), date.fromisoformat(day), int(rid)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise UserError("cursor 无效：请使用上一页返回的 next_cursor", field="cursor") from None


def research_page(region_id: int, secret: str, start: date, end: date,
                  cursor: tuple[int, date, int] | None, limit: int) -> dict:
    """Return up to ``limit`` rows after ``cursor`` and the cursor of the next page (or None)."""
    ctx = dataset.build_context(region_id, secret)
    labs = ctx.labs
    after = None
    if cursor is not None:
        labs = [lab for lab in labs if lab >= cursor[0]]
        if labs and labs[0] == cursor[0]:
            after = cursor[1], cursor[2]
    items, last = [], None
    for chunk in dataset.iter_chunks(ctx, start, end, chunk=limit + 1, lab_ids=labs,
                                     after=after):
        for row in chunk:
            if len(items) == limit:
                return {"items": items, "next_cursor": encode_cursor(*last)}
            items.append({name: row[name] for name in NAMES})
            last = (row["_lab_id"], row["run_date"], row["result_id"])
    return {"items": items, "next_cursor": None}
