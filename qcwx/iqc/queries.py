"""Read-only IQC queries, each built from the actor's scope."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from sqlalchemy import bindparam, func, literal, null, select, type_coerce, union_all
from sqlalchemy.orm import joinedload, selectinload

from qcwx.catalog.models import QcLevel, TestSystem
from qcwx.extensions import db
from qcwx.iqc.models import ControlLimit, CorrectiveAction, QcRun, RuleSet
from qcwx.orgs.models import Hospital, Lab, User
from qcwx.orgs.scopes import in_scope
from qcwx.qcstats import westgard


@dataclass(frozen=True)
class BoardRow:
    """One test system on the home board with today's verdict (None = not yet run)."""

    test_system: TestSystem
    today_status: str | None
    last_run_date: date | None


def test_systems(actor: User, lab_id: int | None = None) -> list[TestSystem]:
    """Return the active test systems in scope (optionally of one lab), ordered for display."""
    stmt = (
        select(TestSystem)
        .where(TestSystem.active, in_scope(actor, TestSystem.lab_id))
        .options(joinedload(TestSystem.analyte), joinedload(TestSystem.instrument),
                 joinedload(TestSystem.qc_lot), selectinload(TestSystem.levels))
        .order_by(TestSystem.lab_id, TestSystem.analyte_id, TestSystem.id)
    )
    if lab_id is not None:
        stmt = stmt.where(TestSystem.lab_id == lab_id)
    return list(db.session.scalars(stmt).unique())


def today_board(actor: User, today: date) -> list[BoardRow]:
    """Return each test system in scope with its worst verdict of ``today``."""
    systems = test_systems(actor)
    ids = [ts.id for ts in systems]
    if not ids:
        return []
    rank = {"reject": 3, "warning": 2, "accept": 1, "pending": 0}
    today_rows = db.session.execute(
        select(QcRun.test_system_id, QcRun.status).where(
            QcRun.test_system_id.in_(ids), QcRun.run_date == today)
    ).all()
    worst: dict[int, str] = {}
    for ts_id, status in today_rows:
        if rank.get(status, 0) >= rank.get(worst.get(ts_id, "pending"), 0):
            worst[ts_id] = status
    last = dict(db.session.execute(
        select(QcRun.test_system_id, func.max(QcRun.run_date))
        .where(QcRun.test_system_id.in_(ids)).group_by(QcRun.test_system_id)
    ).all())
    return [BoardRow(ts, worst.get(ts.id), last.get(ts.id)) for ts in systems]


def open_actions(actor: User, statuses: tuple[str, ...] = ("open", "submitted")) -> list:
    """Return out-of-control records in scope that still need work or a signature."""
    stmt = (
        select(CorrectiveAction)
        .join(QcRun).join(TestSystem)
        .where(CorrectiveAction.status.in_(statuses), in_scope(actor, TestSystem.lab_id))
        .options(joinedload(CorrectiveAction.run).joinedload(QcRun.test_system))
        .order_by(CorrectiveAction.opened_at.desc())
    )
    return list(db.session.scalars(stmt).unique())


@dataclass(frozen=True)
class Overview:
    """Counts for a director's or the centre's home page."""

    hospitals: int
    labs: int
    test_systems: int
    submitted_today: int
    rejected_today: int
    warned_today: int
    in_control_rate_30d: float | None


