"""Unbound extension objects, bound to an app in ``create_app`` (the init_app pattern).

Celery is one of them: :func:`init_celery` configures the shared :data:`celery` app from the
Flask config and every task runs in an app context (:class:`FlaskTask`, Flask's
``examples/celery`` pattern). The beat schedule sits beside it in :mod:`qcwx.beat`; the tasks
live in their feature packages (``qcwx/<feature>/tasks.py``); ``workers/celery_app.py`` is only
the ``celery -A`` entry point.

Flask-Compress serves text (pages, CSS, JavaScript, JSON, SVG) brotli- or gzip-compressed
(:func:`init_compression`); static URLs carry a content version so that static files can be
cached for a year (:func:`init_static_caching`).
"""

from __future__ import annotations

import hashlib
import importlib
from collections import ChainMap, OrderedDict
from functools import lru_cache
from pathlib import Path

from celery import Celery, Task
from flask import Flask, Response, current_app, has_app_context, request
from flask_compress import Compress
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase
from werkzeug.security import safe_join

from qcwx.beat import BEAT_SCHEDULE

# Stable constraint names so Alembic migrations are identical on SQLite and MariaDB.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every qcwx model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


def core_execute(statement, params=None):
    """Execute a Core statement (rows in, rows out) on the session's connection.

    ``db.session.execute`` resolves the bind and, for a statement naming mapped attributes,
    runs the ORM's compile and execute path, per statement; a submission's union read,
    inserts, verdict update and audit rows need none of it (issue 14: 0.05–0.1 ms of CPU per
    statement, six per submission). It runs in the session's transaction as before, and
    pending ORM changes are flushed first, as an ORM execute would (autoflush).
    """
    session = db.session()
    if session.autoflush:
        session.flush()
    return session.connection().execute(statement, params)


def _rate_limit_key() -> str:
    """Bucket a request by its user or key when authenticated, else by address."""
    from qcwx.web.security import rate_limit_key

    return rate_limit_key()


def _default_limit() -> str:
    """The app's own ``RATELIMIT_DEFAULT``, read per request.

    Flask-Limiter keeps the default limits on the ``Limiter`` object, set by the first app
    that initialises it with limits on; a string here would pin every later app of the
    process (a test's, a second factory call) to the first app's figure.
    """
    return current_app.config["RATELIMIT_DEFAULT"]


limiter = Limiter(key_func=_rate_limit_key, default_limits=[_default_limit])


@limiter.request_filter
def _limits_off() -> bool:
    """Exempt every request of an app whose own ``RATELIMIT_ENABLED`` is off.

    Flask-Limiter's switch is one flag on the shared ``Limiter``, left by the last app that
    initialised it: an app with limits on would otherwise turn them on for the apps of the
    same process that have them off (their login and label routes carry limits).
    """
    return not current_app.config["RATELIMIT_ENABLED"]

# Every module holding tasks, imported by the worker (``include``) and by the web process.
TASK_MODULES = ("qcwx.web.tasks", "qcwx.followups", "qcwx.alerts.tasks", "qcwx.peer.tasks",
                "qcwx.reports.tasks", "qcwx.opendata.tasks")
_flask_app: dict[str, Flask] = {}


class FlaskTask(Task):
    """A task that runs inside a Flask app context, with its own session and commit."""

    def __call__(self, *args, **kwargs):
        # A task class is fixed when the task is first created, but tests build several
        # apps: run an eager task in the caller's app, a worker's in the latest one. The
        # fresh app context gives the task its own session (and its own commit).
        flask_app = current_app._get_current_object() if has_app_context() else (
            _flask_app["app"])
        with flask_app.app_context():
            return self.run(*args, **kwargs)


celery = Celery("qcwx", task_cls=FlaskTask)


def init_celery(app: Flask) -> None:
    """Configure the shared Celery app from the Flask config (eager without Redis)."""
    _flask_app["app"] = app
    redis_url = app.config["REDIS_URL"]
    celery.conf.update(
        broker_url=redis_url or "memory://",
        result_backend=redis_url or None,
        task_always_eager=app.config["CELERY_EAGER"],
        task_eager_propagates=False,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # Nobody reads task results. Without this, every publish from a request subscribed to
        # the task's result in Redis, and with Redis down that subscription retried 20 × 1 s:
        # each submission hung ~19 s (bench/fault_redis.py). A task that needs its result
        # says ``ignore_result=False``.
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="Asia/Shanghai",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        # One connection attempt when publishing: kombu's default retried for ~6 s per
        # publish while Redis was down, and a request publishes after its commit (peer
        # refresh, alert dispatch) — the nightly rebuild and the outbox sweep catch up.
        # The worker's own reconnect loop takes its limits from broker_connection_* instead.
        broker_transport_options={"socket_timeout": 2, "socket_connect_timeout": 2,
                                  "max_retries": 0},
        include=list(TASK_MODULES),
        beat_schedule=BEAT_SCHEDULE,
    )
    celery.set_default()
    app.extensions["celery"] = celery
    for module in TASK_MODULES:  # register the tasks here too: eager runs and after-commit
        importlib.import_module(module)  # enqueues look them up by name in the web process


