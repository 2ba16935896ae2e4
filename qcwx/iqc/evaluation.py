"""Judge stored runs with the Westgard engine and keep their verdicts, violations and alerts.

The one rule this module exists to keep (QC_SPEC 1.2): **re-judging equals judging from
scratch**. Whatever changed — a new run, a back-dated run, a corrected value, a new limit —
every run from the first changed one on is judged again over *all* the history its windows
can reach, so no stored verdict ever differs from a full evaluation of the test system.
The history read is bounded per level (:func:`rejudge_start`): the twelve previous results
of each level, found by an indexed query each, so one new run costs the same with 10 or
100,000 runs stored, and a level run once a week still brings its weeks of history.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import selectinload

from qcwx.alerts.models import OutboxMessage
from qcwx.alerts.services import dispatch_after_commit
from qcwx.catalog.models import TestSystem
from qcwx.extensions import db
from qcwx.iqc import queries
from qcwx.iqc.models import STATUS_LABEL, CorrectiveAction, QcResult, QcRun, Violation
from qcwx.orgs.models import User
from qcwx.peer import services as peer_services
from qcwx.qcstats import westgard
from qcwx.timeutil import utcnow

log = logging.getLogger(__name__)

STATUS_SUMMARY = {
    "accept": "质控在控，可以发出本批患者报告。",
    "warning": "出现警告规则，请复核质控结果与近期趋势后再决定是否发出报告。",
    "reject": "质控失控！请暂停发出本批患者报告，查找原因并填写失控处理记录。",
    "pending": "尚未设定靶值和标准差，无法进行规则判断，请联系质控主管设定靶值。",
}


# ---------------------------------------------------------------- verdict objects
@dataclass(frozen=True)
class FiredRule:
    """A rule that fired, explained for the technician."""

    rule: str
    role: str
    name: str
    error: str
    explanation: str
    levels: tuple[str, ...]


@dataclass(frozen=True)
class LevelValue:
    """One level's stored value with its target and z (None without a target)."""

    level_id: int
    level_name: str
    value_text: str
    value: float
    target_mean: float | None
    target_sd: float | None
    z: float | None


@dataclass(frozen=True)
class RunVerdict:
    """What a capture channel shows after a submission."""

    run_id: int
    test_system_id: int
    run_date: date
    run_no: int
    status: str
    status_label: str
    summary: str
    values: tuple[LevelValue, ...]
    rules: tuple[FiredRule, ...] = field(default_factory=tuple)
    duplicate: bool = False
    action_id: int | None = None

    def to_dict(self) -> dict:
        """Return the verdict as JSON-ready data (APIs and the entry page's fetch)."""
        return {
            "run_id": self.run_id, "test_system_id": self.test_system_id,
            "run_date": self.run_date.isoformat(), "run_no": self.run_no,
            "status": self.status, "status_label": self.status_label, "summary": self.summary,
            "duplicate": self.duplicate, "action_id": self.action_id,
            "values": [v.__dict__ for v in self.values],
            "rules": [r.__dict__ | {"levels": list(r.levels)} for r in self.rules],
        }


# ---------------------------------------------------------------- reading the window
def _series(ts: TestSystem, runs: Sequence[QcRun]) -> np.ndarray:
    """Return the z matrix (runs × levels) of the current results of ``runs``."""
    levels = list(ts.levels)
    col = {lv.id: j for j, lv in enumerate(levels)}
    row = {run.id: i for i, run in enumerate(runs)}
    values = np.full((len(runs), len(levels)), np.nan)
    ids = list(row)
    for i in range(0, len(ids), 2000):
        # is_current is filtered here, not in SQL: a planner without fresh statistics
        # (SQLite right after a bulk insert) would otherwise scan its barely selective index
        rows = db.session.execute(
            select(QcResult.run_id, QcResult.qc_level_id, QcResult.value, QcResult.is_current)
            .where(QcResult.run_id.in_(ids[i:i + 2000]))).all()
        for run_id, level_id, value, current in rows:
            if current and level_id in col:
                values[row[run_id], col[level_id]] = value
    timeline = queries.limit_timeline(ts)
    dates = [r.run_date for r in runs]
    z = np.full_like(values, np.nan)
    for lv in levels:
        j = col[lv.id]
        z[:, j] = queries.z_scores(values[:, j], dates, timeline.get(lv.id, []))
    return z


def _before(day: date, number: int):
    return (QcRun.run_date < day) | and_(QcRun.run_date == day, QcRun.run_no < number)


def rejudge_start(ts: TestSystem, run: QcRun) -> tuple[date, int]:
    """Return the (date, run no) of the earliest run that re-judging from ``run`` must read.

    Per level: the run of its `westgard.MAX_LOOKBACK`-th result before ``run`` (or its
    earliest, when it has fewer). Every window of ``run`` and of each later run lies after
    it: a level's first result at or after ``run`` needs at most that many of its earlier
    results, and its later results need fewer before ``run``. Results without a target
    only precede a level's first limit, so counting them never cuts a window short.
    """
    start = (run.run_date, run.run_no)
    for level in ts.levels:
        keys = db.session.execute(
            select(QcRun.run_date, QcRun.run_no).join(QcResult, QcResult.run_id == QcRun.id)
            .where(QcRun.test_system_id == ts.id, QcResult.qc_level_id == level.id,
                   QcResult.is_current, _before(run.run_date, run.run_no))
            .order_by(QcRun.run_date.desc(), QcRun.run_no.desc())
            .limit(westgard.MAX_LOOKBACK)).all()
        if keys:
            start = min(start, tuple(keys[-1]))
    return start


