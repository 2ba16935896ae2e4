"""Record every insert, update and delete in ``audit_log``, automatically, at flush time.

Hooking the session (instead of asking every service to remember) is what makes the log
complete. The rows are written on the flushing connection, so they commit or roll back with
the change they describe. Updating or deleting an audit row is refused.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from typing import Any, Iterator

from sqlalchemy import Date, DateTime, event, insert, inspect, select
from sqlalchemy.orm import Session

from qcwx.audit.models import AuditLog
from qcwx.timeutil import utcnow

log = logging.getLogger(__name__)
_actor_id: ContextVar[int | None] = ContextVar("qcwx_audit_actor", default=None)
SKIP_FIELDS = {"password_hash"}
_MISSING = object()


def set_actor(user_id: int | None):
    """Name the user whose writes the following flushes record; returns a reset token."""
    return _actor_id.set(user_id)


def reset_actor(token) -> None:
    """Forget the actor set by `set_actor` (end of request), so it never leaks onward."""
    _actor_id.reset(token)


@contextmanager
def acting_as(user_id: int | None) -> Iterator[None]:
    """Record writes inside the block as done by ``user_id`` (CLI commands, tasks)."""
    token = _actor_id.set(user_id)
    try:
        yield
    finally:
        _actor_id.reset(token)


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)


def _snapshot(obj: Any) -> dict[str, Any]:
    mapper = inspect(obj).mapper
    return {
        c.key: _plain(getattr(obj, c.key))
        for c in mapper.column_attrs
        if c.key not in SKIP_FIELDS
    }


def _diff(session: Session, obj: Any) -> dict[str, Any]:
    """Return {column: [old, new]} for changed columns.

    SQLAlchemy keeps the old value only when the attribute was loaded before the change
    (an expired object has none), so missing old values are read from the row itself.
    """
    state = inspect(obj)
    changed = {}
    for attr in state.mapper.column_attrs:
        hist = state.attrs[attr.key].history
        if hist.has_changes():
            changed[attr.key] = (hist.deleted[0] if hist.deleted else _MISSING,
                                 hist.added[0] if hist.added else None)
    if any(old is _MISSING for old, _ in changed.values()) and state.identity:
        table = state.mapper.local_table
        pk = dict(zip((c.key for c in table.primary_key.columns), state.identity, strict=True))
        row = session.connection().execute(
            select(table).where(*(table.c[k] == v for k, v in pk.items()))).mappings().first()
        if row is not None:
            changed = {k: (row[state.mapper.columns[k].name] if old is _MISSING else old, new)
                       for k, (old, new) in changed.items()}
    return {k: (["***", "***"] if k in SKIP_FIELDS else
                [None if old is _MISSING else _plain(old), _plain(new)])
            for k, (old, new) in changed.items()}


def _entry(action: str, obj: Any, changes: dict) -> dict:
    state = inspect(obj)
    ident = state.identity or state.mapper.primary_key_from_instance(obj)
    if ident and all(i is None for i in ident):
        ident = None
    return {
        "at": utcnow(),
        "actor_id": _actor_id.get(),
        "action": action,
        "entity": type(obj).__tablename__,
        "entity_id": ",".join(str(i) for i in ident) if ident else None,
        "changes": changes,
    }


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditLog):
            raise PermissionError("audit_log is append-only")
    # Capture update diffs now: after the flush the history is gone.
    session.info["qcwx_audit_pending"] = [
        ("update", obj, _diff(session, obj))
        for obj in session.dirty
        if session.is_modified(obj, include_collections=False)
    ] + [("delete", obj, _snapshot(obj)) for obj in session.deleted]


@event.listens_for(Session, "after_flush")
def _write_audit_rows(session: Session, _ctx: Any) -> None:
    rows = [_entry("insert", o, _snapshot(o)) for o in session.new if not isinstance(o, AuditLog)]
    rows += [_entry(a, o, c) for a, o, c in session.info.pop("qcwx_audit_pending", []) if c]
    if rows:
        session.connection().execute(insert(AuditLog.__table__), rows)


def record_bulk_inserts(model, rows: list[dict]) -> None:
    """Write the audit rows the session listener writes for ORM inserts, for Core inserts.

    Bulk paths (imports) insert with Core for speed and would otherwise escape the log.

    Same shape as ``qcwx.audit.services`` (action ``insert``, entity = table, entity id,
    every column as plain JSON), same actor (the request's), same transaction.
    """
    write_audit_rows(bulk_insert_audit_rows(model, rows))


def bulk_insert_audit_rows(model, rows: list[dict]) -> list[dict]:
    """Return the audit rows of :func:`record_bulk_inserts` without writing them.

    A caller inserting into several tables writes all their audit rows in one statement
    (:func:`write_audit_rows`): a QC submission inserts a run, a submission and results.
    """
    at, actor_id, entity = utcnow(), _actor_id.get(), model.__tablename__
    keys = [c.key for c in model.__mapper__.column_attrs if c.key not in SKIP_FIELDS]
    moments = [k for k in keys if isinstance(model.__table__.c[k].type, (Date, DateTime))]
    audit = []
    for r in rows:
        changes = {k: r.get(k) for k in keys}
        for k in moments:  # only dates need converting; the rest is already plain JSON
            changes[k] = _plain(changes[k])
        audit.append({"at": at, "actor_id": actor_id, "action": "insert", "entity": entity,
                      "entity_id": str(r["id"]), "changes": changes})
    return audit


def write_audit_rows(audit: list[dict]) -> None:
    """Insert audit rows built by :func:`bulk_insert_audit_rows` (executemany, in chunks)."""
    from qcwx.extensions import core_execute

    for i in range(0, len(audit), 5000):
        core_execute(_AUDIT_INSERT, audit[i:i + 5000])


#: Built once: a submission writes its audit rows with it (issue 14).
_AUDIT_INSERT = insert(AuditLog.__table__)
