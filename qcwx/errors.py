"""Errors that cross layers: user mistakes (4xx, Chinese), outside services, configuration.

Services raise these; the web layer turns ``UserError`` into a 4xx with a Chinese message
naming the field, so a bad input never becomes a 500 or a partial write.
"""

from __future__ import annotations


class QcwxError(Exception):
    """Base of every qcwx error."""


class ConfigError(QcwxError):
    """A setting is missing or invalid; the message names the QCWX_ variable (English, ops)."""


class UserError(QcwxError):
    """Bad input from a user: a Chinese message, the field it concerns and the HTTP status."""

    status = 400
    #: Whether the same request may succeed when sent again later (nothing was stored).
    retryable = False

    def __init__(self, message: str, field: str | None = None, status: int | None = None,
                 fields: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        #: Every field at fault with its message, when a form has several (shown all at once).
        self.fields = fields or {}
        if status is not None:
            self.status = status

    def to_dict(self) -> dict:
        """Return the JSON body every API uses for this error."""
        body = {"error": self.message, "field": self.field}
        if self.fields:
            body["fields"] = dict(self.fields)
        return body


class NotFound(UserError):
    """The object does not exist or lies outside the actor's scope (same answer, on purpose)."""

    status = 404

    def __init__(self, message: str = "未找到该对象或无权访问", field: str | None = None):
        super().__init__(message, field)


class Forbidden(UserError):
    """The actor's role may not do this."""

    status = 403

    def __init__(self, message: str = "当前角色无权执行此操作", field: str | None = None):
        super().__init__(message, field)


class Conflict(UserError):
    """The request clashes with stored data (e.g. a client id reused with other values)."""

    status = 409


class RetryableConflict(Conflict):
    """A concurrent writer took the same key first; nothing was stored, send it again."""

    retryable = True


class Busy(UserError):
    """The database stayed locked through our retries: 503 with ``Retry-After``."""

    status = 503
    retryable = True

    def __init__(self, message: str = "系统繁忙（数据正在被同时写入），请稍后重试",
                 retry_after: int = 2):
        super().__init__(message, None)
        self.retry_after = retry_after


class ExternalServiceError(QcwxError):
    """A call to WeChat, Redis or another outside service failed; callers retry later."""
