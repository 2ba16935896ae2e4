"""Read what judging a run needs: the runs its windows reach, their results and the z matrix.

Split from :mod:`qcwx.iqc.evaluation` (which judges and stores) because reading the window is
the costliest part of a submission and has its own rule to keep: it must hand the judge
exactly the runs a from-scratch evaluation would see from the first changed run on
(QC_SPEC 1.2). :func:`runs_to_judge` does so in one statement when the newest results
already reach far enough back, and otherwise in the two exact statements of
:func:`rejudge_start` and :func:`runs_from`. A live submission, the usual case, reads those
newest results with its store checks before its insert (:func:`newest_before_insert`), so
its window costs no statement of its own, and it is judged before it is inserted.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import numpy as np
from sqlalchemy import and_, bindparam, select, union_all
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from qcwx.catalog.models import TestSystem
from qcwx.extensions import db
from qcwx.iqc import queries
from qcwx.iqc.models import QcResult, QcRun
from qcwx.qcstats import westgard


class RunKey(NamedTuple):
    """A run's id and key, all that judging needs of some runs.

    Of the first changed run of a re-judge, and of a run that is only history for a newer
    run's windows (:func:`newest_before_insert`).
    """

    id: int
    run_date: date
    run_no: int


#: The first changed run of a re-judge (:func:`qcwx.iqc.services._judge_system`).
FirstRun = RunKey


@dataclass
class Window:
    """What judging read: z (runs × levels), the limit steps, and each run's current values.

    Kept so the verdict of a judged run is built from it (issue 14: reading the run, its
    results, violations and limits back after judging cost six statements a submission).
    ``current`` maps a run id to its (level id, value as typed, value) in level order;
    ``foreign`` holds runs with a current result on a level the system no longer runs.
    """

    z: np.ndarray
    steps: dict
    current: dict[int, list[tuple[int, str, float]]]
    foreign: set[int]


def series(ts: TestSystem, runs: Sequence[QcRun], rows: Sequence, timeline: dict) -> Window:
    """Return the :class:`Window` (z matrix and values) of the current results of ``runs``.

    ``rows`` are their results as (run id, level id, value, is current, text), read with the
    runs (:func:`runs_from`); ``timeline`` the limit steps (:func:`queries.judging_config`).
    """
    levels = list(ts.levels)
    col = {lv.id: j for j, lv in enumerate(levels)}
    row = {run.id: i for i, run in enumerate(runs)}
    values = np.full((len(runs), len(levels)), np.nan)
    current: dict[int, list] = {}
    foreign: set[int] = set()
    for run_id, level_id, value, is_current, text in rows:
        # is_current is filtered here, not in SQL: a planner without fresh statistics
        # (SQLite right after a bulk insert) would otherwise scan its barely selective index
        if not is_current or run_id not in row:
            continue
        if level_id in col:
            values[row[run_id], col[level_id]] = value
            current.setdefault(run_id, []).append((level_id, text, value))
        else:
            foreign.add(run_id)
    for found in current.values():
        found.sort(key=lambda r: col[r[0]])
    dates = [r.run_date for r in runs]
    z = np.full_like(values, np.nan)
    for lv in levels:
        j = col[lv.id]
        z[:, j] = queries.z_scores(values[:, j], dates, timeline.get(lv.id, []))
    return Window(z, timeline, current, foreign)


def _before(day: date, number: int):
    return (QcRun.run_date < day) | and_(QcRun.run_date == day, QcRun.run_no < number)


def _from(day: date, number: int):
    """Runs at or after (``day``, ``number``): ``NOT _before``, spelled out.

    ``NOT (a OR b)`` hid the date range from SQLite's planner, which then read every run of
    the system (``tests/integration/test_submit_scaling.py``).
    """
    return and_(QcRun.run_date >= day, (QcRun.run_date > day) | (QcRun.run_no >= number))


def rejudge_start(ts: TestSystem, run: QcRun) -> tuple[date, int]:
    """Return the (date, run no) of the earliest run that re-judging from ``run`` must read.

    Per level: the run of its `westgard.MAX_LOOKBACK`-th result before ``run`` (or its
    earliest, when it has fewer). Every window of ``run`` and of each later run lies after
    it: a level's first result at or after ``run`` needs at most that many of its earlier
    results, and its later results need fewer before ``run``. Results without a target
    only precede a level's first limit, so counting them never cuts a window short.
    """
    start = (run.run_date, run.run_no)
    levels = list(ts.levels)
    if not levels:
        return start
    params = {"ts": ts.id, "day": run.run_date, "no": run.run_no}
    params.update({f"lv{i}": lv.id for i, lv in enumerate(levels)})
    earliest = db.session.execute(_start_statement(len(levels)), params).first()
    return start if earliest is None else min(start, tuple(earliest))


@functools.cache
def _start_statement(n_levels: int):
    """The statement of :func:`rejudge_start` for ``n_levels`` levels, with bound values.

    One statement, each level still its own indexed, limited read; the earliest key of all of
    them is the earliest of each level's earliest, and only that one row comes back (issue
    14: PyMySQL parsing the 24 dates of two levels cost more than the query). Built once per
    level count (building it per submission cost more than running it). Merging it into the
    window read as a subquery made MariaDB scan all the system's runs, so it stays a
    statement of its own.
    """
    day, number = bindparam("day", type_=QcRun.run_date.type), bindparam("no")
    parts = [_pinned_plan(select(QcRun.run_date, QcRun.run_no)
             .join(QcResult, QcResult.run_id == QcRun.id))
             .where(QcRun.test_system_id == bindparam("ts"),
                    QcResult.qc_level_id == bindparam(f"lv{i}"),
                    QcResult.is_current, _before(day, number))
             .order_by(QcRun.run_date.desc(), QcRun.run_no.desc())
             .limit(westgard.MAX_LOOKBACK).subquery() for i in range(n_levels)]
    keys = union_all(*(select(p.c.run_date, p.c.run_no) for p in parts)).subquery()
    return select(keys.c.run_date, keys.c.run_no).order_by(keys.c.run_date,
                                                           keys.c.run_no).limit(1)


#: The unique keys :func:`_pinned_plan` forces (named by the initial migration).
_QC_RUN_KEY = "uq_qc_run_test_system_id_run_date_run_no"
_QC_RESULT_KEY = "uq_qc_result_run_id_qc_level_id_version"


def _pinned_plan(stmt):
    """Pin MySQL/MariaDB to the plan that stops at the twelfth result (the same on any data).

    Left to itself MariaDB chose, depending on its statistics, the level's index (reading
    every result of the level, of every lab on the lot, then sorting them) or a "rowid
    filter" built from that index — both grow with the history
    (``tests/integration/test_submit_scaling.py``). Pinned: walk the system's runs backwards
    on their unique key, look each run's result of the level up on its unique key, stop at
    the limit. SQLite's planner already does so and gets no hints.
    """
    for dialect in ("mysql", "mariadb"):
        stmt = (stmt.prefix_with("STRAIGHT_JOIN", dialect=dialect)
                .with_hint(QcRun, f"FORCE INDEX ({_QC_RUN_KEY})", dialect_name=dialect)
                .with_hint(QcResult, f"FORCE INDEX ({_QC_RESULT_KEY})", dialect_name=dialect))
    return stmt


def runs_from(ts: TestSystem, start: tuple[date, int]) -> tuple[list[QcRun], list[tuple]]:
    """Return the runs of ``ts`` from ``start`` on, in run order, and all their results.

    One statement for both (results as (run id, level id, value, is current, text), the
    shape :func:`_series` takes): a run without results still comes back, once.
    """
    day, number = start
    runs: dict[int, QcRun] = {}
    rows = []
    for run, run_id, level_id, value, is_current, text in db.session.execute(
            _runs_statement(), {"ts": ts.id, "day": day, "no": number}):
        runs.setdefault(run.id, run)
        if run_id is not None:
            rows.append((run_id, level_id, value, is_current, text))
    return list(runs.values()), rows


@functools.cache
def _runs_statement():
    """:func:`runs_from`'s read, built once (every re-judge the newest rows cannot serve)."""
    day, number = bindparam("day", type_=QcRun.run_date.type), bindparam("no")
    return (select(QcRun, QcResult.run_id, QcResult.qc_level_id, QcResult.value,
                   QcResult.is_current, QcResult.value_text)
            .outerjoin(QcResult, QcResult.run_id == QcRun.id)
            .where(QcRun.test_system_id == bindparam("ts"), _from(day, number))
            .order_by(QcRun.run_date, QcRun.run_no))


