"""Correct a stored QC result: a new version with who, when and why, then a re-judge.

A correction never overwrites: the old value stays as a non-current version (QC records are
evidence), and every run from the corrected one on is judged again as from scratch
(:func:`qcwx.iqc.evaluation.evaluate_from`), so later verdicts that depended on the wrong
value change with it. Split from :mod:`qcwx.iqc.services` (which re-exports it), whose
one write path stores new runs.
"""

from __future__ import annotations

from qcwx.errors import Conflict, Forbidden, NotFound
from qcwx.extensions import db
from qcwx.iqc.evaluation import RunVerdict, evaluate_from, verdict_for
from qcwx.iqc.models import QcResult
from qcwx.iqc.validation import (
    MAX_REASON,
    SUBMITTER_ROLES,
    check_plausible,
    clean_text,
    parse_value,
)
from qcwx.orgs.models import User
from qcwx.orgs.scopes import can_access_lab


def correct_result(actor: User, result_id: int, value_text: str, reason: str) -> RunVerdict:
    """Store a corrected value as a new version (who/when/why) and re-evaluate from its run."""
    old = db.session.get(QcResult, result_id)
    if old is None or not can_access_lab(actor, old.run.test_system.lab_id):
        raise NotFound("结果不存在或无权访问", field="result_id")
    if actor.role not in SUBMITTER_ROLES:
        raise Forbidden("当前角色不能更正质控结果")
    if not old.is_current:
        raise Conflict("该结果已被更正，请在最新版本上操作", field="result_id")
    reason = clean_text(reason, "reason", "更正原因", limit=MAX_REASON)
    ts = old.run.test_system
    value = parse_value(value_text, "value")
    check_plausible(ts, value, "value")
    old.is_current = False
    new = QcResult(run_id=old.run_id, qc_level_id=old.qc_level_id, version=old.version + 1,
                   is_current=True, value_text=str(value_text).strip(), value=value,
                   measured_at=old.measured_at, entered_by_id=actor.id, reason=reason)
    db.session.add(new)
    db.session.flush()
    evaluate_from(ts, old.run, notify=True, actor=actor)
    return verdict_for(old.run)
