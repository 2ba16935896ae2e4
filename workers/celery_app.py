"""The worker and beat entry point: ``celery -A workers.celery_app worker|beat``.

Start a worker with ``celery -A workers.celery_app worker -P solo`` and the scheduler with
``celery -A workers.celery_app beat``. This module only creates the Flask app, which wires
Celery (:func:`qcwx.extensions.init_celery`: tasks run in app context, the beat schedule of
:mod:`qcwx.beat`, the task modules ``qcwx/<feature>/tasks.py``). Nothing in ``qcwx`` imports
it. Without ``QCWX_REDIS_URL`` tasks run eagerly in the calling process, so the embedded
default needs no broker.
"""

from __future__ import annotations

import sys

from qcwx.extensions import celery


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
