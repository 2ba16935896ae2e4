"""What a test system is judged by: control limits per level and its Westgard rule set.

Both are versioned: a change adds a row with who/when/why; the version in force for a run
is the newest one whose ``effective_from`` is on or before the run's date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import numpy as np
from sqlalchemy import func, select

from qcwx.catalog.models import QcLevel, TestSystem
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc import evaluation
from qcwx.iqc.models import ControlLimit, QcResult, QcRun, RuleSet
from qcwx.iqc.queries import (  # noqa: F401  (re-exported: what is in force, for callers)
    current_rule_set,
    limit_history,
    limit_timeline,
    limits_in_force,
    z_scores,
)
from qcwx.iqc.validation import MAX_REASON, check_plausible_date, clean_text
from qcwx.orgs.models import User
from qcwx.qcstats import limits as qclimits
from qcwx.qcstats import westgard

LIMIT_KINDS = {"fixed": "定值（厂商或指定靶值）", "established": "实验室自建"}
# Who may change what a test system is judged by (technicians submit, they do not judge).
TARGET_EDITORS = {"supervisor", "director", "center", "admin"}
REASON_MAX = ControlLimit.reason.type.length
#: Smallest SD a limit may have: relative to the mean (a CV of one in a million) and, for a
#: mean of zero, absolute; 1e-320 (a denormal) made every z-score infinite.
MIN_CV = 1e-6
MIN_SD = 1e-12


def require_target_editor(actor: User, what: str) -> None:
    """Refuse (403) a change of limits or rules by a role that may not make it."""
    if actor.role not in TARGET_EDITORS:
        raise UserError(f"只有质控主管或科主任可以{what}", field="form", status=403)


def set_rule_set(actor: User, ts: TestSystem, rules: Mapping[str, str], reason: str) -> RuleSet:
    """Store a new rule-set version; refuse unknown codes, bad roles or an empty set."""
    require_target_editor(actor, "修改质控规则")
    reason = clean_text(reason, "reason", "修改原因", limit=MAX_REASON)
    try:
        clean = westgard.validate_rule_set(rules)
    except ValueError as exc:
        raise UserError(_rule_set_message(str(exc)), field="rules") from None
    version = (db.session.scalar(select(func.max(RuleSet.version))
                                 .where(RuleSet.test_system_id == ts.id)) or 0) + 1
    row = RuleSet(test_system_id=ts.id, version=version, rules=clean, reason=reason,
                  created_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    return row


def _rule_set_message(detail: str) -> str:
    if "nothing" in detail.lower() or "no rule" in detail.lower() or "enable" in detail.lower():
        return "规则设置无效：至少启用一条规则"
    return f"规则设置无效（{detail}）"


def set_control_limit(
    actor: User, ts: TestSystem, level: QcLevel, *, mean: float, sd: float, kind: str,
    effective_from: date, reason: str, n_used: int | None = None,
) -> ControlLimit:
    """Add a limit version for one level; validates numbers, level and reason."""
    require_target_editor(actor, "设定靶值")
    if level not in ts.levels:
        raise UserError("该水平不属于此检测系统的质控批号", field="qc_level_id")
    if kind not in LIMIT_KINDS:
        raise UserError("靶值类型无效", field="kind")
    if not (math.isfinite(mean) and math.isfinite(sd)):
        raise UserError("靶值和标准差必须是数字", field="target_mean")
    if sd <= 0:
        raise UserError("标准差必须大于0", field="target_sd")
    if sd < max(abs(mean) * MIN_CV, MIN_SD):
        raise UserError("标准差过小（相对靶值不足百万分之一），请核对", field="target_sd")
    check_plausible_date(effective_from, "effective_from")
    reason = clean_text(reason, "reason", "设定或修改靶值的原因", limit=MAX_REASON)
    version = (db.session.scalar(
        select(func.max(ControlLimit.version)).where(
            ControlLimit.test_system_id == ts.id, ControlLimit.qc_level_id == level.id)) or 0) + 1
    row = ControlLimit(test_system_id=ts.id, qc_level_id=level.id, version=version, kind=kind,
                       target_mean=float(mean), target_sd=float(sd), n_used=n_used,
                       effective_from=effective_from, reason=reason,
                       created_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    rejudge_since(ts, effective_from)
    return row


def rejudge_since(ts: TestSystem, effective_from: date) -> None:
    """Re-judge the stored runs a new limit applies to (without alerting again).

    A limit set in the past changes the z of every run on or after its start, so those runs
    and everything after them are judged again, exactly as from scratch (QC_SPEC 1.2).
    """
    first = db.session.scalar(
        select(QcRun).where(QcRun.test_system_id == ts.id, QcRun.run_date >= effective_from)
        .order_by(QcRun.run_date, QcRun.run_no).limit(1))
    if first is not None:
        evaluation.evaluate_from(ts, first, notify=False)


def level_history(ts: TestSystem, level: QcLevel, until: date | None = None):
    """Return (dates, values, run statuses) of the current results of one level, in run order."""
    stmt = (select(QcRun.run_date, QcResult.value, QcRun.status)
            .join(QcResult, QcResult.run_id == QcRun.id)
            .where(QcRun.test_system_id == ts.id, QcResult.qc_level_id == level.id,
                   QcResult.is_current)
            .order_by(QcRun.run_date, QcRun.run_no))
    if until is not None:
        stmt = stmt.where(QcRun.run_date <= until)
    rows = db.session.execute(stmt).all()
    return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=float), [r[2] for r in rows]


ESTABLISH_MODES = {"provisional": "暂定靶值", "cumulative": "累积靶值"}
IN_CONTROL = {"accept", "warning"}  # judged and not rejected; pending runs are not judged


@dataclass(frozen=True)
class LimitBasis:
    """What a lab-established limit of one level would be computed from, or why it cannot."""

    mode: str
    estimate: qclimits.LimitEstimate | None
    message: str | None = None

    @property
    def label(self) -> str:
        """Return the mode in Chinese."""
        return ESTABLISH_MODES[self.mode]


def compute_limits(ts: TestSystem, level: QcLevel, mode: str,
                   until: date | None = None) -> qclimits.LimitEstimate:
    """Compute a lab-established limit of one level (QC_SPEC §2) without storing it.

    ``provisional``: the earliest results of the lot and level, taken until ≥20 results on
    ≥20 days remain after one ±3 SD exclusion. ``cumulative``: the results of judged runs
    not rejected after that provisional period (up to ``until``). A ``UserError`` says in
    Chinese why it cannot be computed.
    """
    return _estimate(level_history(ts, level, until), mode)


def _estimate(history, mode: str) -> qclimits.LimitEstimate:
    dates, values, statuses = history
    if mode not in ESTABLISH_MODES:
        raise UserError("计算方式无效", field="mode")
    try:
        prov = qclimits.provisional_limits(values, dates)
    except qclimits.InsufficientDataError as exc:
        raise UserError(_not_enough(mode, exc), field="mode") from None
    if mode == "provisional":
        return prov
    rest = slice(prov.n_taken, None)
    excluded = np.array([s not in IN_CONTROL for s in statuses[rest]], dtype=bool)
    try:
        return qclimits.cumulative_limits(values[rest], excluded, dates[rest])
    except qclimits.InsufficientDataError as exc:
        raise UserError(
            f"数据不足，无法计算累积靶值：暂定期（{prov.first_day}至{prov.last_day}）之后只有 "
            f"{exc.n_results} 个已评价的在控结果，至少需要 2 个", field="mode") from None


def _not_enough(mode: str, exc: qclimits.InsufficientDataError) -> str:
    what = "暂定靶值" if mode == "provisional" else "累积靶值（尚无完整的暂定期）"
    return (f"数据不足，无法计算{what}：需要本批号该水平最早的结果在剔除 ±3SD 以外的值后，"
            f"仍有至少 {qclimits.MIN_RESULTS} 个结果分布在至少 {qclimits.MIN_DAYS} 个不同日期；"
            f"目前共有 {exc.n_results} 个结果、{exc.n_days} 个日期")


def limit_basis(ts: TestSystem) -> dict[int, list[LimitBasis]]:
    """Return per level what each way of establishing limits would use from today's data."""
    out: dict[int, list[LimitBasis]] = {}
    for lv in ts.levels:
        history = level_history(ts, lv)
        out[lv.id] = [_basis(history, mode) for mode in ESTABLISH_MODES]
    return out