def overview(actor: User, today: date) -> Overview:
    """Summarise today's submissions and the 30-day in-control rate over the actor's scope.

    In-control rate = 1 − rejected runs / judged runs; pending runs (no target yet) are
    neither in nor out of control (QC_SPEC §7).
    """
    ts_scope = select(TestSystem.id).where(TestSystem.active, in_scope(actor, TestSystem.lab_id))
    labs = db.session.scalar(select(func.count()).select_from(Lab).where(in_scope(actor, Lab.id)))
    hospitals = db.session.scalar(
        select(func.count(func.distinct(Lab.hospital_id))).where(in_scope(actor, Lab.id)))
    n_ts = db.session.scalar(select(func.count()).select_from(ts_scope.subquery()))
    todays = dict(db.session.execute(
        select(QcRun.status, func.count(func.distinct(QcRun.test_system_id)))
        .where(QcRun.test_system_id.in_(ts_scope), QcRun.run_date == today)
        .group_by(QcRun.status)).all())
    month = dict(db.session.execute(
        select(QcRun.status, func.count())
        .where(QcRun.test_system_id.in_(ts_scope), QcRun.run_date > today - timedelta(days=30))
        .group_by(QcRun.status)).all())
    judged = sum(n for status, n in month.items() if status != "pending")
    return Overview(
        hospitals=hospitals or 0, labs=labs or 0, test_systems=n_ts or 0,
        submitted_today=sum(todays.values()), rejected_today=todays.get("reject", 0),
        warned_today=todays.get("warning", 0),
        in_control_rate_30d=(1 - month.get("reject", 0) / judged) if judged else None,
    )


def hospitals_in_scope(actor: User) -> list[Hospital]:
    """Return hospitals having at least one lab in scope."""
    stmt = (select(Hospital).join(Lab).where(in_scope(actor, Lab.id))
            .order_by(Hospital.code).distinct())
    return list(db.session.scalars(stmt))


@dataclass(frozen=True)
class LjPoint:
    """One current result on a Levey–Jennings chart."""

    run_id: int
    run_date: date
    run_no: int
    level_id: int
    value: float
    value_text: str
    version: int
    z: float | None
    status: str
    rules: tuple[str, ...]
    handled: bool | None
    entered_by: str | None


def lj_points(ts: TestSystem, start: date | None = None, end: date | None = None) -> list[LjPoint]:
    """Return the current results of a test system in run order with verdicts and rules.

    ``handled`` is None for runs that were not rejected, True when the out-of-control record
    is signed, False while it is open or awaiting signature.
    """
    import numpy as np

    from qcwx.iqc.models import QcResult, Violation

    stmt = (select(QcRun, QcResult, User.display_name)
            .join(QcResult, QcResult.run_id == QcRun.id)
            .join(QcLevel, QcLevel.id == QcResult.qc_level_id)
            .outerjoin(User, User.id == QcResult.entered_by_id)
            .where(QcRun.test_system_id == ts.id, QcResult.is_current)
            .order_by(QcRun.run_date, QcRun.run_no, QcLevel.level_index))  # levels in order
    if start is not None:
        stmt = stmt.where(QcRun.run_date >= start)
    if end is not None:
        stmt = stmt.where(QcRun.run_date <= end)
    rows = db.session.execute(stmt).all()
    run_ids = list({run.id for run, _, _ in rows})
    fired: dict[tuple[int, int], list[str]] = {}
    handled: dict[int, bool] = {}
    if run_ids:
        for v in db.session.scalars(select(Violation).where(
                Violation.run_id.in_(run_ids), Violation.active)):
            for lv in v.levels:
                fired.setdefault((v.run_id, lv), []).append(v.rule_code)
        for run_id, status in db.session.execute(select(
                CorrectiveAction.run_id, CorrectiveAction.status).where(
                CorrectiveAction.run_id.in_(run_ids))):
            handled[run_id] = status == "signed"
    timeline = limit_timeline(ts)
    out = []
    for run, res, who in rows:
        z = z_scores(np.array([res.value]), [run.run_date],
                             timeline.get(res.qc_level_id, []))[0]
        out.append(LjPoint(run.id, run.run_date, run.run_no, res.qc_level_id, res.value,
                           res.value_text, res.version, None if np.isnan(z) else float(z),
                           run.status, tuple(fired.get((run.id, res.qc_level_id), ())),
                           handled.get(run.id) if run.status == "reject" else None, who))
    return out


def run_history(ts: TestSystem, limit: int = 30) -> list[QcRun]:
    """Return the latest runs of a test system, newest first, with results loaded."""
    return list(db.session.scalars(
        select(QcRun).where(QcRun.test_system_id == ts.id)
        .options(selectinload(QcRun.results))
        .order_by(QcRun.run_date.desc(), QcRun.run_no.desc()).limit(limit)))


