"""Home page (role-aware) and the health endpoint."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, render_template
from flask_login import current_user, login_required
from sqlalchemy import text

from qcwx import __version__
from qcwx.alerts import queries as alert_queries
from qcwx.audit.services import reset_actor, set_actor
from qcwx.extensions import db
from qcwx.iqc import queries as iqc_queries
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor

log = logging.getLogger(__name__)
bp = Blueprint("web", __name__)
DB_DOWN_RETRY_AFTER = 5  # seconds; the same hint the OperationalError handler gives


@bp.before_app_request
def _record_actor() -> None:
    g.audit_token = set_actor(current_user.id if current_user.is_authenticated else None)


@bp.teardown_app_request
def _forget_actor(_exc) -> None:
    token = g.pop("audit_token", None)
    if token is not None:
        reset_actor(token)


@bp.route("/")
@login_required
def home():
    """Show the role's own home: lab board, hospital/region overview, admin links."""
    today = local_today()
    user = current_actor()
    context = {"today": today}
    if user.role in ("technician", "supervisor"):
        context["board"] = iqc_queries.today_board(user, today)
        context["actions"] = iqc_queries.open_actions(user)
    else:
        context["overview"] = iqc_queries.overview(user, today)
        context["actions"] = iqc_queries.open_actions(user, ("submitted",))
        context["unreachable"] = alert_queries.unreachable_labs(user)
        if user.role == "director":
            context["board"] = iqc_queries.today_board(user, today)
    context["unbound"] = user.role == "supervisor" and not user.wechat_openid
    return render_template(f"home/{user.role}.html", **context)


def _broker_status() -> str:
    url = current_app.config["REDIS_URL"]
    if not url:
        return "eager"
    import redis

    from qcwx.wechat.token import redis_client

    try:
        # One pooled connection per process: a new one per answer cost ~2.5 ms of CPU
        # (redis-py reads its package metadata per connection), two thirds of an answer
        # under load (issue 14); the pool reconnects after an outage.
        redis_client(url, timeout=1).ping()
        return "ok"
    except redis.RedisError:
        return "down"


@bp.route("/favicon.ico")
def favicon():
    """Serve the icon browsers ask for by default."""
    return current_app.send_static_file("favicon.svg"), 200, {"Content-Type": "image/svg+xml"}


@bp.route("/healthz")
def healthz():
    """Answer the service's health: 200 when the database answers, 503 otherwise."""
    body = {"status": "ok", "database": "ok", "broker": _broker_status(), "version": __version__}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any DB failure means unhealthy
        log.warning("health check: database unreachable: %s", exc)
        db.session.rollback()
        body.update(status="error", database="down")
        # Like every other 503 here: a load balancer or uploader knows when to ask again.
        return jsonify(body), 503, {"Retry-After": str(DB_DOWN_RETRY_AFTER)}
    return jsonify(body)
