"""Lab-interface API (/api/ingest/v1): LIS and interface programs send QC with a lab's key.

Stateless JSON: authenticated by ``Authorization: Bearer <key>`` (or ``X-API-Key``), exempt
from CSRF (no cookies are read), rate-limited per key, body size capped. Each endpoint
parses its input, calls one service and commits once; per-item problems come back in the
200 answer, whole-request problems as 4xx JSON with a Chinese ``error`` and its ``field``.
The OpenAPI document (:mod:`qcwx.ingest.openapi`) describes exactly these routes — a test
compares the two.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from flask_limiter.util import get_remote_address

from qcwx.errors import UserError
from qcwx.extensions import db, limiter
from qcwx.ingest import apikeys, openapi, services, uploads
from qcwx.web.contention import retry_on_contention

bp = Blueprint("ingest_api", __name__, url_prefix="/api/ingest/v1")

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_RATELIMIT = "120 per minute"
PUBLIC_ENDPOINTS = {"ingest_api.openapi_json"}
MESSAGE_FORMATS = ("astm", "hl7")
FILE_FORMATS = ("csv", "xlsx")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _max_bytes() -> int:
    return int(current_app.config.get("INGEST_API_MAX_BYTES", DEFAULT_MAX_BYTES))


def _rate_key() -> str:
    """Bucket requests by the key they present, so one busy lab cannot starve the others."""
    raw = apikeys.presented_key(request.headers.get("Authorization"),
                                request.headers.get("X-API-Key"))
    prefix = apikeys.key_prefix(raw)
    return f"ingest-key:{prefix}" if prefix else f"ingest-ip:{get_remote_address()}"


limiter.limit(lambda: current_app.config.get("INGEST_API_RATELIMIT", DEFAULT_RATELIMIT),
              key_func=_rate_key)(bp)


@bp.before_request
def _authenticate():
    """Cap the body size and resolve the key; unknown or revoked keys get 401 in Chinese."""
    request.max_content_length = _max_bytes()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    raw = apikeys.presented_key(request.headers.get("Authorization"),
                                request.headers.get("X-API-Key"))
    key = apikeys.authenticate(raw)
    if key is None:
        return unauthorized(raw, "qcwx-ingest", "API 密钥无效或已吊销")
    apikeys.touch(key)
    g.api_key = key
    g.api_actor = apikeys.key_actor(key)
    return None


def unauthorized(raw: str | None, realm: str, invalid: str):
    """Return the 401 answer (Chinese, names the header) for a missing or refused key."""
    message = ("缺少 API 密钥：请在请求头 Authorization: Bearer <密钥> 或 X-API-Key 中提供"
               if raw is None else invalid)
    response = jsonify({"error": message, "field": "Authorization"})
    response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response, 401


@bp.errorhandler(413)
def _too_large(_exc):
    db.session.rollback()
    limit_mb = _max_bytes() / 1024 / 1024
    return jsonify({"error": f"上传内容过大：单次请求不能超过 {limit_mb:g} MB，请拆分后再发送",
                    "field": "body"}), 413


@bp.get("/openapi.json")
def openapi_json():
    """Serve the OpenAPI 3.1 document of this API (no key needed)."""
    return jsonify(openapi.document())


@bp.get("/me")
def me():
    """Tell an interface program which lab its key belongs to (a connection check)."""
    key = g.api_key
    body = {"lab_id": key.lab_id, "lab": key.lab.full_name, "key_prefix": key.prefix,
            "key_name": key.name}
    db.session.commit()  # keeps the key's last-used time (set while authenticating)
    return jsonify(body)


@bp.post("/results")
@retry_on_contention
def results():
    """Store a JSON batch of QC results; one status per item."""
    raw = request.get_data(cache=True)
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise UserError("请求内容必须是 JSON 对象（Content-Type: application/json）", field="body")
    report = services.commit_json(g.api_actor, g.api_key.lab, body, raw, g.api_key)
    db.session.commit()
    return jsonify(report.to_dict())


@bp.post("/messages")
@retry_on_contention
def messages():
    """Store the QC records of raw ASTM E1394 or HL7 v2 bytes; patient records are skipped."""
    if request.mimetype in FORM_TYPES:
        raise UserError("请以 application/octet-stream 或 text/plain 发送原始消息",
                        field="Content-Type", status=415)
    fmt = _message_format()
    data = request.get_data(cache=False)
    report = services.commit_file(g.api_actor, g.api_key.lab, data, filename=None, channel="api",
                                  fmt=fmt, allowed=MESSAGE_FORMATS, api_key=g.api_key)
    db.session.commit()
    return jsonify(report.to_dict())


def _message_format() -> str | None:
    """Return ``?format=`` as the document declares it: absent, or once one of its values."""
    given = request.args.getlist("format")
    if not given:
        return None
    if len(given) > 1 or given[0] not in openapi.MESSAGE_FORMAT_NAMES:
        raise UserError("format 只能是 astm 或 hl7（只填一个）", field="format")
    return given[0].lower()


@bp.post("/files")
def files():
    """Store a CSV/XLSX export (multipart field ``file``), as the upload page's commit does."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise UserError("请以 multipart/form-data 的 file 字段上传 CSV 或 XLSX 文件", field="file")
    columns = None
    if request.form.get("column_mapping"):
        columns = uploads.get_column_mapping(g.api_actor, _mapping_id()).columns
    data = upload.read()
    report = services.commit_file(g.api_actor, g.api_key.lab, data, filename=upload.filename,
                                  channel="api", columns=columns, allowed=FILE_FORMATS,
                                  api_key=g.api_key)
    db.session.commit()
    return jsonify(report.to_dict())


def _mapping_id() -> int:
    """Return the saved column mapping named in the form (by id or by name) of the key's lab."""
    wanted = request.form.get("column_mapping", "").strip()
    for row in uploads.column_mappings(g.api_actor, g.api_key.lab_id):
        if str(row.id) == wanted or row.name == wanted:
            return row.id
    raise UserError(f"找不到列映射“{wanted[:64]}”", field="column_mapping", status=404)
