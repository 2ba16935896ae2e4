"""IQC pages: entry and verdict, run detail and correction, charts, actions, limits, rules.

Views parse input, check access (through the services' scope checks), call one service or
query, commit, render. A ``UserError`` re-renders the form with the message at its field.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required

from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc import actions as action_service
from qcwx.iqc import queries, services, targets
from qcwx.iqc.models import CAUSE_CATEGORIES, QcRun
from qcwx.iqc.reports import lj_charts, monthly_summary
from qcwx.iqc.validation import EntryRunSubmission, check_submitter
from qcwx.numbers import ascii_int
from qcwx.qcstats import westgard
from qcwx.timeutil import local_today
from qcwx.web.apischema import parse
from qcwx.web.contention import retry_on_contention
from qcwx.web.forms import current_actor, form_post
from qcwx.web.inputs import has_lone_surrogate

bp = Blueprint("iqc", __name__)
RECENT_RUNS = 5  # runs listed under the entry form


def _parse_date(text: str | None, field: str, default: date | None = None) -> date:
    if not text:
        if default is None:
            raise UserError("请填写日期", field=field)
        return default
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"日期“{text}”格式无效，应为 YYYY-MM-DD", field=field) from None
    return services.check_plausible_date(day, field)


def _phone_channel() -> str:
    """Return the channel of the phone entry routes: ``scan`` when landed from a QR label.

    The channel is the route's, never the client's: the phone form can only ever be "h5"
    or "scan" (the label landing adds ``?channel=scan``), so it can never record itself as
    the lab interface or the mini-program.
    """
    return "scan" if request.args.get("channel") == "scan" else "h5"


def _values_from_form(form) -> dict[str, str]:
    return {key[len("level_"):]: val for key, val in form.items() if key.startswith("level_")}


@bp.route("/ts/<int:ts_id>", methods=["GET", "POST"])
@login_required
@retry_on_contention
def entry(ts_id: int):
    """Show today's entry form for one test system; a POST submits and shows the verdict."""
    actor = current_actor()
    ts = services.load_test_system(actor, ts_id)
    today = local_today(ts.lab.timezone)
    errors: dict[str, str] = {}
    status = 200
    verdict = None
    form = request.form
    if request.method == "POST":
        done = form_post(lambda: services.submit_run(
            actor, test_system_id=ts.id,
            run_date=_parse_date(form.get("run_date"), "run_date", today),
            run_no=form.get("run_no"), values=_values_from_form(form),
            client_id=form.get("client_id"), channel=_phone_channel()))
        if done.ok:
            return redirect(url_for("iqc.run", run_id=done.value.run_id, new=1))
        errors, status = done.errors, done.status
    limits = targets.limits_in_force(ts, today)
    return render_template(
        "iqc/entry.html", ts=ts, today=today, limits=limits, errors=errors, form=form,
        channel=_phone_channel(),
        client_id=form.get("client_id") or uuid.uuid4().hex, verdict=verdict,
        next_run_no=services.next_run_no(ts, today), recent=queries.run_history(ts, RECENT_RUNS),
    ), status


@bp.route("/api/ts/<int:ts_id>/runs", methods=["POST"])
@login_required
@retry_on_contention
def submit_json(ts_id: int):
    """Submit a run as JSON from the entry page (CSRF token in X-CSRFToken); returns the verdict."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or has_lone_surrogate(body):
        raise UserError("请求内容必须是有效的 JSON 对象", field="body")
    actor = current_actor()
    ts = services.load_test_system(actor, ts_id)  # scope, then role, then the body's fields
    check_submitter(actor)
    data = parse(EntryRunSubmission, body)
    verdict = services.submit_run(
        actor, test_system_id=ts.id, run_date=data.run_date or local_today(ts.lab.timezone),
        run_no=data.run_no, values=data.level_texts(), client_id=data.client_id,
        channel=_phone_channel(), date_given=data.run_date is not None)
    # Rendered inside the transaction, which already holds the new run: after the commit
    # the user and the test system would be read again (issue 14: 2 of 17 statements). A
    # failing commit still answers an error, never this body.
    body = verdict.to_dict() | {
        "html": render_template("iqc/_verdict.html", verdict=verdict, ts=ts),
        "recent_html": render_template("iqc/_recent.html", ts=ts,
                                       recent=queries.run_history(ts, RECENT_RUNS)),
        "url": url_for("iqc.run", run_id=verdict.run_id)}
    db.session.commit()
    return jsonify(body), (200 if verdict.duplicate else 201)


@bp.route("/runs/<int:run_id>")
@login_required
def run(run_id: int):
    """Show one run's verdict, its values and the fired rules explained."""
    actor = current_actor()
    run_obj = db.session.get(QcRun, run_id)
    if run_obj is None:
        abort(404)
    services.load_test_system(actor, run_obj.test_system_id)
    verdict = services.verdict_for(run_obj)
    results = sorted(run_obj.results, key=lambda r: (r.level.level_index, r.version))
    return render_template("iqc/run.html", run=run_obj, ts=run_obj.test_system, verdict=verdict,
                           results=results, new=request.args.get("new"))


