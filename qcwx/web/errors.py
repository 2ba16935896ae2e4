"""Error responses: Chinese, 4xx for user errors, JSON for API clients, HTML for people."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from qcwx.errors import ExternalServiceError, UserError

log = logging.getLogger(__name__)

HTTP_MESSAGES = {
    400: "请求有误",
    401: "请先登录",
    403: "当前角色无权执行此操作",
    404: "未找到该页面或无权访问",
    405: "不支持的请求方式",
    409: "与已有数据冲突",
    413: "上传内容过大",
    429: "请求过于频繁，请稍后再试",
    500: "服务器内部错误，请稍后再试",
}


def wants_json() -> bool:
    """Return whether the caller is an API client rather than a browser page."""
    return request.path.startswith("/api/") or (
        request.accept_mimetypes.best == "application/json"
    )


def respond(status: int, message: str, field: str | None = None):
    if wants_json():
        return jsonify({"error": message, "field": field}), status
    return render_template("error.html", status=status, message=message), status


def error_response(exc: UserError):
    """Answer a ``UserError``: its status and Chinese message, and ``Retry-After`` if any.

    The header comes from errors that carry it (``Busy``). Blueprint handlers call this
    too: Flask prefers a blueprint's ``UserError`` handler over the app's handler of a
    subclass, so a header added only in the app's ``Busy`` handler was lost there.
    """
    from flask import current_app

    body, status = respond(exc.status, exc.message, exc.field)
    response = current_app.make_response((body, status))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def seconds_to_retry() -> int:
    """Whole seconds until the breached rate limit lets this caller in again (at least 1).

    Rounded up: a client told "0" retries at once and is refused again (the uploader and
    the mini-program wait exactly what ``Retry-After`` says).
    """
    import math
    import time

    from qcwx.extensions import limiter

    breached = [lim for lim in limiter.current_limits if lim.breached]
    if not breached:
        return 60
    return max(1, math.ceil(max(lim.reset_at for lim in breached) - time.time()))


def install(app: Flask) -> None:
    """Register handlers for ``UserError``, HTTP errors and anything unexpected."""

    @app.errorhandler(UserError)
    def user_error(exc: UserError):
        from qcwx.extensions import db

        db.session.rollback()
        return error_response(exc)

    @app.errorhandler(ExternalServiceError)
    def external_error(exc: ExternalServiceError):
        from qcwx.extensions import db

        db.session.rollback()
        log.warning("external service failed on %s: %s", request.path, exc)
        return respond(503, "微信服务暂时不可用，请稍后再试")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        answer = respond(status, HTTP_MESSAGES.get(status, exc.description or "请求有误"))
        if status != 429:
            return answer
        response = app.make_response(answer)
        response.headers["Retry-After"] = str(seconds_to_retry())
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        from qcwx.extensions import db

        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return respond(500, HTTP_MESSAGES[500])
