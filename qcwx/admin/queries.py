"""Reads for the admin pages (overview counts, catalogue proposals), limited to the actor."""

from __future__ import annotations

from typing import Any

from sqlalchemy import false, func, select, true

from qcwx.admin.scoping import scope_clause
from qcwx.catalog.models import Analyte, CatalogueProposal, Instrument, TestSystem
from qcwx.catalog.proposals import ProposableTable, ProposalField, proposable
from qcwx.errors import NotFound
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, User

COUNTED = {
    "hospitals": Hospital,
    "labs": Lab,
    "users": User,
    "instruments": Instrument,
    "test_systems": TestSystem,
}


def region_counts(actor: User) -> dict[str, int]:
    """Return how many hospitals, labs, users, instruments and test systems the actor maintains."""
    counts = {
        key: db.session.scalar(
            select(func.count()).select_from(model).where(scope_clause(actor, model))
        ) or 0
        for key, model in COUNTED.items()
    }
    counts["active_test_systems"] = db.session.scalar(
        select(func.count()).select_from(TestSystem)
        .where(scope_clause(actor, TestSystem), TestSystem.active.is_(True))
    ) or 0
    return counts


# ---------------------------------------------------------------------------- proposals

MAX_LISTED_PROPOSALS = 200


def _proposal_scope(actor: User) -> Any:
    if actor.role == "admin":
        return true()
    if actor.role == "center" and actor.region_id is not None:
        return CatalogueProposal.region_id == actor.region_id
    return false()


def proposals_for(actor: User) -> list[CatalogueProposal]:
    """Return the proposals the actor may see (a centre: its region's), pending first."""
    stmt = (select(CatalogueProposal).where(_proposal_scope(actor))
            .order_by((CatalogueProposal.status == "pending").desc(),
                      CatalogueProposal.created_at.desc(), CatalogueProposal.id.desc())
            .limit(MAX_LISTED_PROPOSALS))
    return list(db.session.scalars(stmt))


def proposal_for(actor: User, proposal_id: int) -> CatalogueProposal:
    """Return one proposal inside the actor's scope; anything else is ``NotFound``."""
    proposal = db.session.scalar(select(CatalogueProposal).where(
        CatalogueProposal.id == proposal_id, _proposal_scope(actor)))
    if proposal is None:
        raise NotFound("修改建议不存在")
    return proposal


def _shown(field: ProposalField, value: Any) -> str:
    if value is None or value == "":
        return "—"
    if field.kind == "bool":
        return "是" if value else "否"
    if field.kind == "analyte":
        analyte = db.session.get(Analyte, value)
        return str(analyte) if analyte is not None else f"#{value}（不存在）"
    return f"{value:g}" if isinstance(value, float) else str(value)


def proposal_lines(proposal: CatalogueProposal) -> tuple[Any, list[tuple[str, str, str]]]:
    """Return the row a proposal concerns (None for a new row) and its changed fields.

    Each line is (label, current value, proposed value) as text for the page.
    """
    table = proposable(proposal.table_name)
    row = db.session.get(table.model, proposal.row_id) if proposal.row_id else None
    lines = []
    for name, value in (proposal.proposed_values or {}).items():
        field = table.field(name)
        if field is None:
            continue
        now = _shown(field, getattr(row, name)) if row is not None else "—"
        lines.append((field.label, now, _shown(field, value)))
    return row, lines


def catalogue_row(table: ProposableTable, row_id: int | None) -> Any:
    """Return the shared row a proposal is about (None for a new row); ``NotFound`` if gone."""
    if row_id is None:
        return None
    row = db.session.get(table.model, row_id)
    if row is None:
        raise NotFound(f"该{table.label}不存在")
    return row


def analyte_choices() -> list[tuple[int, str]]:
    """Return (id, label) of every analyte, by code, for the proposal form."""
    return [(a.id, str(a)) for a in db.session.scalars(select(Analyte).order_by(Analyte.code))]
