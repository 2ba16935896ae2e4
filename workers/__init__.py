"""The Celery worker/beat entry point (``workers.celery_app``); tasks live in ``qcwx``."""
