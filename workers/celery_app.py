"""Celery wiring: tasks run inside the Flask app context, take ids and plain JSON.

Start a worker with ``celery -A workers.celery_app worker -P solo`` and the scheduler with
``celery -A workers.celery_app beat``. Without ``QCWX_REDIS_URL`` tasks run eagerly in the
calling process, so the embedded default needs no broker.
"""

from __future__ import annotations

import importlib
import sys

from celery import Task
from flask import Flask, current_app, has_app_context

from qcwx.extensions import celery
from workers.beat import BEAT_SCHEDULE

TASK_MODULES = ["workers.tasks.housekeeping", "workers.tasks.alerts", "workers.tasks.peer"]
_flask_app: dict[str, Flask] = {}


def init_celery(app: Flask) -> None:
    """Configure the shared Celery app from the Flask config (eager without Redis)."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            # A task class is fixed when the task is first created, but tests build several
            # apps: run an eager task in the caller's app, a worker's in the latest one. The
            # fresh app context gives the task its own session (and its own commit).
            flask_app = current_app._get_current_object() if has_app_context() else (
                _flask_app["app"])
            with flask_app.app_context():
                return self.run(*args, **kwargs)

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
        include=TASK_MODULES,
        beat_schedule=BEAT_SCHEDULE,
    )
    celery.Task = FlaskTask
    celery.set_default()
    app.extensions["celery"] = celery
    for module in TASK_MODULES:  # register the tasks here too: eager runs and after-commit
        importlib.import_module(module)  # enqueues look them up by name in the web process


def make_worker_app():
    """Return the Celery app bound to a freshly created Flask app (worker entry point).

    ``celery -A`` puts the working directory on ``sys.path`` only while it imports this
    module and removes it before asking for ``app``; the project root goes back on it here
    so that top-level packages first imported by ``create_app`` (``miniprogram_api``) load.
    """
    from qcwx import create_app
    from qcwx.config import PROJECT_ROOT

    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))

    create_app()
    return celery


def __getattr__(name: str):
    # ``celery -A workers.celery_app`` looks up ``app``/``celery`` lazily; create on demand.
    if name in ("app", "celery_app"):
        return make_worker_app()
    raise AttributeError(name)
