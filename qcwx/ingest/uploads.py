"""Uploaded files between preview and commit, and saved CSV/XLSX column mappings.

A preview must show exactly what the commit will store, so the file itself waits
server-side (per user, keyed by its SHA-256, expiring after :data:`UPLOAD_TTL`) instead of
travelling back through the browser where it could be altered.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select

from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.ingest.formats import tabular
from qcwx.ingest.models import ColumnMapping
from qcwx.ingest.queries import check_uploader
from qcwx.numbers import parse_id
from qcwx.orgs.models import Lab, User
from qcwx.orgs.scopes import can_access_lab

UPLOAD_TTL = 2 * 3600
_DIGEST = re.compile(r"[0-9a-f]{64}")


def upload_dir() -> Path:
    """Return where uploaded files wait between preview and commit."""
    configured = current_app.config.get("INGEST_UPLOAD_DIR")
    return Path(configured) if configured else Path(current_app.instance_path) / "uploads"


def _purge(root: Path, now: float) -> None:
    for path in root.glob("*/*"):
        try:
            if now - path.stat().st_mtime > UPLOAD_TTL:
                path.unlink()
        except OSError:  # another worker purged it first
            continue


def stash_upload(user: User, data: bytes, filename: str | None) -> str:
    """Keep an uploaded file for its commit, named by its SHA-256 under the user's folder.

    The commit form carries only the digest: the bytes are re-read from here and re-hashed,
    so the previewed file is exactly the committed one, and another user's digest finds
    nothing (per-user folder). Files expire after :data:`UPLOAD_TTL`.
    """
    if not data or not data.strip():
        raise UserError("文件为空", field="file")
    root = upload_dir()
    folder = root / str(int(user.id))
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    _purge(root, now)
    digest = hashlib.sha256(data).hexdigest()
    tmp = folder / f".{digest}.tmp"
    tmp.write_bytes(data)
    tmp.replace(folder / f"{digest}.bin")
    meta = {"filename": (filename or "")[-255:], "size": len(data)}
    (folder / f"{digest}.json").write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
    return digest


def load_upload(user: User, digest: str) -> tuple[bytes, str]:
    """Return the stashed bytes and file name, or a UserError asking to upload again."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise UserError("文件标识无效，请重新上传", field="file")
    folder = upload_dir() / str(int(user.id))
    path = folder / f"{digest}.bin"
    try:
        if time.time() - path.stat().st_mtime > UPLOAD_TTL:
            raise FileNotFoundError(path)
        data = path.read_bytes()
        meta = json.loads((folder / f"{digest}.json").read_text("utf-8"))
    except (OSError, ValueError):
        raise UserError("上传的文件已过期或不存在，请重新上传", field="file") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise UserError("文件内容与预览时不一致，请重新上传", field="file")
    return data, str(meta.get("filename") or "")


# ---------------------------------------------------------------- column mappings
def clean_columns(columns: Mapping[str, Any]) -> dict[str, str]:
    """Validate a {target field: column name} mapping chosen on the mapping page."""
    clean = {}
    for target, header in columns.items():
        if target not in tabular.FIELDS:
            raise UserError(f"未知的目标字段“{target}”", field="columns")
        if isinstance(header, str) and header.strip():
            if len(header) > 100:
                raise UserError("列名过长", field=target)
            clean[target] = header.strip()
    for need in ("test_code", "value"):
        if need not in clean:
            raise UserError(f"请选择“{tabular.FIELDS[need][0]}”对应的列", field=need)
    if "date" not in clean and "time" not in clean:
        raise UserError("请选择“检测日期”对应的列", field="date")
    if len(set(clean.values())) != len(clean):
        raise UserError("同一列不能对应多个字段", field="columns")
    return clean


def column_mappings(actor: User, lab_id: int) -> list[ColumnMapping]:
    """Return the saved column mappings of a lab in scope."""
    if not can_access_lab(actor, lab_id):
        raise NotFound("实验室不存在或无权访问", field="lab_id")
    return list(db.session.scalars(select(ColumnMapping).where(ColumnMapping.lab_id == lab_id)
                                   .order_by(ColumnMapping.name)))


def get_column_mapping(actor: User, mapping_id: Any) -> ColumnMapping:
    """Return one saved column mapping (404 when missing or outside scope)."""
    ident = parse_id(mapping_id)
    row = db.session.get(ColumnMapping, ident) if ident is not None else None
    if row is None or not can_access_lab(actor, row.lab_id):
        raise NotFound("列映射不存在或无权访问", field="mapping_id")
    return row


def save_column_mapping(actor: User, lab: Lab, name: str, columns: Mapping[str, Any]
                        ) -> ColumnMapping:
    """Save (or replace) a named column mapping of the lab's LIS export format."""
    check_uploader(actor, lab.id)
    name = (name or "").strip()
    if not name:
        raise UserError("请填写映射名称", field="mapping_name")
    if len(name) > 64:
        raise UserError("映射名称过长（最多64个字符）", field="mapping_name")
    clean = clean_columns(columns)
    row = db.session.scalar(select(ColumnMapping).where(ColumnMapping.lab_id == lab.id,
                                                        ColumnMapping.name == name))
    if row is None:
        row = ColumnMapping(lab_id=lab.id, name=name, columns=clean, created_by_id=actor.id)
        db.session.add(row)
    else:
        row.columns = clean
    db.session.flush()
    return row


def delete_column_mapping(actor: User, mapping_id: Any) -> int:
    """Delete a saved column mapping; return its lab id."""
    row = get_column_mapping(actor, mapping_id)
    check_uploader(actor, row.lab_id)
    lab_id = row.lab_id
    db.session.delete(row)
    db.session.flush()
    return lab_id


def guess_columns(headers: Sequence[str]) -> dict[str, str]:
    """Preselect, for each target field, the header its usual spellings recognise."""
    guess: dict[str, str] = {}
    for header in headers:
        target = tabular.header_target(header)
        if target and target not in guess:
            guess[target] = header
    return guess


def file_headers(data: bytes) -> list[str]:
    """Return a file's header cells for the column-mapping page (a 400 if unreadable)."""
    try:
        return tabular.sniff_headers(data)
    except tabular.ParseError as exc:
        raise UserError(exc.message_zh or "无法读取表头", field="file") from None
