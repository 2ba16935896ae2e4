"""Label pages: the scan landing ``/s/<token>``, the printable sheet, the photo decoder.

Views stay thin: parse, call one service (which checks scope), commit when something changed,
render. A label's landing needs a login like every page; anonymous scanners are sent to
``/login?next=/s/<token>`` by Flask-Login and come back to the same label.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required

from qcwx.errors import UserError
from qcwx.extensions import db, limiter
from qcwx.labels import services
from qcwx.timeutil import local_today
from qcwx.web.errors import wants_json
from qcwx.web.forms import current_actor
from qcwx.web.urls import base_url

bp = Blueprint("labels", __name__)

PER_PAGE = 20  # 4 × 5 labels on an A4 page (see static/css/labels.css)


def _entry_url(ts) -> str:
    return url_for("iqc.entry", ts_id=ts.id, channel="scan")


@bp.route("/s/<token>")
@login_required
def open_label(token: str):
    """Land a scanned label on its test system's entry page, marked as the scan channel."""
    try:
        ts = services.resolve_label(current_actor(), token)
    except services.LabelRevoked as exc:
        return render_template("labels/revoked.html", message=exc.message), exc.status
    return redirect(_entry_url(ts))


@bp.route("/labels")
@login_required
def index():
    """List the labs whose label sheets the actor may print; one lab goes straight to it."""
    labs = services.labs_for_labels(current_actor())
    if len(labs) == 1:
        return redirect(url_for("labels.sheet", lab_id=labs[0][0].id))
    return render_template("labels/index.html", labs=labs)


@bp.route("/labs/<int:lab_id>/labels")
@login_required
def sheet(lab_id: int):
    """Show the lab's A4 label sheet (one QR label per active test system), ready to print."""
    actor = current_actor()
    data = services.label_sheet(actor, lab_id)
    return render_template(
        "labels/sheet.html", sheet=data, per_page=PER_PAGE, printed_on=local_today(),
        can_regenerate=actor.role in services.REGENERATOR_ROLES)


@bp.route("/labels/ts/<int:ts_id>/qr.png")
@login_required
def qr_png(ts_id: int):
    """Download one label's code as a PNG for a label printer's own software."""
    ts = services.printable_test_system(current_actor(), ts_id)
    body = services.qr_png(services.label_url(ts))
    filename = f"qc-label-{ts.id}-v{ts.label_version}.png"
    return body, 200, {"Content-Type": "image/png",
                       "Content-Disposition": f'attachment; filename="{filename}"'}


@bp.route("/labels/ts/<int:ts_id>/regenerate", methods=["POST"])
@login_required
def regenerate(ts_id: int):
    """Void every printed copy of a test system's label and issue a new one."""
    ts = services.regenerate_label(current_actor(), ts_id)
    db.session.commit()
    flash(f"已作废“{ts.analyte.name}”的旧标签，请打印第 {ts.label_version} 版新标签")
    return redirect(url_for("labels.sheet", lab_id=ts.lab_id, _anchor=f"ts-{ts.id}"))


@bp.route("/scan")
@login_required
def scan():
    """Show the scan page: WeChat's scanner or a photo, with a plain upload form without JS."""
    return render_template("labels/scan.html", error=None)


@bp.route("/labels/decode", methods=["POST"])
@login_required
@limiter.limit("60 per minute")
def decode():
    """Decode a photo of a label on the server; JSON ``{url}`` for scripts, else a redirect."""
    upload = request.files.get("image")
    data = upload.read(services.MAX_PHOTO_BYTES + 1) if upload else b""
    origins = {services.origin_of(base_url()), services.origin_of(request.host_url)}
    try:
        ts = services.resolve_photo(current_actor(), data, origins)
    except UserError as exc:
        if wants_json():
            raise
        return render_template("labels/scan.html", error=exc.message), exc.status
    if wants_json():
        return jsonify({"url": _entry_url(ts)})
    return redirect(_entry_url(ts))
