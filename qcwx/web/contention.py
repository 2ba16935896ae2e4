"""Concurrent writers: a unique-key race becomes the duplicate answer, a lock wait a 503.

Why: eight phones sending the same run at once (a resend storm after a dead zone) gave one
201 and seven 500s — "database is locked" on SQLite, an unhandled ``IntegrityError`` on
MariaDB. :func:`retry_on_contention` wraps the write endpoints: the whole request is rolled
back and run again, so after a unique-key race the second run finds the first writer's row
and answers as a resend does (200 with the stored result, or 409 for other values); a lock
timeout or deadlock is retried with back-off, then answered 503 with ``Retry-After``. The
handlers in :func:`install` are the safety net for every other endpoint: a lock or a lost
connection is 503, an integrity error 409 — never a 500.
"""

from __future__ import annotations

import functools
import logging
import time

from flask import Flask
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from qcwx.errors import Busy
from qcwx.extensions import db

log = logging.getLogger(__name__)

#: Pauses before the 2nd, 3rd and 4th attempt after a lock timeout (seconds); a
#: unique-key race is run again at once, at most as many times.
BACKOFF = (0.05, 0.2, 0.5)
#: MariaDB/MySQL: lock wait timeout, deadlock; SQLite says it in words.
_LOCK_CODES = {1205, 1213}
_LOCK_WORDS = ("database is locked", "database table is locked", "deadlock", "lock wait")


def is_lock_error(exc: BaseException) -> bool:
    """Return whether ``exc`` is a lock timeout or deadlock (worth retrying)."""
    if not isinstance(exc, OperationalError):
        return False
    orig = getattr(exc, "orig", None)
    code = orig.args[0] if orig is not None and orig.args else None
    return code in _LOCK_CODES or any(w in str(orig or exc).lower() for w in _LOCK_WORDS)


def retry_on_contention(view):
    """Run ``view`` again after a unique-key race or a lock timeout (with back-off)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        for attempt in range(len(BACKOFF) + 1):
            try:
                return view(*args, **kwargs)
            except IntegrityError:
                db.session.rollback()
                if attempt == len(BACKOFF):
                    raise  # the error handler answers 409
                # The other writer's row is committed now: a resend finds it (duplicate), a
                # new version number is taken after it.
                log.info("unique-key race on %s; running the request again", view.__name__)
            except OperationalError as exc:
                db.session.rollback()
                if not is_lock_error(exc) or attempt == len(BACKOFF):
                    raise
                log.info("lock wait on %s (attempt %s): %s", view.__name__, attempt + 1, exc)
                time.sleep(BACKOFF[attempt])
        raise Busy()

    return wrapper


def install(app: Flask) -> None:
    """Answer contention no endpoint handled itself: 409 or 503 with ``Retry-After``."""
    from qcwx.web.errors import error_response, respond

    @app.errorhandler(Busy)
    def busy(exc: Busy):
        db.session.rollback()
        return error_response(exc)

    @app.errorhandler(IntegrityError)
    def integrity(exc: IntegrityError):
        db.session.rollback()
        log.warning("integrity error reached the error handler: %s", exc.orig)
        return respond(409, "与已有数据冲突，请刷新后重试")

    @app.errorhandler(OperationalError)
    def unavailable(exc: DBAPIError):
        try:
            db.session.rollback()
        except DBAPIError:  # the connection itself is gone (database restarting)
            db.session.close()
        log.warning("database unavailable or locked: %s", exc.orig)
        return busy(Busy("数据库暂时不可用，请稍后重试", retry_after=5 if not is_lock_error(exc)
                         else 2))
