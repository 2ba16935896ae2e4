"""Change a region's §7 thresholds and override verdicts of the list: flush, never commit.

Thresholds (QC_SPEC §7, "configurable per region, stored with who/when changed it") are a
new :class:`RecognitionCriteriaVersion` per change; :func:`criteria_for_region` is the one
place the evaluation report, the list and the regional report read them from (the §7
defaults while a region has none). Overrides need a written reason and can be withdrawn;
every row written here lands in the audit log through the session hook.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sqlalchemy import func, select

from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Lab, Region, User
from qcwx.qcstats.recognition import VERDICTS, RecognitionCriteria
from qcwx.recognition.models import RecognitionCriteriaVersion, RecognitionOverride
from qcwx.timeutil import utcnow

#: Roles that edit thresholds and override verdicts.
CENTRE_ROLES = ("center", "admin")
MAX_REASON = 500
MIN_REASON = 4
DEFAULTS = RecognitionCriteria()

#: Form fields of the thresholds: (label, low, high) for the numbers.
NUMBER_FIELDS = {
    "min_submission_pct": ("填报率下限（%）", 0.0, 100.0),
    "min_in_control_pct": ("在控率下限（%）", 0.0, 100.0),
    "sdi_limit": ("系统误差 |SDI| 界限", 0.5, 5.0),
    "cvr_limit": ("不精密度 CVR 界限", 0.5, 5.0),
}
WINDOW_RANGE = (1, 12)


# ------------------------------------------------------------------ thresholds


def latest_version(region_id: int) -> RecognitionCriteriaVersion | None:
    """Return the region's thresholds in force (its highest version), None for the defaults."""
    return db.session.scalar(select(RecognitionCriteriaVersion)
                             .where(RecognitionCriteriaVersion.region_id == region_id)
                             .order_by(RecognitionCriteriaVersion.version.desc()).limit(1))


def criteria_for_region(region_id: int | None) -> RecognitionCriteria:
    """Return the thresholds in force for a region (the §7 defaults when it set none)."""
    found = latest_version(region_id) if region_id is not None else None
    return found.criteria() if found is not None else DEFAULTS


def criteria_for_lab(lab: Lab) -> RecognitionCriteria:
    """Return the thresholds of the lab's region."""
    return criteria_for_region(lab.hospital.region_id)


def history(region_id: int) -> list[RecognitionCriteriaVersion]:
    """Return every version of the region's thresholds, newest first."""
    return list(db.session.scalars(select(RecognitionCriteriaVersion)
                                   .where(RecognitionCriteriaVersion.region_id == region_id)
                                   .order_by(RecognitionCriteriaVersion.version.desc())))


def centre_region(actor: User, requested: int | None = None) -> int:
    """Return the region a centre user manages (an admin may name one), else 403."""
    if actor.role not in CENTRE_ROLES:
        raise Forbidden("只有区域质控中心可以管理互认评价")
    if actor.role == "admin":
        if requested is None:
            requested = db.session.scalar(select(Region.id).order_by(Region.id).limit(1))
        if requested is None or db.session.get(Region, requested) is None:
            raise NotFound("区域不存在", field="region")
        return requested
    if actor.region_id is None:
        raise Forbidden("当前账号未关联区域")
    if requested is not None and requested != actor.region_id:
        if not scopes.region_in_scope(actor, requested):  # a region below the centre's
            raise NotFound("区域不存在", field="region")
        return requested
    return actor.region_id


