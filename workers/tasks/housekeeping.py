"""Health and housekeeping tasks."""

from celery import shared_task


@shared_task(name="qcwx.ping")
def ping() -> str:
    """Answer ``pong``: lets health checks and tests prove a worker is consuming."""
    return "pong"
