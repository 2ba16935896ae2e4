"""Request and build exports of the data set; issue and check research API keys.

Services flush and never commit, except :func:`run_export`, which receives the task's
``commit`` so progress becomes visible to the page chunk by chunk (the task owns the
transaction). Files live in ``<instance>/opendata/``; a half-written file never carries the
final name (written as ``.part``, renamed when complete).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import date
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from qcwx.errors import Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.ingest import apikeys
from qcwx.numbers import parse_id
from qcwx.opendata import dataset, writers
from qcwx.opendata.models import RESEARCH_SCOPE, OpenDataExport, ResearchApiKey
from qcwx.orgs.models import Region, User
from qcwx.orgs.scopes import region_in_scope, require_write
from qcwx.timeutil import utcnow

log = logging.getLogger(__name__)
CENTRE_ROLES = {"center", "admin"}
MAX_DAYS = 366


def pseudonym_secret() -> str:
    """Return the key of the data set's pseudonyms (derived from the app's secret key)."""
    return f"{current_app.config['SECRET_KEY']}:opendata"


def export_dir() -> Path:
    """Return (and create) the directory export files are written to."""
    path = Path(current_app.instance_path) / "opendata"
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_day(text: str | None, field: str) -> date:
    """Parse a ``YYYY-MM-DD`` form value, naming the field when it is missing or wrong."""
    if not (text or "").strip():
        raise UserError("请填写日期", field=field)
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"日期“{text.strip()[:20]}”格式无效，应为 YYYY-MM-DD",
                        field=field) from None


def check_period(start: date, end: date) -> None:
    """Refuse an empty, reversed or over-long period (at most :data:`MAX_DAYS` days)."""
    if end < start:
        raise UserError("结束日期不能早于开始日期", field="end")
    if (end - start).days + 1 > MAX_DAYS:
        raise UserError(f"一次最多导出 {MAX_DAYS} 天，请缩短期间", field="end")
    if start.year < 2000:
        raise UserError("开始日期不能早于 2000 年", field="start")


def actor_region(actor: User, region_id=None) -> int:
    """Return the region an export or key is for: the centre's own; the admin names one."""
    if actor.role not in CENTRE_ROLES:
        raise Forbidden("只有区域质控中心或平台管理员可以导出开放数据")
    require_write(actor)
    if actor.role == "center":
        return actor.region_id
    ident = parse_id(region_id)
    region = None if ident is None else db.session.get(Region, ident)
    if region is None:
        raise NotFound("区域不存在", field="region_id")
    return region.id


def request_export(actor: User, start: date, end: date, region_id=None) -> OpenDataExport:
    """Record an export request (status ``queued``); the caller enqueues the task after commit."""
    region = actor_region(actor, region_id)
    check_period(start, end)
    row = OpenDataExport(region_id=region, requested_by_id=actor.id, period_start=start,
                         period_end=end, status="queued")
    db.session.add(row)
    db.session.flush()
    return row


def run_export(export_id: int, commit: Callable[[], None]) -> OpenDataExport | None:
    """Build one export (idempotent: a finished one is left alone); progress per chunk."""
    row = db.session.get(OpenDataExport, export_id)
    if row is None or row.status == "done":
        return row
    region = db.session.get(Region, row.region_id)
    start, end = row.period_start, row.period_end
    row.status, row.n_done, row.error = "running", 0, None
    row.n_total = dataset.count_rows(region.id, start, end)
    commit()
    name = f"qcwx-opendata-{region.code}-{start:%Y%m%d}-{end:%Y%m%d}-{row.id}.zip"
    part = export_dir() / (name + ".part")

    def progress(n: int) -> None:
        row.n_done = n
        commit()

    try:
        ctx = dataset.build_context(region.id, pseudonym_secret())
        summary = writers.write_export(part, dataset.iter_chunks(ctx, start, end, dataset.CHUNK),
                                       timestamp=utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
                                       progress=progress)
        part.replace(export_dir() / name)
    except Exception:
        log.exception("open data export %s failed", export_id)
        db.session.rollback()
        part.unlink(missing_ok=True)
        row = db.session.get(OpenDataExport, export_id)
        row.status, row.finished_at = "failed", utcnow()
        row.error = "导出失败，请稍后重试或联系管理员"
        commit()
        return row
    row.status, row.file_name, row.finished_at = "done", name, utcnow()
    row.n_done, row.n_bundles, row.n_validated = summary.rows, summary.bundles, summary.validated
    commit()
    return row


# ---------------------------------------------------------------- research keys
def create_research_key(actor: User, name: str, region_id=None) -> tuple[ResearchApiKey, str]:
    """Issue a research key for the actor's region; return the row and the key (shown once)."""
    region = actor_region(actor, region_id)
    name = (name or "").strip()
    if not name:
        raise UserError("请填写密钥名称（如：某大学课题组）", field="name")
    if len(name) > 64:
        raise UserError("密钥名称过长（最多64个字符）", field="name")
    prefix = secrets.token_hex(4)
    raw = f"qcwx_{prefix}_{secrets.token_urlsafe(32)}"
    row = ResearchApiKey(region_id=region, name=name, prefix=prefix,
                         key_hash=apikeys.hash_key(raw), scopes=[RESEARCH_SCOPE],
                         created_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    return row, raw


def revoke_research_key(actor: User, key_id: int) -> ResearchApiKey:
    """Revoke a research key of the actor's region (idempotent)."""
    row = db.session.get(ResearchApiKey, key_id)
    if actor.role not in CENTRE_ROLES or row is None or not region_in_scope(actor, row.region_id):
        raise NotFound("密钥不存在或无权访问")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.flush()
    return row


def authenticate_research(raw: str | None) -> ResearchApiKey | None:
    """Return the active key with the ``research`` scope matching ``raw``, else None."""
    prefix = apikeys.key_prefix(raw)
    if prefix is None:
        return None
    digest = apikeys.hash_key(raw)
    row = db.session.scalar(select(ResearchApiKey).where(ResearchApiKey.key_hash == digest))
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.prefix != prefix:
        return None
    if row.revoked_at is not None or RESEARCH_SCOPE not in (row.scopes or []):
        return None
    return row
