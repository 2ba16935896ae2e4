"""Unbound extension objects, bound to an app in ``create_app`` (the init_app pattern).

Celery is one of them: :func:`init_celery` configures the shared :data:`celery` app from the
Flask config and every task runs in an app context (:class:`FlaskTask`, Flask's
``examples/celery`` pattern). The beat schedule sits beside it in :mod:`qcwx.beat`; the tasks
live in their feature packages (``qcwx/<feature>/tasks.py``); ``workers/celery_app.py`` is only
the ``celery -A`` entry point.
"""

from __future__ import annotations

import importlib

from celery import Celery, Task
from flask import Flask, current_app, has_app_context
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

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
limiter = Limiter(key_func=get_remote_address)

# Every module holding tasks, imported by the worker (``include``) and by the web process.
TASK_MODULES = ("qcwx.web.tasks", "qcwx.alerts.tasks", "qcwx.peer.tasks")
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
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        timezone="Asia/Shanghai",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"socket_timeout": 2, "socket_connect_timeout": 2},
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