def results_frame(ts: TestSystem, end: date | None = None):
    """Return a DataFrame of current results (level, run_date, value, pending, rejected, rules).

    ``pending`` marks runs not yet judged (no target yet): neither in nor out of control.
    """
    import pandas as pd

    from qcwx.iqc.models import QcResult, Violation

    stmt = (select(QcRun.id, QcRun.run_date, QcRun.status, QcResult.qc_level_id, QcResult.value)
            .join(QcResult, QcResult.run_id == QcRun.id)
            .where(QcRun.test_system_id == ts.id, QcResult.is_current))
    if end is not None:
        stmt = stmt.where(QcRun.run_date <= end)
    rows = db.session.execute(stmt).all()
    frame = pd.DataFrame(rows, columns=["run_id", "run_date", "status", "level_id", "value"])
    rules: dict[tuple[int, int], list[str]] = {}
    if len(frame):
        for v in db.session.scalars(select(Violation).where(
                Violation.run_id.in_(frame.run_id.unique().tolist()), Violation.active)):
            for lv in v.levels:
                rules.setdefault((v.run_id, lv), []).append(v.rule_code)
    frame["pending"] = frame["status"] == "pending"
    frame["rejected"] = frame["status"] == "reject"
    frame["rules"] = [rules.get((r, lv), []) for r, lv in zip(frame.run_id, frame.level_id,
                                                                strict=True)]
    return frame


def lj_points_of_runs(ts: TestSystem, runs: list) -> list[LjPoint]:
    """Return the LJ points of exactly ``runs`` (newest first, as ``run_history`` gives them)."""
    ids = {r.id for r in runs}
    return [p for p in lj_points(ts, runs[-1].run_date, runs[0].run_date)
            if p.run_id in ids]


# ---------------------------------------------------------------- limits and rules in force
def current_rule_set(ts: TestSystem) -> dict[str, str]:
    """Return the rule set in force: the newest version, else the default for its levels."""
    return _rule_set_in_force(ts, db.session.scalar(_rule_set_statement(), {"ts": ts.id}))


def _rule_set_in_force(ts: TestSystem, stored: dict | None) -> dict[str, str]:
    """The stored rules completed with "off" for codes added since, or the levels' default."""
    if stored is not None:
        return dict.fromkeys(westgard.RULE_CODES, "off") | dict(stored)
    return westgard.default_rule_set(max(1, min(3, len(ts.levels))))


def judging_config(ts: TestSystem) -> tuple[dict[int, list[tuple[date, float, float]]],
                                            dict[str, str]]:
    """Return (:func:`limit_timeline`, :func:`current_rule_set`) of ``ts`` from one statement.

    Judging needs both, every submission judges, and each statement is a round trip to the
    database on the request's path (issue 14: two reads were a seventh of a submission's
    statements). A live submission reads them with its store checks instead
    (:func:`qcwx.iqc.bulk.store_state`).
    """
    rows = db.session.execute(_judging_statement(), {"ts": ts.id}).all()
    return config_from(ts, [row[1:] for row in rows if row.part == 0],
                       next((row.rules for row in rows if row.part == 1), None))


def config_from(ts: TestSystem, limit_rows, stored_rules: dict | None
                ) -> tuple[dict[int, list[tuple[date, float, float]]], dict[str, str]]:
    """:func:`judging_config` from its rows, read by whichever statement.

    ``limit_rows``: (level, effective_from, mean, sd, version) of every limit version, in any
    order; ``stored_rules``: the newest stored rule set's rules, or None.
    """
    ordered = sorted(limit_rows, key=lambda row: (row[1], row[4]))
    return _steps(row[:4] for row in ordered), _rule_set_in_force(ts, stored_rules)


@functools.cache
def _judging_statement():
    """:func:`judging_config`'s union, built once from the two reads it replaces.

    Part 0 is :func:`limit_timeline`'s read with the version (:func:`config_from` orders
    the steps), part 1 the newest rule set of :func:`current_rule_set`.
    """
    limits = timeline_select((literal(0).label("part"),),
                             (ControlLimit.version,
                              type_coerce(null(), RuleSet.rules.type).label("rules")))
    return union_all(limits, select(literal(1), null(), null(), null(), null(), null(),
                                    newest_rules()))


