"""Pages for bringing QC in from files and for the lab interface's keys and mappings.

Upload flow: choose a file → PREVIEW (every row parsed, mapped, validated and judged in a
rolled-back savepoint; nothing kept) → COMMIT (the same file, re-read from the server-side
stash by its SHA-256, stored in one transaction) → result with counts and verdicts. Views
stay thin: parse the form, check access through the services, call one service, commit,
render. A ``UserError`` re-renders the page with the message at its field.
"""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required

from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.ingest import (
    apikeys,
    mapping_admin,
    queries,
    schemas,
    services,
    template_csv,
    template_xlsx,
    uploads,
)
from qcwx.ingest.formats import tabular
from qcwx.web.forms import current_actor, form_post

bp = Blueprint("ingest", __name__, url_prefix="/ingest")

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
PREVIEW_ROWS = 300
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@bp.before_request
def _cap_body() -> None:
    """Refuse oversized uploads (413 in Chinese) before reading them."""
    request.max_content_length = int(current_app.config.get("INGEST_UPLOAD_MAX_BYTES",
                                                            DEFAULT_MAX_BYTES))


def _columns_from_form(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise UserError("列映射数据无效，请重新选择", field="columns") from None
    if not isinstance(value, dict):
        raise UserError("列映射数据无效，请重新选择", field="columns")
    return uploads.clean_columns(value) if value else None  # {}: automatic header aliases


# ---------------------------------------------------------------- templates
@bp.get("/template.csv")
@login_required
def template_csv_file():
    """Download the CSV template (UTF-8 with BOM, so Excel shows the Chinese headers)."""
    return Response(template_csv(), mimetype="text/csv", headers={
        "Content-Disposition": "attachment; filename*=UTF-8''%E8%B4%A8%E6%8E%A7%E5%AF%BC%E5%85%A5"
                               "%E6%A8%A1%E6%9D%BF.csv"})


@bp.get("/template.xlsx")
@login_required
def template_xlsx_file():
    """Download the XLSX template with an instructions sheet."""
    return Response(template_xlsx(), mimetype=XLSX_MIME, headers={
        "Content-Disposition": "attachment; filename*=UTF-8''%E8%B4%A8%E6%8E%A7%E5%AF%BC%E5%85%A5"
                               "%E6%A8%A1%E6%9D%BF.xlsx"})


# ---------------------------------------------------------------- upload → preview → commit
def _upload_page(actor, lab, errors=None, status=200):
    return render_template(
        "ingest/upload.html", lab=lab, labs=queries.uploadable_labs(actor),
        saved=uploads.column_mappings(actor, lab.id), errors=errors or {},
        batches=queries.recent_batches(actor, 10)), status


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    """Show the upload form; a POST keeps the file and shows its preview."""
    actor = current_actor()
    lab = queries.check_uploader(actor, request.values.get("lab_id"))
    if request.method == "GET":
        return _upload_page(actor, lab)
    try:
        file = request.files.get("file")
        if file is None or not file.filename:
            raise UserError("请选择要上传的文件", field="file")
        columns = None
        if request.form.get("mapping_id"):
            saved = uploads.get_column_mapping(actor, request.form["mapping_id"])
            if saved.lab_id != lab.id:
                raise UserError("该列映射不属于所选实验室", field="mapping_id")
            columns = saved.columns
        data = file.read()
        digest = uploads.stash_upload(actor, data, file.filename)
    except UserError as exc:
        return _upload_page(actor, lab, {exc.field or "form": exc.message}, exc.status)
    return _preview(actor, lab, digest, data, file.filename, columns)


def _preview(actor, lab, digest, data, filename, columns):
    try:
        report = services.preview_file(actor, lab, data, columns)
    except UserError as exc:
        if exc.field == "file" and _has_headers(data):  # let the user pick the columns
            return redirect(url_for("ingest.columns", digest=digest, lab_id=lab.id,
                                    error=exc.message))
        return _upload_page(actor, lab, {exc.field or "form": exc.message}, exc.status)
    db.session.rollback()  # a preview keeps nothing
    return render_template("ingest/preview.html", lab=lab, report=report, digest=digest,
                           filename=filename, columns=columns, rows=PREVIEW_ROWS,
                           columns_json=json.dumps(columns or {}, ensure_ascii=False),
                           labels=schemas.PREVIEW_LABEL)


def _has_headers(data: bytes) -> bool:
    try:
        return len(uploads.file_headers(data)) >= 2
    except UserError:
        return False


def _save_columns(actor, lab, name: str, chosen: dict) -> dict:
    """Validate the chosen columns and, when named, save them for next time; return them."""
    clean = uploads.clean_columns(chosen)
    if name:
        uploads.save_column_mapping(actor, lab, name, clean)
    return clean


@bp.route("/upload/<digest>/columns", methods=["GET", "POST"])
@login_required
def columns(digest: str):
    """Choose which column of the file holds each field; optionally save it for next time."""
    actor = current_actor()
    lab = queries.check_uploader(actor, request.values.get("lab_id"))
    data, filename = uploads.load_upload(actor, digest)
    headers = uploads.file_headers(data)
    errors: dict[str, str] = {}
    chosen = uploads.guess_columns(headers)
    status = 200
    if request.method == "POST":
        chosen = {t: request.form.get(f"col_{t}", "") for t in tabular.FIELDS}
        name = request.form.get("mapping_name", "").strip()
        result = form_post(lambda: _save_columns(actor, lab, name, chosen))
        if result.ok:
            if name:
                flash(f"已保存列映射“{name}”，下次上传可直接选用")
            return _preview(actor, lab, digest, data, filename, result.value)
        errors, status = result.errors, result.status
    elif request.args.get("error"):
        errors["form"] = request.args["error"][:300]
    return render_template("ingest/columns.html", lab=lab, digest=digest, filename=filename,
                           headers=headers, fields=tabular.FIELDS, chosen=chosen,
                           errors=errors, form=request.form), status


@bp.post("/upload/<digest>/commit")
@login_required
def commit(digest: str):
    """Store the previewed file's valid rows in one transaction and show the result."""
    actor = current_actor()
    lab = queries.check_uploader(actor, request.form.get("lab_id"))
    data, filename = uploads.load_upload(actor, digest)
    report = services.commit_file(actor, lab, data, filename=filename, channel="upload",
                                  columns=_columns_from_form(request.form.get("columns")))
    db.session.commit()
    return render_template("ingest/result.html", lab=lab, report=report, filename=filename,
                           rows=PREVIEW_ROWS, labels=schemas.STATUS_LABEL)


@bp.get("/batches")
@login_required
def batches():
    """List recent upload and interface batches of the labs in scope."""
    return render_template("ingest/batches.html",
                           batches=queries.recent_batches(current_actor(), 100))


@bp.post("/columns/<int:mapping_id>/delete")
@login_required
def delete_columns(mapping_id: int):
    """Delete a saved column mapping."""
    lab_id = uploads.delete_column_mapping(current_actor(), mapping_id)
    db.session.commit()
    flash("已删除列映射")
    return redirect(url_for("ingest.upload", lab_id=lab_id))


# ---------------------------------------------------------------- code, level, instrument mappings
def _mapping_lab(actor):
    labs = queries.uploadable_labs(actor) if actor.role != "center" else apikeys.key_labs(actor)
    if not labs:
        raise UserError("当前角色无权查看映射", field="lab_id", status=403)
    wanted = request.values.get("lab_id") or actor.lab_id or labs[0].id
    lab = next((lab for lab in labs if str(lab.id) == str(wanted)), None)
    if lab is None:
        raise UserError("实验室不存在或无权访问", field="lab_id", status=404)
    return lab, labs


def _save_mapping(actor, lab, form) -> str:
    """Apply one mapping form (by its ``kind``); return the flash message."""
    kind = form.get("kind")
    if kind == "level":
        mapping_admin.add_level_mapping(actor, lab.id, form.get("source_level"),
                                        form.get("level_index"))
    elif kind == "instrument":
        mapping_admin.add_instrument_mapping(actor, lab.id, form.get("source_instrument"),
                                             form.get("instrument_id"))
    elif kind == "qc_pattern":
        mapping_admin.set_qc_sample_pattern(actor, lab.id, form.get("qc_sample_id_pattern"))
        return "已保存质控样本号规则"
    else:
        mapping_admin.add_test_code_mapping(actor, lab.id, form.get("source_code"),
                                            form.get("test_system_id"),
                                            form.get("qc_lot_number"))
    return "已添加映射"


@bp.route("/mappings", methods=["GET", "POST"])
@login_required
def mappings():
    """Show and edit a lab's code, level and instrument mappings and its QC sample-id rule."""
    actor = current_actor()
    lab, labs = _mapping_lab(actor)
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        result = form_post(lambda: _save_mapping(actor, lab, request.form))
        if result.ok:
            flash(result.value)
            return redirect(url_for("ingest.mappings", lab_id=lab.id))
        errors, status = result.errors, result.status
    return render_template(
        "ingest/mappings.html", lab=lab, labs=labs, errors=errors, form=request.form,
        codes=mapping_admin.test_code_mappings(actor, lab.id),
        levels=mapping_admin.level_mappings(actor, lab.id),
        instruments=mapping_admin.instrument_mappings(actor, lab.id),
        lab_instruments=list(mapping_admin.lab_instruments(lab.id)),
        qc_pattern=mapping_admin.qc_sample_pattern(actor, lab.id),
        systems=list(mapping_admin.lab_systems(lab.id)),
        can_edit=actor.role in mapping_admin.MAPPING_ROLES), status


_DELETERS = {"level": mapping_admin.delete_level_mapping,
             "code": mapping_admin.delete_test_code_mapping,
             "instrument": mapping_admin.delete_instrument_mapping}


@bp.post("/mappings/<kind>/<int:mapping_id>/delete")
@login_required
def delete_mapping(kind: str, mapping_id: int):
    """Delete one test code, level or instrument mapping."""
    deleter = _DELETERS.get(kind)
    if deleter is None:
        raise UserError("映射类型无效", field="kind", status=404)
    deleter(current_actor(), mapping_id)
    db.session.commit()
    flash("已删除映射")
    return redirect(url_for("ingest.mappings", lab_id=request.form.get("lab_id")))


# ---------------------------------------------------------------- API keys
def _keys_page(actor, *, new_key=None, errors=None, status=200):
    response = make_response(render_template(
        "ingest/keys.html", keys=apikeys.list_keys(actor), labs=apikeys.key_labs(actor),
        new_key=new_key, errors=errors or {}, form=request.form,
        api_base=url_for("ingest_api.openapi_json", _external=True).rsplit("/", 1)[0]), status)
    response.headers["Cache-Control"] = "no-store"  # a new key is on this page exactly once
    return response


@bp.route("/keys", methods=["GET", "POST"])
@login_required
def keys():
    """List the lab-interface keys in scope; a POST issues one and shows it once."""
    actor = current_actor()
    if request.method == "GET":
        return _keys_page(actor)
    try:
        row, raw = apikeys.create_key(actor, request.form.get("lab_id"), request.form.get("name"))
    except UserError as exc:
        db.session.rollback()
        if exc.status == 403:
            raise
        return _keys_page(actor, errors={exc.field or "form": exc.message}, status=exc.status)
    db.session.commit()
    return _keys_page(actor, new_key={"row": row, "raw": raw})


@bp.post("/keys/<int:key_id>/revoke")
@login_required
def revoke_key(key_id: int):
    """Revoke a key; the interface using it gets 401 from now on."""
    row = apikeys.revoke_key(current_actor(), key_id)
    db.session.commit()
    flash(f"已吊销密钥 {row.prefix}（{row.name}）")
    return redirect(url_for("ingest.keys"))
