"""Instrument comparison pages: the list with the two ways to run one, and a saved one.

Thin: scope comes from the services (test systems and labs through the scoped loaders, 404
outside scope); running is for supervisors and above (403 for technicians).
"""

from __future__ import annotations

from datetime import timedelta

from flask import redirect, render_template, request, url_for
from flask_login import login_required

from qcwx import charts
from qcwx.analytics import comparison
from qcwx.analytics import comparison_services as cs
from qcwx.analytics.periods import parse_date
from qcwx.analytics.views import bp
from qcwx.catalog.models import Analyte
from qcwx.charts import comparison as comparison_charts
from qcwx.extensions import db
from qcwx.iqc.targets import TARGET_EDITORS
from qcwx.peer.queries import labs_in_scope
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor, form_post

DEFAULT_DAYS = 90


def _run(actor, form, files):
    settings = cs.settings_from(form)
    if form.get("source") == "upload":
        upload = files.get("file")
        return cs.run_from_file(actor, form.get("lab_id"), form.get("analyte_id"),
                                upload.read() if upload else b"", settings,
                                form.get("x_label"), form.get("y_label"))
    today = local_today()
    end = parse_date(form.get("end"), "end", today)
    start = parse_date(form.get("start"), "start", end - timedelta(days=DEFAULT_DAYS - 1))
    return cs.run_from_qc(actor, form.get("x_ts"), form.get("y_ts"), start, end, settings)


def _list_context(actor, form=None, errors=None) -> dict:
    today = local_today()
    return {"items": cs.comparisons_in_scope(actor), "systems": cs.comparable_systems(actor),
            "labs": labs_in_scope(actor),
            "analytes": list(db.session.scalars(db.select(Analyte).order_by(Analyte.code))),
            "can_run": actor.role in TARGET_EDITORS, "form": form or {}, "errors": errors or {},
            "default_start": today - timedelta(days=DEFAULT_DAYS - 1), "default_end": today}


@bp.route("/comparisons", methods=["GET", "POST"])
@login_required
def comparisons():
    """List saved comparisons; a POST runs one from QC results or an uploaded file."""
    actor = current_actor()
    if request.method == "POST":
        done = form_post(lambda: _run(actor, request.form, request.files))
        if done.ok:
            return redirect(url_for("analytics.comparison_detail", comparison_id=done.value.id))
        return render_template("analytics/comparisons.html",
                               **_list_context(actor, request.form, done.errors)), done.status
    return render_template("analytics/comparisons.html", **_list_context(actor))


def comparison_view(row):
    """Return (analysis, scatter, difference plot) of a saved comparison, recomputed."""
    result = comparison.analyse(row.pairs, row.error_ratio, row.allowable_bias,
                                row.decision_levels)
    dec = row.analyte.decimals
    scatter = comparison_charts.comparison_scatter(
        row.pairs, [("Passing–Bablok", result.pb.slope, result.pb.intercept),
                    ("Deming", result.deming.slope, result.deming.intercept)],
        chart_id=f"an-cmp{row.id}-scatter", title="散点图与回归线", x_name=f"X {row.x_label}",
        y_name=f"Y {row.y_label}", decimals=dec)
    diff = comparison_charts.bland_altman(
        row.pairs, result.bland_altman.mean_diff, result.bland_altman.loa,
        chart_id=f"an-cmp{row.id}-ba", title="差值图（Bland–Altman）", decimals=dec)
    return result, scatter, diff


@bp.get("/comparisons/<int:comparison_id>")
@login_required
def comparison_detail(comparison_id: int):
    """Show a saved comparison: regressions, r, bias at decision levels, acceptance, plots."""
    row = cs.load_comparison(current_actor(), comparison_id)
    result, scatter, diff = comparison_view(row)
    return render_template("analytics/comparison.html", c=row, r=result,
                           scatter=charts.render(scatter), diff=charts.render(diff))
