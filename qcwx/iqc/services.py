"""Submit and evaluate QC runs: the one path every capture channel takes.

``submit_run`` validates, stores the results (idempotent on the client's id), evaluates the
Westgard rule set over the recent window, stores violations and the run status, opens an
out-of-control record on reject and writes an outbox row for warnings and rejects — all in
the caller's transaction (services flush, the request or task commits), so either all of it
is stored or none of it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import selectinload

from qcwx.alerts.models import OutboxMessage
from qcwx.alerts.services import dispatch_after_commit
from qcwx.catalog.models import QcLevel, TestSystem
from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.iqc import targets
from qcwx.iqc.models import CorrectiveAction, QcResult, QcRun, Submission, Violation
from qcwx.orgs.models import User
from qcwx.orgs.scopes import can_access_lab
from qcwx.peer import services as peer_services
from qcwx.qcstats import westgard
from qcwx.timeutil import local_today, utcnow

log = logging.getLogger(__name__)

SUBMITTER_ROLES = {"technician", "supervisor", "director", "admin"}
CHANNELS = {"h5": "手机录入", "scan": "扫码录入", "upload": "文件导入", "api": "接口上传",
            "mp": "小程序"}
MAX_VALUE_TEXT = 32
ERROR_KIND_HINT = {"随机误差": "random", "系统误差": "systematic"}


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


STATUS_LABEL = {"accept": "在控", "warning": "警告", "reject": "失控", "pending": "待评价"}
STATUS_SUMMARY = {
    "accept": "质控在控，可以发出本批患者报告。",
    "warning": "出现警告规则，请复核质控结果与近期趋势后再决定是否发出报告。",
    "reject": "质控失控！请暂停发出本批患者报告，查找原因并填写失控处理记录。",
    "pending": "尚未设定靶值和标准差，无法进行规则判断，请联系质控主管设定靶值。",
}


# ---------------------------------------------------------------- validation
def parse_value(text: str, field_name: str) -> float:
    """Parse a value as typed on a phone: full-width digits and commas, spaces; finite only."""
    if text is None or not str(text).strip():
        raise UserError("请填写结果", field=field_name)
    raw = str(text).strip()
    if len(raw) > MAX_VALUE_TEXT:
        raise UserError("结果过长", field=field_name)
    norm = raw.translate(str.maketrans("０１２３４５６７８９．－＋，", "0123456789.-+,")).replace(
        ",", ".").replace(" ", "")
    try:
        value = float(norm)
    except ValueError:
        raise UserError(f"结果“{raw}”不是有效数字", field=field_name) from None
    if not math.isfinite(value):
        raise UserError(f"结果“{raw}”不是有效数字", field=field_name)
    return value


def _check_plausible(ts: TestSystem, value: float, field_name: str) -> None:
    a = ts.analyte
    if (a.plausible_low is not None and value < a.plausible_low) or (
            a.plausible_high is not None and value > a.plausible_high):
        raise UserError(
            f"结果 {value:g} 超出{a.name}的合理范围（{a.plausible_low:g}–{a.plausible_high:g} "
            f"{a.unit}），请核对是否录入错误", field=field_name)


def load_test_system(actor: User, ts_id: int) -> TestSystem:
    """Return the test system if in the actor's scope, else 404 (existence is not revealed)."""
    ts = db.session.get(TestSystem, ts_id, options=[selectinload(TestSystem.levels)])
    if ts is None or not can_access_lab(actor, ts.lab_id):
        raise NotFound("检测系统不存在或无权访问", field="test_system_id")
    return ts


def resolve_levels(ts: TestSystem, values: Mapping) -> dict[QcLevel, tuple[str, float]]:
    """Map submitted keys (level id, level index or level name) to the test system's levels."""
    if not values:
        raise UserError("请至少填写一个水平的结果", field="values")
    by_key: dict[str, QcLevel] = {}
    for lv in ts.levels:
        by_key.update({f"id:{lv.id}": lv, str(lv.level_index): lv, lv.name: lv})
    out: dict[QcLevel, tuple[str, float]] = {}
    for key, text in values.items():
        key_s = str(key).strip()
        level = by_key.get(key_s)
        if level is None:
            raise UserError(f"水平“{key_s}”不属于该检测系统的质控批号 {ts.qc_lot.lot_number}",
                            field="level")
        if text is None or str(text).strip() == "":
            continue  # a level not run today
        fname = f"level_{level.level_index}"
        value = parse_value(str(text), fname)
        _check_plausible(ts, value, fname)
        if level in out:
            raise UserError(f"{level.name}重复填写", field=fname)
        out[level] = (str(text).strip(), value)
    if not out:
        raise UserError("请至少填写一个水平的结果", field="values")
    return out