def make_sqlite_transactional(engine: Engine) -> None:
    """Give SQLite real transactions, savepoints and foreign keys.

    pysqlite otherwise opens transactions lazily and breaks SAVEPOINT (SQLAlchemy docs,
    "Serializable isolation / Savepoints / Transactional DDL"); tests roll back through
    savepoints and a failed request must leave no partial write on SQLite either.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        # WAL: readers never block the writer (threaded server + in-process tasks).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN")


def reset_open_transactions_only(engine: Engine) -> None:
    """Roll a MySQL/MariaDB connection back on its return to the pool only when it needs it.

    SQLAlchemy's default reset sends ROLLBACK whenever a session hands its connection back,
    and a committed session hands it back with nothing open: one round trip of every request
    for nothing (issue 14; ~2 % of a gunicorn worker's samples under load). The server
    says in every reply whether a transaction is open (``SERVER_STATUS_IN_TRANS``), and
    PyMySQL keeps that flag, so the rollback is sent exactly when a transaction is left open;
    a driver without the flag is always rolled back, as before. Goes with
    ``pool_reset_on_return=None`` (``qcwx.config``); without it the pool would still roll
    back every time and this would only add a second, harmless one.
    """
    from pymysql.constants.SERVER_STATUS import SERVER_STATUS_IN_TRANS

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection, _record, state):
        if state.terminate_only:
            return
        status = getattr(dbapi_connection, "server_status", SERVER_STATUS_IN_TRANS)
        if status & SERVER_STATUS_IN_TRANS:
            dbapi_connection.rollback()


# -- compression and static caching ----------------------------------------------------
#: Pages and API responses, compressed per response.
compress = Compress()
#: Static files, compressed once per file version and kept in memory (see StaticCache).
static_compress = Compress()
COMPRESS_SETTINGS = {
    "COMPRESS_MIMETYPES": ["text/html", "text/css", "text/javascript", "application/javascript",
                           "application/json", "image/svg+xml"],
    "COMPRESS_ALGORITHM": ["br", "gzip"],
    "COMPRESS_MIN_SIZE": 500,
    "COMPRESS_BR_LEVEL": 5,
    "COMPRESS_REGISTER": False,  # compress_response decides which responses go through
    "COMPRESS_STREAMS": False,  # generators and file downloads stream untouched
}
#: Brotli quality of static files: compressed once per version and cached, so the densest
#: (quality 11: the ECharts bundle 204 → 182 KB, about 2 s once per process and version);
#: pages and API responses keep ``COMPRESS_BR_LEVEL`` 5, fast enough for every response.
STATIC_BR_LEVEL = 11
#: ``Cache-Control`` of a static file requested with its current ``?v=`` version.
STATIC_CACHE_CONTROL = "public, max-age=31536000, immutable"


class StaticCache:
    """Compressed static files by algorithm, path and version (least recently used dropped)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.data: OrderedDict[str, bytes] = OrderedDict()
        self.max_entries = max_entries

    def get(self, key: str) -> bytes | None:
        """Return the compressed bytes stored under ``key``, or None."""
        if key in self.data:
            self.data.move_to_end(key)
        return self.data.get(key)

    def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.max_entries:
            self.data.popitem(last=False)


def init_compression(app: Flask) -> None:
    """Compress text responses with brotli or gzip, as the client accepts (Flask-Compress).

    Only complete responses of :data:`COMPRESS_SETTINGS` types over 500 bytes are compressed;
    a streamed response (generator, ``send_file`` download) passes untouched, except static
    files, which are read, compressed once per version (brotli at :data:`STATIC_BR_LEVEL`) and
    cached. Partial content (206) is never compressed. The WeChat callback answers XML or plain
    text, so it is left alone.
    """
    for key, value in COMPRESS_SETTINGS.items():
        app.config.setdefault(key, value)
    compress.init_app(app)
    static_compress.init_app(app)
    static_compress.app = _StaticCompressSettings()  # Flask-Compress reads .app.config first
    static_compress.cache = StaticCache()
    static_compress.cache_key = _static_cache_key
    app.after_request(compress_response)


class _StaticCompressSettings:
    """Stand in for the app in ``static_compress``: its config, with brotli at quality 11."""

    @property
    def config(self) -> ChainMap:
        """Return ``current_app.config`` with :data:`STATIC_BR_LEVEL` as the brotli level."""
        return ChainMap({"COMPRESS_BR_LEVEL": STATIC_BR_LEVEL}, current_app.config)


def compress_response(response: Response) -> Response:
    """Compress ``response`` when the client accepts it and it is worth it (after_request)."""
    if response.status_code == 206:
        return response
    if not response.is_streamed:
        return compress.after_request(response)
    if request.endpoint != "static" or response.mimetype not in compress.compress_mimetypes_set:
        return response
    response.direct_passthrough = False
    response.make_sequence()  # a static file: read it, so it can be compressed and cached
    return static_compress.after_request(response)


def _static_cache_key(req) -> str:
    filename = req.view_args["filename"]
    return f"{filename}@{static_version(filename) or ''}"


def init_static_caching(app: Flask) -> None:
    """Version static URLs by content (``?v=``) and let browsers keep such files for a year.

    ``url_for('static', filename=…)`` gains ``v=<hash of the file>``; a request carrying the
    file's current version is answered with :data:`STATIC_CACHE_CONTROL`, any other static
    request keeps Flask's revalidating default. A changed file gets a new URL.
    """

    @app.url_defaults
    def _add_static_version(endpoint: str, values: dict) -> None:
        if endpoint == "static" and "v" not in values and "filename" in values:
            version = static_version(values["filename"])
            if version:
                values["v"] = version

    @app.after_request
    def _static_cache_control(response: Response) -> Response:
        if (request.endpoint == "static" and response.status_code in (200, 304)
                and request.args.get("v")
                and request.args["v"] == static_version(request.view_args["filename"])):
            response.headers["Cache-Control"] = STATIC_CACHE_CONTROL
        return response


def static_version(filename: str) -> str | None:
    """Return a short hash of the static file's content, or None if there is no such file."""
    path = safe_join(current_app.static_folder, filename)
    if path is None:
        return None
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return _file_hash(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=512)
def _file_hash(path: str, _mtime_ns: int, _size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
