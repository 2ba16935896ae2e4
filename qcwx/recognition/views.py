"""Pages of mutual recognition: the region's thresholds, the list, overrides, the export.

Views parse arguments, check role and scope (:mod:`qcwx.recognition.services` and
:mod:`qcwx.orgs.scopes`), call one service or query, commit after a write and render.
"""

from __future__ import annotations

import io

from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for
from flask_login import login_required

from qcwx.errors import Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs.scopes import CENTRE_READERS
from qcwx.peer.filters import int_arg
from qcwx.qcstats.recognition import VERDICTS
from qcwx.recognition import queries, services
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor

bp = Blueprint("recognition", __name__, url_prefix="/recognition")


def _region_arg(args) -> int | None:
    return int_arg(args, "region", "区域")


# ------------------------------------------------------------------ thresholds


def _criteria_page(region_id: int, form=None, errors=None, status: int = 200):
    from qcwx.orgs.models import Region

    current = services.criteria_for_region(region_id)
    return render_template(
        "recognition/criteria.html", region=db.session.get(Region, region_id), current=current,
        defaults=services.DEFAULTS, versions=services.history(region_id),
        fields=services.NUMBER_FIELDS, window_range=services.WINDOW_RANGE, form=form,
        errors=errors or {}), status


@bp.get("/criteria")
@login_required
def criteria():
    """互认评价阈值: the thresholds in force, the form to change them, every version."""
    region_id = services.centre_region(current_actor(), _region_arg(request.args))
    return _criteria_page(region_id)


@bp.post("/criteria")
@login_required
def save_criteria():
    """Store a new version of the region's thresholds (the old ones stay in the history)."""
    actor = current_actor()
    region_id = services.centre_region(actor, _region_arg(request.form))
    try:
        row = services.save_criteria(actor, region_id, request.form)
    except UserError as exc:
        db.session.rollback()
        return _criteria_page(region_id, request.form, {exc.field or "form": exc.message},
                              exc.status)
    db.session.commit()
    flash(f"已保存第 {row.version} 版互认评价阈值")
    return redirect(url_for("recognition.criteria", region=region_id
                            if actor.role == "admin" else None))


# ------------------------------------------------------------------ the list


def _month(args) -> str:
    from qcwx.reports.queries import parse_month

    return parse_month(args.get("month"), local_today())


def _list(args):
    actor = current_actor()
    region_id = queries.region_for(actor, _region_arg(args))
    return queries.recognition_list(actor, region_id, _month(args), local_today(),
                                    queries.parse_filters(args), queries.page_args(args))


@bp.get("/")
@login_required
def index():
    """互认名单: per lab × analyte the §7 criteria, the verdict, overrides and gaps."""
    from qcwx.orgs.models import HOSPITAL_LEVELS, Region
    from qcwx.reports.queries import month_choices
    from qcwx.reports.recognition_list import criteria_text, window_text

    lst = _list(request.args)
    return render_template(
        "recognition/list.html", lst=lst, region=db.session.get(Region, lst.region_id),
        levels=HOSPITAL_LEVELS, verdicts=VERDICTS, sorts=queries.SORTS,
        months=month_choices(local_today()), window_text=window_text(lst.window),
        criteria_text=criteria_text(lst.criteria),
        is_centre=current_actor().role in services.CENTRE_ROLES,
        history=services.override_history([r.lab.id for r in lst.rows], lst.month)
        if current_actor().role in CENTRE_READERS else [])  # experts read the audit trail


@bp.get("/list.xlsx")
@login_required
def export():
    """The filtered list (every page) as Excel: numbers as numbers, one row per lab × item."""
    from qcwx.orgs.models import Region
    from qcwx.reports.excel import report_xlsx
    from qcwx.reports.exports import XLSX_MIME, filename
    from qcwx.reports.recognition_list import list_report

    lst = _list(request.args)
    report = list_report(lst, db.session.get(Region, lst.region_id).name)
    return send_file(io.BytesIO(report_xlsx(report)), mimetype=XLSX_MIME, as_attachment=True,
                     download_name=filename(report, "xlsx"), max_age=0)


def _back(form):
    keep = {k: form.get(k) for k in ("month", "region", "level", "analyte", "verdict", "sort",
                                     "page") if form.get(k)}
    return redirect(url_for("recognition.index", **keep))


@bp.post("/overrides")
@login_required
def override():
    """Override one row's verdict with a written reason (the computed one stays visible)."""
    from qcwx.orgs.models import Lab

    actor = current_actor()
    if actor.role not in services.CENTRE_ROLES:
        raise Forbidden("只有区域质控中心可以改判互认结论")
    form = request.form
    lab_id = int_arg(form, "lab", "实验室")
    analyte_id = int_arg(form, "analyte_id", "项目")
    if lab_id is None or analyte_id is None:
        raise UserError("请指定实验室和项目", field="lab")
    lab = db.session.get(Lab, lab_id)
    if lab is None:
        raise NotFound()
    month = _month(form)
    computed = queries.computed_verdict(actor, lab, analyte_id, month, local_today())
    row = services.override(actor, lab, analyte_id, month, computed, form.get("verdict"),
                            form.get("reason"))
    db.session.commit()
    flash(f"已改判：{lab.full_name} {row.computed_verdict} → {row.verdict}")
    return _back(form)


@bp.post("/overrides/<int:override_id>/withdraw")
@login_required
def withdraw(override_id: int):
    """Withdraw an override with a reason: the computed verdict applies again."""
    services.withdraw(current_actor(), override_id, request.form.get("withdraw_reason"))
    db.session.commit()
    flash("已撤回改判，恢复计算结论")
    return _back(request.form)
