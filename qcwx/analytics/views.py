"""Analytics pages: sigma and QC design (test system, lab, region) and the advisor's apply.

Thin: parse the period and basis, check scope (test systems and labs through the scoped
loaders, 404 outside scope; the region page is the centre's), call one page function, render.
Before/after and instrument comparison live in :mod:`.views_periods` and
:mod:`.views_comparison` on the same blueprint.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from qcwx.analytics import design, pages
from qcwx.analytics.sigma import BASES, SIGMA_BANDS, check_basis
from qcwx.iqc.targets import TARGET_EDITORS
from qcwx.iqc.validation import load_test_system
from qcwx.orgs import scopes
from qcwx.peer.filters import PERIOD_KINDS, parse_period
from qcwx.peer.queries import labs_in_scope, load_lab, region_id_for
from qcwx.qcstats.westgard import RULE_CODES
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor, form_post

bp = Blueprint("analytics", __name__, url_prefix="/analytics")
DEFAULT_PERIOD = "cum"  # QC design looks at the lot's whole history unless told otherwise


def _period(today):
    return parse_period(request.args, today, default=DEFAULT_PERIOD)


def _common(period, basis=None) -> dict:
    return {"period": period, "basis": basis, "bases": BASES, "period_kinds": PERIOD_KINDS,
            "bands": SIGMA_BANDS, "codes": RULE_CODES}


@bp.get("/sigma/ts/<int:ts_id>")
@login_required
def sigma_system(ts_id: int):
    """Show one test system's TE, σ and MU per level, and the sigma-rules advice."""
    ts = load_test_system(current_actor(), ts_id)
    today = local_today(ts.lab.timezone)
    period, basis = _period(today), check_basis(request.args.get("basis"))
    page = pages.system_page(ts, period, basis, today)
    return render_template("analytics/sigma_system.html", ts=ts, page=page,
                           can_apply=current_actor().role in TARGET_EDITORS,
                           **_common(period, basis))


@bp.post("/sigma/ts/<int:ts_id>/apply")
@login_required
def sigma_apply(ts_id: int):
    """Adopt the advised rule set as a new rule-set version (supervisor and above)."""
    actor = current_actor()
    ts = load_test_system(actor, ts_id)
    today = local_today(ts.lab.timezone)
    period, basis = parse_period(request.form, today, DEFAULT_PERIOD), check_basis(
        request.form.get("basis"))
    page = pages.system_page(ts, period, basis, today)  # once: σ reads the peer statistics
    done = form_post(lambda: design.apply_advice(actor, ts, page.advice,
                                                 request.form.get("expected")))
    if not done.ok:
        return render_template("analytics/sigma_system.html", ts=ts, page=page,
                               errors=done.errors, can_apply=actor.role in TARGET_EDITORS,
                               **_common(period, basis)), done.status
    flash(f"已采用西格玛规则（规则第 {done.value.version} 版）：{done.value.reason}")
    return redirect(url_for("iqc.rules", ts_id=ts.id))


@bp.get("/sigma/lab")
@bp.get("/sigma/lab/<int:lab_id>")
@login_required
def sigma_lab(lab_id: int | None = None):
    """Show a lab's σ of every test system × level and its normalised decision chart."""
    actor = current_actor()
    if lab_id is None:
        labs = labs_in_scope(actor)
        if not labs:
            return render_template("analytics/sigma_lab.html", page=None, labs=[],
                                   **_common(_period(local_today())))
        lab = labs[0]
    else:
        lab = load_lab(actor, lab_id)
    today = local_today(lab.timezone)
    period, basis = _period(today), check_basis(request.args.get("basis"))
    return render_template("analytics/sigma_lab.html", page=pages.lab_page(lab, period, basis,
                                                                          today),
                           labs=labs_in_scope(actor), **_common(period, basis))


@bp.get("/sigma/region")
@login_required
def sigma_region():
    """Show the σ distribution across the region (the centre, admin and the expert group)."""
    actor = current_actor()
    scopes.require_role(actor, *scopes.CENTRE_READERS)
    region_id = region_id_for(actor)
    period = _period(local_today())
    total, per_analyte, chart = pages.region_page(region_id, period)
    return render_template("analytics/sigma_region.html", total=total, rows=per_analyte,
                           chart=chart, **_common(period))


from qcwx.analytics import views_comparison, views_periods  # noqa: E402,F401  (routes here)