def _basis(history, mode: str) -> LimitBasis:
    try:
        return LimitBasis(mode, _estimate(history, mode))
    except UserError as exc:
        return LimitBasis(mode, None, exc.message)


def basis_note(mode: str, est: qclimits.LimitEstimate) -> str:
    """Return the Chinese note of the results a limit was computed from."""
    return (f"（{ESTABLISH_MODES[mode]}依据：{est.first_day}至{est.last_day}，"
            f"使用 {est.n_used} 个结果，剔除 {est.n_excluded} 个）")


def establish_limits(
    actor: User, ts: TestSystem, level: QcLevel, *, mode: str, effective_from: date, reason: str,
    until: date | None = None,
) -> ControlLimit:
    """Compute a lab-established limit (see `compute_limits`) and store it as a new version.

    The reason stored ends with the dates and numbers of results used and excluded.
    """
    require_target_editor(actor, "设定靶值")
    if not reason or not reason.strip():
        raise UserError("请填写设定或修改靶值的原因", field="reason")
    est = compute_limits(ts, level, mode, until)
    note = basis_note(mode, est)
    reason = reason.strip()[:REASON_MAX - len(note)] + note
    return set_control_limit(actor, ts, level, mean=est.mean, sd=est.sd, kind="established",
                             effective_from=effective_from, reason=reason, n_used=est.n_used)
