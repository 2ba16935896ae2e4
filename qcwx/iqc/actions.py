"""Out-of-control workflow (失控处理): the technician completes, the supervisor signs off."""

from __future__ import annotations

from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.iqc.models import CAUSE_CATEGORIES, CorrectiveAction
from qcwx.iqc.validation import MAX_NOTE, clean_text
from qcwx.orgs.models import User
from qcwx.orgs.scopes import can_access_lab
from qcwx.timeutil import utcnow

COMPLETERS = {"technician", "supervisor", "director"}
SIGNERS = {"supervisor", "director"}
ACTION_STATUS = {"open": "待处理", "submitted": "待审核", "signed": "已签字"}


def load_action(actor: User, action_id: int) -> CorrectiveAction:
    """Return the record when its lab is in scope, else 404."""
    action = db.session.get(CorrectiveAction, action_id)
    if action is None or not can_access_lab(actor, action.run.test_system.lab_id):
        raise NotFound("失控处理记录不存在或无权访问")
    return action


def _required(value: str | None, field: str, label: str, limit: int = MAX_NOTE) -> str:
    return clean_text(value, field, label, limit=limit)


def _record_fields(cause_category: str, texts: dict[str, str | None]) -> dict[str, str]:
    """Check every field of the record at once; raise one error naming all that are missing."""
    labels = {"description": "原因分析", "action_taken": "纠正措施", "rerun_result": "复测结果"}
    clean, errors = {}, {}
    if cause_category not in CAUSE_CATEGORIES:
        errors["cause_category"] = "请选择失控原因类别"
    for field, label in labels.items():
        try:
            clean[field] = _required(texts.get(field), field, label)
        except UserError as exc:
            errors[field] = exc.message
    if errors:
        first = next(iter(errors))
        raise UserError(errors[first], field=first, fields=errors)
    return clean


def complete_action(
    actor: User, action_id: int, *, cause_category: str, description: str, action_taken: str,
    rerun_result: str, patient_impact: str | None = None,
) -> CorrectiveAction:
    """Record cause, corrective action and re-run result; the record then awaits signature."""
    action = load_action(actor, action_id)
    if actor.role not in COMPLETERS:
        raise Forbidden("当前角色不能填写失控处理记录")
    if action.status == "signed":
        raise Conflict("该记录已签字，不能再修改")
    clean = _record_fields(cause_category, {"description": description,
                                            "action_taken": action_taken,
                                            "rerun_result": rerun_result})
    action.cause_category = cause_category
    action.description = clean["description"]
    action.action_taken = clean["action_taken"]
    action.rerun_result = clean["rerun_result"]
    action.patient_impact = clean_text(patient_impact, "patient_impact", "对患者结果的影响",
                                       limit=MAX_NOTE, required=False)
    action.status = "submitted"
    action.completed_by_id = actor.id
    action.completed_at = utcnow()
    db.session.flush()
    return action


def sign_action(
    actor: User, action_id: int, *, approve: bool, comment: str | None
) -> CorrectiveAction:
    """Sign off (approve) or send back (reject) a completed record; supervisors only."""
    action = load_action(actor, action_id)
    if actor.role not in SIGNERS:
        raise Forbidden("只有质控主管或科主任可以审核签字")
    if action.status != "submitted":
        raise Conflict("该记录尚未提交或已签字，不能审核")
    if approve:
        action.status = "signed"
        action.signed_by_id = actor.id
        action.signed_at = utcnow()
        action.sign_comment = clean_text(comment, "comment", "审核意见", limit=MAX_NOTE,
                                         required=False)
    else:
        action.status = "open"
        action.sign_comment = _required(comment, "comment", "退回原因")
    db.session.flush()
    return action
