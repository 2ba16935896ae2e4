"""Before/after page: two periods of one test system, one lab or the centre's region.

The scope is chosen by ``ts`` (a test system in the actor's scope), ``lab`` (a lab in scope)
or ``scope=region`` (centre and admin); without one, the actor's first lab (the centre: its
region). Out-of-scope objects answer 404, the region to anyone else 403.
"""

from __future__ import annotations

from flask import render_template, request
from flask_login import login_required

from qcwx.analytics import pages, periods
from qcwx.analytics.views import bp
from qcwx.iqc.validation import load_test_system
from qcwx.orgs import scopes
from qcwx.orgs.models import Lab
from qcwx.peer.filters import int_arg
from qcwx.peer.queries import labs_in_scope, load_lab, region_id_for
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor


def _scope(actor, today):
    """Return (scope, title, region id, systems, lab names) chosen by the query arguments."""
    ts_id, lab_id = int_arg(request.args, "ts", "检测系统"), int_arg(request.args, "lab", "实验室")
    if ts_id is not None:
        ts = load_test_system(actor, ts_id)
        title = f"{ts.analyte.name} · {ts.instrument.maker} {ts.instrument.model}"
        return "ts", title, ts.lab.hospital.region_id, [ts], {ts.lab_id: ts.lab.full_name}
    if request.args.get("scope") == "region" or (lab_id is None
                                                 and actor.role in scopes.CENTRE_READERS):
        scopes.require_role(actor, *scopes.CENTRE_READERS)
        region_id = region_id_for(actor)
        systems = pages.region_systems(region_id)
        tree_labs = {ts.lab_id for ts in systems}
        labs = {lab.id: lab.full_name for lab in labs_in_scope(actor) if lab.id in tree_labs}
        return "region", "全区", region_id, systems, labs
    lab: Lab | None = load_lab(actor, lab_id) if lab_id is not None else next(
        iter(labs_in_scope(actor)), None)
    if lab is None:
        return "lab", "", None, [], {}
    return "lab", lab.full_name, lab.hospital.region_id, pages.lab_systems(lab), {
        lab.id: lab.full_name}


@bp.get("/periods")
@login_required
def periods_view():
    """Show CV, bias, SDI, σ, pass rate and grade of two periods with the change."""
    actor = current_actor()
    today = local_today()
    before, after = periods.parse_spans(request.args, today)
    scope, title, region_id, systems, labs = _scope(actor, today)
    page = None
    if region_id is not None:
        page = pages.periods_page(scope, title, region_id, systems, before, after, labs)
    return render_template("analytics/periods.html", page=page, before=before, after=after,
                           scope=scope, args=request.args)
