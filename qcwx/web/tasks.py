"""Health tasks: the worker-side counterpart of the ``/healthz`` endpoint."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="qcwx.ping")
def ping() -> str:
    """Answer ``pong``: lets health checks and tests prove a worker is consuming."""
    return "pong"