def runs_to_judge(ts: TestSystem, run: QcRun | FirstRun, newest: list | None = None
                  ) -> tuple[list[QcRun], list[tuple]]:
    """Return the runs (in run order) that re-judging from ``run`` reads, with their results.

    Exactly what ``runs_from(ts, rejudge_start(ts, run))`` returns. First try the newest
    results alone (:func:`_newest`, one statement, or none when ``newest`` holds what it
    would read: :func:`newest_before_insert`): a live submission's run is the newest
    and the rows before it hold every level's last `westgard.MAX_LOOKBACK` results, so the
    start can be found among them. When they do not reach that far (a back-dated run, a
    correction of an old one, a level run once a week) fall back to the two exact reads
    (issue 14: the start's own statement was one of a submission's thirteen round trips).
    A system with such a sparse level pays one statement more than before for every run;
    every system whose levels all run daily, one less.
    """
    found = _newest(ts, run, newest)
    return found if found is not None else runs_from(ts, rejudge_start(ts, run))


def newest_limit(ts: TestSystem) -> int:
    """How many of the newest result rows :func:`_newest` reads: 12 + 3 runs of each level."""
    return (westgard.MAX_LOOKBACK + 3) * max(1, len(ts.levels))


#: The id a new run is judged under before its insert returns the real one
#: (:func:`newest_before_insert`): autoincrement ids are positive, so it names no stored run.
PROVISIONAL_ID = -1


