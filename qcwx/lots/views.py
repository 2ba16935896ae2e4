"""统一批号 pages: the centre's lots, assignment and change-over status; the lab's change-over.

Thin: parse the form, call one service inside ``form_post`` (commit or show the error at its
field), render. Scope and roles are decided by the services and queries (``orgs.scopes``).
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required

from qcwx.errors import Forbidden, NotFound, UserError
from qcwx.lots import queries, services
from qcwx.orgs.scopes import CENTRE_READERS
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor, form_post

bp = Blueprint("lots", __name__, url_prefix="/lots")


def _date(text: str | None, field: str, default: date | None = None) -> date | None:
    if not (text or "").strip():
        return default
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"日期“{text}”格式无效，应为 YYYY-MM-DD", field=field) from None


def _centre_only(roles=services.CENTRE_ROLES):
    actor = current_actor()
    if actor.role not in roles:
        raise Forbidden()
    return actor


@bp.route("/")
@login_required
def index():
    """The centre's distributed lots; a lab's managers go to their change-over page."""
    actor = current_actor()
    if actor.role in {"supervisor", "director"}:
        return redirect(url_for("lots.lab"))
    _centre_only(CENTRE_READERS)
    lots = queries.distributed_lots(actor)
    visible = queries.visible_lab_ids(actor)  # a higher centre's lot: only this tree's labs
    return render_template("lots/index.html", lots=lots,
                           summaries={d.id: queries.summary(d, visible) for d in lots})


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new():
    """Register a lot for distribution (material, number, expiry, levels, maker targets)."""
    actor = _centre_only()
    errors, status, form = {}, 200, request.form
    if request.method == "POST":
        done = form_post(lambda: services.register_lot(
            actor, region_id=form.get("region_id"), material_id=form.get("material_id"),
            lot_number=form.get("lot_number", ""), expiry=_date(form.get("expiry"), "expiry"),
            levels=form.get("levels", ""), targets_text=form.get("targets", ""),
            note=form.get("note", "")))
        if done.ok:
            flash("统一批号质控品已登记")
            return redirect(url_for("lots.detail", lot_id=done.value.id))
        errors, status = done.errors, done.status
    return render_template("lots/new.html", form=form, errors=errors,
                           materials=queries.materials(),
                           regions=queries.regions_to_choose(actor)), status


@bp.route("/<int:lot_id>", methods=["GET", "POST"])
@login_required
def detail(lot_id: int):
    """One lot: levels, maker targets, assignment form and the change-over status table."""
    actor = _centre_only(CENTRE_READERS)  # the expert reads; its POST is refused upstream
    dlot = queries.get_distributed_lot(actor, lot_id)
    errors, status, form = {}, 200, request.form
    if request.method == "POST":
        done = form_post(lambda: services.assign_labs(
            actor, dlot.id, form.getlist("lab_ids"),
            _date(form.get("from_date"), "from_date", local_today())))
        if done.ok:
            flash(f"已分配给 {len(done.value)} 个实验室")
            return redirect(url_for("lots.detail", lot_id=dlot.id))
        errors, status = done.errors, done.status
    assigned = {a.lab_id for a in dlot.assignments}
    manages = queries.manages(actor, dlot)
    return render_template("lots/detail.html", dlot=dlot, manages=manages,
                           labs_status=queries.lab_statuses(dlot, queries.visible_lab_ids(actor)),
                           labs=[lab for lab in queries.assignable_labs(actor, dlot)
                                 if lab.id not in assigned] if manages else [],
                           errors=errors, today=local_today(), labels=queries.STATUS_LABELS
                           ), status


@bp.route("/lab")
@login_required
def lab():
    """A lab's assigned lots, its change-overs with parallel-run progress and the actions."""
    actor = current_actor()
    if actor.role not in services.LAB_MANAGERS:
        raise Forbidden()
    return _lab_page(actor, {}, 200)


def _lab_page(actor, errors: dict, status: int, focus: str | None = None):
    items = [(a, queries.status_rows(a.distributed_lot, {a.lab_id}))
             for a in queries.lab_assignments(actor)]
    return render_template("lots/lab.html", items=items, errors=errors, focus=focus,
                           form=request.form, today_of=queries.lab_today), status


@bp.route("/assignments/<int:assignment_id>/start", methods=["POST"])
@login_required
def start(assignment_id: int):
    """Start the parallel runs of one test system on the assigned lot."""
    actor = current_actor()
    form = request.form
    done = form_post(lambda: services.start_parallel_many(
        actor, assignment_id, form.getlist("old_test_system_id"),
        _date(form.get("parallel_start"), "parallel_start", _lab_day(actor, assignment_id))))
    if done.ok:
        flash(f"已开始 {len(done.value)} 个检测系统的平行检测：新批号的检测系统已启用，"
              "请每天同时录入新旧两个批号")
        return redirect(url_for("lots.lab"))
    return _error(actor, done, f"a{assignment_id}")


@bp.route("/changeovers/<int:changeover_id>/switch", methods=["POST"])
@login_required
def switch(changeover_id: int):
    """Confirm the switch: targets established from the parallel runs, switch date recorded."""
    actor = current_actor()
    done = form_post(lambda: services.confirm_switch(
        actor, changeover_id, _date(request.form.get("switch_date"), "switch_date",
                                    _changeover_day(actor, changeover_id))))
    if done.ok:
        flash(f"已切换到新批号（{done.value.switch_date.isoformat()}），新批号靶值已由平行检测结果确立")
        return redirect(url_for("lots.lab"))
    return _error(actor, done, f"c{changeover_id}")


def _error(actor, done, focus: str):
    if done.status in (403, 404):
        raise Forbidden() if done.status == 403 else NotFound()
    return _lab_page(actor, done.errors, done.status, focus)


def _lab_day(actor, assignment_id: int) -> date:
    return queries.lab_today(queries.get_assignment(actor, assignment_id).lab)


def _changeover_day(actor, changeover_id: int) -> date:
    return queries.lab_today(queries.get_changeover(actor, changeover_id).assignment.lab)
