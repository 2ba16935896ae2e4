"""Celery wiring: tasks run inside the Flask app context, take ids and plain JSON.

Start a worker with ``celery -A workers.celery_app worker -P solo`` and the scheduler with
``celery -A workers.celery_app beat``. Without ``QCWX_REDIS_URL`` tasks run eagerly in the
calling process, so the embedded default needs no broker.
"""

from __future__ import annotations

from celery import Task
from flask import Flask

from qcwx.extensions import celery

TASK_MODULES = ["workers.tasks.housekeeping"]


def init_celery(app: Flask) -> None:
    """Configure the shared Celery app from the Flask config (eager without Redis)."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

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
    )
    celery.Task = FlaskTask
    celery.set_default()
    app.extensions["celery"] = celery


def make_worker_app():
    """Return the Celery app bound to a freshly created Flask app (worker entry point)."""
    from qcwx import create_app

    create_app()
    return celery


def __getattr__(name: str):
    # ``celery -A workers.celery_app`` looks up ``app``/``celery`` lazily; create on demand.
    if name in ("app", "celery_app"):
        return make_worker_app()
    raise AttributeError(name)
