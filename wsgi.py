"""WSGI entry point: ``flask --app wsgi run`` or ``gunicorn wsgi:app``."""

import sys

from qcwx import create_app
from qcwx.errors import ConfigError

try:
    app = create_app()
except ConfigError as exc:  # one clear line naming the variable, then exit
    sys.exit(f"qcwx: configuration error: {exc}")
