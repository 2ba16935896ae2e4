"""Admin pages of catalogue proposals: a centre proposes, the platform admin accepts or rejects.

Endpoints (``catalogue_proposals.*``): ``index`` lists the proposals the user may see, ``new``
shows and stores a proposal for a new row (``?table=analyte``) or a change of one
(``?table=analyte&id=5``), ``detail`` shows one with its changes, ``decide`` (platform admin
only, POST) accepts or rejects it.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose

from qcwx.admin import queries
from qcwx.admin.views import AccessMixin
from qcwx.catalog.proposals import (
    PROPOSABLE,
    ProposableTable,
    ProposalInvalid,
    accept_proposal,
    create_proposal,
    current_values,
    proposable,
    reject_proposal,
)
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.numbers import parse_id
from qcwx.web.forms import current_actor

log = logging.getLogger(__name__)

LIST_TEMPLATE = "admin/proposals.html"
FORM_TEMPLATE = "admin/proposal_form.html"
DETAIL_TEMPLATE = "admin/proposal_detail.html"


def _int_arg(name: str) -> int | None:
    raw = (request.values.get(name) or "").strip()
    if not raw:
        return None
    ident = parse_id(raw)
    if ident is None:
        abort(404)
    return ident


def _form_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "y" if value else ""
    return f"{value:g}" if isinstance(value, float) else str(value)


class CatalogueProposalsView(AccessMixin, BaseView):
    """Proposals of changes to the shared catalogue."""

    @expose("/")
    def index(self) -> Any:
        """List the proposals the user may see, pending first, with the tables to propose for."""
        actor = current_actor()
        return self.render(LIST_TEMPLATE, proposals=queries.proposals_for(actor),
                           tables=PROPOSABLE.values(), is_admin=actor.role == "admin",
                           labels={t.table: t.label for t in PROPOSABLE.values()})

    def _form(self, table: ProposableTable, row: Any, texts: dict[str, str], *,
              status: int = 200, error: str | None = None,
              errors: dict[str, str] | None = None, reason: str = "") -> Any:
        page = self.render(FORM_TEMPLATE, table=table, row=row, texts=texts, error=error,
                           errors=errors or {}, reason=reason,
                           analytes=queries.analyte_choices())
        return page, status

    @expose("/new", methods=("GET", "POST"))
    def new(self) -> Any:
        """Show the proposal form (current values filled in); on POST store the proposal."""
        try:
            table = proposable(request.values.get("table", ""))
            row_id = _int_arg("id")
            row = queries.catalogue_row(table, row_id)
        except UserError as exc:
            abort(exc.status)
        if request.method == "GET":
            texts = {k: _form_text(v) for k, v in current_values(table, row).items()}
            return self._form(table, row, texts)
        texts = {f.name: request.form.get(f.name, "") for f in table.fields}
        reason = request.form.get("reason", "")
        try:
            proposal = create_proposal(current_actor(), table.table, row_id, request.form, reason)
            db.session.commit()
        except ProposalInvalid as exc:
            db.session.rollback()
            return self._form(table, row, texts, status=400, error=exc.message,
                              errors=dict(reversed(exc.problems)), reason=reason)
        except UserError as exc:
            db.session.rollback()
            return self._form(table, row, texts, status=exc.status, error=exc.message,
                              reason=reason)
        flash("修改建议已提交，等待平台管理员审核", "success")
        return redirect(url_for(".detail", proposal_id=proposal.id))

    def _detail(self, proposal_id: int, *, status: int = 200, error: str | None = None) -> Any:
        actor = current_actor()
        try:
            proposal = queries.proposal_for(actor, proposal_id)
        except UserError as exc:
            abort(exc.status)
        row, lines = queries.proposal_lines(proposal)
        page = self.render(DETAIL_TEMPLATE, proposal=proposal, row=row, lines=lines,
                           table=proposable(proposal.table_name), error=error,
                           is_admin=actor.role == "admin")
        return page, status

    @expose("/<int:proposal_id>")
    def detail(self, proposal_id: int) -> Any:
        """Show one proposal: who, why, what changes (current → proposed), the decision."""
        return self._detail(proposal_id)

    @expose("/<int:proposal_id>/decide", methods=("POST",))
    def decide(self, proposal_id: int) -> Any:
        """Accept (apply, checked) or reject a pending proposal; platform admins only."""
        actor = current_actor()
        if actor.role != "admin":
            abort(403)
        decision, note = request.form.get("decision"), request.form.get("note")
        if decision not in ("accept", "reject"):
            return self._detail(proposal_id, status=400, error="请选择采纳或不采纳")
        try:
            if decision == "accept":
                accept_proposal(actor, proposal_id, note)
            else:
                reject_proposal(actor, proposal_id, note)
            db.session.commit()
        except UserError as exc:
            db.session.rollback()
            return self._detail(proposal_id, status=exc.status, error=exc.message)
        flash("已采纳并应用该修改建议" if decision == "accept" else "已不采纳该修改建议", "success")
        return redirect(url_for(".detail", proposal_id=proposal_id))
