"""Insert runs, submissions and results with Core ``executemany``, audited like the ORM.

The ORM unit of work costs per object (100,000 results took minutes), so
:func:`qcwx.iqc.services.store_runs` writes rows with Core inserts for every channel, one run
or a year of history alike. Each insert also returns the audit rows the session listener
would have written (:func:`qcwx.audit.services.bulk_insert_audit_rows`, same format); the
caller writes those of all three tables in one statement, in the same transaction.
Ids come back from the insert itself: a single row's from the driver's ``lastrowid``, several
rows' from ``RETURNING`` (SQLite ≥ 3.35 and MariaDB ≥ 10.5, with each row's natural key so no
order is assumed); on a database without it they are read back by each table's natural
unique key. One submission used to spend three statements on that.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from datetime import date
from typing import Any, NamedTuple

from sqlalchemy import bindparam, insert, literal, null, select, type_coerce, union_all, update

from qcwx.audit.services import bulk_insert_audit_rows
from qcwx.catalog.models import TestSystem
from qcwx.extensions import core_execute, db
from qcwx.iqc import queries, window
from qcwx.iqc.models import (
    ControlLimit,
    CorrectiveAction,
    QcResult,
    QcRun,
    RuleSet,
    Submission,
    Violation,
)

CHUNK = 500


def _returning(table, rows: list[dict], *cols):
    """Insert ``rows`` and return [(id, *cols)], or None when the ids cannot come back.

    One row (a live submission's run and submission) takes its id from the driver's
    ``lastrowid``, which the insert's OK packet carries on MariaDB and SQLite alike: no
    result set, whose column descriptions PyMySQL parses in Python (issue 14). Several
    rows need RETURNING, since autoincrement ids of one multi-row insert are not promised
    to be consecutive.
    """
    if len(rows) == 1:
        (pk,) = core_execute(_insert(table), rows[0]).inserted_primary_key
        return [(pk, *(rows[0][c] for c in cols))]
    if not db.session.get_bind().dialect.insert_executemany_returning:
        return None
    return core_execute(_insert_returning(table, cols), rows).all()


@functools.cache
def _insert(table):
    """``INSERT`` of ``table``, built once."""
    return insert(table)


@functools.cache
def _insert_returning(table, cols: tuple[str, ...]):
    """``INSERT … RETURNING id, *cols`` of ``table``, built once (three per submission)."""
    return insert(table).returning(table.c.id, *(table.c[c] for c in cols))


def run_ids(ts_id: int, dates: Sequence[date]) -> dict[tuple[date, int], int]:
    """Return {(date, run no): run id} of the test system's runs within the dates' span."""
    if not dates:
        return {}
    return {(d, n): i for i, d, n in db.session.execute(
        select(QcRun.id, QcRun.run_date, QcRun.run_no)
        .where(QcRun.test_system_id == ts_id, QcRun.run_date >= min(dates),
               QcRun.run_date <= max(dates)))}


def current_levels(ts_id: int, dates: Sequence[date], run_ids_out: dict | None = None
                   ) -> dict[tuple[date, int], set[int]]:
    """Return {(date, run no): level ids holding a current result} within the dates' span.

    ``run_ids_out``, when given, also receives {(date, run no): run id} of every run in the
    span (what :func:`run_ids` returns), so a submission learns both from one statement.
    """
    out: dict[tuple[date, int], set[int]] = {}
    if not dates:
        return out
    rows = db.session.execute(_levels_statement(),
                              {"ts": ts_id, "lo": min(dates), "hi": max(dates)})
    for row in rows:
        _add_level(row, out, run_ids_out)
    return out


def _add_level(row, out: dict, run_ids_out: dict | None) -> None:
    """Take one (run id, date, run no, level id, is current) row into :func:`current_levels`."""
    run_id, run_date, run_no, level_id, current = row
    if run_ids_out is not None:
        run_ids_out[(run_date, run_no)] = run_id
    if current:  # filtered here so the planner keeps to the run index
        out.setdefault((run_date, run_no), set()).add(level_id)


class StoreState(NamedTuple):
    """What is stored for a batch of one system (:func:`store_state`)."""

    #: :func:`prior_submissions`
    priors: dict[str, Any]
    #: :func:`current_levels`
    levels: dict[tuple[date, int], set[int]]
    #: {(date, run no): run id} of the runs in the batch's span
    run_ids: dict[tuple[date, int], int]
    #: (limit timeline, rule set in force): :func:`qcwx.iqc.queries.judging_config`
    config: tuple
    #: the newest result rows before this batch (:func:`qcwx.iqc.window.newest_after_insert`)
    newest: list


def store_state(lab_id: int, client_ids: Sequence[str], ts: TestSystem, dates: Sequence[date]
                ) -> StoreState:
    """Return the batch's :class:`StoreState` from one statement.

    For a batch of one lab and one test system with at most ``CHUNK`` client ids, which is
    what every live submission is: it checks its client id and its run's levels before
    writing, and judges with the system's limits and rules and its newest results after;
    each read was a round trip on the request's path (issue 14). All are read in the
    request's transaction, as the separate reads were.
    """
    priors: dict[str, Any] = {}
    levels: dict[tuple[date, int], set[int]] = {}
    ids: dict[tuple[date, int], int] = {}
    limits: list = []
    rules = None
    newest: list = []
    prior, level, limit, rule, result = _PART_READERS
    for row in core_execute(_state_statement(), {
            "lab": lab_id, "cids": sorted(set(client_ids)), "ts": ts.id,
            "lo": min(dates), "hi": max(dates), "rows": window.newest_limit(ts)}):
        part = row[0]
        if part == 0:
            cid, digest, run_id = prior(row)
            priors[cid] = (digest, run_id)
        elif part == 1:
            _add_level(level(row), levels, ids)
        elif part == 2:
            limits.append(limit(row))
        elif part == 3:
            (rules,) = rule(row)
        else:
            newest.append(result(row))
    return StoreState(priors, levels, ids, queries.config_from(ts, limits, rules), newest)


#: :func:`store_state`'s union row, after its part number: typed slots. Parts share a slot
#: when their values have one SQL type (MariaDB gives a union column one type, and the first
#: part types it for SQLAlchemy), so a row is as wide as the widest part, not as all parts
#: together: each column costs the driver a descriptor, and each value a conversion, on
#: every submission (issue 14: 26 columns before, the run's two timestamps among them).
_SLOTS = {"i0": QcRun.id.type, "i1": QcRun.id.type, "i2": QcRun.id.type,
          "d0": QcRun.run_date.type, "s0": Submission.client_id.type,
          "s1": Submission.payload_hash.type, "f0": QcResult.value.type,
          "f1": QcResult.value.type, "b0": QcResult.is_current.type, "j0": RuleSet.rules.type}
#: Each part's slots, in the order of its own select's columns (and of what its reader gives)
_PART_SLOTS = (
    ("s0", "s1", "i0"),  # 0: client id, payload hash, run id (prior_submissions)
    ("i0", "d0", "i1", "i2", "b0"),  # 1: run id, date, run no, level, current (current_levels)
    ("i0", "d0", "f0", "f1", "i1"),  # 2: level, from, mean, sd, version (limit versions)
    ("j0",),  # 3: the newest rule set's rules (or NULL)
    # 4: the newest result rows, as window.live_newest_select() gives them
    ("i0", "d0", "i1", "i2", "f0", "b0"),
)


def _reader(slots: tuple[str, ...]):
    """A function giving a union row's values of ``slots``, as a tuple."""
    at = [1 + list(_SLOTS).index(s) for s in slots]
    return operator.itemgetter(*at) if len(at) > 1 else lambda row: (row[at[0]],)


_PART_READERS = tuple(_reader(slots) for slots in _PART_SLOTS)


@functools.cache
def _verdict_update():
    """:func:`set_verdicts`' statement, built once.

    Building it cost more than a tenth of a submission's writes (issue 14, py-spy).
    """
    t = QcRun.__table__
    return (update(t).where(t.c.id == bindparam("run_id"))
            .values(status=bindparam("st"), evaluated_at=bindparam("at")))


@functools.cache
def _state_statement():
    """:func:`store_state`'s union, built once from the five reads it replaces.

    Part 0 is :func:`prior_submissions`'s read, part 1 :func:`current_levels`'s, part 2 the
    limit versions and part 3 the newest rules (:func:`qcwx.iqc.queries.judging_config`'s),
    part 4 the newest result rows (:func:`qcwx.iqc.window.newest_select`). Each keeps its
    own FROM and WHERE; its columns go to its slots (:data:`_PART_SLOTS`).
    """
    newest = window.live_newest_select().subquery()
    parts = (_prior_select(), _levels_select(),
             queries.timeline_select(tail=(ControlLimit.version,)),
             select(queries.newest_rules()), select(*newest.c))
    return union_all(*(_slotted(n, part, slots)
                       for n, (part, slots) in enumerate(zip(parts, _PART_SLOTS, strict=True))))


def _slotted(n: int, part, slots: tuple[str, ...]):
    """``part`` with only its number and one column per slot: its own, else a typed NULL."""
    own = dict(zip(slots, part.selected_columns, strict=True))
    columns = [own[s] if s in own else type_coerce(null(), kind) for s, kind in _SLOTS.items()]
    return part.with_only_columns(literal(n).label("part"), *(
        c.label(s) for s, c in zip(_SLOTS, columns, strict=True)), maintain_column_froms=True)


@functools.cache
def _levels_statement():
    """:func:`current_levels`'s read, built once (batches of several systems run it)."""
    return _levels_select()


def _levels_select():
    """The span's runs and result levels: (run id, date, run no, level, current)."""
    return (select(QcRun.id, QcRun.run_date, QcRun.run_no, QcResult.qc_level_id,
                   QcResult.is_current)
            .outerjoin(QcResult, QcResult.run_id == QcRun.id)
            .where(QcRun.test_system_id == bindparam("ts"),
                   QcRun.run_date >= bindparam("lo", type_=QcRun.run_date.type),
                   QcRun.run_date <= bindparam("hi", type_=QcRun.run_date.type)))


@functools.cache
def _prior_statement():
    """:func:`prior_submissions`'s read, built once (batches of several labs run it)."""
    return _prior_select()


def _prior_select():
    """The lab's submissions with the client ids: (client id, hash, run id)."""
    return (select(Submission.client_id, Submission.payload_hash, Submission.run_id)
            .where(Submission.lab_id == bindparam("lab"),
                   Submission.client_id.in_(bindparam("cids", expanding=True))))


def insert_runs(ts_id: int, rows: list[dict], audit: list[dict]
                ) -> dict[tuple[date, int], int]:
    """Insert new runs of one test system; return {(date, run no): id} of those rows.

    This and the two inserts below append their audit rows to ``audit`` for the caller to
    write (:func:`qcwx.audit.services.write_audit_rows`).
    """
    if not rows:
        return {}
    back = _returning(QcRun.__table__, rows, "run_date", "run_no")
    if back is None:
        db.session.execute(insert(QcRun.__table__), rows)
        ids = run_ids(ts_id, [r["run_date"] for r in rows])
    else:
        ids = {(d, n): i for i, d, n in back}
    audit += bulk_insert_audit_rows(
        QcRun, [r | {"id": ids[(r["run_date"], r["run_no"])]} for r in rows])
    return ids


def insert_submissions(lab_id: int, rows: list[dict], audit: list[dict]) -> dict[str, int]:
    """Insert submissions of one lab; return {client id: id} (unique per lab)."""
    ids: dict[str, int] = {}
    back = _returning(Submission.__table__, rows, "client_id")
    if back is not None:
        ids.update((c, k) for k, c in back)
    else:
        db.session.execute(insert(Submission.__table__), rows)
        wanted = [r["client_id"] for r in rows]
        for i in range(0, len(wanted), CHUNK):
            ids.update((c, k) for k, c in db.session.execute(
                select(Submission.id, Submission.client_id).where(
                    Submission.lab_id == lab_id, Submission.client_id.in_(wanted[i:i + CHUNK]))))
    audit += bulk_insert_audit_rows(Submission, [r | {"id": ids[r["client_id"]]} for r in rows])
    return ids


def insert_results(rows: list[dict], audit: list[dict]) -> None:
    """Insert results; their ids are read back by (submission, level)."""
    ids: dict[tuple[int, int], int] = {}
    back = _returning(QcResult.__table__, rows, "submission_id", "qc_level_id")
    if back is None:
        db.session.execute(insert(QcResult.__table__), rows)
        subs = sorted({r["submission_id"] for r in rows})
        back = []
        for i in range(0, len(subs), CHUNK):
            back += db.session.execute(
                select(QcResult.id, QcResult.submission_id, QcResult.qc_level_id)
                .where(QcResult.submission_id.in_(subs[i:i + CHUNK]))).all()
    for row_id, sub_id, level_id in back:
        ids[(sub_id, level_id)] = row_id
    audit += bulk_insert_audit_rows(
        QcResult, [r | {"id": ids[(r["submission_id"], r["qc_level_id"])]} for r in rows])


def set_verdicts(judged: dict[int, tuple], run_audit: list[dict]) -> None:
    """Write the (status, evaluated at) of runs judged in the transaction that inserted them.

    One Core update for all of them, and their verdict goes into their own insert audit rows
    (``run_audit``, not yet written): nobody can have seen them pending, so an update row
    per run would only repeat the insert (issue 14: a submission's update and audit row).
    """
    if not judged:
        return
    core_execute(_verdict_update(),
                 [{"run_id": i, "st": st, "at": at} for i, (st, at) in judged.items()])
    for row in run_audit:
        found = judged.get(int(row["entity_id"]))
        if found is not None:
            row["changes"]["status"] = found[0]
            row["changes"]["evaluated_at"] = found[1].isoformat()


def prior_submissions(lab_id: int, client_ids: Sequence[str]) -> dict[str, Any]:
    """Return {client id: (payload hash, run id)} of the lab's stored submissions."""
    found: dict[str, Any] = {}
    ids = sorted(set(client_ids))
    for i in range(0, len(ids), CHUNK):
        for cid, digest, run_id in db.session.execute(
                _prior_statement(), {"lab": lab_id, "cids": ids[i:i + CHUNK]}):
            found[cid] = (digest, run_id)
    return found


def release_runs() -> None:
    """Flush, then drop stored QC rows from the session: later autoflushes stay cheap.

    Every autoflush walks the identity map; after a few thousand runs that walk dominated
    an import. Callers keep only ids, so nothing later needs these objects.
    """
    db.session.flush()
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, (QcRun, Violation, CorrectiveAction, QcResult, Submission)):
            db.session.expunge(obj)
