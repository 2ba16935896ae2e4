"""Celery workers: thin task wrappers over qcwx services."""
