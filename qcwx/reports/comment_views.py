"""Routes of expert comments and the lab's reply (registered on the reports blueprint).

Thin: parse the form, call :mod:`qcwx.reports.comments`, commit, go back to the report.
"""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_login import login_required

from qcwx.extensions import db
from qcwx.orgs.scopes import read_only_allowed
from qcwx.reports import comments
from qcwx.reports.views import bp
from qcwx.web.forms import current_actor


def _back(comment_or_item) -> str:
    item = getattr(comment_or_item, "published", comment_or_item)
    return url_for("reports.report", lab_id=item.lab_id, kind="evaluation",
                   month=item.period) + "#expert-comments"


@bp.post("/reports/published/<int:published_id>/comments")
@read_only_allowed  # the expert changes no data: the comment is its own row beside the report
@login_required
def add_comment(published_id: int):
    """An expert comments on a published evaluation report; the lab is notified."""
    comment = comments.add_comment(current_actor(), published_id, request.form.get("body"))
    db.session.commit()
    flash("点评已发布，已通知该实验室的科主任和质控主管")
    return redirect(_back(comment))


@bp.post("/reports/comments/<int:comment_id>/reply")
@login_required
def reply(comment_id: int):
    """The lab's supervisor or director replies once to a comment."""
    comment = comments.add_reply(current_actor(), comment_id, request.form.get("reply"))
    db.session.commit()
    flash("回复已提交")
    return redirect(_back(comment))