def newest_rules():
    """A scalar subquery: the newest stored rules of the system bound as ``ts`` (or NULL)."""
    return _rule_set_select(RuleSet.rules).scalar_subquery()


@functools.cache
def _rule_set_statement():
    """The newest rule set's column alone, built once: every submission reads it (issue 14)."""
    return _rule_set_select(RuleSet.rules)


def _rule_set_select(*columns):
    """The newest rule set version of the system bound as ``ts``, as ``columns``."""
    return (select(*columns).where(RuleSet.test_system_id == bindparam("ts"))
            .order_by(RuleSet.version.desc()).limit(1))


@functools.cache
def _timeline_statement():
    """Plain columns (ORM objects cost a submission ~0.3 ms), built once (issue 14)."""
    return timeline_select().order_by(ControlLimit.effective_from, ControlLimit.version)


def timeline_select(lead: tuple = (), tail: tuple = ()):
    """The limit steps of the system bound as ``ts``: (*lead, level, from, mean, sd, *tail)."""
    return (select(*lead, ControlLimit.qc_level_id, ControlLimit.effective_from,
                   ControlLimit.target_mean, ControlLimit.target_sd, *tail)
            .where(ControlLimit.test_system_id == bindparam("ts")))


def _steps(rows) -> dict[int, list[tuple[date, float, float]]]:
    """Group (level, effective_from, mean, sd) rows, in force order, into per-level steps."""
    out: dict[int, list[tuple[date, float, float]]] = {}
    for level_id, start, mean, sd in rows:
        out.setdefault(level_id, []).append((start, mean, sd))
    return out


def limits_in_force(ts: TestSystem, on: date | None = None) -> dict[int, ControlLimit]:
    """Return {qc_level_id: ControlLimit} in force on ``on`` (default: newest versions)."""
    stmt = select(ControlLimit).where(ControlLimit.test_system_id == ts.id)
    if on is not None:
        stmt = stmt.where(ControlLimit.effective_from <= on)
    rows = db.session.scalars(stmt.order_by(ControlLimit.effective_from, ControlLimit.version))
    return {row.qc_level_id: row for row in rows}


def limit_history(ts: TestSystem) -> list[ControlLimit]:
    """Return every limit version of the test system, newest first."""
    return list(db.session.scalars(
        select(ControlLimit).where(ControlLimit.test_system_id == ts.id)
        .order_by(ControlLimit.version.desc())))


def limit_timeline(ts: TestSystem) -> dict[int, list[tuple[date, float, float]]]:
    """Return per level the (effective_from, mean, sd) steps, in force order."""
    return _steps(db.session.execute(_timeline_statement(), {"ts": ts.id}))


def z_scores(values: np.ndarray, dates: Iterable[date], steps) -> np.ndarray:
    """Return z of ``values`` measured on ``dates`` against the step limits in force.

    ``steps`` is one level's list from `limit_timeline`; results before the first step get
    NaN (no target yet, so no verdict).
    """
    dates = list(dates)
    z = np.full(len(dates), np.nan)
    if not steps or not dates:
        return z
    starts = np.array([s[0].toordinal() for s in steps])
    idx = np.searchsorted(starts, np.array([d.toordinal() for d in dates]), side="right") - 1
    ok = idx >= 0
    means = np.array([s[1] for s in steps])
    sds = np.array([s[2] for s in steps])
    z[ok] = (values[ok] - means[idx[ok]]) / sds[idx[ok]]
    return z


def next_run_no(ts: TestSystem, run_date: date) -> int:
    """Return the run number a new run on ``run_date`` gets (1, or one after the last)."""
    last = db.session.scalar(select(func.max(QcRun.run_no)).where(
        QcRun.test_system_id == ts.id, QcRun.run_date == run_date))
    return (last or 0) + 1