@bp.route("/results/<int:result_id>/correct", methods=["POST"])
@login_required
@retry_on_contention
def correct(result_id: int):
    """Store a correction as a new version and re-evaluate."""
    verdict = services.correct_result(current_actor(), result_id, request.form.get("value", ""),
                                      request.form.get("reason", ""))
    db.session.commit()
    flash("已保存更正并重新判断")
    return redirect(url_for("iqc.run", run_id=verdict.run_id))


def _days_arg() -> int:
    """Return the chart's ``days`` (default 60, 1–3660: ten years is the longest period)."""
    raw = request.args.get("days")
    if raw in (None, ""):
        return 60
    days = ascii_int(raw, 1, 3660)
    if days is None:
        raise UserError("天数应为 1–3660 的整数", field="days")
    return days


@bp.route("/ts/<int:ts_id>/chart")
@login_required
def chart(ts_id: int):
    """Levey–Jennings per level, Z-score and Youden charts for a period."""
    ts = services.load_test_system(current_actor(), ts_id)
    today = local_today(ts.lab.timezone)
    days = _days_arg()
    end = _parse_date(request.args.get("end"), "end", today)
    start = _parse_date(request.args.get("start"), "start", end - timedelta(days=days - 1))
    charts = lj_charts(ts, start, end)
    return render_template("iqc/chart.html", ts=ts, charts=charts, start=start, end=end,
                           days=days)


@bp.route("/ts/<int:ts_id>/summary")
@login_required
def summary(ts_id: int):
    """Monthly and cumulative IQC summary per level (QC_SPEC §2)."""
    ts = services.load_test_system(current_actor(), ts_id)
    month = request.args.get("month") or local_today(ts.lab.timezone).strftime("%Y-%m")
    table = monthly_summary(ts, month)
    return render_template("iqc/summary.html", ts=ts, month=month, table=table)


@bp.route("/ts/<int:ts_id>/limits", methods=["GET", "POST"])
@login_required
@retry_on_contention
def limits(ts_id: int):
    """Show limit versions; supervisors set fixed targets or establish them from data."""
    actor = current_actor()
    ts = services.load_test_system(actor, ts_id)
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        done = form_post(lambda: _save_limit(actor, ts, request.form))
        if done.ok:
            saved = done.value
            flash(f"靶值已保存（新版本）：{saved.reason}" if saved.kind == "established"
                  else "靶值已保存（新版本）")
            return redirect(url_for("iqc.limits", ts_id=ts.id))
        errors, status = done.errors, done.status
    return render_template("iqc/limits.html", ts=ts, history=targets.limit_history(ts),
                           in_force=targets.limits_in_force(ts), errors=errors,
                           form=request.form, today=local_today(ts.lab.timezone),
                           kinds=targets.LIMIT_KINDS, basis=targets.limit_basis(ts)), status


