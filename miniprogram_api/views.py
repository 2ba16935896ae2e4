"""The mini-program's endpoints under ``/api/mp/v1``: JSON in, JSON out, JWT, CSRF-exempt.

Views are thin: parse and validate the body (Chinese messages naming the field), check the
token, call one service or query (whose scope checks answer 404 outside the user's labs),
commit, shape the answer. The OpenAPI document of these routes is ``openapi.json``.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from miniprogram_api import presenters, schemas
from miniprogram_api import services as mp_services
from miniprogram_api.auth import current_mp_user, issue_token, mp_login_required
from miniprogram_api.openapi import openapi_document
from qcwx.alerts import queries as alert_queries
from qcwx.alerts import services as alert_services
from qcwx.alerts.channels import mp_template_id
from qcwx.extensions import csrf, db
from qcwx.iqc import services as iqc_services
from qcwx.iqc.validation import check_submitter
from qcwx.timeutil import local_today
from qcwx.web.apischema import parse, parse_field
from qcwx.web.contention import retry_on_contention
from qcwx.wechat import miniprogram as mp_identity

bp = Blueprint("mp", __name__, url_prefix="/api/mp/v1")
csrf.exempt(bp)


def _session_answer(user, status: int = 200):
    return jsonify(issue_token(user) | {"user": presenters.user(user)}), status


# ---------------------------------------------------------------- identity
@bp.post("/login")
def login():
    """Exchange a ``wx.login`` code for a JWT; 403 with ``bind_required`` for a new openid."""
    openid = mp_identity.openid_from_code(schemas.body(schemas.LoginRequest).code)
    user = mp_identity.user_for_mp_openid(openid)
    if user is None:
        return jsonify({"error": "该微信尚未绑定账号", "field": "code", "bind_required": True,
                        "openid_hint": f"{openid[:4]}…{openid[-4:]}"}), 403
    return _session_answer(user)


@bp.post("/bind")
def bind():
    """Bind this mini-program openid to the account of an invite code; returns a JWT."""
    data = schemas.body(schemas.BindRequest)
    user = mp_identity.bind_mp_openid(data.invite_code, mp_identity.openid_from_code(data.code))
    db.session.commit()
    return _session_answer(user)


@bp.get("/me")
@mp_login_required
def me():
    """Return the logged-in user."""
    return jsonify({"user": presenters.user(current_mp_user())})


# ---------------------------------------------------------------- QC
@bp.post("/scan")
@mp_login_required
def scan():
    """Resolve a scanned label (URL or token) to its test system and today's context."""
    payload = schemas.body(schemas.ScanRequest).payload
    ts = mp_services.resolve_scan(current_mp_user(), payload, request.host_url)
    return jsonify({"test_system": presenters.scan_context(ts, local_today(ts.lab.timezone))})


def _preload_run(user_id: int):
    """The bearer's user and the body's test system in one read (a submission's first two)."""
    raw = request.get_json(silent=True)
    return iqc_services.preload_submission(
        user_id, raw.get("test_system_id") if isinstance(raw, dict) else None)


@bp.post("/runs")
@mp_login_required(preload=_preload_run)
@retry_on_contention
def submit_run():
    """Submit one run (channel ``mp``); 201 stored, 200 when ``client_id`` was seen before."""
    raw = schemas.json_object()
    actor = current_mp_user()
    # Scope, then role, then the rest of the body: another lab's test system is a 404 and a
    # role that may not submit a 403, whatever else the body holds.
    ts_id = parse_field(schemas.RunSubmission, raw, "test_system_id")
    ts = iqc_services.load_test_system(actor, ts_id)
    check_submitter(actor)
    data = parse(schemas.RunSubmission, raw)
    verdict = iqc_services.submit_run(
        actor, test_system_id=ts.id, run_no=data.run_no,
        run_date=data.run_date or local_today(ts.lab.timezone),
        values=data.level_texts(), client_id=data.client_id, channel="mp",
        date_given=data.run_date is not None)
    db.session.commit()
    return jsonify(verdict.to_dict()), (200 if verdict.duplicate else 201)


@bp.get("/test-systems/<int:ts_id>/runs")
@mp_login_required
def runs(ts_id: int):
    """Return the latest runs of a test system with their verdicts (``limit`` 1–100)."""
    limit = schemas.int_arg("limit", "条数 limit", 30, 1, 100)
    ts = iqc_services.load_test_system(current_mp_user(), ts_id)
    return jsonify({"test_system_id": ts.id, "runs": presenters.run_history(ts, limit)})


@bp.get("/test-systems/<int:ts_id>/chart-data")
@mp_login_required
def chart_data(ts_id: int):
    """Return Levey–Jennings series per level for the last ``days`` days (1–366)."""
    days = schemas.int_arg("days", "天数 days", 30, 1, 366)
    ts = iqc_services.load_test_system(current_mp_user(), ts_id)
    return jsonify(presenters.chart_data(ts, local_today(ts.lab.timezone), days))


# ---------------------------------------------------------------- alerts
@bp.get("/alerts")
@mp_login_required
def alerts():
    """Return the alerts of the user's labs, newest first, with their read state."""
    limit = schemas.int_arg("limit", "条数 limit", 50, 1, 200)
    rows = alert_queries.lab_alerts(current_mp_user(), limit)
    names = alert_queries.acked_by_names(rows)
    return jsonify({"alerts": [presenters.alert(o, names) for o in rows]})


@bp.post("/alerts/<int:alert_id>/ack")
@mp_login_required
def ack(alert_id: int):
    """Mark an alert as read (the first reader and time are kept)."""
    outbox = alert_services.acknowledge(current_mp_user(), alert_id)
    db.session.commit()
    names = alert_queries.acked_by_names([outbox])
    return jsonify({"alert": presenters.alert(outbox, names)})


@bp.post("/subscriptions")
@mp_login_required
def subscriptions():
    """Record the answers of ``wx.requestSubscribeMessage`` (each accept = one message)."""
    results = schemas.subscription_results(schemas.body(schemas.SubscriptionRequest))
    answer = alert_services.record_consents(current_mp_user(), results, [mp_template_id()])
    db.session.commit()
    return jsonify(answer)


# ---------------------------------------------------------------- document
@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI 3.1 document of this API."""
    return jsonify(openapi_document())
