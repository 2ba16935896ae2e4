"""The centre's page of alert messages that did not arrive, with a retry button.

A dead WeChat message is a supervisor who never heard about an out-of-control run, so the
regional centre sees every failed delivery in its region with WeChat's reason (not
following the account, quota, network) and can send it again once the cause is fixed.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import login_required

from qcwx.alerts import queries, services
from qcwx.extensions import db
from qcwx.orgs.scopes import require_role
from qcwx.web.forms import current_actor

bp = Blueprint("alerts", __name__)

CENTRE_ROLES = ("center", "admin")


@bp.route("/alerts/failed")
@login_required
def failed():
    """List failed and dead deliveries of the actor's region, newest first."""
    actor = current_actor()
    require_role(actor, *CENTRE_ROLES)
    return render_template("alerts/failed.html", items=queries.failed_deliveries(actor),
                           unreachable=queries.unreachable_labs(actor))


@bp.route("/alerts/deliveries/<int:delivery_id>/retry", methods=["POST"])
@login_required
def retry(delivery_id: int):
    """Queue a failed or dead delivery again; it is sent right after this commit."""
    services.retry_delivery(current_actor(), delivery_id)
    db.session.commit()
    flash("已重新发送")
    return redirect(url_for("alerts.failed"))
