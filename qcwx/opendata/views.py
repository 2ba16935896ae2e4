"""开放数据 pages of the centre: request an export, watch its progress, download; research keys.

Thin: parse the form, call one service inside ``form_post`` (commit or show the error at its
field), then enqueue the task after the commit; render. The status JSON feeds the page's
progress bar; downloads check scope like every object (404 outside it).
"""

from __future__ import annotations

from datetime import date, timedelta

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import login_required

from qcwx.errors import Forbidden
from qcwx.extensions import celery, db
from qcwx.opendata import queries, services
from qcwx.opendata.columns import COLUMNS
from qcwx.opendata.fhir import BASE, EXTENSIONS
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor, form_post

bp = Blueprint("opendata", __name__, url_prefix="/opendata")
TASK = "qcwx.opendata.build_export"


def _centre():
    actor = current_actor()
    if actor.role not in services.CENTRE_ROLES:
        raise Forbidden("只有区域质控中心或平台管理员可以使用开放数据")
    return actor


def _last_month(today: date) -> tuple[date, date]:
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def _page(errors=None, form=None, status=200, new_key=None):
    actor = _centre()
    start, end = _last_month(local_today())
    form = form or {"start": start.isoformat(), "end": end.isoformat()}
    return render_template("opendata/index.html", exports=queries.exports(actor),
                           keys=queries.research_keys(actor), errors=errors or {}, form=form,
                           new_key=new_key, columns=COLUMNS, extensions=EXTENSIONS,
                           ext_base=BASE, regions=_regions(actor)), status


def _regions(actor):
    if actor.role != "admin":
        return []
    from sqlalchemy import select

    from qcwx.extensions import db
    from qcwx.orgs.models import Region
    return list(db.session.scalars(select(Region).order_by(Region.name)))


@bp.get("/")
@login_required
def index():
    """The exports (newest first, with progress), the export form and research keys."""
    return _page()


@bp.post("/exports")
@login_required
def create_export():
    """Record an export and enqueue its task after the commit."""
    actor, form = _centre(), request.form
    done = form_post(lambda: services.request_export(
        actor, services.parse_day(form.get("start"), "start"),
        services.parse_day(form.get("end"), "end"), form.get("region_id")))
    if not done.ok:
        return _page(done.errors, form, done.status)
    celery.tasks[TASK].apply_async(args=[done.value.id], retry=False)
    return redirect(url_for("opendata.index", _anchor=f"export-{done.value.id}"))


@bp.get("/exports/<int:export_id>/status")
@login_required
def export_status(export_id: int):
    """Answer the progress of an export as JSON (polled by the page)."""
    row = queries.get_export(current_actor(), export_id)
    body = {"id": row.id, "status": row.status, "status_label": row.status_label,
            "percent": row.percent, "n_done": row.n_done, "n_total": row.n_total,
            "download_url": url_for("opendata.download", export_id=row.id)
            if row.status == "done" else None}
    return jsonify(body)


@bp.get("/exports/<int:export_id>/download")
@login_required
def download(export_id: int):
    """Send a finished export's zip."""
    row = queries.get_export(current_actor(), export_id)
    if row.status != "done" or not row.file_name:
        abort(404)
    path = services.export_dir() / row.file_name
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="application/zip", as_attachment=True,
                     download_name=row.file_name, max_age=0)


@bp.post("/keys")
@login_required
def create_key():
    """Issue a research API key; the page shows it once."""
    actor, form = _centre(), request.form
    done = form_post(lambda: services.create_research_key(actor, form.get("name", ""),
                                                          form.get("region_id")))
    if not done.ok:
        return _page(done.errors, form, done.status)
    current_app.logger.info("research key %s issued", done.value[0].prefix)
    return _page(new_key=done.value[1])


@bp.post("/keys/<int:key_id>/revoke")
@login_required
def revoke_key(key_id: int):
    """Revoke a research key; a key outside the actor's regions is a 404, like a missing one.

    (It used to go through ``form_post`` with the result ignored, so a refused revocation
    answered the same redirect as a done one.)
    """
    services.revoke_research_key(_centre(), key_id)
    db.session.commit()
    return redirect(url_for("opendata.index", _anchor="keys"))