def _save_limit(actor, ts, form):
    """Store the limit the form asks for (fixed, or established from the stored results)."""
    level = next((lv for lv in ts.levels if str(lv.id) == form.get("qc_level_id")), None)
    if level is None:
        raise UserError("请选择水平", field="qc_level_id")
    effective = _parse_date(form.get("effective_from"), "effective_from",
                            local_today(ts.lab.timezone))
    reason = form.get("reason", "")
    mode = form.get("mode", "fixed")
    if mode == "fixed":
        mean = services.parse_value(form.get("target_mean"), "target_mean")
        sd = services.parse_value(form.get("target_sd"), "target_sd")
        saved = targets.set_control_limit(actor, ts, level, mean=mean, sd=sd, kind="fixed",
                                          effective_from=effective, reason=reason)
    else:
        saved = targets.establish_limits(actor, ts, level, mode=mode, effective_from=effective,
                                         reason=reason)
    return saved  # the targets service re-judged the stored runs the limit applies to


@bp.route("/ts/<int:ts_id>/rules", methods=["GET", "POST"])
@login_required
@retry_on_contention
def rules(ts_id: int):
    """Rule-set page: each rule off / warning / reject, defaults by number of levels."""
    actor = current_actor()
    ts = services.load_test_system(actor, ts_id)
    errors: dict[str, str] = {}
    status = 200
    current = targets.current_rule_set(ts)
    if request.method == "POST":
        proposed = {code: request.form.get(f"rule_{code}", "off") for code in westgard.RULE_CODES}
        if request.form.get("preset") == "default":
            proposed = westgard.default_rule_set(len(ts.levels))
        done = form_post(lambda: targets.set_rule_set(actor, ts, proposed,
                                                      request.form.get("reason", "")))
        if done.ok:
            flash("质控规则已保存（新版本）")
            return redirect(url_for("iqc.rules", ts_id=ts.id))
        errors, status, current = done.errors, done.status, proposed
    return render_template("iqc/rules.html", ts=ts, current=current, errors=errors,
                           info=westgard.RULE_INFO, codes=westgard.RULE_CODES,
                           default=westgard.default_rule_set(len(ts.levels))), status


@bp.route("/actions")
@login_required
def actions():
    """Open and awaiting-signature out-of-control records in scope."""
    actor = current_actor()
    status = request.args.get("status")
    statuses = (status,) if status in action_service.ACTION_STATUS else ("open", "submitted")
    return render_template("iqc/actions.html", items=queries.open_actions(actor, statuses),
                           status=status, labels=action_service.ACTION_STATUS)


@bp.route("/actions/<int:action_id>", methods=["GET", "POST"])
@login_required
@retry_on_contention
def action(action_id: int):
    """Fill in (technician) or sign off (supervisor) one out-of-control record."""
    actor = current_actor()
    record = action_service.load_action(actor, action_id)
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        done = form_post(lambda: _act(actor, record.id, request.form))
        if done.ok:
            flash(done.value)
            return redirect(url_for("iqc.action", action_id=record.id))
        errors, status = done.errors, done.status
        record = action_service.load_action(actor, action_id)
    verdict = services.verdict_for(record.run)
    return render_template("iqc/action.html", a=record, ts=record.run.test_system,
                           verdict=verdict, errors=errors,
                           form=request.form, causes=CAUSE_CATEGORIES,
                           labels=action_service.ACTION_STATUS,
                           can_sign=actor.role in action_service.SIGNERS,
                           can_complete=actor.role in action_service.COMPLETERS), status


@bp.get("/actions/<int:action_id>.pdf")
@login_required
def action_pdf(action_id: int):
    """The record as a PDF for the lab's ISO 15189 file (printed like the reports)."""
    from qcwx.reports import exports
    from qcwx.reports.record import build_record

    record = action_service.load_action(current_actor(), action_id)
    return exports.download(build_record(record), "pdf")


def _act(actor, action_id: int, form) -> str:
    """Sign off or complete one out-of-control record; return the message to flash."""
    if form.get("step") == "sign":
        action_service.sign_action(actor, action_id, approve=form.get("approve") == "1",
                                   comment=form.get("comment"))
        return "已审核签字" if form.get("approve") == "1" else "已退回"
    action_service.complete_action(
        actor, action_id, cause_category=form.get("cause_category", ""),
        description=form.get("description"), action_taken=form.get("action_taken"),
        rerun_result=form.get("rerun_result"), patient_impact=form.get("patient_impact"))
    return "已提交，等待质控主管审核"