def _number(form: Mapping, name: str) -> float:
    label, low, high = NUMBER_FIELDS[name]
    raw = str(form.get(name) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{label}应为数字：{raw[:20]}", field=name) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise UserError(f"{label}应在 {low:g}～{high:g} 之间：{raw[:20]}", field=name)
    return value


def parse_criteria(form: Mapping) -> RecognitionCriteria:
    """Return thresholds from a form, or raise :class:`UserError` naming the field."""
    values = {name: _number(form, name) for name in NUMBER_FIELDS}
    raw = str(form.get("window_months") or "").strip()
    low, high = WINDOW_RANGE
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise UserError(f"评价窗口应为 {low}～{high} 个月：{raw[:20]}", field="window_months")
    getter = getattr(form, "getlist", None)
    grades = getter("passing_grades") if getter else form.get("passing_grades") or []
    grades = "".join(sorted({str(g).strip() for g in grades}))
    if not grades or not set(grades) <= set("ABCD"):
        raise UserError("请至少选择一个合格等级（A～D）", field="passing_grades")
    return RecognitionCriteria(window_months=int(raw), passing_grades=tuple(grades), **values)


def save_criteria(actor: User, region_id: int, form: Mapping) -> RecognitionCriteriaVersion:
    """Store the form's thresholds as the region's next version (never an update in place)."""
    region_id = centre_region(actor, region_id)
    new = parse_criteria(form)
    note = str(form.get("note") or "").strip()
    if len(note) > 200:
        raise UserError("修改说明不能超过 200 字", field="note")
    if new == criteria_for_region(region_id):
        raise UserError("阈值没有变化，未保存新版本", field="min_submission_pct")
    version = (db.session.scalar(select(func.max(RecognitionCriteriaVersion.version)).where(
        RecognitionCriteriaVersion.region_id == region_id)) or 0) + 1
    row = RecognitionCriteriaVersion(
        region_id=region_id, version=version, min_submission_pct=new.min_submission_pct,
        min_in_control_pct=new.min_in_control_pct, window_months=new.window_months,
        passing_grades="".join(new.passing_grades), sdi_limit=new.sdi_limit,
        cvr_limit=new.cvr_limit, note=note, created_by_id=actor.id, created_at=utcnow())
    db.session.add(row)
    db.session.flush()
    return row


# ------------------------------------------------------------------ overrides


def _reason(raw, field: str) -> str:
    text = str(raw or "").strip()
    if len(text) < MIN_REASON:
        raise UserError(f"请填写理由（至少 {MIN_REASON} 个字）", field=field)
    if len(text) > MAX_REASON:
        raise UserError(f"理由不能超过 {MAX_REASON} 字", field=field)
    return text


def active_overrides(lab_ids, month: str) -> dict[tuple[int, int], RecognitionOverride]:
    """Return the overrides in force for ``month``, by (lab, analyte)."""
    ids = list(lab_ids)
    if not ids:
        return {}
    rows = db.session.scalars(select(RecognitionOverride).where(
        RecognitionOverride.lab_id.in_(ids), RecognitionOverride.month == month,
        RecognitionOverride.withdrawn_at.is_(None)))
    return {(o.lab_id, o.analyte_id): o for o in rows}


def override_history(lab_ids, month: str) -> list[RecognitionOverride]:
    """Return every override of ``month`` (withdrawn ones too), newest first."""
    ids = list(lab_ids)
    if not ids:
        return []
    return list(db.session.scalars(select(RecognitionOverride).where(
        RecognitionOverride.lab_id.in_(ids), RecognitionOverride.month == month)
        .order_by(RecognitionOverride.created_at.desc(), RecognitionOverride.id.desc())))


def override(actor: User, lab: Lab, analyte_id: int, month: str, computed: str, verdict: str,
             reason) -> RecognitionOverride:
    """Record the centre's verdict for one row of the list (``computed`` is the list's).

    The lab must be in the actor's scope (404 otherwise); one override in force per row.
    """
    if actor.role not in CENTRE_ROLES:
        raise Forbidden("只有区域质控中心可以改判互认结论")
    if not scopes.can_access_lab(actor, lab.id):
        raise NotFound()
    if verdict not in VERDICTS:
        raise UserError(f"结论无效：{str(verdict)[:20]}", field="verdict")
    if verdict == computed:
        raise UserError("改判结论与计算结论相同，无需改判", field="verdict")
    text = _reason(reason, "reason")
    if active_overrides([lab.id], month).get((lab.id, analyte_id)) is not None:
        raise Conflict("该项目已有生效的改判，请先撤回", field="verdict")
    row = RecognitionOverride(
        region_id=lab.hospital.region_id, lab_id=lab.id, analyte_id=analyte_id, month=month,
        computed_verdict=computed, verdict=verdict, reason=text, created_by_id=actor.id,
        created_at=utcnow())
    db.session.add(row)
    db.session.flush()
    return row


def withdraw(actor: User, override_id: int, reason) -> RecognitionOverride:
    """Withdraw an override in force (the computed verdict applies again); kept for audit."""
    if actor.role not in CENTRE_ROLES:
        raise Forbidden("只有区域质控中心可以撤回改判")
    row = db.session.get(RecognitionOverride, override_id)
    if row is None or not scopes.can_access_lab(actor, row.lab_id):
        raise NotFound()
    if not row.active:
        raise Conflict("该改判已撤回", field="override")
    row.withdraw_reason = _reason(reason, "withdraw_reason")
    row.withdrawn_at, row.withdrawn_by_id = utcnow(), actor.id
    db.session.flush()
    return row
