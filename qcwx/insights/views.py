"""Pages of cause localisation (偏移溯源) and integrity signals (数据真实性); thin views."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import login_required

from qcwx.charts import render as render_chart
from qcwx.charts.shifts import shift_timeline
from qcwx.errors import UserError
from qcwx.insights import integrity, services
from qcwx.insights.models import CHANGE_KINDS
from qcwx.iqc.validation import load_test_system
from qcwx.orgs.scopes import require_centre_reader, require_role
from qcwx.peer import queries as peer_queries
from qcwx.peer.views import _int_arg
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor, form_post

bp = Blueprint("insights", __name__, url_prefix="/insights")

#: Who reads a test system's shift timeline; technicians enter QC, supervisors investigate.
TIMELINE_ROLES = ("supervisor", "director", "center", "admin")
CENTRE_ROLES = ("center", "admin")
RECORD_ROLES = ("supervisor", "admin")
SINCE_DAYS = (30, 60, 90)


def _choice(name: str, options: tuple[int, ...], label: str) -> int:
    value = _int_arg(request.args, name, label)
    if value is None:
        return options[0]
    if value not in options:
        raise UserError(f"{label}只能是 {'、'.join(map(str, options))} 天", field=name)
    return value


def _levels(dates, findings) -> list[float | None]:
    """Return each day's fitted segment level (the step drawn under the z points)."""
    out: list[float | None] = [None] * len(dates)
    for f in findings:
        start = dates.index(f.day)
        for i in range(start, min(len(dates), start + f.shift.n_after)):
            out[i] = f.shift.after
    return out


@bp.get("/ts/<int:ts_id>")
@login_required
def timeline(ts_id: int):
    """One test system's shifts, their likely cause and what changed: a supervisor's page."""
    actor = current_actor()
    require_role(actor, *TIMELINE_ROLES)
    ts = load_test_system(actor, ts_id)
    tl = services.timeline(actor, ts)
    chart = None
    if tl.dates:
        short = {"reagent_lot": "试剂", "calibrator_lot": "校准品", "calibration": "校准",
                 "maintenance": "维护", "limits": "靶值", "rules": "规则", "action": ""}
        changes = [(e.day, short.get(e.kind, "")) for e in tl.events if e.kind != "action"]
        chart = render_chart(shift_timeline(
            tl.dates, [float(v) for v in np.asarray(tl.z)], _levels(tl.dates, tl.findings),
            [f.day for f in tl.findings], changes, "shift-timeline", "每日平均 Z 值与偏移"))
    return render_template("insights/timeline.html", ts=ts, tl=tl, chart=chart,
                           kinds=CHANGE_KINDS, today=local_today(ts.lab.timezone),
                           can_record=actor.role in RECORD_ROLES, errors={}, form={})


@bp.post("/ts/<int:ts_id>/changes")
@login_required
def record_change(ts_id: int):
    """Record a dated lot change, calibration or maintenance of the test system."""
    actor = current_actor()
    require_role(actor, *RECORD_ROLES)
    ts = load_test_system(actor, ts_id)
    done = form_post(lambda: services.record_change(actor, ts, request.form))
    if done.ok:
        return redirect(url_for("insights.timeline", ts_id=ts.id, saved=1))
    tl = services.timeline(actor, ts)
    return render_template("insights/timeline.html", ts=ts, tl=tl, chart=None,
                           kinds=CHANGE_KINDS, today=local_today(ts.lab.timezone),
                           can_record=True, errors=done.errors, form=request.form), done.status


@bp.get("/shifts")
@login_required
def shifts():
    """The region's recent shifts with their likely causes, shared lots first (centre)."""
    actor = current_actor()
    require_role(actor, *CENTRE_ROLES)
    region_id = peer_queries.region_id_for(actor, _int_arg(request.args, "region", "区域"))
    days = _choice("days", SINCE_DAYS, "时间范围")
    today = local_today()
    findings = services.region_findings(actor, region_id, today.fromordinal(
        today.toordinal() - days + 1))
    shared: dict[tuple, list] = {}
    for f in findings:
        if f.cause.scope == "shared":
            shared.setdefault((f.cause.lot_kind, f.cause.lot, f.shift.direction), []).append(f)
    local = [f for f in findings if f.cause.scope == "local"]
    return render_template("insights/shifts.html", shared=shared, local=local, days=days,
                           choices=SINCE_DAYS, lot_labels=services.LOT_KIND_LABELS)


@bp.get("/integrity")
@login_required
def integrity_page():
    """Series unlikely to be real daily measurements, strongest signal first (centre, expert)."""
    actor = current_actor()
    # integrity signals name labs that may be fabricating: the centre and its experts only
    require_centre_reader(actor, "只有区域质控中心和专家可以查看数据真实性信号")
    region_id = peer_queries.region_id_for(actor, _int_arg(request.args, "region", "区域"))
    days = _choice("days", integrity.WINDOWS, "时间范围")
    rows = integrity.report(actor, region_id, local_today(), days)
    return render_template("insights/integrity.html", rows=rows, days=days,
                           choices=integrity.WINDOWS, titles=integrity.TITLES)
