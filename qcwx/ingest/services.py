"""Store QC values from files and lab interfaces: one call per upload page or API route.

Each function parses or reads its channel's input (:mod:`qcwx.ingest.schemas`), hands the
candidates to the import engine (:func:`qcwx.ingest.engine.import_candidates`, which ends
in ``qcwx.iqc.services.prepare_runs`` / ``store_runs``) and keeps one
:class:`~qcwx.ingest.models.UploadBatch` row per file or message batch for traceability.
Services flush, never commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.ingest.engine import import_candidates
from qcwx.ingest.formats import ParseError, ParseResult, detect_format, parse_bytes
from qcwx.ingest.models import UploadBatch
from qcwx.ingest.schemas import (
    MAX_ITEMS,
    ImportReport,
    candidates_from_json,
    candidates_from_parse,
    parse_issues,
)
from qcwx.orgs.models import ApiKey, Lab, User


def parse_upload(data: bytes, *, fmt: str | None = None, columns: Mapping | None = None,
                 allowed: Iterable[str] | None = None) -> ParseResult:
    """Parse bytes with the pure parsers; a file that cannot be read at all is a UserError."""
    if not data or not data.strip():
        raise UserError("文件为空", field="file")
    try:
        if fmt is None and allowed is not None:
            fmt = detect_format(data)
            if fmt not in allowed:
                names = "/".join(sorted(allowed)).upper()
                raise UserError(f"无法识别为 {names} 格式", field="file")
        options = {"columns": dict(columns)} if columns else None
        return parse_bytes(data, format=fmt, options=options)
    except ParseError as exc:
        raise UserError(exc.message_zh, field="file") from None


def import_parsed(actor: User, lab: Lab, result: ParseResult, *, channel: str,
                  dry_run: bool = False) -> ImportReport:
    """Import the QC records of a parse result; non-QC (patient) records are only counted."""
    items, skipped = candidates_from_parse(result, lab)
    outcomes = import_candidates(actor, lab, items, channel=channel, dry_run=dry_run)
    return ImportReport(result.format, outcomes, parse_issues(result), skipped, dry_run)


def import_json(actor: User, lab: Lab, body: Any, *, channel: str = "api") -> ImportReport:
    """Import a JSON batch ``{"items": [...]}``; each item or run succeeds or fails alone."""
    if not isinstance(body, Mapping):
        raise UserError("请求内容必须是 JSON 对象", field="body")
    items = body.get("items")
    if not isinstance(items, list):
        raise UserError("items 必须是数组", field="items")
    if not items:
        raise UserError("items 不能为空", field="items")
    if len(items) > MAX_ITEMS:
        raise UserError(f"每次最多提交 {MAX_ITEMS} 条结果（本次 {len(items)} 条）", field="items",
                        status=413)
    cands, problems = candidates_from_json(items)
    outcomes = import_candidates(actor, lab, cands, channel=channel, problems=problems)
    return ImportReport("json", outcomes)


def record_batch(report: ImportReport, lab: Lab, *, channel: str, data: bytes,
                 filename: str | None = None, user: User | None = None,
                 api_key: ApiKey | None = None) -> UploadBatch:
    """Keep one row per upload/message batch (who, what file, counts) for traceability."""
    counts = report.counts
    batch = UploadBatch(lab_id=lab.id, channel=channel, filename=(filename or None) and
                        filename[-255:], file_hash=hashlib.sha256(data).hexdigest(),
                        format=report.format[:16], n_rows=sum(counts.values()),
                        n_stored=counts["stored"], n_duplicate=counts["duplicate"],
                        n_errors=counts["error"], created_by_id=user.id if user and user.id
                        else None, api_key_id=api_key.id if api_key else None)
    db.session.add(batch)
    db.session.flush()
    report.batch_id = batch.id
    return batch


# ---------------------------------------------------------------- one call per view
def preview_file(actor: User, lab: Lab, data: bytes, columns: Mapping | None = None
                 ) -> ImportReport:
    """Parse, map, validate and judge a file without keeping anything (the upload preview)."""
    result = parse_upload(data, columns=columns)
    return import_parsed(actor, lab, result, channel="upload", dry_run=True)


def commit_file(actor: User, lab: Lab, data: bytes, *, filename: str | None, channel: str,
                columns: Mapping | None = None, fmt: str | None = None,
                allowed: Iterable[str] | None = None, api_key: ApiKey | None = None,
                ) -> ImportReport:
    """Parse and store a file or message batch and record its upload batch row."""
    result = parse_upload(data, fmt=fmt, columns=columns, allowed=allowed)
    report = import_parsed(actor, lab, result, channel=channel)
    record_batch(report, lab, channel=channel, data=data, filename=filename,
                 user=None if api_key else actor, api_key=api_key)
    return report


def commit_json(actor: User, lab: Lab, body: Any, raw: bytes, api_key: ApiKey) -> ImportReport:
    """Store a JSON batch and record its upload batch row."""
    report = import_json(actor, lab, body)
    record_batch(report, lab, channel="api", data=raw, api_key=api_key)
    return report
