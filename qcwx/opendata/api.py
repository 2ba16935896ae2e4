"""Research API (/api/research/v1): read-only, de-identified rows for approved research users.

Authenticated like the lab-interface API (``Authorization: Bearer <key>`` or ``X-API-Key``,
same key format and hashing, :mod:`qcwx.ingest.apikeys`) but with a region's research key
that must carry the ``research`` scope; a lab's ingest key is refused. Rate-limited per key,
CSRF-exempt (no cookies read), keyset-paged with an opaque cursor. The OpenAPI document
(:mod:`qcwx.opendata.openapi`) describes exactly these routes.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from flask_limiter.util import get_remote_address

from qcwx.errors import UserError
from qcwx.extensions import db, limiter
from qcwx.ingest import apikeys
from qcwx.ingest.api import unauthorized
from qcwx.opendata import openapi, queries, services
from qcwx.opendata.columns import DICTIONARY_HEADER, dictionary_rows

bp = Blueprint("research_api", __name__, url_prefix=openapi.BASE_PATH)
DEFAULT_RATELIMIT = "60 per minute"
PUBLIC_ENDPOINTS = {"research_api.openapi_json"}


def _presented() -> str | None:
    return apikeys.presented_key(request.headers.get("Authorization"),
                                 request.headers.get("X-API-Key"))


def _rate_key() -> str:
    prefix = apikeys.key_prefix(_presented())
    return f"research-key:{prefix}" if prefix else f"research-ip:{get_remote_address()}"


limiter.limit(lambda: current_app.config.get("RESEARCH_API_RATELIMIT", DEFAULT_RATELIMIT),
              key_func=_rate_key)(bp)


@bp.before_request
def _authenticate():
    """Resolve the research key; anything else gets 401 in Chinese."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    raw = _presented()
    key = services.authenticate_research(raw)
    if key is None:
        return unauthorized(raw, "qcwx-research", "API 密钥无效、已吊销或没有 research 权限")
    apikeys.touch(key)
    g.research_key = key
    return None


@bp.get("/openapi.json")
def openapi_json():
    """Serve the OpenAPI 3.0 document of this API (no key needed)."""
    return jsonify(openapi.document())


@bp.get("/dictionary")
def dictionary():
    """Serve the data dictionary (the same rows as the export's data_dictionary.csv)."""
    body = {"columns": [dict(zip(DICTIONARY_HEADER, row, strict=True))
                        for row in dictionary_rows()]}
    db.session.commit()  # keeps the key's last-used time
    return jsonify(body)


@bp.get("/results")
def results():
    """Serve one page of de-identified rows of the key's region for a period."""
    args = request.args
    start = services.parse_day(args.get("from"), "from")
    end = services.parse_day(args.get("to"), "to")
    if end < start:
        raise UserError("to 不能早于 from", field="to")
    if (end - start).days + 1 > services.MAX_DAYS:
        raise UserError(f"一次最多查询 {services.MAX_DAYS} 天", field="to")
    try:
        limit = int(args.get("limit", 500))
    except ValueError:
        raise UserError("limit 必须是 1–1000 的整数", field="limit") from None
    if not 1 <= limit <= queries.MAX_LIMIT:
        raise UserError("limit 必须是 1–1000 的整数", field="limit")
    page = queries.research_page(g.research_key.region_id, services.pseudonym_secret(), start,
                                 end, queries.decode_cursor(args.get("cursor")), limit)
    db.session.commit()
    return jsonify(page)