def newest_before_insert(ts: TestSystem, before: Sequence[tuple], values: dict,
                         results: Sequence[tuple]) -> tuple[QcRun, tuple] | None:
    """Return a new run and what :func:`runs_to_judge` would give once it is stored, or None.

    Why before the insert: the run is then inserted with its verdict, and no update follows
    (issue 14: a statement and its audit patch per submission).

    ``before``: the newest result rows of the system read earlier in this transaction, as
    ``newest_select(*LIVE_RUN_COLUMNS)`` gives them (a live submission reads them with its
    store checks, :func:`qcwx.iqc.bulk.store_state`; issue 14: one round trip less);
    ``values``: the new run's insert row (no id yet); ``results``: its results as (level id,
    value, value as typed). Only for a run newer than every run read, whose windows those
    rows reach to their start (:func:`_newest`); else None, and judging reads the rows
    itself, after the insert.

    The new run is a transient :class:`QcRun` with :data:`PROVISIONAL_ID`, to be given its
    real id by :func:`adopt` once inserted (it is judged: status, violations, alert); the
    runs before it are only history for its windows, which read their ids and keys and
    nothing else, so they come as :class:`RunKey` values. Sixteen ORM objects made and
    expired at the commit cost a submission about 5 % of its CPU (issue 14).
    """
    n = len(LIVE_RUN_COLUMNS)
    key = (values["run_date"], values["run_no"])
    runs: dict[int, RunKey] = {}
    for row in before:
        run = runs.get(row[0]) or runs.setdefault(row[0], RunKey(*row[:n]))
        if (run.run_date, run.run_no) >= key:
            return None
    new = QcRun(**{k: values[k] for k in _RUN_COLUMNS if k in values}, id=PROVISIONAL_ID)
    set_committed_value(new, "violations", [])  # a new run has none: nothing to read
    got = [(new, PROVISIONAL_ID, level, value, True, text) for level, value, text in results]
    for row in sorted(before, key=lambda row: (row[1], row[2]), reverse=True):
        run = runs[row[0]]
        level, value, current = row[n:]
        # the row's run id is its run's (None: a run without results); no text is read
        got.append((run, None if level is None else run.id, level, value, current, None))
    found = _newest(ts, new, got[:newest_limit(ts)])
    return None if found is None else (new, found)