def _runs_from(ts: TestSystem, start: tuple[date, int]) -> list[QcRun]:
    """Return the runs of ``ts`` from ``start`` on, in run order, with their violations."""
    day, number = start
    return list(db.session.scalars(
        select(QcRun).where(QcRun.test_system_id == ts.id, ~_before(day, number))
        .order_by(QcRun.run_date, QcRun.run_no).options(selectinload(QcRun.violations))))


# ---------------------------------------------------------------- judging
def evaluate_from(ts: TestSystem, run: QcRun, *, notify: bool | Collection[int],
                  actor: User | None = None) -> None:
    """Re-judge ``run`` and every later run of the test system exactly as from scratch.

    ``notify`` is True to alert on ``run`` itself (a live submission or a correction), or
    the ids of the runs whose warning/reject should alert (an import's recent runs); later
    runs re-judged along the way never page anyone twice.
    """
    with db.session.no_autoflush:
        runs = _runs_from(ts, rejudge_start(ts, run))
        first = next(i for i, r in enumerate(runs) if r.id == run.id)
        z = _series(ts, runs)
        evaluation = westgard.evaluate(z, queries.current_rule_set(ts))
    alert = {run.id} if notify is True else set(notify or ())
    peer_services.refresh_after_commit(ts.id)  # peer statistics follow every change of a run
    for i in range(first, len(runs)):
        has_target = not np.isnan(z[i]).all()
        _store_verdict(ts, runs[i], evaluation[i] if has_target else None, runs,
                       notify=runs[i].id in alert, actor=actor)


def _store_verdict(ts: TestSystem, run: QcRun, result, runs: Sequence[QcRun], *, notify: bool,
                   actor: User | None = None) -> None:
    """Write status and violations of one run, replacing (deactivating) stale violations."""
    status = result.status if result is not None else "pending"
    levels = list(ts.levels)
    new = {(v.rule, v.role, tuple(levels[j].id for j in v.levels),
            tuple((runs[r].id, levels[j].id) for r, j in v.points))
           for v in (result.violations if result is not None else ())}
    old_rows = [v for v in run.violations if v.active]
    old = {(v.rule_code, v.role, tuple(v.levels), tuple(tuple(p) for p in v.points))
           for v in old_rows}
    if new != old:
        for v in old_rows:
            v.active = False
        for rule, role, lv_ids, points in sorted(new):
            db.session.add(Violation(run=run, rule_code=rule, role=role, levels=list(lv_ids),
                                     points=[list(p) for p in points]))
    changed = run.status != status
    run.status = status
    run.evaluated_at = utcnow()
    if status == "reject":
        _open_action(run)
    if notify and status in ("warning", "reject") and (changed or new != old):
        _write_outbox(ts, run, status)


def _open_action(run: QcRun) -> None:
    exists = db.session.scalar(select(CorrectiveAction.id).where(CorrectiveAction.run_id == run.id))
    if exists is None:
        db.session.add(CorrectiveAction(run_id=run.id, status="open"))


def _write_outbox(ts: TestSystem, run: QcRun, status: str) -> None:
    """Queue an alert in the same transaction (delivered by workers after commit)."""
    db.session.flush()
    verdict = verdict_for(run)
    n = db.session.scalar(select(func.count()).select_from(OutboxMessage)
                          .where(OutboxMessage.run_id == run.id)) or 0
    db.session.add(outbox := OutboxMessage(
        kind=f"run_{status}", lab_id=ts.lab_id, run_id=run.id,
        dedupe_key=f"run-{run.id}-{status}-{n + 1}",
        payload={
            "test_system_id": ts.id, "lab_id": ts.lab_id, "analyte": ts.analyte.name,
            "analyte_code": ts.analyte.code, "unit": ts.unit, "run_id": run.id,
            "run_date": run.run_date.isoformat(), "run_no": run.run_no, "status": status,
            "status_label": STATUS_LABEL[status],
            "values": [{"level": v.level_name, "value": v.value_text, "z": v.z}
                       for v in verdict.values],
            "rules": [r.rule for r in verdict.rules],
            "at": utcnow().isoformat(),
        }))
    dispatch_after_commit(outbox)  # enqueue delivery once the run is committed


def verdict_for(run: QcRun, duplicate: bool = False) -> RunVerdict:
    """Build the verdict of a stored run (current values, active violations, explanations)."""
    ts = run.test_system
    if run in db.session:
        db.session.refresh(run, ["results", "violations"])
    steps = queries.limit_timeline(ts)
    names = {lv.id: lv.name for lv in ts.levels}
    values = []
    for r in sorted((r for r in run.results if r.is_current), key=lambda r: r.level.level_index):
        mean = sd = z = None
        for start, m, s in steps.get(r.qc_level_id, []):
            if start <= run.run_date:
                mean, sd = m, s
        if mean is not None:
            z = (r.value - mean) / sd
        values.append(LevelValue(r.qc_level_id, names.get(r.qc_level_id, r.level.name),
                                 r.value_text, r.value, mean, sd, z))
    order = {c: i for i, c in enumerate(westgard.RULE_CODES)}
    rules = []
    for v in sorted((v for v in run.violations if v.active), key=lambda v: order[v.rule_code]):
        info = westgard.RULE_INFO[v.rule_code]
        rules.append(FiredRule(v.rule_code, v.role, info.name, info.error, info.explanation,
                               tuple(names.get(i, str(i)) for i in v.levels)))
    action = db.session.scalar(select(CorrectiveAction.id).where(CorrectiveAction.run_id == run.id))
    return RunVerdict(run.id, ts.id, run.run_date, run.run_no, run.status,
                      STATUS_LABEL[run.status], STATUS_SUMMARY[run.status], tuple(values),
                      tuple(rules), duplicate, action)
