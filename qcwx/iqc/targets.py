"""What a test system is judged by: control limits per level and its Westgard rule set.

Both are versioned: a change adds a row with who/when/why; the version in force for a run
is the newest one whose ``effective_from`` is on or before the run's date.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date

import numpy as np
from sqlalchemy import func, select

from qcwx.catalog.models import QcLevel, TestSystem
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc.models import ControlLimit, QcResult, QcRun, RuleSet
from qcwx.orgs.models import User
from qcwx.qcstats import limits as qclimits
from qcwx.qcstats import westgard

LIMIT_KINDS = {"fixed": "定值（厂商或指定靶值）", "established": "实验室自建"}
# Who may change what a test system is judged by (technicians submit, they do not judge).
TARGET_EDITORS = {"supervisor", "director", "center", "admin"}


def require_target_editor(actor: User, what: str) -> None:
    """Refuse (403) a change of limits or rules by a role that may not make it."""
    if actor.role not in TARGET_EDITORS:
        raise UserError(f"只有质控主管或科主任可以{what}", field="form", status=403)


def current_rule_set(ts: TestSystem) -> dict[str, str]:
    """Return the rule set in force: the newest version, else the default for its levels."""
    row = db.session.scalar(
        select(RuleSet).where(RuleSet.test_system_id == ts.id).order_by(RuleSet.version.desc())
    )
    if row is not None:
        return dict.fromkeys(westgard.RULE_CODES, "off") | dict(row.rules)
    return westgard.default_rule_set(max(1, min(3, len(ts.levels))))


def set_rule_set(actor: User, ts: TestSystem, rules: Mapping[str, str], reason: str) -> RuleSet:
    """Store a new rule-set version; refuse unknown codes, bad roles or an empty set."""
    require_target_editor(actor, "修改质控规则")
    if not reason or not reason.strip():
        raise UserError("请填写修改原因", field="reason")
    try:
        clean = westgard.validate_rule_set(rules)
    except ValueError as exc:
        raise UserError(_rule_set_message(str(exc)), field="rules") from None
    version = (db.session.scalar(select(func.max(RuleSet.version))
                                 .where(RuleSet.test_system_id == ts.id)) or 0) + 1
    row = RuleSet(test_system_id=ts.id, version=version, rules=clean, reason=reason.strip(),
                  created_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    return row


def _rule_set_message(detail: str) -> str:
    if "nothing" in detail.lower() or "no rule" in detail.lower() or "enable" in detail.lower():
        return "规则设置无效：至少启用一条规则"
    return f"规则设置无效（{detail}）"


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
    out: dict[int, list[tuple[date, float, float]]] = {}
    rows = db.session.scalars(select(ControlLimit).where(ControlLimit.test_system_id == ts.id)
                              .order_by(ControlLimit.effective_from, ControlLimit.version))
    for row in rows:
        out.setdefault(row.qc_level_id, []).append(
            (row.effective_from, row.target_mean, row.target_sd))
    return out


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
    if not reason or not reason.strip():
        raise UserError("请填写设定或修改靶值的原因", field="reason")
    version = (db.session.scalar(
        select(func.max(ControlLimit.version)).where(
            ControlLimit.test_system_id == ts.id, ControlLimit.qc_level_id == level.id)) or 0) + 1
    row = ControlLimit(test_system_id=ts.id, qc_level_id=level.id, version=version, kind=kind,
                       target_mean=float(mean), target_sd=float(sd), n_used=n_used,
                       effective_from=effective_from, reason=reason.strip(),
                       created_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    return row


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


def establish_limits(
    actor: User, ts: TestSystem, level: QcLevel, *, mode: str, effective_from: date, reason: str,
    since: date | None = None, until: date | None = None,
) -> ControlLimit:
    """Compute a lab-established limit (QC_SPEC §2) from stored results and store it.

    ``mode='provisional'``: the first ≥20 results on ≥20 days after one ±3 SD exclusion;
    ``mode='cumulative'``: all in-control results between ``since`` and ``until``.
    """
    require_target_editor(actor, "设定靶值")
    dates, values, statuses = level_history(ts, level, until)
    keep = [since is None or d >= since for d in dates]
    dates = [d for d, k in zip(dates, keep, strict=True) if k]
    values = values[np.array(keep, dtype=bool)] if len(values) else values
    statuses = [s for s, k in zip(statuses, keep, strict=True) if k]
    try:
        if mode == "provisional":
            est = qclimits.provisional_limits(values, dates)
        elif mode == "cumulative":
            est = qclimits.cumulative_limits(values, np.array([s == "reject" for s in statuses]))
        else:
            raise UserError("计算方式无效", field="mode")
    except ValueError as exc:
        raise UserError(f"无法计算靶值：{_limits_message(str(exc))}", field="mode") from None
    return set_control_limit(actor, ts, level, mean=est.mean, sd=est.sd, kind="established",
                             effective_from=effective_from, reason=reason, n_used=est.n_used)


def _limits_message(detail: str) -> str:
    if "20" in detail:
        return "至少需要 20 个结果且分布在 20 个不同日期"
    return detail