def check_run_date(ts: TestSystem, run_date: date) -> None:
    if not isinstance(run_date, date):
        raise UserError("检测日期无效", field="run_date")
    if run_date > local_today(ts.lab.timezone):
        raise UserError("检测日期不能晚于今天", field="run_date")
    if ts.qc_lot.expiry and run_date > ts.qc_lot.expiry:
        raise UserError(f"质控批号 {ts.qc_lot.lot_number} 已于 {ts.qc_lot.expiry} 过期",
                        field="run_date")


def payload_hash(ts_id: int, run_date: date, run_no: int, values: dict) -> str:
    body = json.dumps({"ts": ts_id, "d": run_date.isoformat(), "n": run_no,
                       "v": sorted((lv.id, t) for lv, (t, _) in values.items())},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


# ---------------------------------------------------------------- submission
def submit_run(
    actor: User,
    *,
    test_system_id: int,
    run_date: date,
    values: Mapping,
    run_no: int | None = None,
    client_id: str | None = None,
    channel: str = "h5",
    measured_at: datetime | None = None,
    notify: bool = True,
) -> RunVerdict:
    """Validate, store and evaluate one run of one test system; return its verdict.

    ``values`` maps a level (its id as ``"id:<n>"``, its index ``1..3`` or its name) to the
    value as typed. Resending the same ``client_id`` returns the stored verdict and stores
    nothing; the same id with different values is a conflict (409).
    """
    if actor.role not in SUBMITTER_ROLES:
        raise Forbidden("当前角色不能录入质控结果")
    if channel not in CHANNELS:
        raise UserError("录入渠道无效", field="channel")
    ts = load_test_system(actor, test_system_id)
    if not ts.active:
        raise UserError("该检测系统已停用", field="test_system_id")
    check_run_date(ts, run_date)
    run_no = _check_run_no(run_no)
    resolved = resolve_levels(ts, values)
    client_id = (client_id or "").strip() or f"srv-{uuid.uuid4()}"
    if len(client_id) > 64:
        raise UserError("记录编号过长（最多64个字符）", field="client_id")
    digest = payload_hash(ts.id, run_date, run_no, resolved)
    prior = db.session.scalar(select(Submission).where(Submission.client_id == client_id))
    if prior is not None:
        if prior.payload_hash != digest:
            raise Conflict("该记录编号已用于另一组结果，请勿重复使用", field="client_id")
        return verdict_for(prior.run, duplicate=True)
    run = _get_or_create_run(ts, run_date, run_no)
    taken = {r.qc_level_id for r in run.results if r.is_current}
    clash = [lv.name for lv in resolved if lv.id in taken]
    if clash:
        raise Conflict(f"该批次已有{'、'.join(clash)}的结果；如需修改请使用“更正”并填写原因",
                       field="values")
    sub = Submission(client_id=client_id, payload_hash=digest, channel=channel, run=run,
                     actor_id=actor.id)
    db.session.add(sub)
    db.session.flush()
    for level, (text, value) in resolved.items():
        db.session.add(QcResult(run=run, qc_level_id=level.id, version=1, is_current=True,
                                value_text=text, value=value, measured_at=measured_at,
                                entered_by_id=actor.id, submission_id=sub.id))
    db.session.flush()
    evaluate_from(ts, run, notify=notify, actor=actor)
    return verdict_for(run)


def _check_run_no(run_no) -> int:
    if run_no in (None, ""):
        return 1
    try:
        n = int(run_no)
    except (TypeError, ValueError):
        raise UserError("批次号必须是正整数", field="run_no") from None
    if not 1 <= n <= 99:
        raise UserError("批次号必须在 1–99 之间", field="run_no")
    return n


def _get_or_create_run(ts: TestSystem, run_date: date, run_no: int) -> QcRun:
    run = db.session.scalar(select(QcRun).where(
        QcRun.test_system_id == ts.id, QcRun.run_date == run_date, QcRun.run_no == run_no)
        .options(selectinload(QcRun.results)))
    if run is None:
        run = QcRun(test_system_id=ts.id, run_date=run_date, run_no=run_no, status="pending")
        db.session.add(run)
        db.session.flush()
    return run


def next_run_no(ts: TestSystem, run_date: date) -> int:
    """Return the run number a new run on ``run_date`` gets (1, or one after the last)."""
    last = db.session.scalar(select(func.max(QcRun.run_no)).where(
        QcRun.test_system_id == ts.id, QcRun.run_date == run_date))
    return (last or 0) + 1


def correct_result(actor: User, result_id: int, value_text: str, reason: str) -> RunVerdict:
    """Store a corrected value as a new version (who/when/why) and re-evaluate from its run."""
    old = db.session.get(QcResult, result_id)
    if old is None or not can_access_lab(actor, old.run.test_system.lab_id):
        raise NotFound("结果不存在或无权访问", field="result_id")
    if actor.role not in SUBMITTER_ROLES:
        raise Forbidden("当前角色不能更正质控结果")
    if not old.is_current:
        raise Conflict("该结果已被更正，请在最新版本上操作", field="result_id")
    if not reason or not reason.strip():
        raise UserError("更正结果必须填写原因", field="reason")
    ts = old.run.test_system
    value = parse_value(value_text, "value")
    _check_plausible(ts, value, "value")
    old.is_current = False
    new = QcResult(run_id=old.run_id, qc_level_id=old.qc_level_id, version=old.version + 1,
                   is_current=True, value_text=str(value_text).strip(), value=value,
                   measured_at=old.measured_at, entered_by_id=actor.id, reason=reason.strip())
    db.session.add(new)
    db.session.flush()
    evaluate_from(ts, old.run, notify=True, actor=actor)
    return verdict_for(old.run)


# ---------------------------------------------------------------- evaluation
def _series(ts: TestSystem, runs: Sequence[QcRun]) -> np.ndarray:
    """Return the z matrix (runs × levels) of the current results of ``runs``."""
    levels = list(ts.levels)
    col = {lv.id: j for j, lv in enumerate(levels)}
    row = {run.id: i for i, run in enumerate(runs)}
    values = np.full((len(runs), len(levels)), np.nan)
    if runs:
        rows = db.session.execute(
            select(QcResult.run_id, QcResult.qc_level_id, QcResult.value)
            .where(QcResult.run_id.in_(list(row)), QcResult.is_current)).all()
        for run_id, level_id, value in rows:
            if level_id in col:
                values[row[run_id], col[level_id]] = value
    timeline = targets.limit_timeline(ts)
    dates = [r.run_date for r in runs]
    z = np.full_like(values, np.nan)
    for lv in levels:
        j = col[lv.id]
        z[:, j] = targets.z_scores(values[:, j], dates, timeline.get(lv.id, []))
    return z


def _runs_window(ts: TestSystem, run: QcRun, before: int) -> list[QcRun]:
    """Return up to ``before`` runs preceding ``run`` plus ``run`` and every later run."""
    order_key = (QcRun.run_date, QcRun.run_no)
    earlier = list(db.session.scalars(
        select(QcRun).where(QcRun.test_system_id == ts.id,
                            (QcRun.run_date < run.run_date) | and_(
                                QcRun.run_date == run.run_date, QcRun.run_no < run.run_no))
        .order_by(*(c.desc() for c in order_key)).limit(before)))
    later = list(db.session.scalars(
        select(QcRun).where(QcRun.test_system_id == ts.id,
                            (QcRun.run_date > run.run_date) | and_(
                                QcRun.run_date == run.run_date, QcRun.run_no >= run.run_no))
        .order_by(*order_key)))
    return earlier[::-1] + later


def evaluate_from(ts: TestSystem, run: QcRun, *, notify: bool, actor: User | None = None) -> None:
    """Re-judge ``run`` and every later run of the test system, reading a bounded lookback.

    The newest run usually is ``run`` itself, so this reads the last ~12 runs: the cost of
    evaluating one submission does not grow with the history. A back-dated entry or a
    correction re-judges the runs after it too (their windows now contain it).
    """
    rule_set = targets.current_rule_set(ts)
    before = westgard.MAX_LOOKBACK
    while True:
        runs = _runs_window(ts, run, before)
        z = _series(ts, runs)
        first_target = runs.index(run)
        need = min(westgard.lookback_start(z[: first_target + 1]), westgard.lookback_start(z))
        if need > 0 or first_target < before:
            break
        before *= 2  # missing levels: more runs are needed to hold 12 results per level
    evaluation = westgard.evaluate(z, rule_set)
    peer_services.refresh_after_commit(ts.id)  # peer statistics follow every change of a run
    for i in range(first_target, len(runs)):
        has_target = not np.isnan(z[i]).all()
        _store_verdict(ts, runs[i], evaluation[i] if has_target else None, runs,
                       notify=notify and runs[i].id == run.id, actor=actor)


def evaluate_all(ts: TestSystem, *, notify: bool = False) -> int:
    """Re-judge every run of a test system in one vectorised pass (seeding, limit changes)."""
    runs = list(db.session.scalars(select(QcRun).where(QcRun.test_system_id == ts.id)
                                   .order_by(QcRun.run_date, QcRun.run_no)))
    if not runs:
        return 0
    z = _series(ts, runs)
    evaluation = westgard.evaluate(z, targets.current_rule_set(ts))
    for i, run in enumerate(runs):
        has_target = not np.isnan(z[i]).all()
        _store_verdict(ts, run, evaluation[i] if has_target else None, runs, notify=notify)
    return len(runs)


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
    steps = targets.limit_timeline(ts)
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
