"""Serve the app from the QCWX_* environment for the end-to-end tests (a separate process).

The e2e tests need the web process configured exactly like production (``QCWX_REDIS_URL``
set, a real broker) without touching the test process's own Celery configuration, so the
app runs here: ``python -m tests.e2e.live_server <port>``.

The rate limiter keeps its counters in the same Redis; with Redis down it would answer 500 to
every request. Until ``qcwx.config`` makes that the default, this server asks Flask-Limiter
to fall back to memory (``RATELIMIT_SWALLOW_ERRORS`` / ``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED``)
— the outage test is about the submission and the outbox, and this is the fix requested.
"""

from __future__ import annotations

import sys

from werkzeug.serving import make_server

from qcwx import create_app

LIMITER_FALLBACK = {"RATELIMIT_SWALLOW_ERRORS": True, "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True}


def main(argv: list[str]) -> None:
    """Serve ``create_app()`` on 127.0.0.1:<port> until terminated."""
    app = create_app(LIMITER_FALLBACK)
    server = make_server("127.0.0.1", int(argv[0]), app, threaded=True)
    print(f"live server on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