def adopt(run: QcRun, run_id: int, judged: Window) -> None:
    """Give a run judged before its insert its real id, and the session its object.

    ``judged``: the window it was judged on, whose values were keyed by :data:`PROVISIONAL_ID`.
    Attributes set until now become the run's loaded state, as if read after the insert.
    """
    run.id = run_id
    make_transient_to_detached(run)  # as if loaded: no pending change, nothing to flush
    db.session.add(run)
    if PROVISIONAL_ID in judged.current:
        judged.current[run_id] = judged.current.pop(PROVISIONAL_ID)


#: What a live submission reads of the runs before it and of their results, with its store
#: checks (:func:`live_newest_select` in :func:`qcwx.iqc.bulk.store_state`): what judging a
#: newer run uses of them. A run's id and key (a :class:`RunKey`); a result's level, value
#: and whether it is current. Not a result's run id (its run's) nor its text (only the
#: judged run's is shown, and that run is the new one): each column costs the driver a
#: conversion per row, on every submission.
LIVE_RUN_COLUMNS = RunKey._fields
LIVE_RESULT_COLUMNS = ("qc_level_id", "value", "is_current")
_RUN_COLUMNS = tuple(c.key for c in QcRun.__table__.c)


def _newest(ts: TestSystem, run: QcRun | FirstRun, got: list | None = None
            ) -> tuple[list[QcRun], list[tuple]] | None:
    """:func:`runs_to_judge` from the newest result rows only, or None when they do not suffice."""
    levels = [lv.id for lv in ts.levels]
    limit = newest_limit(ts)
    if got is None:
        got = db.session.execute(_newest_statement(), {"ts": ts.id, "rows": limit}).all()
    runs: list[QcRun] = []  # newest first
    rows: dict[int, list[tuple]] = {}
    for qrun, run_id, level_id, value, is_current, text in got:
        if not runs or runs[-1] is not qrun:
            runs.append(qrun)
            rows[qrun.id] = []
        if run_id is not None:
            rows[qrun.id].append((run_id, level_id, value, is_current, text))
    whole = len(got) < limit  # the system's whole history came back
    if not whole and runs:
        rows.pop(runs.pop().id)  # the LIMIT may have cut the oldest run's results
    key = (run.run_date, run.run_no)
    if not any(r.id == run.id for r in runs):
        return None
    start = key
    for level_id in levels:
        before = [(r.run_date, r.run_no) for r in runs if (r.run_date, r.run_no) < key
                  and any(lv == level_id and cur for _, lv, _, cur, _ in rows[r.id])]
        if len(before) >= westgard.MAX_LOOKBACK:
            start = min(start, before[westgard.MAX_LOOKBACK - 1])
        elif not whole:
            return None  # this level's window may reach further back than was read
        elif before:
            start = min(start, before[-1])
    kept = [r for r in reversed(runs) if (r.run_date, r.run_no) >= start]
    return kept, [row for r in kept for row in rows[r.id]]


@functools.cache
def _newest_statement():
    """:func:`_newest`'s read: the system's newest result rows, newest run first, built once.

    Pinned as :func:`rejudge_start`'s reads are, so MariaDB walks the run key backwards and
    stops at the limit whatever the history's length (``tests/integration/
    test_submit_scaling.py``).
    """
    return newest_select(QcRun)


def live_newest_select():
    """:func:`newest_select` of only :data:`LIVE_RUN_COLUMNS` and :data:`LIVE_RESULT_COLUMNS`."""
    return newest_select(*(QcRun.__table__.c[k] for k in LIVE_RUN_COLUMNS),
                         results=tuple(QcResult.__table__.c[k] for k in LIVE_RESULT_COLUMNS))


def newest_select(*run_columns, results=None):
    """The system's newest result rows (bound ``ts`` and ``rows``), newest run first.

    Each row is (*run_columns, *results), by default (run id, level id, value, is current,
    text) of the result; a run without results comes back once (an outer join).
    """
    if results is None:
        results = (QcResult.run_id, QcResult.qc_level_id, QcResult.value, QcResult.is_current,
                   QcResult.value_text)
    return (_pinned_plan(select(*run_columns, *results)
                         .outerjoin(QcResult, QcResult.run_id == QcRun.id))
            .where(QcRun.test_system_id == bindparam("ts"))
            .order_by(QcRun.run_date.desc(), QcRun.run_no.desc())
            .limit(bindparam("rows")))
