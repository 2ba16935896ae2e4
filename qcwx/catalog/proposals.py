"""Proposed changes to the shared catalogue: a centre proposes, the platform admin decides.

A centre may not change rows every region shares (analytes, quality specifications, reagents,
calibrators, QC materials, methods); it proposes a new row or new values for an existing one,
with a reason. The platform admin accepts — the values are applied through the same checks as
the admin forms (``qcwx.catalog.validation`` and the flush check) — or rejects. Both steps are
ordinary ORM writes, so the audit log records them. Services flush, never commit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from qcwx.catalog.models import (
    Analyte,
    Calibrator,
    CatalogueProposal,
    Method,
    QcMaterial,
    QualitySpec,
    Reagent,
)
from qcwx.catalog.validation import Problems, problems_for
from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.numbers import INT32_MAX, ascii_int, parse_id
from qcwx.orgs.models import User
from qcwx.timeutil import utcnow

log = logging.getLogger(__name__)

__all__ = [
    "PROPOSABLE",
    "ProposableTable",
    "ProposalField",
    "ProposalInvalid",
    "accept_proposal",
    "create_proposal",
    "current_values",
    "proposable",
    "reject_proposal",
]

PROPOSER_ROLES = ("admin", "center")
MAX_TEXT = 500


@dataclass(frozen=True)
class ProposalField:
    """One column a proposal may set: its Chinese label, kind, whether required, max length."""

    name: str
    label: str
    kind: str = "text"  # text · int · float · bool · analyte
    required: bool = False
    max_len: int = 0


@dataclass(frozen=True)
class ProposableTable:
    """A shared table a centre may propose rows or changes for."""

    table: str
    label: str
    model: type
    fields: tuple[ProposalField, ...]

    def field(self, name: str) -> ProposalField | None:
        """Return the field called ``name`` (None when the table has no such field)."""
        return next((f for f in self.fields if f.name == name), None)


F = ProposalField
_MAKER_NAME = (F("maker", "厂家", required=True, max_len=64),
               F("name", "名称", required=True, max_len=100))
PROPOSABLE: dict[str, ProposableTable] = {t.table: t for t in (
    ProposableTable("analyte", "检验项目", Analyte, (
        F("code", "项目代码", required=True, max_len=32),
        F("name", "项目名称", required=True, max_len=64),
        F("unit", "单位", required=True, max_len=32),
        F("decimals", "小数位数", "int", required=True),
        F("discipline", "专业", required=True, max_len=16),
        F("plausible_low", "合理下限", "float"),
        F("plausible_high", "合理上限", "float"),
    )),
    ProposableTable("quality_spec", "质量规范", QualitySpec, (
        F("analyte_id", "检验项目", "analyte", required=True),
        F("spec_set", "规范集", required=True, max_len=32),
        F("allowable_cv", "允许CV(%)", "float"),
        F("allowable_bias", "允许偏倚(%)", "float"),
        F("tea_pct", "TEa(%)", "float"),
        F("tea_abs", "TEa绝对值", "float"),
        F("tea_abs_unit", "TEa绝对值单位", max_len=32),
        F("tea_threshold", "绝对值适用上限", "float"),
        F("source", "来源", required=True, max_len=100),
        F("version", "版本", "int", required=True),
        F("active", "启用", "bool"),
    )),
    ProposableTable("reagent", "试剂", Reagent, _MAKER_NAME),
    ProposableTable("calibrator", "校准品", Calibrator, _MAKER_NAME),
    ProposableTable("qc_material", "质控品", QcMaterial, _MAKER_NAME),
    ProposableTable("method", "方法学", Method, (
        F("code", "方法编码", required=True, max_len=32),
        F("name", "方法名称", required=True, max_len=64),
        F("principle", "原理", max_len=64),
    )),
)}


class ProposalInvalid(UserError):
    """Proposed values that fail the checks; ``problems`` holds (field, message) pairs."""

    def __init__(self, problems: Problems):
        super().__init__("；".join(message for _, message in problems), field=problems[0][0])
        self.problems = problems


def proposable(table: str) -> ProposableTable:
    """Return the proposable table called ``table``; refuse any other name."""
    found = PROPOSABLE.get(table or "")
    if found is None:
        raise UserError("该目录不支持提交修改建议", field="table")
    return found


def current_values(table: ProposableTable, row: Any) -> dict[str, Any]:
    """Return the values the proposal form shows for ``row`` (a new row: the defaults)."""
    if row is None:
        return {"decimals": 2, "discipline": "生化", "version": 1, "active": True}
    return {f.name: getattr(row, f.name) for f in table.fields}


# ---------------------------------------------------------------------------- parsing


def _parse(field: ProposalField, raw: Any) -> Any:
    """Return the typed value of one submitted cell; raise ValueError with a Chinese message."""
    if field.kind == "bool":
        return str(raw or "").strip().lower() in ("y", "1", "true", "on")
    text = str(raw if raw is not None else "").strip()
    if not text:
        if field.required:
            raise ValueError(f"“{field.label}”不能为空")
        return None
    if field.kind == "analyte":  # an id: 10**30 would overflow SQLite's INTEGER
        value = parse_id(text)
        if value is None:
            raise ValueError("所选检验项目不存在")
        return value
    if field.kind == "int":
        value = ascii_int(text, -INT32_MAX - 1, INT32_MAX)  # the column is a 32-bit INTEGER
        if value is None:
            raise ValueError(f"“{field.label}”须为整数")
        return value
    if field.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"“{field.label}”须为数值") from None
    if field.max_len and len(text) > field.max_len:
        raise ValueError(f"“{field.label}”不能超过 {field.max_len} 个字符")
    return text


def parse_values(table: ProposableTable, raw: Mapping[str, Any]) -> tuple[dict, Problems]:
    """Return the typed values of a submitted proposal form and the problems found."""
    values: dict[str, Any] = {}
    problems: Problems = []
    for field in table.fields:
        try:
            values[field.name] = _parse(field, raw.get(field.name))
        except ValueError as exc:
            problems.append((field.name, str(exc)))
    return values, problems


def check_values(table: ProposableTable, values: Mapping[str, Any]) -> Problems:
    """Return the problems of a complete set of row values (references and numbers)."""
    problems: Problems = []
    analyte_id = values.get("analyte_id")
    if table.field("analyte_id") and analyte_id is not None \
            and db.session.get(Analyte, analyte_id) is None:
        problems.append(("analyte_id", "所选检验项目不存在"))
    return problems + problems_for(table.table, values)


# ---------------------------------------------------------------------------- services


def create_proposal(actor: User, table_name: str, row_id: int | None,
                    raw: Mapping[str, Any], reason: str | None) -> CatalogueProposal:
    """Store a pending proposal for a new row (``row_id`` None) or a change of one row."""
    if actor.role not in PROPOSER_ROLES:
        raise Forbidden()
    table = proposable(table_name)
    row = _row(table, row_id) if row_id is not None else None
    values, problems = parse_values(table, raw)
    current = current_values(table, row) if row is not None else {}
    if not problems:
        problems = check_values(table, {**current, **values})
    reason = (reason or "").strip()
    if not reason:
        problems.append(("reason", "请填写修改理由"))
    elif len(reason) > MAX_TEXT:
        problems.append(("reason", f"修改理由不能超过 {MAX_TEXT} 个字符"))
    if problems:
        raise ProposalInvalid(problems)
    if row is not None:
        values = {k: v for k, v in values.items() if v != current.get(k)}
        if not values:
            raise UserError("建议的内容与现有记录相同，未提出任何修改")
    proposal = CatalogueProposal(
        table_name=table.table, action="update" if row is not None else "create",
        row_id=row.id if row is not None else None, proposed_values=values, reason=reason,
        status="pending", region_id=actor.region_id, proposed_by_id=actor.id)
    db.session.add(proposal)
    db.session.flush()
    log.info("catalogue proposal %s by user %s: %s %s", proposal.id, actor.id, proposal.action,
             table.table)
    return proposal


def accept_proposal(actor: User, proposal_id: int, note: str | None = None) -> CatalogueProposal:
    """Apply a pending proposal through the catalogue checks and mark it accepted."""
    note = _note(note)
    proposal = _pending(actor, proposal_id)
    table = proposable(proposal.table_name)
    savepoint = db.session.begin_nested()
    try:
        row = _apply(table, proposal)
        db.session.flush()
    except IntegrityError:
        savepoint.rollback()
        log.warning("proposal %s clashed with stored data", proposal_id, exc_info=True)
        raise Conflict("采纳失败：与已有数据冲突（编码或名称重复）") from None
    except UserError:
        savepoint.rollback()
        raise
    savepoint.commit()
    return _decide(actor, proposal, "accepted", note, row_id=row.id)


def reject_proposal(actor: User, proposal_id: int, note: str | None = None) -> CatalogueProposal:
    """Mark a pending proposal rejected; the catalogue stays as it is."""
    note = _note(note)
    return _decide(actor, _pending(actor, proposal_id), "rejected", note)


def _note(note: str | None) -> str | None:
    note = (note or "").strip()
    if len(note) > MAX_TEXT:
        raise UserError(f"审核意见不能超过 {MAX_TEXT} 个字符", field="note")
    return note or None


def _row(table: ProposableTable, row_id: int) -> Any:
    row = db.session.get(table.model, row_id)
    if row is None:
        raise NotFound(f"该{table.label}不存在", field="id")
    return row


def _pending(actor: User, proposal_id: int) -> CatalogueProposal:
    if actor.role != "admin":
        raise Forbidden("只有平台管理员可以审核修改建议")
    proposal = db.session.get(CatalogueProposal, proposal_id)
    if proposal is None:
        raise NotFound("修改建议不存在")
    if proposal.status != "pending":
        raise Conflict("该修改建议已处理")
    return proposal


def _apply(table: ProposableTable, proposal: CatalogueProposal) -> Any:
    values = {k: v for k, v in (proposal.proposed_values or {}).items() if table.field(k)}
    if proposal.action == "update":
        row = db.session.get(table.model, proposal.row_id)
        if row is None:
            raise Conflict(f"原{table.label}已被删除，无法采纳")
        merged = {**current_values(table, row), **values}
    else:
        row, merged = None, values
    problems = check_values(table, merged)
    if problems:
        raise ProposalInvalid(problems)
    if row is None:
        row = table.model(**values)
        db.session.add(row)
    for name, value in values.items():
        setattr(row, name, value)
    return row


def _decide(actor: User, proposal: CatalogueProposal, status: str, note: str | None,
            row_id: int | None = None) -> CatalogueProposal:
    proposal.status, proposal.decided_by_id, proposal.decided_at = status, actor.id, utcnow()
    proposal.decision_note = note
    if row_id is not None:
        proposal.row_id = row_id
    db.session.flush()
    log.info("catalogue proposal %s %s by user %s", proposal.id, status, actor.id)
    return proposal
